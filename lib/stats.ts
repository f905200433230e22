/**
 * Percentile intervals of bootstrap replicates (pure), shared by every stage that resamples:
 * correlate (examples within tasks) and classify (documents within datasets).
 *
 *   quantileSorted([1, 2, 3, 4], 0.975)   h = 3 · 0.975 = 2.925 → 3 + 0.925 · (4 − 3) = 3.925
 */

/** A 95% interval; null bounds where the statistic does not exist in most replicates. */
export interface Interval {
  readonly lo: number | null
  readonly hi: number | null
}

/** The q-quantile of sorted values, linear between order statistics (numpy's default). */
export const quantileSorted = (sorted: ArrayLike<number>, q: number): number => {
  const h = (sorted.length - 1) * q
  const lo = Math.floor(h)
  const hi = Math.min(sorted.length - 1, lo + 1)
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo])
}

/** The 95% percentile interval of the values that exist; null when fewer than half of `of` do. */
export const percentileInterval = (values: ReadonlyArray<number | null>, of: number): Interval => {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v)).sort((a, b) => a - b)
  if (xs.length === 0 || xs.length < of / 2) return { lo: null, hi: null }
  return { lo: quantileSorted(xs, 0.025), hi: quantileSorted(xs, 0.975) }
}
