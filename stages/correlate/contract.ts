/**
 * The correlate stage's contract: one unit for the whole run (id `all`) writing task metrics,
 * what predicts accuracy, and the agreement of sizes at equal perplexity. Missing values (a
 * statistic that does not exist for the points at hand) are nulls, never NaN.
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const CORRELATE = "correlate"
export const correlateUnit: UnitRef = { stage: CORRELATE, id: "all" }

/**
 * `task_metrics.parquet`: one row per (model, checkpoint, task), from the options tables
 * (./metrics.ts defines every column), and one per (model, checkpoint, BIG-bench parent task).
 *   parent        on a subtask's rows, its parent task (pipeline/config.ts Task); null otherwise
 *   aggregate     true on a parent task's rows (task = the parent's name): the subtasks' mean, as
 *                 BIG-bench scores a parent (./tables.ts parentRows): n_examples their sum, every
 *                 other metric the unweighted mean of theirs, the four intervals null; only at the
 *                 points where every subtask has a row. Rows with aggregate = false are each scored
 *                 task once (a subtask is a task); rows with parent null are each configured task
 *                 once (a parent by its aggregate). Mean over either, never over every row.
 *   accuracy, accuracy_norm, random_baseline  fractions in [0, 1]
 *   acc_lo, acc_hi, acc_norm_lo, acc_norm_hi  95% Wilson score intervals of accuracy and accuracy_norm (null on aggregate rows)
 *   grade                                     BIG-bench's multiple_choice_grade: mean target score of the chosen option
 *   correct_ppl, incorrect_ppl                exp(−mean log-prob) over the tokens of correct / incorrect options
 */
export const TaskMetrics = defineTable("task_metrics", {
  model: col.utf8(),
  step: col.int32(),
  task: col.utf8(),
  parent: col.utf8({ nullable: true }),
  aggregate: col.bool(),
  n_examples: col.int32(),
  accuracy: col.float64(),
  acc_lo: col.float64({ nullable: true }),
  acc_hi: col.float64({ nullable: true }),
  grade: col.float64(),
  accuracy_norm: col.float64(),
  acc_norm_lo: col.float64({ nullable: true }),
  acc_norm_hi: col.float64({ nullable: true }),
  random_baseline: col.float64(),
  correct_ppl: col.float64(),
  incorrect_ppl: col.float64(),
})
export type TaskMetricRow = TableRow<typeof TaskMetrics>

/**
 * `task_margins.parquet`: one row per (model, checkpoint, task) of task_metrics but a BIG-bench
 * parent's aggregate rows (a parent has no options of its own): how far the correct options are
 * ahead of the incorrect ones in per-token log-prob, from the options tables (./metrics.ts taskMargin).
 *   margin            mean over examples of (mean ℓ of the correct options − mean ℓ of the incorrect
 *                     ones), ℓ = logprob_sum / n_tokens (nats per token, −ln of the option's
 *                     perplexity); > 0: the correct options are likelier. Null without examples.
 *   margin_lo, margin_hi  margin ∓ 1.96 standard errors over the examples (null with < 2)
 *   n_examples        examples with a correct and an incorrect option of at least one token
 */
export const TaskMargins = defineTable("task_margins", {
  model: col.utf8(),
  step: col.int32(),
  task: col.utf8(),
  n_examples: col.int32(),
  margin: col.float64({ nullable: true }),
  margin_lo: col.float64({ nullable: true }),
  margin_hi: col.float64({ nullable: true }),
})
export type TaskMarginRow = TableRow<typeof TaskMargins>

/** The task name of the rows that correlate the mean accuracy over every task. */
export const MEAN_TASK = "__mean__"

/**
 * `correlations.parquet`: one row per (task, x axis). `task` is a task name, a BIG-bench parent
 * task's name (y: its aggregate accuracy, the mean over its subtasks; at_chance null), or MEAN_TASK
 * ("__mean__", the mean accuracy over the tasks above chance, where each subtask is a task and a
 * parent is not one: it is never counted twice; task names cannot start with "_", so it never collides).
 *   x_axis       log_valid_ppl | log_flops | log_tokens | log_step
 *   spearman, pearson  correlation of x with accuracy over the points (null with < 3 points or a constant)
 *   r2_pooled    R² of accuracy ~ a + b·x over every model's checkpoints (null when accuracy is constant)
 *   size_effect  ΔR² gained by one intercept per model (0 for a size-invariant predictor)
 *   n_points     (model, step) points with a finite x (step 0 has no log step, tokens or FLOPs)
 *   at_chance    the task's accuracy interval (acc_lo…acc_hi) covers its random baseline at every
 *                checkpoint; such a task is left out of MEAN_TASK unless analysis.chance_tasks_in_mean
 *                (or when every task is at chance). Null on MEAN_TASK and parent rows.
 *   <stat>_lo, <stat>_hi  95% bootstrap interval of spearman, pearson, r2_pooled and size_effect:
 *                examples resampled within each task, analysis.bootstrap_samples times
 *                (./bootstrap.ts); null where the statistic does not exist in most replicates
 */
