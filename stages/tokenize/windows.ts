/**
 * How a document's tokens become model input windows (pure).
 *
 * A document of n tokens (its first `nPrepend` are prepended context, e.g. a BOS `</s>`) is cut
 * into windows of at most L = context_length tokens. Window k ends at end_k = min(n, L + k·stride)
 * and starts at max(0, end_k − L). It predicts the tokens [end_{k−1}, end_k); window 0 predicts
 * [max(1, nPrepend), end_0). So every document token is predicted exactly once, after a window's
 * first L − stride tokens of context; prepended tokens are context only and never predicted, and
 * without a prepend the document's first token has no context and is not predicted either.
 *
 * Worked example: n = 10, L = 4, stride = 2, no prepend (tokens t0…t9):
 *
 *   k  end  start  input ids        predicts   first_target (position in window)
 *   0   4     0    t0 t1 t2 t3      t1 t2 t3   1
 *   1   6     2    t2 t3 t4 t5      t4 t5      2
 *   2   8     4    t4 t5 t6 t7      t6 t7      2
 *   3  10     6    t6 t7 t8 t9      t8 t9      2      → 9 tokens predicted: t1…t9
 *
 * With a prepend of 1 token (b t0…t8, n = 10 again) window 0 is `b t0 t1 t2` and predicts t0 t1 t2
 * (first_target 1); the windows after it are as above, and all 9 document tokens are predicted.
 * With n = 9 (no prepend) the last window is k = 3: end 9, start 5, `t5 t6 t7 t8`, predicts t8
 * only (first_target 3): a window is always as long as it can be, only its tail is new.
 */

export interface Window {
  /** First token of the window (index into the document's token list, prepended tokens included). */
  readonly start: number
  /** One past the last token of the window. end − start ≤ context_length. */
  readonly end: number
  /** Position inside the window of the first predicted token (≥ 1); positions firstTarget…end−start−1 are predicted. */
  readonly firstTarget: number
}

/**
 * The windows of one document (see the module comment for the rule).
 * @param n         number of tokens of the document, prepended tokens included
 * @param nPrepend  how many of them (at the front) are prepended context, never predicted
 * @param contextLength  L, the longest window (≥ 2)
 * @param stride    new tokens per window after the first (1 ≤ stride ≤ L − 1)
 * @returns windows in order; each predicts ≥ 1 token; predicted ranges tile [max(1, nPrepend), n)
 */
export const documentWindows = (n: number, nPrepend: number, contextLength: number, stride: number): Window[] => {
  if (!(contextLength >= 2) || !(stride >= 1) || stride > contextLength - 1) {
    throw new Error(`windows: need 1 ≤ stride ≤ context_length − 1 (got stride ${stride}, context_length ${contextLength})`)
  }
  const windows: Window[] = []
  let predictedFrom = Math.max(1, nPrepend)
  for (let k = 0; predictedFrom < n; k++) {
    const end = Math.min(n, contextLength + k * stride)
    if (end <= predictedFrom) continue // a prepend longer than the window: nothing new yet
    const start = Math.max(0, end - contextLength)
    windows.push({ start, end, firstTarget: predictedFrom - start })
    predictedFrom = end
  }
  return windows
}

/** Number of tokens the windows of a document predict: max(0, n − max(1, nPrepend)). */
export const predictedCount = (n: number, nPrepend: number): number => Math.max(0, n - Math.max(1, nPrepend))
