/**
 * The run configuration, as written in YAML. Decoded with Effect Schema; excess fields are
 * errors. Defaults live here and nowhere else. Paths are resolved against the config file's
 * folder later (pipeline/config.ts), so this schema only knows strings.
 */
import { Schema } from "effect"

const PositiveInt = Schema.Int.pipe(Schema.positive())
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())
const Fraction = Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThan(1))
const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
    message: () => "a name of letters, digits, '.', '_' or '-' (it becomes a folder name)",
  }),
)
/** One path or glob, or a list of them. */
const Paths = Schema.Union(Schema.String, Schema.Array(Schema.String).pipe(Schema.minItems(1)))

export const CheckpointEntry = Schema.Struct({
  step: NonNegativeInt,
  /** An ONNX file, or a Hugging Face folder (config.json + safetensors). */
  path: Schema.String,
})

/** A Hub repository id, `org/name` (e.g. `EleutherAI/pythia-160m`). */
export const RepoId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, { message: () => 'a Hub repository id "org/name"' }),
)

export const Model = Schema.Struct({
  name: Name,
  /** Non-embedding or total parameter count, as the user chooses; used for FLOPs = 6·params·tokens. */
  params: Schema.Number.pipe(Schema.positive()),
  /** Tokens consumed per optimizer step (batch size × sequence length). */
  tokens_per_step: Schema.Number.pipe(Schema.positive()),
  /**
   * Local checkpoints: a list of {step, path}, or a pattern with `{step}` that is globbed
   * (`zoo/s/step-{step}.onnx`, `runs/70m/checkpoint-{step}`). A path is an ONNX file or a Hugging Face
   * folder (config.json + model.safetensors or sharded safetensors with their index). Not with `hub`.
   */
  checkpoints: Schema.optional(
    Schema.Union(
      Schema.String.pipe(Schema.filter((s) => s.includes("{step}") || "a pattern containing {step}")),
      Schema.Array(CheckpointEntry).pipe(Schema.minItems(1)),
    ),
  ),
  /** Checkpoints on the Hugging Face Hub: the repository (`EleutherAI/pythia-160m`). Not with `checkpoints`. */
  hub: Schema.optional(RepoId),
  /** With `hub`: the revision (branch, tag or commit) of each step, a pattern with `{step}` (default "step{step}", Pythia's branches). */
  revision: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** With `hub`: an explicit step → revision map for irregular names (OLMo's `stage1-step1000-tokens4B`); its steps are the checkpoints. */
  revisions: Schema.optional(
    Schema.Record({ key: Schema.String.pipe(Schema.pattern(/^\d+$/, { message: () => "a step number" })), value: Schema.String.pipe(Schema.minLength(1)) }),
  ),
  /** Only these steps of the pattern's matches; with `hub` and `revision`, the steps to fetch. */
  steps: Schema.optional(Schema.Array(NonNegativeInt)),
})
export type Model = typeof Model.Type

export const DatasetFormat = Schema.Literal("text", "jsonl", "parquet", "brown")
export type DatasetFormat = typeof DatasetFormat.Type

export const Dataset = Schema.Struct({
  name: Name,
  format: DatasetFormat,
  /** File path(s) or glob(s); `text` and `brown` read one document per file. */
  path: Paths,
  /** Globs of files to leave out (e.g. a training split). */
  exclude: Schema.optional(Paths),
  /** Stop after this many predicted tokens (whole documents are cut at the limit). */
  max_tokens: Schema.optional(PositiveInt),
  /** Field (jsonl) or column (parquet) holding the text. */
  text_field: Schema.optionalWith(Schema.String, { default: () => "text" }),
  /** Field (jsonl) or column (parquet) holding a document id (optional). */
  id_field: Schema.optionalWith(Schema.String, { default: () => "id" }),
})
export type Dataset = typeof Dataset.Type

export const TaskFormat = Schema.Literal("bigbench", "pairs", "jsonl")
export const Task = Schema.Struct({
  name: Name,
  format: TaskFormat,
  /**
   * The task file; for `bigbench` also a task folder (its task.json). A BIG-bench parent task (a
   * task.json without examples, subtasks in subfolders with their own task.json) becomes one task
   * per subtask, named `<name>.<subtask folder>` (pipeline/config.ts Task).
   */
  path: Schema.String,
  shots: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /**
   * Score a random sample of this many examples (without replacement, drawn with `seed`, as
   * BIG-bench samples; scored in file order, example_id still the index in the file); all of them
   * when the file has no more. A sample does not change an example's prompt or shots. On a
   * BIG-bench parent task of k subtasks, the total: N // k of each (as BIG-bench splits it; N ≥ k).
   */
  max_examples: Schema.optional(PositiveInt),
  /** Seeds the shots, the order of BIG-bench's appended choices and the `max_examples` sample. */
  seed: Schema.optionalWith(Schema.Int, { default: () => 1234 }),
  /**
   * A prompt longer than context_length allows: `left` cuts it from the left (default; the task
   * prefix and the first shots go first), `skip` leaves the example out, `error` fails the task's
   * units naming the example. Each run says how many examples were cut or skipped.
   */
  truncate: Schema.optionalWith(Schema.Literal("left", "skip", "error"), { default: () => "left" as const }),
})
export type Task = typeof Task.Type

export const XAxis = Schema.Literal("log_step", "log_tokens", "log_flops", "log_valid_ppl")
export type XAxis = typeof XAxis.Type

/**
 * Thresholds of the checks stage (stages/checks/rules.ts states each rule with a worked example).
 * Identical weights and NaN/Inf log-probs need none: they are exact.
 */
export const Checks = Schema.Struct({
  /** Out-of-order: a checkpoint is compared with this many later checkpoints. */
  order_window: Schema.optionalWith(PositiveInt, { default: () => 3 }),
  /** Out-of-order: flagged when its ln ppl is below every one of theirs by more than this (nats; 0.05 ≈ 5% lower ppl). */
  order_margin: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 0.05 }),
  /** Identical predictions: two checkpoints whose log-probs differ by at most this on every token (nats). */
  prediction_tolerance: Schema.optionalWith(Schema.Number.pipe(Schema.nonNegative()), { default: () => 1e-6 }),
  /** Broken: ppl above the vocabulary size is an error for checkpoints past this fraction of the final step. */
  uniform_after: Schema.optionalWith(Schema.Number.pipe(Schema.greaterThanOrEqualTo(0), Schema.lessThan(1)), { default: () => 0.1 }),
})
export type Checks = typeof Checks.Type

