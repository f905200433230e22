/**
 * Feeds for every export signature a checkpoint may have, built once per session from its input
 * metadata and used by the scorer and the next-token path alike. Inputs are fed by name:
 *
 *   input_ids        int64 | int32                 [rows, cols]         the batch's ids (0 in the padding)
 *   attention_mask   int64 | int32 | float32       [rows, past + cols]  1 on tokens and cached positions, 0 on the padding
 *   position_ids     int64 | int32                 [rows, cols]         past…past + cols − 1 in every row
 *   past_key_values.* (or past.*)  float32 | float16 | float64
 *                                                  declared shape: first dimension rows, other symbolic
 *                                                  ones (the past length) 0, fixed ones as declared — an
 *                                                  empty past of the element type the graph declares
 *   use_cache_branch bool                          declared shape (symbolic dimensions 1): false with an
 *                                                  empty past, true when the caller feeds a cache
 * Any other input, or one of another type, is an error naming it.
 *
 * Worked example: Optimum's merged decoder with inputs input_ids int64 [batch, seq],
 * attention_mask int64 [batch, seq_with_past], position_ids int64 [batch, seq],
 * past_key_values.0.key float16 [batch, 4, past, 16] and use_cache_branch bool [1], fed a batch
 * of 2 rows × 5 columns with no past, gets input_ids int64 [2, 5], attention_mask int64 [2, 5],
 * position_ids int64 [2, 5] (0 1 2 3 4 twice), past_key_values.0.key float16 [2, 4, 0, 16] (no
 * elements) and use_cache_branch bool [1] = false.
 */
import * as ort from "onnxruntime-node"

/** What one session run is fed from. */
export interface FeedBatch {
  readonly rows: number
  /** Columns of this run: the longest sequence of the batch, or the new tokens after a cache. */
  readonly cols: number
  /** [rows, cols] token ids, 0 in the padding. */
  readonly ids: Int32Array
  /** [rows, past + cols] 1 on tokens (and cached positions), 0 on the padding. */
  readonly mask: Int32Array
  /** Positions already in the KV cache the caller feeds as past (default 0: an empty past). */
  readonly past?: number
}

/** How one model input is fed for a batch. */
export type Feed = (b: FeedBatch) => ort.Tensor

/** The feed of each declared input, in the session's input order. */
export type Feeds = ReadonlyArray<readonly [name: string, feed: Feed]>

type IntType = "int64" | "int32"

/** An int64, int32 or float32 tensor of `data` (ids, masks, positions). */
const intTensor = (type: IntType | "float32", data: Int32Array, dims: number[]): ort.Tensor =>
  type === "int64"
    ? new ort.Tensor("int64", BigInt64Array.from(data, (x) => BigInt(x)), dims)
    : type === "int32"
      ? new ort.Tensor("int32", data, dims)
      : new ort.Tensor("float32", Float32Array.from(data), dims)

/** No elements of a past's element type; undefined for a type JavaScript cannot feed. */
const emptyData = (type: string): ort.Tensor.DataType | undefined =>
  ({ float32: new Float32Array(0), float16: new Uint16Array(0), float64: new Float64Array(0), int64: new BigInt64Array(0), int32: new Int32Array(0) })[type]

/** True for the inputs of a KV cache (Optimum's past_key_values.{l}.key/.value, older exports' past.{l}). */
export const isPastInput = (name: string): boolean => name.startsWith("past_key_values") || name.startsWith("past.")

/** The feed for one declared input, or a message saying why it cannot be fed. */
export const feedFor = (m: ort.InferenceSession.ValueMetadata): Feed | string => {
  if (!m.isTensor) return `input "${m.name}" is not a tensor`
  const { name, type, shape } = m
  const ints = (allowed: ReadonlyArray<string>): string | undefined =>
    allowed.includes(type) ? undefined : `input "${name}" has type ${type}, expected ${allowed.join(" or ")}`
  if (name === "input_ids") return ints(["int64", "int32"]) ?? ((b) => intTensor(type as IntType, b.ids, [b.rows, b.cols]))
  if (name === "attention_mask") {
    return ints(["int64", "int32", "float32"]) ?? ((b) => intTensor(type as IntType, b.mask, [b.rows, (b.past ?? 0) + b.cols]))
  }
  if (name === "position_ids") {
    return (
      ints(["int64", "int32"]) ??
      ((b) => {
        const past = b.past ?? 0
        const pos = new Int32Array(b.rows * b.cols)
        for (let i = 0; i < pos.length; i++) pos[i] = past + (i % b.cols)
        return intTensor(type as IntType, pos, [b.rows, b.cols])
      })
    )
  }
  if (isPastInput(name)) {
    const data = emptyData(type)
    if (!data) return `input "${name}" has type ${type}, which cannot be fed from JavaScript`
    if (shape.length === 0) return `input "${name}" declares no shape, so an empty past cannot be built`
    // Batch (first) dimension = rows; other symbolic dimensions (the past length) 0; fixed ones as declared.
    return (b) => new ort.Tensor(type as "float32", data, shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? b.rows : 0)))
  }
  if (name === "use_cache_branch") {
    if (type !== "bool") return `input "${name}" has type ${type}, expected bool`
    const dims = shape.map((d) => (typeof d === "number" && d >= 0 ? d : 1))
    const size = dims.reduce((a, d) => a * d, 1)
    return (b) => new ort.Tensor("bool", new Uint8Array(size).fill((b.past ?? 0) > 0 ? 1 : 0), dims)
  }
  return `input "${name}" is not one the scorer can feed (input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)`
}

/** The feeds of every input of a session, or the first input's message saying why it cannot be fed. */
export const feedsFor = (inputs: ReadonlyArray<ort.InferenceSession.ValueMetadata>): Feeds | string => {
  const feeds: Array<readonly [string, Feed]> = []
  for (const m of inputs) {
    const f = feedFor(m)
    if (typeof f === "string") return f
    feeds.push([m.name, f])
  }
  return feeds
}

/** The tensors of one run, by input name. */
export const feedAll = (feeds: Feeds, b: FeedBatch): Record<string, ort.Tensor> => Object.fromEntries(feeds.map(([n, f]) => [n, f(b)]))

/**
 * What the head on scored positions (head.ts planPositionsHead) is fed besides the model's inputs:
 * for each scored token j of row r, the flat index r·cols + j − 1 of the hidden state predicting
 * it, and its id.
 */
export const positionFeeds = (positions: BigInt64Array, targets: BigInt64Array, names: { readonly positions: string; readonly targets: string }): Record<string, ort.Tensor> => ({
  [names.positions]: new ort.Tensor("int64", positions, [positions.length]),
  [names.targets]: new ort.Tensor("int64", targets, [targets.length]),
})
