/**
 * Correlation statistics over (x, y, model) points (pure, no I/O).
 *
 *   pearson     r = Sxy / √(Sxx·Syy)                                   (two-pass sums about the means)
 *   spearman    ρ = Pearson r of the ranks; tied values share their average rank (scipy's spearmanr)
 *   r2_pooled   R² of y ~ a + b·x over all points: 1 − SSR / SST
 *   size_effect ΔR² = R²(y ~ b·x + one intercept per model) − r2_pooled
 * The model-intercept fit is the within-model regression (Frisch–Waugh–Lovell): with x̄_g, ȳ_g the
 * means of model g, b_w = Σ(x − x̄_g)(y − ȳ_g) / Σ(x − x̄_g)² and SSR_w = Σ(y − ȳ_g − b_w(x − x̄_g))²,
 * the same R² statsmodels gives for `ols("y ~ x + C(model)")`.
 * A predictor that puts every size on one curve leaves nothing for the intercepts: ΔR² ≈ 0.
 *
 * Missing values are null, never NaN: fewer than 3 points, or x or y constant (min = max; a
 * tolerance-free test, so rounding in the mean cannot fake a variance). With x constant R² is 0.
 * ΔR² is ≥ 0 in exact arithmetic; a rounding residue below 0 is stored as 0.
 *
 *   wilson      95% Wilson score interval of a proportion k/n (Wilson 1927; statsmodels'
 *               proportion_confint(method="wilson")): with p = k/n and z = Φ⁻¹(0.975),
 *               (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n); [0, 1] when n = 0
 */

/** Average ranks, 1-based: [1, 5, 5, 2] → [1, 3.5, 3.5, 2]. */
export const averageRanks = (x: ArrayLike<number>): Float64Array => {
  const n = x.length
  const order = new Uint32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  order.sort((a, b) => x[a] - x[b])
  const ranks = new Float64Array(n)
  for (let i = 0; i < n; ) {
    let j = i + 1
    while (j < n && x[order[j]] === x[order[i]]) j++
    const r = (i + 1 + j) / 2 // mean of ranks i+1 … j
    for (let k = i; k < j; k++) ranks[order[k]] = r
    i = j
  }
  return ranks
}

const constant = (x: ArrayLike<number>): boolean => {
  let min = Infinity
  let max = -Infinity
  for (let i = 0; i < x.length; i++) {
    if (x[i] < min) min = x[i]
    if (x[i] > max) max = x[i]
  }
  return min === max
}

const mean = (x: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i]
  return s / x.length
}

/** Pearson r of x and y (same length); null with < 2 points or a constant input. */
export const pearson = (x: ArrayLike<number>, y: ArrayLike<number>): number | null => {
  if (x.length < 2 || constant(x) || constant(y)) return null
  const mx = mean(x)
  const my = mean(y)
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < x.length; i++) {
    const dx = x[i] - mx
    const dy = y[i] - my
    sxy += dx * dy
    sxx += dx * dx
    syy += dy * dy
  }
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)))
}

/** Spearman ρ (average ranks for ties); null with < 2 points or a constant input. */
export const spearman = (x: ArrayLike<number>, y: ArrayLike<number>): number | null =>
  x.length < 2 || constant(x) || constant(y) ? null : pearson(averageRanks(x), averageRanks(y))

/** R² of y ~ a + b·x; null when y is constant or there are < 3 points; 0 when x is constant. */
export const pooledR2 = (x: ArrayLike<number>, y: ArrayLike<number>): number | null => {
  if (x.length < 3 || constant(y)) return null
  if (constant(x)) return 0
  const mx = mean(x)
  const my = mean(y)
  let sxy = 0
  let sxx = 0
  let sst = 0
  for (let i = 0; i < x.length; i++) {
    sxy += (x[i] - mx) * (y[i] - my)
    sxx += (x[i] - mx) ** 2
    sst += (y[i] - my) ** 2
  }
  const b = sxy / sxx
  let ssr = 0
  for (let i = 0; i < x.length; i++) ssr += (y[i] - my - b * (x[i] - mx)) ** 2
  return 1 - ssr / sst
}

