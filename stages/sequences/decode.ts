/**
 * Joint decoding between two checkpoints (pure): the next-token distribution is
 *
 *   q = max(λs·ps + λl·pl, 0) / Σ max(λs·ps + λl·pl, 0)
 *
 * for a small model s and a large model l (the paper's p_s − p_l is λ = (1, −1), p_l − p_s is
 * (−1, 1), the models alone (1, 0) and (0, 1)).
 *
 * Fallback: when no mass is left (the sum is ≤ 0 or not finite — identical models with λ = (1, −1),
 * or λ = (0, 0)), q is the large model's distribution pl, renormalised. Never NaN.
 *
 * Worked example: ps = [0.5, 0.3, 0.2], pl = [0.2, 0.3, 0.5], λ = (1, −1):
 *   λs·ps + λl·pl = [0.3, 0, −0.3] → max(·, 0) = [0.3, 0, 0] → q = [1, 0, 0]; greedy picks token 0.
 */
import { mulberry32 } from "../../lib/random.ts"

export type Decoding = "greedy" | "nucleus"

// The softmax of next-token logits lives with the ONNX module (lib/onnx/batching.ts); re-exported for the decoder.
export { softmax } from "../../lib/onnx/batching.ts"

export interface Combined {
  /** [vocab] probabilities, sum 1. */
  readonly q: Float64Array
  /** True when all mass was removed and q is the large model's distribution. */
  readonly fallback: boolean
}

/**
 * Combine two next-token distributions (see the module comment).
 * @param ps [vocab] small model's probabilities
 * @param pl [vocab] large model's probabilities (same width)
 */
export const combine = (ps: ArrayLike<number>, pl: ArrayLike<number>, lambdaS: number, lambdaL: number): Combined => {
  if (ps.length !== pl.length) throw new Error(`combine: distributions of widths ${ps.length} and ${pl.length}`)
  const n = ps.length
  const q = new Float64Array(n)
  let sum = 0
  for (let i = 0; i < n; i++) {
    const v = lambdaS * ps[i] + lambdaL * pl[i]
    const c = v > 0 ? v : 0 // also maps NaN to 0
    q[i] = c
    sum += c
  }
  if (sum > 0 && Number.isFinite(sum)) {
    for (let i = 0; i < n; i++) q[i] /= sum
    return { q, fallback: false }
  }
  let total = 0
  for (let i = 0; i < n; i++) total += pl[i] > 0 ? pl[i] : 0
  for (let i = 0; i < n; i++) q[i] = total > 0 ? (pl[i] > 0 ? pl[i] / total : 0) : 1 / n
  return { q, fallback: true }
}

/** Index of the largest probability; ties go to the lowest id. */
export const argmax = (q: ArrayLike<number>): number => {
  let best = 0
  for (let i = 1; i < q.length; i++) if (q[i] > q[best]) best = i
  return best
}

/**
 * The nucleus of `q`: ids sorted by probability, descending (ties: lower id first), cut after the
 * smallest prefix whose cumulative probability reaches `topP` (at least one id).
 */
export const nucleus = (q: ArrayLike<number>, topP: number): { readonly ids: Int32Array; readonly mass: number } => {
  const order = Array.from({ length: q.length }, (_, i) => i).filter((i) => q[i] > 0)
  order.sort((a, b) => q[b] - q[a] || a - b)
  let cum = 0
  let k = 0
  while (k < order.length) {
    cum += q[order[k]]
    k++
    if (cum >= topP) break
  }
  if (k === 0) return { ids: Int32Array.of(argmax(q)), mass: 1 }
  return { ids: Int32Array.from(order.slice(0, k)), mass: cum }
}

/** Sample from the nucleus of `q` with a uniform draw `u` in [0, 1). */
export const sampleNucleus = (q: ArrayLike<number>, topP: number, u: number): number => {
  const { ids, mass } = nucleus(q, topP)
  let target = u * mass
  for (const id of ids) {
    target -= q[id]
    if (target < 0) return id
  }
  return ids[ids.length - 1]
}

export interface Sampler {
  /** The next token id from the combined distribution `q` [vocab]. */
  readonly next: (q: ArrayLike<number>) => number
}

/** A greedy picker, or a nucleus sampler drawing from mulberry32(seed). */
export const makeSampler = (decoding: Decoding, topP: number, seed: number): Sampler => {
  if (decoding === "greedy") return { next: argmax }
  const rand = mulberry32(seed)
  return { next: (q) => sampleNucleus(q, topP, rand()) }
}
