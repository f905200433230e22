/**
 * The per-token part tables the analysis kernels produce (regressions/ and classes/ parts, built
 * and encoded in worker threads: parts.ts). Defined here because the kernels build them; the
 * regress and classify contracts export them as their tables.
 */
import { col, defineTable, type TableRow } from "../tables.ts"

/**
 * `regressions/model=M/dataset=D/part-NNNNN.parquet`: part g holds the tokens of the score files'
 * row group g, rows ordered by threshold, x_axis, token_index.
 *   slope, intercept, r2, p_value  OLS of p_c/p_i0 on the x-axis over the window (null when n < 3)
 *   n                              points used (finite x and y)
 */
export const Regressions = defineTable("regressions", {
  threshold: col.float64(),
  x_axis: col.dictUtf8(),
  token_index: col.int32(),
  slope: col.float64({ nullable: true }),
  intercept: col.float64({ nullable: true }),
  r2: col.float64({ nullable: true }),
  p_value: col.float64({ nullable: true }),
  n: col.int32(),
})
export type RegressionRow = TableRow<typeof Regressions>

/**
 * `classes/model=M/dataset=D/part-NNNNN.parquet`: rows ordered by threshold, token_index.
 *   class           stagnated | upward | downward | other
 *   double_descent  per-token double descent (DESIGN.md)
 *   peak_step       step of the peak when double_descent, else null
 */
export const Classes = defineTable("classes", {
  threshold: col.float64(),
  token_index: col.int32(),
  class: col.dictUtf8(),
  double_descent: col.bool(),
  peak_step: col.int32({ nullable: true }),
})
export type ClassRow = TableRow<typeof Classes>
