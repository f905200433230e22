/**
 * Two-sided p-values of Student's t (pure, no I/O).
 *
 *   p(t, ν) = P(|T_ν| ≥ |t|) = 2 · F_ν(−|t|)
 *
 * `twoSidedP` is the reference: one call of @stdlib's t CDF (a port of Boost's incomplete beta,
 * accurate in the far tail because it evaluates F_ν(−|t|) directly, never 1 − F). It costs about
 * 1.5 µs, which is most of the work of a regression, so hot loops use `PValueTable` instead:
 *
 * `PValueTable(ν)` tabulates q(t) = ln p(t, ν) on t = 0, 1/64, 2/64, … (values from @stdlib) with
 * its first and second derivatives, which are elementary given p:
 *   q'(t)  = −2 f(t) / p(t)                      f = the t density (closed form)
 *   q''(t) = −q'(t) · (ν+1) t / (ν + t²) − q'(t)²
 * and evaluates the quintic Hermite interpolant of q between nodes. Its error is at most
 * (h/2)⁶/6! · max|q⁽⁶⁾| with h = 1/64; the tests check it against `twoSidedP` on a dense sweep of
 * t for ν = 1…200 at 1e-13 relative (about 10,000× tighter than the 1e-9 to which the project
 * agrees with statsmodels). Beyond the table's end (|t| ≥ 64, or where p < 1e-280) it calls
 * `twoSidedP` itself. Intervals are built on first use (one @stdlib call per node).
 */
import tcdf from "@stdlib/stats-base-dists-t-cdf"
import { exp } from "./exp.ts"

/**
 * Two-sided p-value of a t statistic with `df` degrees of freedom, from @stdlib's t CDF.
 * t = ±∞ → 0 (a perfect fit); t = 0 → 1; NaN t or df < 1 → NaN.
 */
export const twoSidedP = (t: number, df: number): number => {
  if (Number.isNaN(t) || !(df >= 1)) return Number.NaN
  if (t === 0) return 1
  if (!Number.isFinite(t)) return 0
  return 2 * tcdf(-Math.abs(t), df)
}

/** Table spacing: 1/64 in t. */
const PER_UNIT = 64
const T_MAX = 64
/** Below this p the table stops (q would approach −∞ where p underflows). */
const P_FLOOR = 1e-280

/**
 * The t density's constant K_ν = Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) for integer ν ≥ 1, by the exact
 * recurrence r_{ν+2} = r_ν (ν+1)/ν on r_ν = Γ((ν+1)/2)/Γ(ν/2), r_1 = 1/√π, r_2 = √π/2.
 */
const densityConstant = (df: number): number => {
  let nu = df % 2 === 1 ? 1 : 2
  let r = nu === 1 ? 1 / Math.sqrt(Math.PI) : Math.sqrt(Math.PI) / 2
  while (nu < df) {
    r *= (nu + 1) / nu
    nu += 2
  }
  return r / Math.sqrt(df * Math.PI)
}

/** Fast two-sided p-values for one integer ν ≥ 1 (see the module comment for the method and its error). */
export class PValueTable {
  readonly df: number
  /** The t density's constant K_ν. */
  private readonly K: number
  /** [nodes] q = ln p at t = k/64 and its derivatives; NaN until computed, q = −∞ past the floor. */
  private readonly q: Float64Array
  private readonly d1: Float64Array
  private readonly d2: Float64Array
  /**
   * [intervals × 6] polynomial coefficients of q on each interval, in s = t·64 − k ∈ [0, 1]; NaN
   * until the interval is first used, −∞ for an interval past the floor. The intervals are
   * filled on first use: a run meets a few hundred of the 4,096 (|t| of real fits is mostly small),
   * and building all of them costs ~4,000 @stdlib calls per ν, ~0.25 s of cold code per worker
   * thread for a run's handful of ν.
   */
  private readonly coef: Float64Array

  constructor(df: number) {
    if (!Number.isInteger(df) || df < 1) throw new Error(`PValueTable: df must be an integer ≥ 1 (got ${df})`)
    this.df = df
    this.K = densityConstant(df)
    const nodes = T_MAX * PER_UNIT + 1
    this.q = new Float64Array(nodes).fill(Number.NaN)
    this.d1 = new Float64Array(nodes)
    this.d2 = new Float64Array(nodes)
    this.coef = new Float64Array((nodes - 1) * 6).fill(Number.NaN)
  }