export const Correlations = defineTable("correlations", {
  task: col.utf8(),
  x_axis: col.utf8(),
  spearman: col.float64({ nullable: true }),
  pearson: col.float64({ nullable: true }),
  r2_pooled: col.float64({ nullable: true }),
  size_effect: col.float64({ nullable: true }),
  n_points: col.int32(),
  at_chance: col.bool({ nullable: true }),
  spearman_lo: col.float64({ nullable: true }),
  spearman_hi: col.float64({ nullable: true }),
  pearson_lo: col.float64({ nullable: true }),
  pearson_hi: col.float64({ nullable: true }),
  r2_pooled_lo: col.float64({ nullable: true }),
  r2_pooled_hi: col.float64({ nullable: true }),
  size_effect_lo: col.float64({ nullable: true }),
  size_effect_hi: col.float64({ nullable: true }),
})
export type CorrelationRow = TableRow<typeof Correlations>

/**
 * `r2_differences.parquet`: one row per (task, parent task or MEAN_TASK, pair of x axes a before b in X_AXES order).
 *   r2_a, r2_b   pooled R² of accuracy ~ x over the points where both axes are finite (so without
 *                step 0 when either is a log of steps, tokens or FLOPs: like is compared with like)
 *   diff         r2_a − r2_b;  diff_lo, diff_hi  its 95% bootstrap interval (./bootstrap.ts)
 *   n_points     points both axes have
 * An axis predicts accuracy better than another only where the interval excludes 0.
 */
export const R2Differences = defineTable("r2_differences", {
  task: col.utf8(),
  x_axis_a: col.utf8(),
  x_axis_b: col.utf8(),
  r2_a: col.float64({ nullable: true }),
  r2_b: col.float64({ nullable: true }),
  diff: col.float64({ nullable: true }),
  diff_lo: col.float64({ nullable: true }),
  diff_hi: col.float64({ nullable: true }),
  n_points: col.int32(),
})
export type R2DifferenceRow = TableRow<typeof R2Differences>

/**
 * `agreement.parquet`: one row per matched checkpoint pair of two sizes (model_a smaller than model_b).
 *   match        "ppl" (nearest validation perplexity) or "flops" (nearest FLOPs)
 *   dataset      the validation dataset whose per-token log-probs are compared
 *   ppl_*, flops_*  validation perplexity and training FLOPs of each checkpoint
 *   pearson, spearman  correlation of the two checkpoints' per-token log-probs (null when one is constant)
 *   n_tokens     tokens compared
 */
export const Agreement = defineTable("agreement", {
  match: col.utf8(),
  dataset: col.utf8(),
  model_a: col.utf8(),
  step_a: col.int32(),
  model_b: col.utf8(),
  step_b: col.int32(),
  ppl_a: col.float64(),
  ppl_b: col.float64(),
  flops_a: col.float64(),
  flops_b: col.float64(),
  pearson: col.float64({ nullable: true }),
  spearman: col.float64({ nullable: true }),
  n_tokens: col.int32(),
})
export type AgreementRow = TableRow<typeof Agreement>

export const taskMetricsFile: TableFile = { path: "task_metrics.parquet", table: TaskMetrics }
export const taskMarginsFile: TableFile = { path: "task_margins.parquet", table: TaskMargins }
export const correlationsFile: TableFile = { path: "correlations.parquet", table: Correlations }
/**
 * How much `axis` leads `other` in R² on `task`, with its interval: the r2_differences row of the
 * pair turned to axis − other (the table holds a − b in X_AXES order); undefined without one.
 */
export const r2Lead = (
  rows: ReadonlyArray<Record<string, unknown>>,
  task: string,
  axis: string,
  other: string,
): { readonly diff: number; readonly lo: number; readonly hi: number } | undefined => {
  for (const r of rows) {
    if (r.task !== task || typeof r.diff !== "number" || typeof r.diff_lo !== "number" || typeof r.diff_hi !== "number") continue
    if (r.x_axis_a === axis && r.x_axis_b === other) return { diff: r.diff, lo: r.diff_lo, hi: r.diff_hi }
    if (r.x_axis_a === other && r.x_axis_b === axis) return { diff: -r.diff, lo: -r.diff_hi, hi: -r.diff_lo }
  }
  return undefined
}

export const r2DifferencesFile: TableFile = { path: "r2_differences.parquet", table: R2Differences }
export const agreementFile: TableFile = { path: "agreement.parquet", table: Agreement }