export const Analysis = Schema.Struct({
  thresholds: Schema.optionalWith(Schema.Array(Fraction).pipe(Schema.minItems(1)), {
    default: () => [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
  }),
  x_axes: Schema.optionalWith(Schema.Array(XAxis).pipe(Schema.minItems(1)), { default: () => ["log_step" as const] }),
  /** Significance level of the slope test. */
  alpha: Schema.optionalWith(Fraction, { default: () => 0.05 }),
  /** Stagnation band δ: |g/p − 1| < δ at both ends. */
  delta: Schema.optionalWith(Fraction, { default: () => 0.05 }),
  /** Per-token double descent: the peak must exceed both ends by ln(1 + dd_rise). */
  dd_rise: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 0.1 }),
  /** Dataset whose perplexity is "validation perplexity" for correlate and the report (default: the first). */
  valid_dataset: Schema.optional(Name),
  /** Reference model for group trajectories and the report (default: the second-smallest). */
  reference_model: Schema.optional(Name),
  /** Threshold of the group-trajectory figure (default: 0.1 or the smallest configured). */
  reference_threshold: Schema.optional(Fraction),
  /**
   * Keep tasks at chance (the 95% interval of accuracy covers the random baseline at every
   * checkpoint) in the mean over tasks (default false: they are left out, and named).
   */
  chance_tasks_in_mean: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /**
   * Bootstrap resamples behind every interval of correlations.parquet, r2_differences.parquet and
   * class_summary.parquet (examples resampled within each task; documents within each dataset).
   */
  bootstrap_samples: Schema.optionalWith(PositiveInt, { default: () => 1000 }),
  /** Seed of the bootstrap resamples (same seed, same intervals). */
  bootstrap_seed: Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { default: () => 0 }),
  /** Drop checkpoints flagged by the checks stage from later stages. */
  exclude_flagged: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Thresholds of the checkpoint checks. */
  checks: Schema.optionalWith(Checks, { default: () => Schema.decodeSync(Checks)({}) }),
})
export type Analysis = typeof Analysis.Type

