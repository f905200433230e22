/**
 * Arrow schemas and on-disk paths of the tables stages pass to each other. A table's columns are
 * a contract: later stages, the report and outside tools (DuckDB, pandas, Polars) read them.
 */
import * as arrow from "apache-arrow"

const f = (name: string, type: arrow.DataType, nullable = false) => new arrow.Field(name, type, nullable)

/**
 * `tokens/dataset=D/tokens.parquet`: one row per predicted token, in token_index order.
 *   token_index  0…N−1, stable, document order; row i of every score file of D is this token
 *   seq_id       the window that predicts it (windows/dataset=D/windows.parquet)
 *   position     its position inside that window (≥ 1: the logits at position−1 predict it)
 *   token_id     tokenizer id
 *   doc_id       document id (file name, jsonl id, …)
 *   char_start, char_end  character span in the document text (UTF-16 code units, end exclusive)
 *   tag          the dataset's own tag of the word the token belongs to (Brown POS), else null
 *   category     punctuation | number | function | content | piece
 */
export const tokensSchema = new arrow.Schema([
  f("token_index", new arrow.Int32()),
  f("seq_id", new arrow.Int32()),
  f("position", new arrow.Int32()),
  f("token_id", new arrow.Int32()),
  f("doc_id", new arrow.Utf8()),
  f("char_start", new arrow.Int32()),
  f("char_end", new arrow.Int32()),
  f("tag", new arrow.Utf8(), true),
  f("category", new arrow.Utf8()),
])

/**
 * `windows/dataset=D/windows.parquet`: one row per model input window, in seq_id order.
 *   seq_id        0…W−1
 *   doc_id        document id
 *   input_ids     the window's token ids (≤ context_length), prepended tokens included
 *   first_target  position of the first predicted token in the window; positions first_target…len−1
 *                 are predicted, and their token_index values are consecutive and increase with seq_id
 *   first_token_index  token_index of the token at first_target
 */
export const windowsSchema = new arrow.Schema([
  f("seq_id", new arrow.Int32()),
  f("doc_id", new arrow.Utf8()),
  f("input_ids", new arrow.List(f("item", new arrow.Int32(), false))),
  f("first_target", new arrow.Int32()),
  f("first_token_index", new arrow.Int32()),
])

/**
 * `scores/model=M/step=S/dataset=D/scores.parquet`: one row per predicted token, token_index order,
 * row groups of `scoring.row_group_size` rows, so row group g holds the same tokens in every file.
 *   logprob  float32, natural log of p(token | context)
 *   entropy  float32, nats, only when `scoring.entropy: true`
 */
export const scoresSchema = (entropy: boolean) =>
  new arrow.Schema([
    f("token_index", new arrow.Int32()),
    f("token_id", new arrow.Int32()),
    f("logprob", new arrow.Float32()),
    ...(entropy ? [f("entropy", new arrow.Float32())] : []),
  ])

/**
 * How score files are encoded (store.ts WriteOptions, with the row group size added): a dictionary
 * for token_id only, and the float columns plain without compression. Log-probs are nearly all
 * distinct: a dictionary makes them bigger (dictionary page plus 17-bit indexes) and ~10x slower
 * to decode, and zstd saves only ~6% of their bytes at ~4x the decoding time, while regress and
 * classify decode every score file once each (measured: docs/decisions.md). Uncompressed PLAIN
 * logprob pages are also what lets regress and classify copy them straight from the file
 * (pipeline/plain-pages.ts) instead of decoding them.
 */
export const scoresWriteOptions = (rowGroupSize: number) => ({ rowGroupSize, dictionaryColumns: ["token_id"], rawColumns: ["logprob", "entropy"] })

/** Relative paths of the per-unit files (Hive-style partitions). */
export const tablePaths = {
  tokens: (dataset: string) => `tokens/dataset=${dataset}/tokens.parquet`,
  windows: (dataset: string) => `windows/dataset=${dataset}/windows.parquet`,
  scores: (model: string, step: number, dataset: string) => `scores/model=${model}/step=${step}/dataset=${dataset}/scores.parquet`,
} as const
