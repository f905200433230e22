/**
 * Token classes and the per-token rules of DESIGN.md "Definitions" (pure, no I/O).
 *
 * For one token and one threshold, over the window c = i0…C (per-token perplexities p_c):
 *   upward     b > 0 and p-value < α      (b: OLS slope of p_c / p_i0 on ln step)
 *   downward   b < 0 and p-value < α
 *   stagnated  neither, and with g = geometric mean of p_i0…p_C:
 *              |g/p_i0 − 1| < δ, |g/p_C − 1| < δ, and Var(p_i0…p_C) < g
 *              (population variance, as numpy's `x.var()` in the paper's code)
 *   other      none of the above
 * Perplexities that are not finite are left out of g and the variance; p_i0 and p_C must be finite.
 *
 * Per-token double descent (an extension; see DESIGN.md): with L_c = ln p_c and L̃ its 3-point
 * moving average (ends kept), the peak k = argmax L̃ (first on ties) must leave ≥ 3 points on
 * each side; the OLS slope of L on ln step must be > 0 with p < α on i0…k and < 0 with p < α on
 * k…C; and L̃_k must exceed L̃_i0 and L̃_C by more than ln(1 + dd_rise). A window with a
 * non-finite L is never flagged.
 *
 * Worked example (δ = 0.05): p = 100, 103, 98, 101, 99 → g = 100.19, g/p_i0 − 1 = 0.0019,
 * g/p_C − 1 = 0.0120, Var = 2.96 < g, slope not significant → stagnated.
 */
import { exp } from "./exp.ts"
import { type LineFit, type SharedX, fitShared, prepareX } from "./ols.ts"
import type { SignificanceTest } from "./tdist.ts"

export type TokenClass = "stagnated" | "upward" | "downward" | "other"

/** Class literals in code order: code k ↔ CLASSES[k]. */
export const CLASSES: ReadonlyArray<TokenClass> = ["stagnated", "upward", "downward", "other"]

export const CLASS_CODE = { stagnated: 0, upward: 1, downward: 2, other: 3 } as const satisfies Record<TokenClass, number>

/** The cut-offs of the rules (all from `analysis.*` in the config). */
export interface ClassRules {
  /** Significance test at α (`analysis.alpha`). */
  readonly test: SignificanceTest
  /** Stagnation band δ (`analysis.delta`). */
  readonly delta: number
  /** Double-descent rise: the peak exceeds both ends by ln(1 + dd_rise) (`analysis.dd_rise`). */
  readonly ddRise: number
}

/**
 * One token's trajectory over all C checkpoints, with what every threshold's rules reuse. The
 * window of a threshold is i0…C−1; `fill` computes everything once per token, so each threshold
 * costs O(1) here beyond its fits.
 */
export class Trajectory {
  readonly C: number
  /** [C] per-token perplexity p_c */
  readonly p: Float64Array
  /** [C] ln p_c (= −log-prob, nats) */
  readonly L: Float64Array
  /** [C] 3-point moving average of L at interior points c = 1…C−2 (a window's own ends use L). */
  readonly smooth: Float64Array
  /** [C] first index of the maximum of `smooth` over c…C−2 */
  readonly peakFrom: Int32Array
  /** [C + 1] Σ_{c' ≥ c} L_c' and Σ p_c' (valid when every value from c on is finite) */
  readonly sufL: Float64Array
  readonly sufP: Float64Array
  /** Largest c with a non-finite L_c, −1 when none. */
  lastBad = -1
  /**
   * [C] doubleDescentPeak's verdict on the fall after a peak at c (1 significant, −1 not, 0 not
   * yet fitted): it depends on the peak only, not on the threshold, so the thresholds that share
   * a peak fit it once. Valid for `fallRules` and `fallSteps`; cleared by `fill`.
   */
  readonly fall: Int8Array
  fallRules: ClassRules | undefined
  fallSteps: StepWindows | undefined

  constructor(C: number) {
    this.C = C
    this.p = new Float64Array(C)
    this.L = new Float64Array(C)
    this.smooth = new Float64Array(C)
    this.peakFrom = new Int32Array(C)
    this.sufL = new Float64Array(C + 1)
    this.sufP = new Float64Array(C + 1)
    this.fall = new Int8Array(C)
  }

  /**
   * Load token i of a block.
   * @param lp [C] arrays of [tokens] log-probs (nats)
   */
  fill(lp: ReadonlyArray<Float32Array>, i: number): void {
    const { C, p, L, smooth, peakFrom, sufL, sufP } = this
    this.lastBad = -1
    this.fall.fill(0)
    for (let c = 0; c < C; c++) {
      const l = -lp[c][i]
      L[c] = l
      p[c] = exp(l)
      if (l - l !== 0 || p[c] === Infinity) this.lastBad = c
    }
    // One backward pass: suffix sums, the moving average and its running argmax (first on ties).
    let sl = 0
    let sp = 0
    let peak = C - 2
    sufL[C] = 0
    sufP[C] = 0
    for (let c = C - 1; c >= 0; c--) {
      sl += L[c]
      sp += p[c]
      sufL[c] = sl
      sufP[c] = sp
      if (c >= 1 && c < C - 1) {
        const s = (L[c - 1] + L[c] + L[c + 1]) / 3
        smooth[c] = s
        if (s >= smooth[peak]) peak = c
        peakFrom[c] = peak
      }
    }
  }
}

