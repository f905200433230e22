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
import { CLASSES, type ClassRules, StepWindows, Trajectory, classOf, doubleDescentPeak } from "./classes.ts"
import { exp } from "./exp.ts"
import { SuffixFits, emptyFit } from "./ols.ts"
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

const sameNumbers = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false
  return true
}

let lastFits: { starts: ReadonlyArray<number>; axes: ReadonlyArray<Float64Array>; fits: SuffixFits } | undefined

/**
 * The SuffixFits of (C, starts, axes), reused from the previous call when they are the same (the
 * kernels are called on many slices of a block, and on block after block of one model).
 */
const suffixFitsFor = (C: number, starts: ReadonlyArray<number>, axes: ReadonlyArray<Float64Array>): SuffixFits => {
  const last = lastFits
  if (
    last !== undefined &&
    last.fits.C === C &&
    sameNumbers(last.starts, starts) &&
    last.axes.length === axes.length &&
    last.axes.every((x, a) => sameNumbers(x, axes[a]))
  ) {
    return last.fits
  }
  // built on copies: the cache must not see later changes to the caller's arrays
  const copies = axes.map((x) => Float64Array.from(x))
  const fits = new SuffixFits(C, starts, copies)
  lastFits = { starts: [...starts], axes: copies, fits }
  return fits
}

let lastWindows: StepWindows | undefined

/** The StepWindows of lnStep, reused from the previous call when it is the same. */
const stepWindowsFor = (lnStep: Float64Array): StepWindows => {
  if (lastWindows === undefined || !sameNumbers(lastWindows.lnStep, lnStep)) lastWindows = new StepWindows(Float64Array.from(lnStep))
  return lastWindows
}

/**
 * Tokens per kernel call. The stages call the kernels (and their other per-row loops) on slices
 * of this many tokens, so that V8 optimizes them as functions called many times instead of
 * replacing a long-running loop on every call (on-stack replacement, recompiled per block).
 */
const SLICE = 4096

/** each(a, b) for the slices a…b−1 of from…to−1, SLICE rows at most, in order. */
export const forSlices = (from: number, to: number, each: (a: number, b: number) => void): void => {
  for (let a = from; a < to; a += SLICE) each(a, Math.min(to, a + SLICE))
}

/** Columns for `rows` regressions, zeroed. */
export const regressColumns = (rows: number): RegressColumns => ({
  slope: new Float64Array(rows),
  intercept: new Float64Array(rows),
  r2: new Float64Array(rows),
  pValue: new Float64Array(rows),
  n: new Int32Array(rows),
  valid: new Uint8Array(rows),
})

/** The first `rows` rows of columns with at least that many (views, no copy). */
export const regressColumnsView = (cols: RegressColumns, rows: number): RegressColumns => ({
  slope: cols.slope.subarray(0, rows),
  intercept: cols.intercept.subarray(0, rows),
  r2: cols.r2.subarray(0, rows),
  pValue: cols.pValue.subarray(0, rows),
  n: cols.n.subarray(0, rows),
  valid: cols.valid.subarray(0, rows),
})

/**
 * OLS of y_c = p_c / p_i0 on each x-axis over c = i0…C−1, for every token, threshold and axis.
 * p-values come from the fast t table (tdist.ts), equal to @stdlib's to ~1e-13 relative.
 * @param into optional columns of at least T·A·B rows to reuse (every row of tokens from…to−1
 *        is written; the values of rows without a fit are 0); required when from…to is not the
 *        whole block
 * @param from, to the tokens to compute (default: all; the stage calls it on slices, see SLICE)
 */
