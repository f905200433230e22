/**
 * The per-block kernels of regress and classify (pure, typed arrays in and out, no I/O).
 *
 * A block is the same B tokens in every checkpoint of one model: `lp[c][i]` is the log-prob of
 * token i at checkpoint c (one Float32Array per checkpoint, exactly as read from the aligned row
 * groups of the score files). Per token the kernels compute p_c = exp(−lp_c) once and reuse it for
 * every threshold and x-axis.
 *
 * Output layouts (row-major, thresholds outermost):
 *   regressBlock  row r = (τ·A + a)·B + i   for threshold τ, x-axis a, token i
 *   classifyBlock row r = τ·B + i
 */
import { type ClassRules, StepWindows, Trajectory, classOf, doubleDescentPeak } from "./classes.ts"
import { emptyFit, fitShared, prepareX, type SharedX } from "./ols.ts"
import { fastTwoSidedP } from "./tdist.ts"

/** B tokens × C checkpoints of one model. */
export interface TrajectoryBlock {
  /** [checkpoints] arrays of [tokens] log-probs, nats. */
  readonly lp: ReadonlyArray<Float32Array>
  readonly tokens: number
}

/** Per-threshold window starts and per-axis regressors of one model. */
export interface RegressSpec {
  /** [thresholds] window start index i0 (window.ts startIndex). */
  readonly starts: ReadonlyArray<number>
  /** [x-axes] arrays of [checkpoints] regressor values. */
  readonly axes: ReadonlyArray<Float64Array>
}

/** Columns of a block's regressions, [thresholds × axes × tokens] each (layout above). */
export interface RegressColumns {
  readonly slope: Float64Array
  readonly intercept: Float64Array
  readonly r2: Float64Array
  readonly pValue: Float64Array
  /** Points used (finite x and y). */
  readonly n: Int32Array
  /** 1 where the fit exists (n ≥ 3); elsewhere the four values are 0 and must be stored as null. */
  readonly valid: Uint8Array
}

/**
 * OLS of y_c = p_c / p_i0 on each x-axis over c = i0…C−1, for every token, threshold and axis.
 * p-values come from the fast t table (tdist.ts), equal to @stdlib's to ~1e-13 relative.
 */
export const regressBlock = (block: TrajectoryBlock, spec: RegressSpec): RegressColumns => {
  const B = block.tokens
  const C = block.lp.length
  const T = spec.starts.length
  const A = spec.axes.length
  const rows = T * A * B
  const out: RegressColumns = {
    slope: new Float64Array(rows),
    intercept: new Float64Array(rows),
    r2: new Float64Array(rows),
    pValue: new Float64Array(rows),
    n: new Int32Array(rows),
    valid: new Uint8Array(rows),
  }
  const p = new Float64Array(C)
  const y = new Float64Array(C)
  const fit = emptyFit()
  const shared: SharedX[] = []
  for (const i0 of spec.starts) for (const x of spec.axes) shared.push(prepareX(x, i0, C - i0))
  for (let i = 0; i < B; i++) {
    for (let c = 0; c < C; c++) p[c] = Math.exp(-block.lp[c][i])
    for (let k = 0; k < T; k++) {
      const i0 = spec.starts[k]
      const base = p[i0]
      for (let c = i0; c < C; c++) y[c] = p[c] / base
      for (let a = 0; a < A; a++) {
        fitShared(shared[k * A + a], y, i0, fit)
        const r = (k * A + a) * B + i
        out.n[r] = fit.n
        if (!fit.ok) continue
        out.valid[r] = 1
        out.slope[r] = fit.slope
        out.intercept[r] = fit.intercept
        out.r2[r] = fit.r2
        out.pValue[r] = fastTwoSidedP(fit.t, fit.n - 2)
      }
    }
  }
  return out
}

/** What classifyBlock needs about one model. */
export interface ClassifySpec {
  /** [thresholds] window start index i0. */
  readonly starts: ReadonlyArray<number>
  /** [checkpoints] ln step: the regressor of the class and double-descent fits. */
  readonly lnStep: Float64Array
  readonly rules: ClassRules
}

/** A block's classes, [thresholds × tokens] each (row τ·B + i). */
export interface ClassColumns {
  /** CLASS_CODE values. */
  readonly cls: Uint8Array
  /** Checkpoint index of the double-descent peak, −1 when not flagged. */
  readonly peak: Int16Array
}

/**
 * Class and double-descent peak of every token at every threshold (classes.ts has the rules).
 * The class regression is the log_step regression of regressBlock (same function, same inputs,
 * so the same slope and t to the bit).
 * @param p optional [checkpoints × tokens] output: the per-token perplexities the kernel computed,
 *          c-major (p[c·B + i]), for the group trajectories
 */
export const classifyBlock = (block: TrajectoryBlock, spec: ClassifySpec, p?: Float64Array): ClassColumns => {
  const B = block.tokens
  const C = block.lp.length
  const T = spec.starts.length
  const out: ClassColumns = { cls: new Uint8Array(T * B), peak: new Int16Array(T * B) }
  const traj = new Trajectory(C)
  const y = new Float64Array(C)
  const fit = emptyFit()
  const ddFit = emptyFit()
  const shared = spec.starts.map((i0) => prepareX(spec.lnStep, i0, C - i0))
  const windows = new StepWindows(spec.lnStep)
  for (let i = 0; i < B; i++) {
    traj.fill(block.lp, i)
    const pt = traj.p
    if (p !== undefined) for (let c = 0; c < C; c++) p[c * B + i] = pt[c]
    for (let k = 0; k < T; k++) {
      const i0 = spec.starts[k]
      const base = pt[i0]
      for (let c = i0; c < C; c++) y[c] = pt[c] / base
      fitShared(shared[k], y, i0, fit)
      const r = k * B + i
      out.cls[r] = classOf(fit, traj, i0, spec.rules)
      out.peak[r] = doubleDescentPeak(traj, windows, i0, spec.rules, ddFit)
    }
  }
  return out
}
