/**
 * Ordinary least squares of y = a + b·x with one regressor (pure, no I/O), the model the paper
 * fitted with statsmodels `sm.OLS(y, sm.add_constant(x)).fit()`.
 *
 * Over the pairs (x_j, y_j) where BOTH are finite (NaN and ±∞ are dropped from x and y together;
 * the paper's code dropped NaNs from y only, misaligning x and y):
 *   n        points used
 *   x̄, ȳ     means;  Sxx = Σ(x−x̄)²,  Sxy = Σ(x−x̄)(y−ȳ),  SST = Σ(y−ȳ)²
 *   b        = Sxy / Sxx                       slope
 *   a        = ȳ − b·x̄                         intercept
 *   SSR      = SST − b·Sxy, or Σ(y − ȳ − b(x−x̄))² summed explicitly when r² > 0.99 (see below)
 *   r²       = 1 − SSR / SST
 *   t        = b / √(SSR / (n−2) / Sxx)        Student t with n − 2 degrees of freedom
 *   p        = 2·F(−|t|; n−2)                  two-sided (tdist.ts)
 *
 * Degenerate cases have documented finite answers (statsmodels answers them with rounding noise:
 * for y ≡ 1 on 20 log steps it gives slope 1.4e-17, p = 0.92, r² = −∞; for y = 2x + 1 exactly,
 * p = 2.5e-32):
 *   n < 3                  → no fit (`ok` false): the table stores nulls and n
 *   y constant (min = max) → b = 0, a = ȳ, r² = 0, t = 0, p = 1   ("no trend"; a constant
 *                             trajectory would otherwise get a slope of ~1e-17 from rounding and
 *                             an arbitrary p-value)
 *   x constant (Sxx = 0)   → b = 0, a = ȳ, r² = 0, t = 0, p = 1   (nothing to regress on)
 *   perfect fit (SSR = 0, b ≠ 0) → r² = 1, t = ±∞, p = 0
 *
 * Worked example: x = ln(100, 200, 400), y = (1, 1.5, 2.5)
 *   x̄ = 5.29832, Sxx = 0.96091, Sxy = 1.03972, b = 1.08202, a = −4.06623, r² = 27/28,
 *   t = √27 = 5.19615 on 1 df, p = 0.12104   (statsmodels: the same to 1e-15)
 */
import { fastTwoSidedP, twoSidedP } from "./tdist.ts"

/** One fitted line. Reused as scratch by the hot loops (`fitLine` overwrites every field). */
export interface LineFit {
  /** Points used (pairs with finite x and y). */
  n: number
  /** false when n < 3: no slope, intercept, r², t or p. */
  ok: boolean
  slope: number
  intercept: number
  r2: number
  /** Slope / standard error; ±∞ for a perfect fit, 0 for the degenerate cases. */
  t: number
}

export const emptyFit = (): LineFit => ({ n: 0, ok: false, slope: 0, intercept: 0, r2: 0, t: 0 })

/**
 * Fit y = a + b·x over x[xOff + j], y[yOff + j] for j = 0…len−1, dropping pairs where x or y is
 * not finite. Writes into `out` and returns it.
 * @param x regressor values (e.g. ln step), any units
 * @param y response values (e.g. perplexity ratios p_c / p_i0)
 */
