/**
 * Arrow schemas and on-disk paths of the tables written by aggregate, regress and classify.
 * Strings that repeat on every row (x_axis, class) are dictionary-encoded; readers (DuckDB,
 * pandas, Polars) see plain strings. Missing values are nulls, never −1 or NaN.
 */
import * as arrow from "apache-arrow"

const f = (name: string, type: arrow.DataType, nullable = false) => new arrow.Field(name, type, nullable)

/** Dictionary type of a repeated string column (codes are Int8). */
export const stringDictType = () => new arrow.Dictionary(new arrow.Utf8(), new arrow.Int8())

/**
 * `checkpoints.parquet` (run root): one row per model × step × dataset.
 *   tokens_seen  step × tokens_per_step;  flops  6 × params × tokens_seen  (from the config)
 *   n_tokens     scored tokens with a finite log-prob
 *   mean_nll     mean −log-prob, nats (null when n_tokens = 0);  ppl = exp(mean_nll)
 */
export const checkpointsSchema = new arrow.Schema([
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("tokens_seen", new arrow.Float64()),
  f("flops", new arrow.Float64()),
  f("params", new arrow.Float64()),
  f("dataset", new arrow.Utf8()),
  f("n_tokens", new arrow.Int32()),
  f("mean_nll", new arrow.Float64(), true),
  f("ppl", new arrow.Float64(), true),
])

/**
 * `regressions/model=M/dataset=D/part-NNNNN.parquet`: part g holds the tokens of the score files'
 * row group g, rows ordered by threshold, x_axis, token_index.
 *   slope, intercept, r2, p_value  OLS of p_c/p_i0 on the x-axis over the window (null when n < 3)
 *   n                              points used (finite x and y)
 */
export const regressionsSchema = () =>
  new arrow.Schema([
    f("threshold", new arrow.Float64()),
    f("x_axis", stringDictType()),
    f("token_index", new arrow.Int32()),
    f("slope", new arrow.Float64(), true),
    f("intercept", new arrow.Float64(), true),
    f("r2", new arrow.Float64(), true),
    f("p_value", new arrow.Float64(), true),
    f("n", new arrow.Int32()),
  ])

/**
 * `classes/model=M/dataset=D/part-NNNNN.parquet`: rows ordered by threshold, token_index.
 *   class           stagnated | upward | downward | other
 *   double_descent  per-token double descent (DESIGN.md)
 *   peak_step       step of the peak when double_descent, else null
 */
export const classesSchema = () =>
  new arrow.Schema([
    f("threshold", new arrow.Float64()),
    f("token_index", new arrow.Int32()),
    f("class", stringDictType()),
    f("double_descent", new arrow.Bool()),
    f("peak_step", new arrow.Int32(), true),
  ])

/** `class_summary.parquet`: share = n_tokens / tokens of the dataset. */
export const classSummarySchema = new arrow.Schema([
  f("model", new arrow.Utf8()),
  f("dataset", new arrow.Utf8()),
  f("threshold", new arrow.Float64()),
  f("class", new arrow.Utf8()),
  f("n_tokens", new arrow.Int32()),
  f("share", new arrow.Float64()),
])

/** `class_transitions.parquet`: share = n / (tokens of class_from in model_from). Rows only where that count is > 0. */
export const classTransitionsSchema = new arrow.Schema([
  f("dataset", new arrow.Utf8()),
  f("threshold", new arrow.Float64()),
  f("model_from", new arrow.Utf8()),
  f("class_from", new arrow.Utf8()),
  f("model_to", new arrow.Utf8()),
  f("class_to", new arrow.Utf8()),
  f("n", new arrow.Int32()),
  f("share", new arrow.Float64()),
])

/** `class_categories.parquet`: share = n / (tokens of that class in that model). Rows only where that count is > 0. */
export const classCategoriesSchema = new arrow.Schema([
  f("model", new arrow.Utf8()),
  f("dataset", new arrow.Utf8()),
  f("threshold", new arrow.Float64()),
  f("class", new arrow.Utf8()),
  f("category", new arrow.Utf8()),
  f("n", new arrow.Int32()),
  f("share", new arrow.Float64()),
])

/**
 * `group_trajectories.parquet`: S = tokens of `class` in `ref_model` at `threshold`; for every
 * model and step, group_ppl = mean per-token perplexity over S (null when S is empty) and
 * valid_ppl = perplexity of the whole dataset at that checkpoint (checkpoints.parquet).
 */
export const groupTrajectoriesSchema = new arrow.Schema([
  f("dataset", new arrow.Utf8()),
  f("ref_model", new arrow.Utf8()),
  f("threshold", new arrow.Float64()),
  f("class", new arrow.Utf8()),
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("valid_ppl", new arrow.Float64(), true),
  f("group_ppl", new arrow.Float64(), true),
  f("n_tokens", new arrow.Int32()),
])

const part = (g: number) => `part-${String(g).padStart(5, "0")}.parquet`

/** Relative paths under the run folder. */
export const analysisPaths = {
  checkpoints: "checkpoints.parquet",
  regressionsDir: (model: string, dataset: string) => `regressions/model=${model}/dataset=${dataset}`,
  regressions: (model: string, dataset: string, g: number) => `regressions/model=${model}/dataset=${dataset}/${part(g)}`,
  classesDir: (model: string, dataset: string) => `classes/model=${model}/dataset=${dataset}`,
  classes: (model: string, dataset: string, g: number) => `classes/model=${model}/dataset=${dataset}/${part(g)}`,
  classSummary: "class_summary.parquet",
  classTransitions: "class_transitions.parquet",
  classCategories: "class_categories.parquet",
  groupTrajectories: "group_trajectories.parquet",
} as const
