/**
 * The checks stage's contract: one unit for the whole run (id `all`) writing the checkpoints it
 * flagged (duplicated, misplaced, broken; the rules are in ./rules.ts).
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const CHECKS = "checks"
export const checksUnit: UnitRef = { stage: CHECKS, id: "all" }

/** What a check found; see ./rules.ts for each rule. */
export type CheckName = "identical_weights" | "identical_predictions" | "out_of_order" | "broken"
export const CHECK_NAMES: ReadonlyArray<CheckName> = ["identical_weights", "identical_predictions", "out_of_order", "broken"]

/** "error": the checkpoint is wrong (duplicate, broken); "warning": it looks misplaced. */
export type Severity = "error" | "warning"

/**
 * `checkpoint_checks.parquet` (run root): one row per flagged (model, step, check); no rows when
 * nothing fired. Rows are ordered by model (config order), step, check.
 *   check         a CheckName;  severity  a Severity
 *   detail        one line for a person: what was seen, on which dataset(s), with the numbers
 *   related_step  the other checkpoint involved (the copy it duplicates, the later checkpoint it
 *                 beats), null when none (broken)
 */
export const CheckpointChecks = defineTable("checkpoint_checks", {
  model: col.utf8(),
  step: col.int32(),
  check: col.utf8(),
  severity: col.utf8(),
  detail: col.utf8(),
  related_step: col.int32({ nullable: true }),
})
export type CheckpointCheckRow = TableRow<typeof CheckpointChecks>

export const checksFile: TableFile = { path: "checkpoint_checks.parquet", table: CheckpointChecks }
