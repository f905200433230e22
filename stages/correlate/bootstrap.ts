/**
 * Bootstrap intervals for the correlation table (pure: hits in, intervals out).
 *
 * What is random in a correlation of accuracy with an x axis is which examples a task happens to
 * have: the checkpoints are the design (every one of a run is scored), the examples a sample. So a
 * replicate b (b = 1…B) draws, for each task t independently, n_t examples with replacement from
 * the task's examples E_t (the same draw at every checkpoint, since one example is scored by every
 * checkpoint: the points are paired), giving each example e a count w_e. At each point p (a model
 * and step) the replicate's accuracy is
 *   acc*_t(p) = Σ_e w_e · hit_p(e) / Σ_e w_e · present_p(e)
 * (present: the example was scored at p; `truncate: skip` can leave an example out of one model's
 * checkpoints only). The mean over tasks is recomputed from the replicates' task accuracies, so its
 * interval carries every task's sampling. Every statistic of stats.ts correlationStats (ρ, r, R²,
 * ΔR²) is recomputed on each replicate, and its 95% interval is the 2.5th and 97.5th percentiles
 * of the B values (linear interpolation between order statistics, numpy's default); replicates
 * where a statistic does not exist (a constant accuracy) are left out of its percentiles, and with
 * fewer than half of B left the interval is null.
 *
 * R² differences: for every pair of x axes (a, b), Δ = R²_a − R²_b of pooled accuracy ~ x over the
 * points where both are finite (step 0 has no log FLOPs, tokens or step: comparing like with like),
 * with its percentile interval from the same replicates. An axis predicts better than another only
 * when that interval excludes 0.
 *
 * The draws come from lib/random.ts: replicate b of task t uses the stream streamSeed(seed,
 * STREAM_BOOTSTRAP, b · 65,536 + t), so a task's draws do not depend on the other tasks.
 */
import { mulberry32, streamSeed } from "../../lib/random.ts"
import { type Interval, percentileInterval } from "../../lib/stats.ts"
import { correlationStats, pooledR2, type CorrelationStats } from "./stats.ts"

/** lib/random.ts stream purpose of the bootstrap draws. */
export const STREAM_BOOTSTRAP = 21

export type StatName = "spearman" | "pearson" | "r2_pooled" | "size_effect"
const STATS: ReadonlyArray<StatName> = ["spearman", "pearson", "r2_pooled", "size_effect"]

/** One task's per-example outcomes at every point (a point: a model and a step). */
export interface TaskHits {
  readonly task: string
  /** [points × examples] 1 for a hit, 0 for a miss, 255 where the example was not scored at that point. */
  readonly hits: Uint8Array
  readonly examples: number
}

/** A series to correlate: the mean of some tasks' accuracies (one task: that task's accuracy). */
export interface Series {
  readonly name: string
  /** Indices into the tasks array. */
  readonly tasks: ReadonlyArray<number>
}

export interface SeriesIntervals {
  readonly name: string
  readonly axis: string
  readonly stats: Readonly<Record<StatName, Interval>>
}

export interface R2Difference {
  readonly name: string
  readonly axisA: string
  readonly axisB: string
  readonly r2A: number | null
  readonly r2B: number | null
  readonly diff: number | null
  readonly lo: number | null
  readonly hi: number | null
  readonly nPoints: number
}

export interface BootstrapInput {
  readonly tasks: ReadonlyArray<TaskHits>
  readonly series: ReadonlyArray<Series>
  /** [axes] [points] x values (−∞ where an axis has no value). */
  readonly axes: ReadonlyArray<{ readonly name: string; readonly x: Float64Array }>
  /** [points] model code of each point. */
  readonly group: Int32Array
  readonly samples: number
  readonly seed: number
}

/** Accuracy at every point of one task with example weights w (null weights: every example once). */
export const weightedAccuracy = (t: TaskHits, points: number, w: Float64Array | null): Float64Array => {
  const out = new Float64Array(points)
  const E = t.examples
  for (let p = 0; p < points; p++) {
    let hit = 0
    let n = 0
    for (let e = 0; e < E; e++) {
      const h = t.hits[p * E + e]
      if (h === 255) continue
      const we = w === null ? 1 : w[e]
      n += we
      hit += we * h
    }
    out[p] = n > 0 ? hit / n : Number.NaN
  }
  return out
}

