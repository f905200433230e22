/**
 * Tables of the sequences stage (stages/sequences/). Per-unit files are Hive partitions, so
 * `read_parquet('sequences/lambda=*\/generations.parquet', hive_partitioning = true)` in DuckDB
 * reads every λ group at once (the λ values are also columns).
 *
 * `sequences/lambda=S_L/generations.parquet`: one row per generated sequence.
 *   sequence_id  0…P−1 within the group (prompt order)
 *   prompt       the prompt's text (without the config's prepend)
 *   text         the generated continuation, decoded
 *   token_ids    the generated ids only (max_new_tokens)
 *   lambda_s, lambda_l  the pair; decoding "greedy" | "nucleus"; seed  the configured seed
 *
 * `sequences/lambda=S_L/trajectories.parquet`: one row per generated sequence × checkpoint of every model.
 *   ppl        exp(−mean log p) of the generated tokens given prompt (and prepend)
 *   valid_ppl  that checkpoint's validation perplexity (checkpoints.parquet); null when missing
 *
 * `sequences/noise.parquet`: one row per perturbation × checkpoint of every model.
 *   kind  "substitute" (random token substitution at `rate`) | "shuffle" (rate 1: every window's
 *         words shuffled; rate 0: the same windows decoded and re-encoded unshuffled, scored alike)
 *   ppl   over all predicted tokens of the chosen windows; n_tokens  how many
 */
import * as arrow from "apache-arrow"

const f = (name: string, type: arrow.DataType, nullable = false) => new arrow.Field(name, type, nullable)

export const generationsSchema = new arrow.Schema([
  f("sequence_id", new arrow.Int32()),
  f("prompt", new arrow.Utf8()),
  f("text", new arrow.Utf8()),
  f("token_ids", new arrow.List(f("item", new arrow.Int32(), false))),
  f("lambda_s", new arrow.Float64()),
  f("lambda_l", new arrow.Float64()),
  f("decoding", new arrow.Utf8()),
  f("seed", new arrow.Int32()),
])

export const trajectoriesSchema = new arrow.Schema([
  f("sequence_id", new arrow.Int32()),
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("valid_ppl", new arrow.Float64(), true),
  f("ppl", new arrow.Float64(), true),
])

export const noiseSchema = new arrow.Schema([
  f("kind", new arrow.Utf8()),
  f("rate", new arrow.Float64()),
  f("model", new arrow.Utf8()),
  f("step", new arrow.Int32()),
  f("ppl", new arrow.Float64(), true),
  f("n_tokens", new arrow.Int32()),
])

/** "lambda=1_-1" for (1, −1). */
export const lambdaId = (s: number, l: number): string => `lambda=${s}_${l}`

export const sequencesPaths = {
  generations: (s: number, l: number) => `sequences/${lambdaId(s, l)}/generations.parquet`,
  trajectories: (s: number, l: number) => `sequences/${lambdaId(s, l)}/trajectories.parquet`,
  noise: "sequences/noise.parquet",
} as const