/** Load a trajectory from per-token values (tests and one-off callers). @param L [C] ln p */
export const trajectoryOf = (L: ArrayLike<number>): Trajectory => {
  const t = new Trajectory(L.length)
  t.fill(Array.from(L, (l) => Float32Array.of(-l)), 0)
  return t
}

/**
 * The stagnation rule over the window i0…C−1 of a trajectory.
 * @param sumSquares optional Σ(p_c − p̄)² over the window when every p in it is finite (from
 *        SuffixFits.sumSquares, which the kernels have at hand); otherwise it is summed here
 */
export const isStagnated = (t: Trajectory, i0: number, delta: number, sumSquares = Number.NaN): boolean => {
  const { p, L, C } = t
  const end = C
  const first = p[i0]
  const last = p[end - 1]
  if (!Number.isFinite(first) || !Number.isFinite(last)) return false
  let n: number
  let sumL: number
  let sumP: number
  if (t.lastBad < i0) {
    n = end - i0
    sumL = t.sufL[i0]
    sumP = t.sufP[i0]
  } else {
    n = 0
    sumL = 0
    sumP = 0
    for (let c = i0; c < end; c++) {
      const v = p[c]
      if (v - v !== 0) continue
      n++
      sumL += L[c]
      sumP += v
    }
  }
  const g = exp(sumL / n)
  if (!(Math.abs(g / first - 1) < delta) || !(Math.abs(g / last - 1) < delta)) return false
  if (t.lastBad < i0 && sumSquares === sumSquares) return sumSquares / n < g
  const mean = sumP / n
  let ss = 0
  for (let c = i0; c < end; c++) {
    const v = p[c]
    if (v - v !== 0) continue
    ss += (v - mean) * (v - mean)
  }
  return ss / n < g
}

/**
 * Class code (CLASS_CODE) of one token at one threshold.
 * @param fit the OLS of p_c/p_i0 on ln step over the window (SuffixFits/fitLine), already computed
 * @param sumSquares optional, see isStagnated
 */
export const classOf = (fit: LineFit, t: Trajectory, i0: number, rules: ClassRules, sumSquares = Number.NaN): number => {
  if (fit.ok && fit.slope !== 0 && rules.test.significant(fit.t, fit.n - 2)) {
    return fit.slope > 0 ? CLASS_CODE.upward : CLASS_CODE.downward
  }
  return isStagnated(t, i0, rules.delta, sumSquares) ? CLASS_CODE.stagnated : CLASS_CODE.other
}

/**
 * ln step over every sub-window start…end−1 of C checkpoints, prepared once (fitShared) and
 * shared by every token's double-descent fits.
 */
export class StepWindows {
  private readonly cache: Array<SharedX | undefined>
  constructor(
    readonly lnStep: Float64Array,
  ) {
    this.cache = new Array(lnStep.length * (lnStep.length + 1))
  }
  get(start: number, len: number): SharedX {
    const key = start * (this.lnStep.length + 1) + len
    return (this.cache[key] ??= prepareX(this.lnStep, start, len))
  }
}

/**
 * Per-token double descent over the window i0…C−1. Returns the peak's checkpoint index, or −1
 * when the token is not flagged (a sentinel of this function only; tables store null).
 * @param steps ln step of every sub-window
 * @param fit scratch
 */
export const doubleDescentPeak = (t: Trajectory, steps: StepWindows, i0: number, rules: ClassRules, fit: LineFit): number => {
  const { L, C } = t
  const end = C
  const last = end - 1
  if (end - i0 < 5 || t.lastBad >= i0) return -1
  // argmax of L̃ over the window, first on ties: L̃_i0 = L_i0, the interior, L̃_C = L_C.
  let k = i0
  let best = L[i0]
  const mid = t.peakFrom[i0 + 1]
  if (t.smooth[mid] > best) {
    k = mid
    best = t.smooth[mid]
  }
  if (L[last] > best) {
    k = last
    best = L[last]
  }
  if (k - i0 < 2 || last - k < 2) return -1
  if (rules.ddRise !== riseOf) {
    riseOf = rules.ddRise
    riseLog = Math.log1p(riseOf)
  }
  if (!(best - L[i0] > riseLog) || !(best - L[last] > riseLog)) return -1
  // The fall k…C−1 first: it does not depend on i0, so it is fitted once per token and peak.
  if (t.fallRules !== rules || t.fallSteps !== steps) {
    t.fall.fill(0)
    t.fallRules = rules
    t.fallSteps = steps
  }
  if (t.fall[k] === 0) {
    fitShared(steps.get(k, end - k), L, k, fit)
    t.fall[k] = fit.ok && fit.slope < 0 && rules.test.significant(fit.t, fit.n - 2) ? 1 : -1
  }
  if (t.fall[k] < 0) return -1
  fitShared(steps.get(i0, k - i0 + 1), L, i0, fit)
  if (!fit.ok || !(fit.slope > 0) || !rules.test.significant(fit.t, fit.n - 2)) return -1
  return k
}

/** ln(1 + dd_rise) of the last dd_rise seen (one run has one). */
let riseOf = Number.NaN
let riseLog = Number.NaN