export const fitLine = (
  x: ArrayLike<number>,
  xOff: number,
  y: ArrayLike<number>,
  yOff: number,
  len: number,
  out: LineFit,
): LineFit => {
  let n = 0
  let sx = 0
  let sy = 0
  let ymin = Infinity
  let ymax = -Infinity
  let xmin = Infinity
  let xmax = -Infinity
  for (let j = 0; j < len; j++) {
    const xi = x[xOff + j]
    const yi = y[yOff + j]
    // v − v is 0 for finite v and NaN for NaN and ±∞.
    if (xi - xi !== 0 || yi - yi !== 0) continue
    n++
    sx += xi
    sy += yi
    if (yi < ymin) ymin = yi
    if (yi > ymax) ymax = yi
    if (xi < xmin) xmin = xi
    if (xi > xmax) xmax = xi
  }
  out.n = n
  if (n < 3) return noFit(out)
  const xbar = sx / n
  const ybar = sy / n
  if (ymin === ymax || xmin === xmax) return flatFit(out, ymin === ymax ? ymin : ybar)
  let sxx = 0
  let sxy = 0
  let sst = 0
  for (let j = 0; j < len; j++) {
    const xi = x[xOff + j]
    const yi = y[yOff + j]
    if (xi - xi !== 0 || yi - yi !== 0) continue
    const dx = xi - xbar
    const dy = yi - ybar
    sxx += dx * dx
    sxy += dx * dy
    sst += dy * dy
  }
  const b = sxy / sxx
  let ssr = sst - b * sxy
  if (ssr < RESIDUAL_RECOMPUTE * sst) {
    ssr = 0
    for (let j = 0; j < len; j++) {
      const xi = x[xOff + j]
      const yi = y[yOff + j]
      if (xi - xi !== 0 || yi - yi !== 0) continue
      const e = yi - ybar - b * (xi - xbar)
      ssr += e * e
    }
  }
  return finishFit(out, n, b, ybar - b * xbar, sxx, sst, ssr)
}

/**
 * SSR = SST − b·Sxy loses relative precision as r² → 1 (error ≈ 2ε/(1 − r²)); below
 * SSR < 0.01·SST the residuals are summed explicitly, which keeps SSR to ~1e-13 relative.
 */
const RESIDUAL_RECOMPUTE = 0.01

const noFit = (out: LineFit): LineFit => {
  out.ok = false
  out.slope = 0
  out.intercept = 0
  out.r2 = 0
  out.t = 0
  return out
}

const flatFit = (out: LineFit, intercept: number): LineFit => {
  out.ok = true
  out.slope = 0
  out.intercept = intercept
  out.r2 = 0
  out.t = 0
  return out
}

const finishFit = (out: LineFit, n: number, b: number, a: number, sxx: number, sst: number, ssr: number): LineFit => {
  out.ok = true
  out.slope = b
  out.intercept = a
  out.r2 = 1 - ssr / sst
  out.t = ssr > 0 ? b / Math.sqrt(ssr / (n - 2) / sxx) : b > 0 ? Infinity : -Infinity
  return out
}

/**
 * The x side of a window, computed once and shared by every token regressed on it: the hot loops
 * call `fitShared`, which gives the same bits as `fitLine` (same sums in the same order) while
 * skipping the x arithmetic.
 */
export interface SharedX {
  readonly x: Float64Array
  readonly off: number
  readonly len: number
  /** false when some x in the window is not finite: fitShared then defers to fitLine. */
  readonly allFinite: boolean
  readonly xbar: number
  /** [len] x − x̄ */
  readonly dx: Float64Array
  readonly sxx: number
  /** Every x of the window is equal (Sxx = 0): every fit is flat. */
  readonly constant: boolean
}

/** Precompute the x side of the window x[off…off+len−1]. */
export const prepareX = (x: Float64Array, off: number, len: number): SharedX => {
  let sx = 0
  let allFinite = true
  let xmin = Infinity
  let xmax = -Infinity
  for (let j = 0; j < len; j++) {
    const v = x[off + j]
    if (v - v !== 0) allFinite = false
    sx += v
    if (v < xmin) xmin = v
    if (v > xmax) xmax = v
  }
  const xbar = sx / len
  const dx = new Float64Array(len)
  let sxx = 0
  for (let j = 0; j < len; j++) {
    const d = x[off + j] - xbar
    dx[j] = d
    sxx += d * d
  }
  return { x, off, len, allFinite, xbar, dx, sxx, constant: xmin === xmax }
}

/**
 * fitLine(sx.x, sx.off, y, yOff, sx.len, out), faster when every x and y of the window is finite.
 * @param y response values; y[yOff…yOff+len−1] is read
 */
