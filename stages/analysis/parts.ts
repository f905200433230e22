/**
 * A block's rows as the Arrow tables of the per-token tables (pure): regressions/ and classes/
 * parts. Rows are threshold-major, so part g holds every threshold of the tokens of block g.
 */
import type { XAxis } from "../../schemas/config.ts"
import { classesSchema, regressionsSchema } from "../../schemas/analysis-tables.ts"
import type { ClassColumns, RegressColumns } from "./blocks.ts"
import { CLASSES } from "./classes.ts"
import { bool, dict, f64, i32, tableOf, validity } from "./columns.ts"

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
  const rows = thresholds.length * axes.length * tokens
  const threshold = new Float64Array(rows)
  const axis = new Int8Array(rows)
  const tokenIndex = new Int32Array(rows)
  for (let k = 0; k < thresholds.length; k++) {
    for (let a = 0; a < axes.length; a++) {
      const o = (k * axes.length + a) * tokens
      threshold.fill(thresholds[k], o, o + tokens)
      axis.fill(a, o, o + tokens)
      for (let i = 0; i < tokens; i++) tokenIndex[o + i] = firstToken + i
    }
  }
  const valid = validity(cols.valid)
  return tableOf(regressionsSchema(), {
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
  const threshold = new Float64Array(rows)
  const tokenIndex = new Int32Array(rows)
  const dd = new Uint8Array(rows)
  const peakStep = new Int32Array(rows)
  for (let k = 0; k < thresholds.length; k++) {
    threshold.fill(thresholds[k], k * tokens, (k + 1) * tokens)
    for (let i = 0; i < tokens; i++) tokenIndex[k * tokens + i] = firstToken + i
  }
  for (let r = 0; r < rows; r++) {
    const peak = cols.peak[r]
    if (peak >= 0) {
      dd[r] = 1
      peakStep[r] = steps[peak]
    }
  }
  return tableOf(classesSchema(), {
    threshold: f64(threshold),
    token_index: i32(tokenIndex),
    class: dict(new Int8Array(cols.cls.buffer, cols.cls.byteOffset, cols.cls.length), CLASSES),
    double_descent: bool(dd),
    peak_step: i32(peakStep, dd),
  })
}