export const Scoring = Schema.Struct({
  /** Windows per ONNX Runtime call, at most (fewer when their logits would pass max_memory_gb). */
  batch_size: Schema.optionalWith(PositiveInt, { default: () => 8 }),
  /**
   * What one call's logits and their one temporary may take, in GB (batch × context × vocabulary ×
   * 4 bytes × 2, three copies with entropy): the batch is cut to fit. Default: 1/16 of this machine's memory.
   */
  max_memory_gb: Schema.optional(Schema.Number.pipe(Schema.positive())),
  /** Intra-op threads (default: the number of cores). */
  threads: Schema.optional(PositiveInt),
  /**
   * Let onnxruntime's idle threads spin-wait for work (default false: they sleep). Spinning is a
   * little faster on an idle machine and 1.5× slower than one thread on a busy one (bench:score).
   */
  spin: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  execution_provider: Schema.optionalWith(Schema.Literal("cpu", "cuda"), { default: () => "cpu" as const }),
  /** CUDA device id for `execution_provider: cuda` (ignored on cpu); not part of any unit's key. */
  cuda_device: Schema.optionalWith(NonNegativeInt, { default: () => 0 }),
  /** Also write the entropy of each predictive distribution. */
  entropy: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** Rows per Parquet row group of score files; blocks of this size align across checkpoints. */
  row_group_size: Schema.optionalWith(PositiveInt, { default: () => 65_536 }),
})
export type Scoring = typeof Scoring.Type

/** Prompts drawn from a dataset's windows (seeded): the first `prompt_tokens` tokens of `n_prompts` windows. */
export const PromptsFrom = Schema.Struct({
  dataset: Name,
  n_prompts: Schema.optionalWith(PositiveInt, { default: () => 10 }),
  prompt_tokens: Schema.optionalWith(PositiveInt, { default: () => 8 }),
})
export type PromptsFrom = typeof PromptsFrom.Type

export const Decoding = Schema.Literal("greedy", "nucleus")
export type Decoding = typeof Decoding.Type

/** MAUVE (Pillutla et al. 2021) of generations against human text, as mauve-text computes it (lib/analysis/mauve.ts). */
export const Mauve = Schema.Struct({
  /** The model whose final hidden state at the last token is the feature of a text (default: the largest by params). */
  features_model: Schema.optional(Name),
  /** Its checkpoint (default: its last). */
  features_step: Schema.optional(NonNegativeInt),
  /** c in exp(−c·KL) of the divergence curve (mauve-text's mauve_scaling_factor). */
  scaling: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 5 }),
  /** k-means clusters: "auto" = max(2, round(min(n_model, n_human) / 10)), or a count. */
  buckets: Schema.optionalWith(Schema.Union(Schema.Literal("auto"), PositiveInt), { default: () => "auto" as const }),
  /** Seed of the k-means++ restarts (default: the section's seed). */
  seed: Schema.optional(Schema.Int),
})
export type Mauve = typeof Mauve.Type

/**
 * The sequences stage (runs only when this section is present): joint decoding between a small and
 * a large checkpoint, q = max(λs·ps + λl·pl, 0) renormalised, and perplexity trajectories of the
 * generations and of noisy validation windows.
 */
