/**
 * Arrow schema and path of the table written by the checks stage.
 */
import * as arrow from "apache-arrow"

const f = (name: string, type: arrow.DataType, nullable = false) => new arrow.Field(name, type, nullable)

/** What a check found; see stages/checks/rules.ts for each rule. */
export type CheckName = "identical_weights" | "identical_predictions" | "out_of_order" | "broken"
export const CHECK_NAMES: ReadonlyArray<CheckName> = ["identical_weights", "identical_predictions", "out_of_order", "broken"]

/** "error": the checkpoint is wrong (duplicate, broken); "warning": it looks misplaced. */
export type Severity = "error" | "warning"

/**
 * `checkpoint_checks.parquet` (run root): one row per flagged (model, step, check); no rows when
 * nothing fired. Rows are ordered by model (config order), step, check.
 *   detail        one line for a person: what was seen, on which dataset(s), with the numbers
 *   related_step  the other checkpoint involved (the copy it duplicates, the later checkpoint it
 *                 beats), null when none (broken)
 */
export const checkpointChecksSchema = new arrow.Schema([
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("check", new arrow.Utf8()),
  f("severity", new arrow.Utf8()),
  f("detail", new arrow.Utf8()),
  f("related_step", new arrow.Int32(), true),
])

export const checksPaths = {
  checks: "checkpoint_checks.parquet",
} as const