export const regressBlock = (block: TrajectoryBlock, spec: RegressSpec, into?: RegressColumns, from = 0, to = block.tokens): RegressColumns => {
  const B = block.tokens
  const C = block.lp.length
  const T = spec.starts.length
  const A = spec.axes.length
  const rows = T * A * B
  if ((from !== 0 || to !== B) && (into === undefined || into.n.length < rows)) throw new Error("regressBlock: a slice needs columns for the whole block")
  const out = into === undefined || into.n.length < rows ? regressColumns(rows) : regressColumnsView(into, rows)
  const p = new Float64Array(C)
  const fit = emptyFit()
  const fits = suffixFitsFor(C, spec.starts, spec.axes)
  const lp = block.lp
  const { n, valid, slope, intercept, r2, pValue } = out
  for (let i = from; i < to; i++) {
    for (let c = 0; c < C; c++) p[c] = exp(-lp[c][i])
    fits.load(p)
    for (let k = 0; k < T; k++) {
      for (let a = 0; a < A; a++) {
        fits.fit(k, a, fit)
        const r = (k * A + a) * B + i
        n[r] = fit.n
        if (!fit.ok) {
          valid[r] = 0
          slope[r] = 0
          intercept[r] = 0
          r2[r] = 0
          pValue[r] = 0
          continue
        }
        valid[r] = 1
        slope[r] = fit.slope
        intercept[r] = fit.intercept
        r2[r] = fit.r2
        pValue[r] = fastTwoSidedP(fit.t, fit.n - 2)
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

const K = CLASSES.length

/**
 * Where classifyBlock accumulates group sums: [threshold][class][checkpoint] Σ p over the tokens
 * of each class of the reference model (non-finite p left out and counted in `missing`), zeroed
 * by the caller.
 */
export interface GroupTarget {
  /** [thresholds × tokens] the reference model's classes; undefined: this model is the reference. */
  readonly refCls?: Uint8Array
  readonly sum: Float64Array
  readonly missing: Float64Array
}

/**
 * Group sums by class tuple: a token's perplexities go into one bucket per distinct tuple of its
 * reference classes over the thresholds (C additions a token instead of T·C), and `flush` adds
 * each bucket into the T (threshold, class) sums it stands for. A block has a few hundred
 * distinct tuples at most in practice (classes change little from one threshold to the next).
 * Only for tokens whose every p is finite; the caller adds the others value by value.
 */
class ClassTupleSums {
  private readonly slotOf = new Map<number, number>()
  private codes: number[] = []
  private sums: Float64Array
  constructor(
    private readonly T: number,
    private readonly B: number,
    private readonly C: number,
  ) {
    this.sums = new Float64Array(64 * C)
  }

  /** Add token i's p[0…C−1] to the bucket of its classes cls[k·B + i], k = 0…T−1. */
  add(cls: Uint8Array, i: number, p: Float64Array): void {
    const { T, B, C } = this
    let code = 0
    for (let k = T - 1; k >= 0; k--) code = code * K + cls[k * B + i]
    let slot = this.slotOf.get(code)
    if (slot === undefined) {
      slot = this.codes.length
      this.slotOf.set(code, slot)
      this.codes.push(code)
      if ((slot + 1) * C > this.sums.length) {
        const grown = new Float64Array(this.sums.length * 2)
        grown.set(this.sums)
        this.sums = grown
      }
    }
    const sums = this.sums
    const o = slot * C
    for (let c = 0; c < C; c++) sums[o + c] += p[c]
  }

  /** Add every bucket to sum[(k·K + class)·C + c], buckets in order of first appearance. */
  flush(sum: Float64Array): void {
    const { T, C, sums } = this
    for (let s = 0; s < this.codes.length; s++) {
      let code = this.codes[s]
      for (let k = 0; k < T; k++) {
        const q = code % K
        code = (code - q) / K
        const o = (k * K + q) * C
        for (let c = 0; c < C; c++) sum[o + c] += sums[s * C + c]
      }
    }
  }
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
 * The class regression is the log_step regression of regressBlock (same SuffixFits, same inputs,
 * so the same slope and t to the bit).
 * @param groups optional: accumulate the block's group sums here while each token's perplexities
 *          are at hand (summed by class tuple, see ClassTupleSums; the order of additions depends
 *          only on the block and the slices, so the sums are the same on any thread)
 * @param into optional columns of T·B rows to write; required when from…to is not the whole block
 * @param from, to the tokens to compute (default: all; see regressBlock)
 */
export const classifyBlock = (
  block: TrajectoryBlock,
  spec: ClassifySpec,
  groups?: GroupTarget,
  into?: ClassColumns,
  from = 0,
  to = block.tokens,
): ClassColumns => {
  const B = block.tokens
  const C = block.lp.length
  const T = spec.starts.length
  if ((from !== 0 || to !== B) && (into === undefined || into.cls.length !== T * B)) throw new Error("classifyBlock: a slice needs columns for the whole block")
  const out: ClassColumns = into ?? { cls: new Uint8Array(T * B), peak: new Int16Array(T * B) }
  const traj = new Trajectory(C)
  const fit = emptyFit()
  const ddFit = emptyFit()
  const fits = suffixFitsFor(C, spec.starts, [spec.lnStep])
  const windows = stepWindowsFor(spec.lnStep)
  // tuple codes are base-4 numbers of T digits: exact up to 26 thresholds
  const buckets = T <= 26 ? new ClassTupleSums(T, B, C) : undefined
  for (let i = from; i < to; i++) {
    traj.fill(block.lp, i)
    const pt = traj.p
    fits.load(pt)
    for (let k = 0; k < T; k++) {
      const i0 = spec.starts[k]
      fits.fit(k, 0, fit)
      const r = k * B + i
      out.cls[r] = classOf(fit, traj, i0, spec.rules, fits.sumSquares(k))
      out.peak[r] = doubleDescentPeak(traj, windows, i0, spec.rules, ddFit)
    }
    if (groups !== undefined) {
      const refCls = groups.refCls ?? out.cls
      if (traj.lastBad < 0 && buckets !== undefined) buckets.add(refCls, i, pt)
      else {
        // a non-finite p: added value by value, counted in `missing`
        const { sum, missing } = groups
        for (let k = 0; k < T; k++) {
          const o = (k * K + refCls[k * B + i]) * C
          for (let c = 0; c < C; c++) {
            const v = pt[c]
            if (v - v === 0) sum[o + c] += v
            else missing[o + c]++
          }
        }
      }
    }
  }
  if (groups !== undefined) buckets?.flush(groups.sum)
  return out
}
