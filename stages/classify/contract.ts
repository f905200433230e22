/**
 * The classify stage's contract: one unit for the whole run (id `all`), writing every model's
 * per-token classes on every dataset (one part per block of tokens, as regress) and four summary
 * tables at the run root that hold every dataset (their `dataset` column).
 */
import { Classes } from "../../lib/analysis/part-tables.ts"
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"
import { partName } from "../regress/contract.ts"

export { Classes, type ClassRow } from "../../lib/analysis/part-tables.ts"

export const CLASSIFY = "classify"
export const classifyUnit: UnitRef = { stage: CLASSIFY, id: "all" }

/** Class names (string literals, code order); shares of them are fractions in [0, 1]. */
export { CLASSES, type TokenClass } from "../../lib/analysis/classes.ts"


/**
 * `class_summary.parquet`: share = n_tokens / tokens of the dataset.
 *   share_lo, share_hi  its 95% percentile bootstrap interval, resampling the dataset's documents
 *                       (a document = a distinct doc_id of tokens.parquet) with replacement,
 *                       analysis.bootstrap_samples times from analysis.bootstrap_seed: in a
 *                       resample, share = Σ n_class(doc) / Σ n_tokens(doc) over the drawn
 *                       documents; the same draws for every model, threshold and class of a
 *                       dataset (lib/analysis/doc-shares.ts). One document: lo = hi = share.
 *                       Null only for a dataset without tokens.
 */
export const ClassSummary = defineTable("class_summary", {
  model: col.utf8(),
  dataset: col.utf8(),
  threshold: col.float64(),
  class: col.utf8(),
  n_tokens: col.int32(),
  share: col.float64(),
  share_lo: col.float64({ nullable: true }),
  share_hi: col.float64({ nullable: true }),
})
export type ClassSummaryRow = TableRow<typeof ClassSummary>

/** `class_transitions.parquet`: share = n / (tokens of class_from in model_from). Rows only where that count is > 0. */
export const ClassTransitions = defineTable("class_transitions", {
  dataset: col.utf8(),
  threshold: col.float64(),
  model_from: col.utf8(),
  class_from: col.utf8(),
  model_to: col.utf8(),
  class_to: col.utf8(),
  n: col.int32(),
  share: col.float64(),
})

/** `class_categories.parquet`: share = n / (tokens of that class in that model). Rows only where that count is > 0. */
export const ClassCategories = defineTable("class_categories", {
  model: col.utf8(),
  dataset: col.utf8(),
  threshold: col.float64(),
  class: col.utf8(),
  category: col.utf8(),
  n: col.int32(),
  share: col.float64(),
})

/**
 * `group_trajectories.parquet`: S = tokens of `class` in `ref_model` at `threshold`; for every
 * model and step, group_ppl = mean per-token perplexity over S (null when S is empty) and
 * valid_ppl = perplexity of the whole dataset at that checkpoint (checkpoints.parquet).
 */
export const GroupTrajectories = defineTable("group_trajectories", {
  dataset: col.utf8(),
  ref_model: col.utf8(),
  threshold: col.float64(),
  class: col.utf8(),
  model: col.utf8(),
  step: col.int32(),
  valid_ppl: col.float64({ nullable: true }),
  group_ppl: col.float64({ nullable: true }),
  n_tokens: col.int32(),
})

export const classesDir = (model: string, dataset: string) => `classes/model=${model}/dataset=${dataset}`
export const classesPart = (model: string, dataset: string, g: number): TableFile => ({ path: `${classesDir(model, dataset)}/${partName(g)}`, table: Classes })
export const classSummaryFile: TableFile = { path: "class_summary.parquet", table: ClassSummary }
export const classTransitionsFile: TableFile = { path: "class_transitions.parquet", table: ClassTransitions }
export const classCategoriesFile: TableFile = { path: "class_categories.parquet", table: ClassCategories }
export const groupTrajectoriesFile: TableFile = { path: "group_trajectories.parquet", table: GroupTrajectories }
