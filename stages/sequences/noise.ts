/**
 * Noisy copies of validation windows (pure).
 *
 * substitute: each token at position ≥ `from` is replaced, with probability `rate`, by an id drawn
 * uniformly from [0, vocab) (it may draw the same id). One draw decides each position and, when it
 * fires, a second draw picks the id, so at rate 0 the copy equals the original.
 *
 *   substitute([5, 6, 7, 8], 1, 0.5, 10, rand) → [5, 6, 3, 8]   (position 2 drew < 0.5, then id 3)
 *
 * shuffleWords: the text's words (split on white space) in a seeded random order, joined by one
 * space: "the cat sat" → "sat the cat".
 */
import { shuffled } from "../../lib/random.ts"

/** A copy of `ids` [n] with positions from…n−1 substituted at `rate`; `next` gives uniform [0, 1). */
export const substitute = (ids: Int32Array, from: number, rate: number, vocab: number, next: () => number): Int32Array => {
  const out = Int32Array.from(ids)
  if (rate <= 0) return out
  for (let i = Math.max(0, from); i < out.length; i++) {
    if (next() < rate) out[i] = Math.min(vocab - 1, Math.floor(next() * vocab))
  }
  return out
}

/** The words of `text` shuffled with `next` (Fisher–Yates), joined by single spaces. */
export const shuffleWords = (text: string, next: () => number): string => shuffled(text.split(/\s+/).filter((w) => w.length > 0), next).join(" ")

/** Perplexity exp(−Σ logprob / n) of scored tokens (nats); null when nothing was scored. */
export const pplOf = (logprobs: ReadonlyArray<Float32Array>): { readonly ppl: number | null; readonly n: number } => {
  let sum = 0
  let n = 0
  for (const lp of logprobs) {
    for (const v of lp) {
      sum += v
      n++
    }
  }
  return { ppl: n > 0 ? Math.exp(-sum / n) : null, n }
}