/** Counts of a draw of n of n examples with replacement. */
const drawCounts = (n: number, next: () => number, into: Float64Array): Float64Array => {
  into.fill(0)
  for (let i = 0; i < n; i++) into[Math.floor(next() * n)]++
  return into
}

const meanOf = (accs: ReadonlyArray<Float64Array>, idx: ReadonlyArray<number>, points: number): Float64Array => {
  const y = new Float64Array(points)
  for (const k of idx) for (let p = 0; p < points; p++) y[p] += accs[k][p] / idx.length
  return y
}

/** R² of y ~ a + b·x_a minus that of y ~ a + b·x_b, over the points where both x are finite. */
const r2Pair = (xa: Float64Array, xb: Float64Array, y: Float64Array): { a: number | null; b: number | null; n: number } => {
  const keep: number[] = []
  for (let p = 0; p < y.length; p++) if (Number.isFinite(xa[p]) && Number.isFinite(xb[p]) && Number.isFinite(y[p])) keep.push(p)
  if (keep.length < 3) return { a: null, b: null, n: keep.length }
  const ys = Float64Array.from(keep, (p) => y[p])
  return { a: pooledR2(Float64Array.from(keep, (p) => xa[p]), ys), b: pooledR2(Float64Array.from(keep, (p) => xb[p]), ys), n: keep.length }
}

const diffOf = (r: { a: number | null; b: number | null }) => (r.a === null || r.b === null ? null : r.a - r.b)

/**
 * Percentile intervals of every statistic of every (series, axis), and the R² difference of every
 * pair of axes per series with its interval (see the module comment).
 */
export const bootstrapCorrelations = (input: BootstrapInput): { intervals: SeriesIntervals[]; differences: R2Difference[] } => {
  const { tasks, series, axes, group, samples, seed } = input
  const points = group.length
  const pairs = axes.flatMap((a, i) => axes.slice(i + 1).map((b) => [a, b] as const))
  // values[s][axis][stat][b] and diffs[s][pair][b]
  const values = series.map(() => axes.map(() => STATS.map(() => new Array<number | null>(samples))))
  const diffs = series.map(() => pairs.map(() => new Array<number | null>(samples)))
  const weights = tasks.map((t) => new Float64Array(t.examples))
  for (let b = 0; b < samples; b++) {
    const accs = tasks.map((t, k) => weightedAccuracy(t, points, drawCounts(t.examples, mulberry32(streamSeed(seed, STREAM_BOOTSTRAP, b * 65_536 + k)), weights[k])))
    series.forEach((s, si) => {
      const y = meanOf(accs, s.tasks, points)
      axes.forEach((ax, ai) => {
        const st: CorrelationStats = correlationStats(ax.x, y, group)
        STATS.forEach((name, k) => (values[si][ai][k][b] = st[name]))
      })
      pairs.forEach(([a, c], pi) => (diffs[si][pi][b] = diffOf(r2Pair(a.x, c.x, y))))
    })
  }
  const observed = tasks.map((t) => weightedAccuracy(t, points, null))
  const intervals = series.flatMap((s, si) =>
    axes.map((ax, ai) => ({
      name: s.name,
      axis: ax.name,
      stats: Object.fromEntries(STATS.map((name, k) => [name, percentileInterval(values[si][ai][k], samples)])) as Record<StatName, Interval>,
    })),
  )
  const differences = series.flatMap((s, si) => {
    const y = meanOf(observed, s.tasks, points)
    return pairs.map(([a, c], pi): R2Difference => {
      const r = r2Pair(a.x, c.x, y)
      const ci = percentileInterval(diffs[si][pi], samples)
      return { name: s.name, axisA: a.name, axisB: c.name, r2A: r.a, r2B: r.b, diff: diffOf(r), lo: ci.lo, hi: ci.hi, nPoints: r.n }
    })
  })
  return { intervals, differences }
}