export const fitShared = (sx: SharedX, y: Float64Array, yOff: number, out: LineFit): LineFit => {
  const len = sx.len
  if (!sx.allFinite || len < 3) return fitLine(sx.x, sx.off, y, yOff, len, out)
  let sy = 0
  let ymin = Infinity
  let ymax = -Infinity
  for (let j = 0; j < len; j++) {
    const v = y[yOff + j]
    if (v - v !== 0) return fitLine(sx.x, sx.off, y, yOff, len, out)
    sy += v
    if (v < ymin) ymin = v
    if (v > ymax) ymax = v
  }
  out.n = len
  const ybar = sy / len
  if (ymin === ymax || sx.constant) return flatFit(out, ymin === ymax ? ymin : ybar)
  const dx = sx.dx
  let sxy = 0
  let sst = 0
  for (let j = 0; j < len; j++) {
    const d = y[yOff + j] - ybar
    sxy += dx[j] * d
    sst += d * d
  }
  const b = sxy / sx.sxx
  let ssr = sst - b * sxy
  if (ssr < RESIDUAL_RECOMPUTE * sst) {
    ssr = 0
    for (let j = 0; j < len; j++) {
      const e = y[yOff + j] - ybar - b * dx[j]
      ssr += e * e
    }
  }
  return finishFit(out, len, b, ybar - b * sx.xbar, sx.sxx, sst, ssr)
}

/** Two-sided p-value of a fit's slope (fast table; equal to @stdlib's to ~1e-13 relative). NaN when !ok. */
export const fitPValue = (fit: LineFit): number => (fit.ok ? fastTwoSidedP(fit.t, fit.n - 2) : Number.NaN)

/** A finished regression, for callers outside the hot loops. Fields are null when fewer than 3 points remain. */
export interface Ols {
  readonly n: number
  readonly slope: number | null
  readonly intercept: number | null
  readonly r2: number | null
  /** Two-sided p-value of the slope from @stdlib's t CDF directly. */
  readonly pValue: number | null
}

/**
 * y = a + b·x by OLS over the pairs where both x and y are finite (see the module comment).
 * @param x [points] regressor
 * @param y [points] response, same length as x
 */
export const ols = (x: ArrayLike<number>, y: ArrayLike<number>): Ols => {
  if (x.length !== y.length) throw new Error(`ols: x has ${x.length} points, y has ${y.length}`)
  const f = fitLine(x, 0, y, 0, x.length, emptyFit())
  if (!f.ok) return { n: f.n, slope: null, intercept: null, r2: null, pValue: null }
  return { n: f.n, slope: f.slope, intercept: f.intercept, r2: f.r2, pValue: twoSidedP(f.t, f.n - 2) }
}

/** SuffixFits takes the two-pass path when (max p − min p) < this · max p over the window. */
const SPREAD_EXACT = 1e-4

/**
 * Every threshold's fit of one token from one backward pass: the windows of the thresholds are
 * suffixes i0…C−1 of the same trajectory, so with
 *   K = p_{C−1},  d_c = p_c − K,  x'_c = x_c − x_{C−1}
 * the suffix sums Σd, Σd², Σx'd (one pass over the C checkpoints per token) give each window's
 *   SST_p = Σd² − (Σd)²/n,   Sxy_p = Σx'd − x̄'·Σd,   b_p = Sxy_p / Sxx,   SSR_p = SST_p − b_p·Sxy_p
 * in O(1), and the fit of y = p / p_i0 follows by scaling: slope = b_p / p_i0, ȳ = (Σd/n + K) / p_i0,
 * r² = 1 − SSR_p / SST_p, and t = b_p / √(SSR_p / (n−2) / Sxx) (t and r² do not depend on the scale).
 * Shifting by K (a value inside every window) and by x_{C−1} keeps the cancellation in SST_p and
 * Sxy_p to a small factor of the window's own spread, so values agree with the two-pass fitLine to
 * ~1e-11 relative. Windows where that is not enough, or where the shortcut does not apply, take
 * the two-pass path (y = p/p_i0, then fitShared): a non-finite p or x in the window, p_i0 ≤ 0,
 * fewer than 3 points, SST_p ≤ 0, near-perfect fits (SSR_p < 0.01·SST_p, as in fitLine), and windows whose spread of p
 * is under 1e-4 of its level (tokens predicted with p ≈ 1 at every checkpoint), where the rounding
 * of y = p/p_i0 that statsmodels (and fitLine) regress would otherwise differ from the exact
 * ratios by more than 1e-10 relative.
 */