export const Sequences = Schema.Struct({
  /** Small model s (default: the smallest by params). */
  small: Schema.optional(Name),
  /** Large model l (default: the largest by params). */
  large: Schema.optional(Name),
  /** Checkpoint step of both models (default: the last checkpoint of each). */
  step: Schema.optional(NonNegativeInt),
  /** (λs, λl) pairs; one generation group each. */
  lambdas: Schema.optionalWith(Schema.Array(Schema.Tuple(Schema.Number, Schema.Number)).pipe(Schema.minItems(1)), {
    default: () => [[1, -1], [1, 0], [0, 1], [-1, 1]] as const,
  }),
  /** How to pick each next token: greedy, nucleus, or a list of both (every λ group is decoded each way). */
  decoding: Schema.optionalWith(Schema.Union(Decoding, Schema.Array(Decoding).pipe(Schema.minItems(1))), { default: () => "nucleus" as const }),
  /** Nucleus mass p: sample within the smallest set of ids whose probabilities reach it. */
  top_p: Schema.optionalWith(Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1)), { default: () => 0.9 }),
  max_new_tokens: Schema.optionalWith(PositiveInt, { default: () => 50 }),
  seed: Schema.optionalWith(Schema.Int, { default: () => 1234 }),
  /** Prompts as text (the config's `prepend` goes before each). */
  prompts: Schema.optional(Schema.Array(Schema.String).pipe(Schema.minItems(1))),
  /** Or prompts drawn from a dataset (default when neither is given: 10 prompts of 8 tokens from the validation dataset). */
  prompts_from: Schema.optional(PromptsFrom),
  /** Token-substitution rates of the noisy validation windows (0 = the original windows). */
  noise_rates: Schema.optionalWith(Schema.Array(Schema.Number.pipe(Schema.greaterThanOrEqualTo(0), Schema.lessThanOrEqualTo(1))), {
    default: () => [0, 0.1, 0.3],
  }),
  /** Also score the windows with their words shuffled. */
  shuffle: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Validation windows perturbed (seeded choice). */
  noise_windows: Schema.optionalWith(PositiveInt, { default: () => 50 }),
  /**
   * MAUVE of every generation setting (λ group × decoding) against the human continuations of the
   * same prompts: on by default when prompts come from a dataset (`prompts_from`, or the default);
   * `false` turns it off. Text `prompts` have no human continuation, so MAUVE needs `prompts_from`.
   */
  mauve: Schema.optional(Schema.Union(Schema.Literal(false), Mauve)),
})
export type Sequences = typeof Sequences.Type

/** A tokenizer on the Hub: the files of one revision of a repository (downloaded once, when the run starts). */
export const TokenizerHub = Schema.Struct({
  hub: RepoId,
  revision: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "main" }),
})

/** Downloads of Hub checkpoints (the download stage). */
export const Download = Schema.Struct({
  /** Keep downloaded checkpoints in the Hugging Face cache (default true); false deletes a revision's weights once every unit reading it is done. */
  keep: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** With keep: false, hold at most this many GB of downloaded weights at once (a download waits until others are released). */
  max_gb: Schema.optional(Schema.Number.pipe(Schema.positive())),
})
export type Download = typeof Download.Type

export const Config = Schema.Struct({
  /** Run name: outputs go to `<output>/<run>/`. */
  run: Name,
  output: Schema.optionalWith(Schema.String, { default: () => "outputs" }),
  /** A tokenizer.json file, a Hugging Face folder (tokenizer.json, or vocab.json + merges.txt), or `{ hub, revision }`. */
  tokenizer: Schema.Union(Schema.String, TokenizerHub),
  context_length: Schema.optionalWith(PositiveInt.pipe(Schema.greaterThanOrEqualTo(2)), { default: () => 128 }),
  /** New tokens per window after a document's first window (default: context_length / 2). */
  stride: Schema.optional(PositiveInt),
  /** Text prepended to every document (e.g. a BOS token such as `</s>` for OPT); never scored. */
  prepend: Schema.optional(Schema.String),
  models: Schema.Array(Model).pipe(Schema.minItems(1)),
  datasets: Schema.Array(Dataset).pipe(Schema.minItems(1)),
  tasks: Schema.optionalWith(Schema.Array(Task), { default: () => [] }),
  analysis: Schema.optionalWith(Analysis, { default: () => Schema.decodeSync(Analysis)({}) }),
  scoring: Schema.optionalWith(Scoring, { default: () => Schema.decodeSync(Scoring)({}) }),
  /** Hub checkpoints: keep them or delete them once scored, and a disk budget. */
  download: Schema.optionalWith(Download, { default: () => Schema.decodeSync(Download)({}) }),
  /** Joint decoding and noisy inputs (the sequences stage); absent: the stage does nothing. */
  sequences: Schema.optional(Sequences),
})
export type ConfigInput = typeof Config.Encoded
export type ConfigDoc = typeof Config.Type
