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