  /** Two-sided p-value of `t` (same conventions as `twoSidedP`). */
  p(t: number): number {
    const a = Math.abs(t)
    if (!(a < T_MAX)) return twoSidedP(t, this.df)
    const u = a * PER_UNIT
    const k = Math.floor(u)
    const o = k * 6
    const c = this.coef
    if (!(c[o] > -Infinity) && !this.prepare(k)) return twoSidedP(t, this.df)
    const s = u - k
    const qv = c[o] + s * (c[o + 1] + s * (c[o + 2] + s * (c[o + 3] + s * (c[o + 4] + s * c[o + 5]))))
    return exp(qv)
  }

  /** q and its derivatives at node k (t = k/64), from @stdlib; q = −∞ where p ≤ P_FLOOR. */
  private node(k: number): void {
    const df = this.df
    const t = k / PER_UNIT
    const p = twoSidedP(t, df)
    if (!(p > P_FLOOR)) {
      this.q[k] = -Infinity
      return
    }
    const f = this.K * Math.pow(1 + (t * t) / df, -(df + 1) / 2)
    const g = (-2 * f) / p
    this.q[k] = Math.log(p)
    this.d1[k] = g
    this.d2[k] = (-g * (df + 1) * t) / (df + t * t) - g * g
  }

  /** Fill interval k's coefficients; false when it lies past the floor (p is then computed directly). */
  private prepare(k: number): boolean {
    const o = k * 6
    if (this.coef[o] === -Infinity) return false
    const { q, d1, d2 } = this
    if (q[k] !== q[k]) this.node(k)
    if (q[k + 1] !== q[k + 1]) this.node(k + 1)
    // p falls with |t|: past the first node under the floor, no interval is tabulated
    if (q[k] === -Infinity || q[k + 1] === -Infinity) {
      this.coef[o] = -Infinity
      return false
    }
    const h = 1 / PER_UNIT
    const f0 = q[k], f1 = q[k + 1]
    const a1 = d1[k] * h, b1 = d1[k + 1] * h
    const a2 = d2[k] * h * h, b2 = d2[k + 1] * h * h
    const df01 = f1 - f0
    const c = this.coef
    c[o] = f0
    c[o + 1] = a1
    c[o + 2] = a2 / 2
    c[o + 3] = 10 * df01 - 6 * a1 - 4 * b1 - 1.5 * a2 + 0.5 * b2
    c[o + 4] = -15 * df01 + 8 * a1 + 7 * b1 + 1.5 * a2 - b2
    c[o + 5] = 6 * df01 - 3 * a1 - 3 * b1 - 0.5 * a2 + 0.5 * b2
    return true
  }
}

/** One PValueTable per ν (tables[ν]), built on first use and kept for the process (≈100 kB each). */
const tables: Array<PValueTable | undefined> = []

/** Fast two-sided p-value (PValueTable for integer ν; `twoSidedP` otherwise). */
export const fastTwoSidedP = (t: number, df: number): number => {
  if (!Number.isInteger(df) || df < 1) return twoSidedP(t, df)
  const tab = (tables[df] ??= new PValueTable(df))
  return tab.p(t)
}

/**
 * The critical |t| at level α: the t* with twoSidedP(t*, df) = α, by bisection on @stdlib's CDF
 * to full double precision. Used to decide p < α without computing p away from the boundary.
 */
export const criticalT = (alpha: number, df: number): number => {
  let lo = 0
  let hi = 1
  while (twoSidedP(hi, df) > alpha) hi *= 2
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2
    if (mid === lo || mid === hi) break
    if (twoSidedP(mid, df) > alpha) lo = mid
    else hi = mid
  }
  return hi
}

/**
 * p < α, decided exactly as `fastTwoSidedP(t, df) < alpha` would decide it: far from the critical
 * value by comparing |t| with t*, within 1e-9 of it (relative) by computing the p-value.
 */
export class SignificanceTest {
  readonly alpha: number
  /** crit[df] = t*, 0 until computed. */
  private crit = new Float64Array(64)

  constructor(alpha: number) {
    this.alpha = alpha
  }

  /** Is a slope with statistic `t` on `df` degrees of freedom significant at α? (t = ±∞ → yes, t = 0 or NaN → no) */
  significant(t: number, df: number): boolean {
    if (!(df >= 1) || Number.isNaN(t)) return false
    if (df >= this.crit.length) {
      const grown = new Float64Array(Math.max(df + 1, this.crit.length * 2))
      grown.set(this.crit)
      this.crit = grown
    }
    let c = this.crit[df]
    if (c === 0) {
      c = criticalT(this.alpha, df)
      this.crit[df] = c
    }
    const a = Math.abs(t)
    if (a > c * (1 + 1e-9)) return true
    if (a < c * (1 - 1e-9)) return false
    return fastTwoSidedP(t, df) < this.alpha
  }
}