/**
 * R² of y ~ b·x + one intercept per group (group: small integer codes 0…G−1); null when y is
 * constant or there are < 3 points.
 */
export const groupR2 = (x: ArrayLike<number>, y: ArrayLike<number>, group: ArrayLike<number>): number | null => {
  const n = x.length
  if (n < 3 || constant(y)) return null
  const G = Math.max(...Array.from(group)) + 1
  const sx = new Float64Array(G)
  const sy = new Float64Array(G)
  const cnt = new Float64Array(G)
  const xmin = new Float64Array(G).fill(Infinity)
  const xmax = new Float64Array(G).fill(-Infinity)
  for (let i = 0; i < n; i++) {
    const g = group[i]
    sx[g] += x[i]
    sy[g] += y[i]
    cnt[g]++
    xmin[g] = Math.min(xmin[g], x[i])
    xmax[g] = Math.max(xmax[g], x[i])
  }
  for (let g = 0; g < G; g++) {
    sx[g] /= cnt[g]
    sy[g] /= cnt[g]
  }
  // x constant within every group: the intercepts explain all x can, and b_w is undefined (0).
  let varies = false
  for (let g = 0; g < G; g++) if (cnt[g] > 0 && xmin[g] !== xmax[g]) varies = true
  let sxy = 0
  let sxx = 0
  for (let i = 0; i < n; i++) {
    const g = group[i]
    if (xmin[g] === xmax[g]) continue
    sxy += (x[i] - sx[g]) * (y[i] - sy[g])
    sxx += (x[i] - sx[g]) ** 2
  }
  const b = varies ? sxy / sxx : 0
  const my = mean(y)
  let ssr = 0
  let sst = 0
  for (let i = 0; i < n; i++) {
    const g = group[i]
    const dx = xmin[g] === xmax[g] ? 0 : x[i] - sx[g]
    ssr += (y[i] - sy[g] - b * dx) ** 2
    sst += (y[i] - my) ** 2
  }
  return 1 - ssr / sst
}

export interface CorrelationStats {
  readonly spearman: number | null
  readonly pearson: number | null
  readonly r2_pooled: number | null
  readonly size_effect: number | null
  /** Points used: those with finite x and y. */
  readonly n_points: number
}

/**
 * Every statistic of accuracy y against predictor x over the points whose x and y are both finite
 * (e.g. step 0 has ln step = −∞ and is left out of the log-step, log-token and log-FLOPs rows).
 * @param x     [points] predictor, e.g. ln validation perplexity
 * @param y     [points] accuracy
 * @param group [points] model of each point, as integer codes 0…G−1
 */
export const correlationStats = (x: ArrayLike<number>, y: ArrayLike<number>, group: ArrayLike<number>): CorrelationStats => {
  const keep: number[] = []
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i]) && Number.isFinite(y[i])) keep.push(i)
  const xs = Float64Array.from(keep, (i) => x[i])
  const ys = Float64Array.from(keep, (i) => y[i])
  // Re-code groups densely so an absent model does not count.
  const codes = new Map<number, number>()
  const gs = Int32Array.from(keep, (i) => {
    const c = codes.get(group[i]) ?? codes.size
    codes.set(group[i], c)
    return c
  })
  const n = keep.length
  if (n < 3) return { spearman: null, pearson: null, r2_pooled: null, size_effect: null, n_points: n }
  const r2 = pooledR2(xs, ys)
  const r2g = groupR2(xs, ys, gs)
  return {
    spearman: spearman(xs, ys),
    pearson: pearson(xs, ys),
    r2_pooled: r2,
    size_effect: r2 === null || r2g === null ? null : Math.max(0, r2g - r2),
    n_points: n,
  }
}

/** Φ⁻¹(0.975): the two-sided 95% normal quantile. */
export const Z95 = 1.959963984540054

/** The 95% Wilson score interval of k successes in n trials (see the module comment). */
export const wilson = (k: number, n: number, z = Z95): readonly [lo: number, hi: number] => {
  if (n === 0) return [0, 1]
  const p = k / n
  const z2 = z * z
  const denom = 1 + z2 / n
  const center = (p + z2 / (2 * n)) / denom
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))
  return [Math.max(0, center - half), Math.min(1, center + half)]
}
