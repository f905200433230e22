/**
 * The score stage's contract. One unit per (model, checkpoint, dataset), id
 * `model=M/step=S/dataset=D`, writing that checkpoint's per-token log-probs of the dataset.
 *
 *   const r = yield* ctx.input(scoreUnit("s", 100, "press")).open(scoresFile("s", 100, "press"))
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { WriteOptions } from "../../pipeline/store.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const SCORE = "score"

export const scoreUnit = (model: string, step: number, dataset: string): UnitRef => ({
  stage: SCORE,
  id: `model=${model}/step=${step}/dataset=${dataset}`,
})

/** `model=s/step=100/dataset=press` → its parts (undefined for another id). */
export const parseScoreUnitId = (id: string): { model: string; step: number; dataset: string } | undefined => {
  const m = /^model=([^/]+)\/step=(\d+)\/dataset=([^/]+)$/.exec(id)
  return m ? { model: m[1], step: Number(m[2]), dataset: m[3] } : undefined
}

const columns = {
  token_index: col.int32(),
  token_id: col.int32(),
  logprob: col.float32(),
}

/**
 * `scores/model=M/step=S/dataset=D/scores.parquet`: one row per predicted token, token_index order,
 * row groups of `scoring.row_group_size` rows, so row group g holds the same tokens in every file.
 *   logprob  float32, natural log of p(token | context)
 *   entropy  float32, nats, only when `scoring.entropy: true` (ScoresWithEntropy)
 */
export const Scores = defineTable("scores", columns)
export const ScoresWithEntropy = defineTable("scores", { ...columns, entropy: col.float32() })
export type ScoreRow = TableRow<typeof Scores>

/**
 * How score files are encoded (store.ts WriteOptions, with the row group size added): a dictionary
 * for token_id only, and the float columns plain without compression. Log-probs are nearly all
 * distinct: a dictionary makes them bigger (dictionary page plus 17-bit indexes) and ~10x slower
 * to decode, and zstd saves only ~6% of their bytes at ~4x the decoding time, while regress and
 * classify decode every score file once each (measured: docs/decisions.md). Uncompressed PLAIN
 * logprob pages are also what lets regress and classify copy them straight from the file
 * (pipeline/plain-pages.ts) instead of decoding them.
 */
export const scoresWriteOptions = (rowGroupSize: number): WriteOptions => ({ rowGroupSize, dictionaryColumns: ["token_id"], rawColumns: ["logprob", "entropy"] })

/** A score file; readers that need only logprob may read it with either definition. */
export const scoresFile = (model: string, step: number, dataset: string): TableFile => ({
  path: `scores/model=${model}/step=${step}/dataset=${dataset}/scores.parquet`,
  table: Scores,
})
