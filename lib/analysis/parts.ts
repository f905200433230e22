/**
 * A block's rows as the Arrow tables of the per-token tables (pure): regressions/ and classes/
 * parts. Rows are threshold-major, so part g holds every threshold of the tokens of block g.
 */
import type { XAxis } from "../../schemas/config.ts"
import { type ClassColumns, type RegressColumns, forSlices } from "./blocks.ts"
import { CLASSES } from "./classes.ts"
import { bool, dict, f64, i32, validity } from "../columns.ts"
import { Classes, Regressions } from "./part-tables.ts"

/**
 * Columns that are the same in every block of one shape (threshold, x_axis), built once per
 * thread and shared, read-only, by the tables of all such blocks (never modified, never
 * transferred: the tables are encoded where they are built).
 */
const constantColumns = new Map<string, { threshold: Float64Array; axis: Int8Array }>()

const constantsOf = (thresholds: ReadonlyArray<number>, axes: number, tokens: number) => {
  const key = `${thresholds.join(",")}/${axes}/${tokens}`
  let c = constantColumns.get(key)
  if (c === undefined) {
    const rows = thresholds.length * axes * tokens
    c = { threshold: new Float64Array(rows), axis: new Int8Array(rows) }
    for (let k = 0; k < thresholds.length; k++) {
      for (let a = 0; a < axes; a++) {
        const o = (k * axes + a) * tokens
        c.threshold.fill(thresholds[k], o, o + tokens)
        c.axis.fill(a, o, o + tokens)
      }
    }
    if (constantColumns.size > 16) constantColumns.clear()
    constantColumns.set(key, c)
  }
  return c
}

/** token_index column: firstToken, firstToken + 1, … for each of `runs` runs of `tokens` rows. */
const tokenIndexColumn = (runs: number, tokens: number, firstToken: number): Int32Array => {
  const out = new Int32Array(runs * tokens)
  for (let i = 0; i < tokens; i++) out[i] = firstToken + i
  for (let r = 1; r < runs; r++) out.copyWithin(r * tokens, 0, tokens)
  return out
}

/**
 * One block's regressions as a table in the regressions schema (rows threshold-major, then
 * x-axis, then token).
 * @param firstToken token_index of the block's first token
 */
export const regressionsTable = (
  cols: RegressColumns,
  thresholds: ReadonlyArray<number>,
  axes: ReadonlyArray<XAxis>,
  tokens: number,
  firstToken: number,
) => {
  const { threshold, axis } = constantsOf(thresholds, axes.length, tokens)
  const tokenIndex = tokenIndexColumn(thresholds.length * axes.length, tokens, firstToken)
  const valid = validity(cols.valid)
  return Regressions.fromColumns({
    threshold: f64(threshold),
    x_axis: dict(axis, axes),
    token_index: i32(tokenIndex),
    slope: f64(cols.slope, valid),
    intercept: f64(cols.intercept, valid),
    r2: f64(cols.r2, valid),
    p_value: f64(cols.pValue, valid),
    n: i32(cols.n),
  })
}

/** dd[r] = 1 and peakStep[r] = step of the peak where a double-descent peak is flagged, r = from…to−1. */
const peaks = (peak: Int16Array, steps: Int32Array, dd: Uint8Array, peakStep: Int32Array, from: number, to: number): void => {
  for (let r = from; r < to; r++) {
    const k = peak[r]
    if (k >= 0) {
      dd[r] = 1
      peakStep[r] = steps[k]
    }
  }
}

/**
 * One model's block of classes as a table in the classes schema (rows threshold-major).
 * @param steps [checkpoints] of the model, for peak_step
 * @param firstToken token_index of the block's first token
 */
export const classesTable = (
  cols: ClassColumns,
  thresholds: ReadonlyArray<number>,
  steps: ReadonlyArray<number>,
  tokens: number,
  firstToken: number,
) => {
  const rows = thresholds.length * tokens
  const { threshold } = constantsOf(thresholds, 1, tokens)
  const tokenIndex = tokenIndexColumn(thresholds.length, tokens, firstToken)
  const dd = new Uint8Array(rows)
  const peakStep = new Int32Array(rows)
  const stepOf = Int32Array.from(steps)
  // in slices, like the kernels (blocks.ts SLICE)
  forSlices(0, rows, (a, b) => peaks(cols.peak, stepOf, dd, peakStep, a, b))
  return Classes.fromColumns({
    threshold: f64(threshold),
    token_index: i32(tokenIndex),
    class: dict(new Int8Array(cols.cls.buffer, cols.cls.byteOffset, cols.cls.length), CLASSES),
    double_descent: bool(dd),
    peak_step: i32(peakStep, dd),
  })
}

