/**
 * The ONNX module's pure core: batch plans, right padding, the TypeScript log-softmax used when a
 * graph cannot take the scoring head, and the softmax of next-token logits. No Effect, no
 * onnxruntime.
 *
 * Worked example (batch size 2): requests of lengths [5, 9, 3, 9] batch as [[1, 3], [0, 2]] —
 * longest first, so the first batch shows at once whether the largest shape fits in memory — and
 * pad to 9 and 5 columns. Request 0 (ids a b c d e, firstTarget 2) sits in row 0 of the second
 * batch: ids [a b c d e], mask [1 1 1 1 1]; targets c d e are read from the head's output row at
 * columns 1, 2, 3 (column j−1 predicts position j).
 */

/**
 * How many sequences of `length` tokens one call may take when their logits ([batch, length,
 * vocab] float32) and `copies − 1` temporaries of that size must fit in `budgetBytes`: at most
 * `maxBatch`, at least 1.
 *   batchForBudget(8, 512, 50304, 1.5e9, 2) → 7   (206 MB a sequence)
 *   batchForBudget(8, 128, 2048, 1.5e9, 2) → 8
 */
export const batchForBudget = (maxBatch: number, length: number, vocab: number, budgetBytes: number, copies: number): number =>
  Math.max(1, Math.min(maxBatch, Math.floor(budgetBytes / (length * vocab * 4 * copies))))

/** Batches of request indices: sorted by length, longest first (stable), `batchSize` rows each. */
export const planBatches = (lengths: ArrayLike<number>, batchSize: number): number[][] => {
  const order = Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b)
  const batches: number[][] = []
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize))
  return batches
}

export interface PaddedBatch {
  readonly rows: number
  /** Columns: the longest sequence of the batch. */
  readonly cols: number
  /** [rows, cols] token ids, 0 in the padding. */
  readonly ids: Int32Array
  /** [rows, cols] 1 for tokens, 0 for padding. */
  readonly mask: Int32Array
}

/** Right-pad the sequences to the longest one. */
export const padRight = (seqs: ReadonlyArray<Int32Array>): PaddedBatch => {
  const rows = seqs.length
  const cols = seqs.reduce((m, s) => Math.max(m, s.length), 0)
  const ids = new Int32Array(rows * cols)
  const mask = new Int32Array(rows * cols)
  seqs.forEach((s, r) => {
    ids.set(s, r * cols)
    mask.fill(1, r * cols, r * cols + s.length)
  })
  return { rows, cols, ids, mask }
}

/**
 * Log-softmax of the next token from full logits, in TypeScript (the fallback path).
 * logits: [rows, cols, vocab] float32 (row-major); row `r` holds `ids` with targets
 * firstTarget…ids.length−1. Writes logprob (and entropy) [ids.length − firstTarget], nats.
 * Only the needed logit rows are touched.
 */
export const logSoftmaxTargets = (
  logits: Float32Array,
  cols: number,
  vocab: number,
  r: number,
  ids: Int32Array,
  firstTarget: number,
  logprob: Float32Array,
  entropy: Float32Array | undefined,
): void => {
  for (let j = firstTarget; j < ids.length; j++) {
    const base = (r * cols + j - 1) * vocab
    let max = -Infinity
    for (let v = 0; v < vocab; v++) if (logits[base + v] > max) max = logits[base + v]
    let s = 0
    let sz = 0
    for (let v = 0; v < vocab; v++) {
      const e = Math.exp(logits[base + v] - max)
      s += e
      sz += e * logits[base + v]
    }
    const lse = max + Math.log(s)
    logprob[j - firstTarget] = logits[base + ids[j]] - lse
    // H = −Σ p·(z − lse) = lse − Σ p·z
    if (entropy) entropy[j - firstTarget] = lse - sz / s
  }
}

/**
 * IEEE 754 half-precision → float32 values. ORT returns a float16 tensor's data as a Uint16Array of
 * the bits, or as a Float16Array where the runtime has one (Node 24+); either way the bytes are the
 * halves, so any other view is read as those bytes.
 */
export const halfToFloat = (data: ArrayBufferView): Float32Array => {
  const h = data instanceof Uint16Array ? data : new Uint16Array(data.buffer, data.byteOffset, data.byteLength >> 1)
  const out = new Float32Array(h.length)
  for (let i = 0; i < h.length; i++) {
    const x = h[i]
    const sign = x & 0x8000 ? -1 : 1
    const exp = (x >> 10) & 0x1f
    const frac = x & 0x3ff
    out[i] =
      exp === 0 ? sign * frac * 2 ** -24 : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15)
  }
  return out
}

/** Index of the first NaN or ±Infinity, or −1. */
export const firstNonFinite = (xs: Float32Array): number => {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i])) return i
  return -1
}

/** Softmax of `logits` [vocab] into probabilities [vocab] (float64, max-subtracted). */
export const softmax = (logits: ArrayLike<number>): Float64Array => {
  const n = logits.length
  let max = -Infinity
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i]
  const p = new Float64Array(n)
  let sum = 0
  for (let i = 0; i < n; i++) {
    const e = Math.exp(logits[i] - max)
    p[i] = e
    sum += e
  }
  for (let i = 0; i < n; i++) p[i] /= sum
  return p
}
