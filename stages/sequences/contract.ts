/**
 * The sequences stage's contract (runs only when the config has a `sequences` section). Units:
 *   lambda=S_L  one per configured (λs, λl) pair: joint decoding, then every generation scored by
 *               every checkpoint → sequences/lambda=S_L/generations.parquet, …/trajectories.parquet
 *   noise       perturbed validation windows scored by every checkpoint → sequences/noise.parquet
 *   mauve       (with MAUVE on) every generation setting (λ group × decoding) against the human
 *               continuations of the prompts → sequences/mauve.parquet, sequences/mauve_curves.parquet
 * Per-unit files are Hive partitions, so `read_parquet('sequences/lambda=*' || '/generations.parquet',
 * hive_partitioning = true)` in DuckDB reads every λ group at once (the λ values are also columns).
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { Config } from "../../pipeline/config.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const SEQUENCES = "sequences"
export const NOISE_ID = "noise"
export const MAUVE_ID = "mauve"

/** "lambda=1_-1" for (1, −1). */
export const lambdaId = (s: number, l: number): string => `lambda=${s}_${l}`

/** The distinct λ pairs of the section, in config order. */
export const lambdaPairs = (pairs: ReadonlyArray<readonly [number, number]>): Array<readonly [number, number]> => {
  const seen = new Set<string>()
  return pairs.filter(([s, l]) => {
    const k = lambdaId(s, l)
    return seen.has(k) ? false : (seen.add(k), true)
  })
}

export const lambdaUnit = (s: number, l: number): UnitRef => ({ stage: SEQUENCES, id: lambdaId(s, l) })
export const noiseUnit: UnitRef = { stage: SEQUENCES, id: NOISE_ID }
export const mauveUnit: UnitRef = { stage: SEQUENCES, id: MAUVE_ID }

/** The λ groups of the config (none without a sequences section). */
export const lambdaGroups = (config: Config): Array<{ readonly s: number; readonly l: number; readonly ref: UnitRef }> =>
  config.sequences === undefined ? [] : lambdaPairs(config.sequences.section.lambdas).map(([s, l]) => ({ s, l, ref: lambdaUnit(s, l) }))

/**
 * `sequences/lambda=S_L/generations.parquet`: one row per generated sequence: P prompts × each
 * configured decoding (`sequences.decoding`, one or a list).
 *   sequence_id  0…P−1 within the group and decoding (prompt order)
 *   prompt       the prompt's text (without the config's prepend)
 *   text         the generated continuation, decoded
 *   token_ids    the generated ids only (max_new_tokens)
 *   lambda_s, lambda_l  the pair; decoding "greedy" | "nucleus"; seed  the configured seed
 */
export const Generations = defineTable("generations", {
  sequence_id: col.int32(),
  prompt: col.utf8(),
  text: col.utf8(),
  token_ids: col.int32List(),
  lambda_s: col.float64(),
  lambda_l: col.float64(),
  decoding: col.utf8(),
  seed: col.int32(),
})
export type GenerationRow = TableRow<typeof Generations>

/**
 * `sequences/lambda=S_L/trajectories.parquet`: one row per generated sequence × checkpoint of every model.
 *   decoding   how the sequence was generated (with sequence_id, its row in generations.parquet)
 *   ppl        exp(−mean log p) of the generated tokens given prompt (and prepend)
 *   valid_ppl  that checkpoint's validation perplexity (checkpoints.parquet); null when missing
 */
export const Trajectories = defineTable("trajectories", {
  sequence_id: col.int32(),
  decoding: col.utf8(),
  model: col.utf8(),
  step: col.int32(),
  valid_ppl: col.float64({ nullable: true }),
  ppl: col.float64({ nullable: true }),
})

/**
 * `sequences/noise.parquet`: one row per perturbation × checkpoint of every model.
 *   kind  "substitute" (random token substitution at `rate`) | "shuffle" (rate 1: every window's
 *         words shuffled; rate 0: the same windows decoded and re-encoded unshuffled, scored alike)
 *   ppl   over all predicted tokens of the chosen windows; n_tokens  how many
 */
export const Noise = defineTable("noise", {
  kind: col.utf8(),
  rate: col.float64(),
  model: col.utf8(),
  step: col.int32(),
  ppl: col.float64({ nullable: true }),
  n_tokens: col.int32(),
})

/**
 * `sequences/mauve.parquet`: one row per generation setting (λ group × decoding): MAUVE of its
 * generations P against the human continuations Q of the same prompts (lib/analysis/mauve.ts).
 *   mauve     area under the divergence curve, in (0, 1]; 1 when the cluster histograms are equal
 *   buckets   k-means clusters; dims  PCA components kept (90% of the variance)
 *   n_model, n_human  rows of P and Q; scaling  c of exp(−c·KL); seed  of k-means++
 *   features  the checkpoint whose final hidden state at a text's last token is its feature, "model@step"
 * A text's feature is taken over prepend + prompt + continuation (generated or human), so P and Q
 * differ only in their continuations.
 */
export const Mauve = defineTable("mauve", {
  lambda_s: col.float64(),
  lambda_l: col.float64(),
  decoding: col.utf8(),
  mauve: col.float64(),
  buckets: col.int32(),
  dims: col.int32(),
  n_model: col.int32(),
  n_human: col.int32(),
  scaling: col.float64(),
  seed: col.int32(),
  features: col.utf8(),
})
export type MauveRow = TableRow<typeof Mauve>

/**
 * `sequences/mauve_curves.parquet`: each setting's divergence curve, point 0 = (1, 0), then the
 * mixture weights ascending, the last = (0, 1); x = exp(−c·KL(Q‖R)), y = exp(−c·KL(P‖R)).
 */
export const MauveCurves = defineTable("mauve_curves", {
  lambda_s: col.float64(),
  lambda_l: col.float64(),
  decoding: col.utf8(),
  point: col.int32(),
  x: col.float64(),
  y: col.float64(),
})

/** `sequences/lambda=S_L/<name>`, or with `*` for the λ values the pattern over every group. */
const groupPath = (group: string, name: string) => `sequences/${group}/${name}`
export const generationsFile = (s: number, l: number): TableFile => ({ path: groupPath(lambdaId(s, l), "generations.parquet"), table: Generations })
export const trajectoriesFile = (s: number, l: number): TableFile => ({ path: groupPath(lambdaId(s, l), "trajectories.parquet"), table: Trajectories })
/** The Hive pattern over every λ group (DuckDB's read_parquet takes it as it is). */
export const generationsPattern = groupPath("lambda=*", "generations.parquet")
export const trajectoriesPattern = groupPath("lambda=*", "trajectories.parquet")
export const noiseFile: TableFile = { path: "sequences/noise.parquet", table: Noise }
export const mauveFile: TableFile = { path: "sequences/mauve.parquet", table: Mauve }
export const mauveCurvesFile: TableFile = { path: "sequences/mauve_curves.parquet", table: MauveCurves }
