/**
 * Arrow schemas and paths of the tables written by the downstream and correlate stages.
 * Missing values (a statistic that does not exist for the points at hand) are nulls, never NaN.
 */
import * as arrow from "apache-arrow"

const f = (name: string, type: arrow.DataType, nullable = false) => new arrow.Field(name, type, nullable)

/**
 * `downstream/model=M/step=S/task=T/options.parquet`: one row per option of every scored example.
 *   example_id   index of the example in the task file (0-based, file order; `max_examples` keeps the first N)
 *   option_id    index of the option within the example (file order)
 *   is_correct   the option is (one of) the example's correct option(s)
 *   logprob_sum  Σ log p(token | context) over the option's scored tokens, nats
 *   n_tokens     number of scored tokens of the option
 *   n_chars      characters (UTF-16 code units) of the text those tokens cover — the option with its
 *                leading spaces (see stages/downstream/prompts.ts for the boundary)
 */
export const optionsSchema = new arrow.Schema([
  f("example_id", new arrow.Int32()),
  f("option_id", new arrow.Int32()),
  f("is_correct", new arrow.Bool()),
  f("logprob_sum", new arrow.Float64()),
  f("n_tokens", new arrow.Int32()),
  f("n_chars", new arrow.Int32()),
])

/**
 * `task_metrics.parquet`: one row per (model, checkpoint, task), written by the correlate stage from
 * the options tables (stages/downstream/metrics.ts defines every column).
 *   accuracy, accuracy_norm, random_baseline  fractions in [0, 1]
 *   correct_ppl, incorrect_ppl                exp(−mean log-prob) over the tokens of correct / incorrect options
 */
export const taskMetricsSchema = new arrow.Schema([
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("task", new arrow.Utf8()),
  f("n_examples", new arrow.Int32()),
  f("accuracy", new arrow.Float64()),
  f("accuracy_norm", new arrow.Float64()),
  f("random_baseline", new arrow.Float64()),
  f("correct_ppl", new arrow.Float64()),
  f("incorrect_ppl", new arrow.Float64()),
])

/**
 * `correlations.parquet`: one row per (task, x axis). `task` is a task name or MEAN_TASK ("__mean__",
 * the mean accuracy over every task; task names cannot start with "_", so it never collides).
 *   x_axis       log_valid_ppl | log_flops | log_tokens | log_step
 *   spearman, pearson  correlation of x with accuracy over the points (null with < 3 points or a constant)
 *   r2_pooled    R² of accuracy ~ a + b·x over every model's checkpoints (null when accuracy is constant)
 *   size_effect  ΔR² gained by one intercept per model (0 for a size-invariant predictor)
 *   n_points     (model, step) points with a finite x (step 0 has no log step, tokens or FLOPs)
 */
export const correlationsSchema = new arrow.Schema([
  f("task", new arrow.Utf8()),
  f("x_axis", new arrow.Utf8()),
  f("spearman", new arrow.Float64(), true),
  f("pearson", new arrow.Float64(), true),
  f("r2_pooled", new arrow.Float64(), true),
  f("size_effect", new arrow.Float64(), true),
  f("n_points", new arrow.Int32()),
])

/**
 * `agreement.parquet`: one row per matched checkpoint pair of two sizes (model_a smaller than model_b).
 *   match        "ppl" (nearest validation perplexity) or "flops" (nearest FLOPs)
 *   dataset      the validation dataset whose per-token log-probs are compared
 *   ppl_*, flops_*  validation perplexity and training FLOPs of each checkpoint
 *   pearson, spearman  correlation of the two checkpoints' per-token log-probs (null when one is constant)
 *   n_tokens     tokens compared
 */
export const agreementSchema = new arrow.Schema([
  f("match", new arrow.Utf8()),
  f("dataset", new arrow.Utf8()),
  f("model_a", new arrow.Utf8()),
  f("step_a", new arrow.Int32()),
  f("model_b", new arrow.Utf8()),
  f("step_b", new arrow.Int32()),
  f("ppl_a", new arrow.Float64()),
  f("ppl_b", new arrow.Float64()),
  f("flops_a", new arrow.Float64()),
  f("flops_b", new arrow.Float64()),
  f("pearson", new arrow.Float64(), true),
  f("spearman", new arrow.Float64(), true),
  f("n_tokens", new arrow.Int32()),
])

/** The task name of the rows that correlate the mean accuracy over every task. */
export const MEAN_TASK = "__mean__"

export const downstreamPaths = {
  options: (model: string, step: number, task: string) => `downstream/model=${model}/step=${step}/task=${task}/options.parquet`,
  taskMetrics: "task_metrics.parquet",
  correlations: "correlations.parquet",
  agreement: "agreement.parquet",
} as const