export class SuffixFits {
  readonly C: number
  readonly T: number
  readonly A: number
  /** [T] window starts */
  private readonly starts: Int32Array
  /** [T·A] the two-pass x side of each window (row k·A + a) */
  private readonly shared: SharedX[]
  /** [A] x − x_{C−1} */
  private readonly xs: Float64Array[]
  /** [T·A] mean of x − x_{C−1} over each window */
  private readonly xbarS: Float64Array
  /** [T·A] 1 / ((n − 2)·Sxx) of each window: t = b_p / √(SSR_p · tScale) */
  private readonly tScale: Float64Array
  /** [C] the first threshold whose window starts at checkpoint c, −1 when none */
  private readonly firstAt: Int32Array
  /** [T] the next threshold with the same start as threshold k, −1 when none */
  private readonly nextAt: Int32Array
  private readonly minStart: number
  // Per token (load):
  private p: Float64Array
  private K = 0
  private readonly sD: Float64Array
  private readonly sDD: Float64Array
  private readonly sXD: Float64Array
  private readonly dMin: Float64Array
  private readonly dMax: Float64Array
  private readonly finite: Uint8Array
  private readonly acc: Float64Array
  private readonly y: Float64Array

  /**
   * @param starts [thresholds] window start index i0 of each threshold
   * @param axes [x-axes] arrays of [C] regressor values
   */
  constructor(C: number, starts: ReadonlyArray<number>, axes: ReadonlyArray<Float64Array>) {
    this.C = C
    this.T = starts.length
    this.A = axes.length
    this.starts = Int32Array.from(starts)
    this.shared = []
    for (const i0 of starts) for (const x of axes) this.shared.push(prepareX(x, i0, C - i0))
    this.xs = axes.map((x) => Float64Array.from(x, (v) => v - x[C - 1]))
    this.xbarS = new Float64Array(this.T * this.A)
    this.tScale = new Float64Array(this.T * this.A)
    for (let k = 0; k < this.T; k++) {
      for (let a = 0; a < this.A; a++) {
        let s = 0
        for (let c = this.starts[k]; c < C; c++) s += this.xs[a][c]
        this.xbarS[k * this.A + a] = s / (C - this.starts[k])
        const sx = this.shared[k * this.A + a]
        this.tScale[k * this.A + a] = 1 / ((sx.len - 2) * sx.sxx)
      }
    }
    this.firstAt = new Int32Array(C).fill(-1)
    this.nextAt = new Int32Array(this.T).fill(-1)
    for (let k = this.T - 1; k >= 0; k--) {
      const c = this.starts[k]
      if (c < 0 || c >= C) continue
      this.nextAt[k] = this.firstAt[c]
      this.firstAt[c] = k
    }
    this.minStart = this.T > 0 ? Math.min(...starts) : C
    this.p = new Float64Array(C)
    this.sD = new Float64Array(this.T)
    this.sDD = new Float64Array(this.T)
    this.sXD = new Float64Array(this.T * this.A)
    this.dMin = new Float64Array(this.T)
    this.dMax = new Float64Array(this.T)
    this.finite = new Uint8Array(this.T)
    this.acc = new Float64Array(this.A)
    this.y = new Float64Array(C)
  }

  /** Take one token's perplexities p[0…C−1] (kept by reference until the next load). */
  load(p: Float64Array): void {
    this.p = p
    const { C, A, firstAt, nextAt, sD, sDD, sXD, dMin, dMax, finite } = this
    const K = p[C - 1]
    this.K = K
    let sd = 0
    let sdd = 0
    let mn = Infinity
    let mx = -Infinity
    let fin = K - K === 0
    // Axis 0 in a local (one x-axis is the common case: no loop over axes, no array of sums);
    // the loops over further axes do nothing then.
    const { xs, acc } = this
    acc.fill(0)
    const x0 = A > 0 ? xs[0] : p
    let sxd0 = 0
    for (let c = C - 1; c >= this.minStart; c--) {
      const d = p[c] - K
      if (d - d !== 0) fin = false
      sd += d
      sdd += d * d
      if (d < mn) mn = d
      if (d > mx) mx = d
      sxd0 += x0[c] * d
      for (let a = 1; a < A; a++) acc[a] += xs[a][c] * d
      for (let k = firstAt[c]; k >= 0; k = nextAt[k]) {
        sD[k] = sd
        sDD[k] = sdd
        dMin[k] = mn
        dMax[k] = mx
        finite[k] = fin ? 1 : 0
        if (A > 0) sXD[k * A] = sxd0
        for (let a = 1; a < A; a++) sXD[k * A + a] = acc[a]
      }
    }
  }

  /**
   * The fit of window k on x-axis a, for the loaded token: fitLine's answer over
   * x_a[i0…C−1] and p[i0…C−1] / p[i0] (see the class comment for how close).
   */
  fit(k: number, a: number, out: LineFit): LineFit {
    const A = this.A
    const sx = this.shared[k * A + a]
    const i0 = this.starts[k]
    const p = this.p
    const base = p[i0]
    const n = sx.len
    if (this.finite[k] === 0 || !sx.allFinite || n < 3 || !(base > 0)) return this.twoPass(sx, i0, out)
    out.n = n
    // every p of the window equal: y ≡ 1
    if (this.dMin[k] === this.dMax[k]) return flatFit(out, 1)
    const sd = this.sD[k]
    const mean = sd / n
    if (sx.constant) return flatFit(out, (mean + this.K) / base)
    const sst = this.sDD[k] - sd * mean
    const sxy = this.sXD[k * A + a] - this.xbarS[k * A + a] * sd
    const b = sxy / sx.sxx
    const ssr = sst - b * sxy
    if (!(sst > 0) || !(ssr >= RESIDUAL_RECOMPUTE * sst)) return this.twoPass(sx, i0, out)
    // A window whose p spread is tiny against its level: the rounding of y = p/p_i0 itself (what
    // statsmodels regresses) is then a visible part of the spread, so fit those rounded values.
    if (this.dMax[k] - this.dMin[k] < SPREAD_EXACT * (this.K + this.dMax[k])) return this.twoPass(sx, i0, out)
    const slope = b / base
    out.ok = true
    out.slope = slope
    out.intercept = (mean + this.K) / base - slope * sx.xbar
    out.r2 = 1 - ssr / sst
    out.t = b / Math.sqrt(ssr * this.tScale[k * A + a])
    return out
  }

  /** The two-pass fit of y = p/p_i0 over the window: what fitLine gives, to the bit. */
  private twoPass(sx: SharedX, i0: number, out: LineFit): LineFit {
    const { p, y, C } = this
    for (let c = i0; c < C; c++) y[c] = p[c] / p[i0]
    return fitShared(sx, y, i0, out)
  }

  /**
   * Σ(p_c − p̄)² over window k of the loaded token when every p in it is finite (the stagnation
   * rule's variance), else NaN.
   */
  sumSquares(k: number): number {
    if (this.finite[k] === 0) return Number.NaN
    const n = this.C - this.starts[k]
    const sst = this.sDD[k] - (this.sD[k] * this.sD[k]) / n
    return sst > 0 ? sst : 0
  }
}
