/**
 * The correlate stage's rows and Arrow tables (pure: plain rows in, tables out).
 *
 * Correlations: for each task (config order; a subtask of a BIG-bench parent is a task), then each
 * parent task, then MEAN_TASK, and for each x axis in X_AXES, the statistics of stats.ts over the
 * run's (model, step) points, y = accuracy. A parent's y is its aggregate accuracy (parentRows: the
 * mean over its subtasks). MEAN_TASK's y is the mean accuracy over the tasks `inMean` (the correlate
 * stage: those above chance; subtasks, never their parent), at the points where each of them has a
 * row. x values:
 *   log_valid_ppl  ln validation perplexity (checkpoints.parquet, dataset analysis.valid_dataset)
 *   log_flops      ln(6 · params · step · tokens_per_step)
 *   log_tokens     ln(step · tokens_per_step)
 *   log_step       ln step
 * Step 0 has ln step = ln tokens = ln FLOPs = −∞: it is dropped from those three rows (their
 * n_points is one less per model that has step 0) and kept for log_valid_ppl.
 */
import type * as arrow from "apache-arrow"
import type { Interval } from "../../lib/stats.ts"
import {
  Agreement,
  Correlations,
  MEAN_TASK,
  R2Differences,
  type R2DifferenceRow,
  TaskMetrics as TaskMetricsTable,
  type AgreementRow as ContractAgreementRow,
  type CorrelationRow as ContractCorrelationRow,
  type TaskMetricRow,
} from "./contract.ts"
import type { MatchKind } from "./match.ts"
import { correlationStats, type CorrelationStats } from "./stats.ts"
import { bootstrapCorrelations, type StatName, type TaskHits } from "./bootstrap.ts"

export const X_AXES = ["log_valid_ppl", "log_flops", "log_tokens", "log_step"] as const
export type CorrelationAxis = (typeof X_AXES)[number]

/** A row of task_metrics.parquet (./contract.ts TaskMetrics); a task's own row may leave out parent (null) and aggregate (false). */
export type MetricRow = Omit<TaskMetricRow, "parent" | "aggregate"> & Partial<Pick<TaskMetricRow, "parent" | "aggregate">>

/** A row of correlations.parquet (./contract.ts Correlations), x_axis one of X_AXES. */
export type CorrelationRow = ContractCorrelationRow & CorrelationStats & { readonly x_axis: CorrelationAxis }

/** The intervals of a (task, axis)'s statistics; absent: nulls. */
export type IntervalsOf = (task: string, axis: CorrelationAxis) => Readonly<Record<StatName, Interval>> | undefined

const NO_INTERVAL: Interval = { lo: null, hi: null }
const intervalColumns = (ci: Readonly<Record<StatName, Interval>> | undefined) => {
  const of = (s: StatName) => ci?.[s] ?? NO_INTERVAL
  return {
    spearman_lo: of("spearman").lo,
    spearman_hi: of("spearman").hi,
    pearson_lo: of("pearson").lo,
    pearson_hi: of("pearson").hi,
    r2_pooled_lo: of("r2_pooled").lo,
    r2_pooled_hi: of("r2_pooled").hi,
    size_effect_lo: of("size_effect").lo,
    size_effect_hi: of("size_effect").hi,
  }
}

/** A task is at chance when the interval of its accuracy covers its random baseline at every checkpoint. */
export const atChance = (rows: ReadonlyArray<Pick<MetricRow, "acc_lo" | "acc_hi" | "random_baseline">>): boolean =>
  rows.length > 0 && rows.every((r) => r.acc_lo !== null && r.acc_hi !== null && r.acc_lo <= r.random_baseline && r.random_baseline <= r.acc_hi)

/** A BIG-bench parent task and the names of its subtasks (pipeline/config.ts parentTasks). */
export interface ParentTask {
  readonly name: string
  readonly subtasks: ReadonlyArray<string>
}

const MEANED = ["accuracy", "grade", "accuracy_norm", "random_baseline", "correct_ppl", "incorrect_ppl"] as const

/**
 * The aggregate rows of a parent task, as BIG-bench scores a parent (the unweighted mean of its
 * subtasks' scores): at each (model, step) where every subtask has a row, in the order of the
 * first subtask's rows, task = the parent, aggregate = true, parent = null, n_examples the sum of
 * the subtasks', every other metric the mean of theirs, and no Wilson intervals (a mean of
 * proportions over different n is not a proportion; the bootstrap intervals of correlations.parquet
 * carry the parent's sampling).
 * Worked example: subtasks a (accuracy 1/2 of 4 examples) and b (1/3 of 3) at one point → one row,
 * n_examples 7, accuracy (1/2 + 1/3) / 2 = 5/12 (not the pooled 3/7).
 */
export const parentRows = (metrics: ReadonlyArray<MetricRow>, parent: ParentTask): MetricRow[] => {
  const key = (m: Pick<MetricRow, "model" | "step">) => `${m.model}\u0000${m.step}`
  const bySub = parent.subtasks.map((t) => new Map(metrics.filter((m) => m.task === t).map((m) => [key(m), m])))
  return [...bySub[0].values()].flatMap((first): MetricRow[] => {
    const rows = bySub.map((b) => b.get(key(first)))
    if (rows.some((r) => r === undefined)) return []
    const got = rows as MetricRow[]
    const mean = (c: (typeof MEANED)[number]) => got.reduce((a, r) => a + r[c], 0) / got.length
    return [
      {
        model: first.model,
        step: first.step,
        task: parent.name,
        parent: null,
        aggregate: true,
        n_examples: got.reduce((a, r) => a + r.n_examples, 0),
        acc_lo: null,
        acc_hi: null,
        acc_norm_lo: null,
        acc_norm_hi: null,
        ...(Object.fromEntries(MEANED.map((c) => [c, mean(c)])) as Record<(typeof MEANED)[number], number>),
      },
    ]
  })
}

/** The metrics with each parent's aggregate rows (parentRows) after the rows of its last subtask. */
export const withParentRows = (metrics: ReadonlyArray<MetricRow>, parents: ReadonlyArray<ParentTask>): MetricRow[] => {
  const out: MetricRow[] = []
  metrics.forEach((m, i) => {
    out.push(m)
    if (metrics[i + 1]?.task === m.task) return
    for (const p of parents) if (p.subtasks[p.subtasks.length - 1] === m.task) out.push(...parentRows(metrics, p))
  })
  return out
}

/** The tasks the mean over tasks is taken over: those above chance, unless every task is at chance or `keepChance`. */
export const meanTasks = (tasks: ReadonlyArray<string>, chance: ReadonlySet<string>, keepChance: boolean): ReadonlyArray<string> => {
  const above = tasks.filter((t) => !chance.has(t))
  return keepChance || above.length === 0 ? tasks : above
}

/**
 * @param metrics  task metrics of every (model, step, task), parents' aggregate rows included
 * @param tasks    the series to correlate besides MEAN_TASK, in order: task names, then parent task
 *                 names (their aggregate rows are their y; at_chance is null for them)
 * @param xOf      the x values of a (model, step)
 * @param inMean   the tasks MEAN_TASK averages (default: every task); never a parent, whose subtasks
 *                 are tasks of their own
 */
export const correlationRows = (
  metrics: ReadonlyArray<MetricRow>,
  tasks: ReadonlyArray<string>,
  xOf: (model: string, step: number) => Record<CorrelationAxis, number>,
  inMean: ReadonlyArray<string> = tasks,
  intervals: IntervalsOf = () => undefined,
): CorrelationRow[] => {
  const models = [...new Set(metrics.map((m) => m.model))]
  const series = (points: ReadonlyArray<{ model: string; step: number; y: number }>, task: string): CorrelationRow[] => {
    const xs = points.map((p) => xOf(p.model, p.step))
    const y = Float64Array.from(points, (p) => p.y)
    const group = Int32Array.from(points, (p) => models.indexOf(p.model))
    const own = metrics.filter((m) => m.task === task)
    const chance = task === MEAN_TASK || own.some((m) => m.aggregate === true) ? null : atChance(own)
    return X_AXES.map((axis) => ({
      task,
      x_axis: axis,
      ...correlationStats(Float64Array.from(xs, (x) => x[axis]), y, group),
      at_chance: chance,
      ...intervalColumns(intervals(task, axis)),
    }))
  }
  const out: CorrelationRow[] = []
  for (const task of tasks) {
    out.push(...series(metrics.filter((m) => m.task === task).map((m) => ({ model: m.model, step: m.step, y: m.accuracy })), task))
  }
  if (inMean.length > 0) {
    const byPoint = new Map<string, { model: string; step: number; ys: number[] }>()
    for (const m of metrics) {
      if (!inMean.includes(m.task)) continue
      const k = `${m.model}\u0000${m.step}`
      const p = byPoint.get(k) ?? { model: m.model, step: m.step, ys: [] }
      p.ys.push(m.accuracy)
      byPoint.set(k, p)
    }
    const points = [...byPoint.values()]
      .filter((p) => p.ys.length === inMean.length)
      .map((p) => ({ model: p.model, step: p.step, y: p.ys.reduce((a, b) => a + b, 0) / p.ys.length }))
    out.push(...series(points, MEAN_TASK))
  }
  return out
}

/** Per-example hits of one (model, step, task): example ids ascending, 1 for a hit (metrics.ts exampleHits). */
export interface PointHits {
  readonly ids: Int32Array
  readonly hit: Uint8Array
}

/**
 * Bootstrap intervals (./bootstrap.ts) of every task's, every parent's (the mean of its subtasks'
 * replicate accuracies) and the mean's statistics, and the R² differences of every pair of axes,
 * over the points (model, step) `points`; each task in `tasks` must have hits at every point
 * (`hitsOf`), and each parent's subtasks must be in `tasks`.
 */
export const bootstrapTables = (
  points: ReadonlyArray<{ readonly model: string; readonly step: number }>,
  tasks: ReadonlyArray<string>,
  hitsOf: (task: string, model: string, step: number) => PointHits,
  xOf: (model: string, step: number) => Record<CorrelationAxis, number>,
  inMean: ReadonlyArray<string>,
  o: { readonly samples: number; readonly seed: number },
  parents: ReadonlyArray<ParentTask> = [],
): { intervals: IntervalsOf; differences: R2DifferenceRow[] } => {
  const taskHits: TaskHits[] = tasks.map((task) => {
    const per = points.map((p) => hitsOf(task, p.model, p.step))
    const ids = [...new Set(per.flatMap((h) => [...h.ids]))].sort((a, b) => a - b)
    const index = new Map(ids.map((id, e) => [id, e]))
    const hits = new Uint8Array(points.length * ids.length).fill(255)
    per.forEach((h, p) => h.ids.forEach((id, k) => (hits[p * ids.length + index.get(id)!] = h.hit[k])))
    return { task, hits, examples: ids.length }
  })
  const series = [
    ...tasks.map((t, k) => ({ name: t, tasks: [k] })),
    ...parents.map((p) => ({ name: p.name, tasks: p.subtasks.map((t) => tasks.indexOf(t)) })),
    ...(inMean.length > 0 ? [{ name: MEAN_TASK, tasks: inMean.map((t) => tasks.indexOf(t)) }] : []),
  ]
  const xs = points.map((p) => xOf(p.model, p.step))
  const models = [...new Set(points.map((p) => p.model))]
  const { intervals, differences } = bootstrapCorrelations({
    tasks: taskHits,
    series,
    axes: X_AXES.map((name) => ({ name, x: Float64Array.from(xs, (x) => x[name]) })),
    group: Int32Array.from(points, (p) => models.indexOf(p.model)),
    samples: o.samples,
    seed: o.seed,
  })
  const byKey = new Map(intervals.map((i) => [`${i.name}\u0000${i.axis}`, i.stats]))
  return {
    intervals: (task, axis) => byKey.get(`${task}\u0000${axis}`),
    differences: differences.map((d) => ({
      task: d.name,
      x_axis_a: d.axisA,
      x_axis_b: d.axisB,
      r2_a: d.r2A,
      r2_b: d.r2B,
      diff: d.diff,
      diff_lo: d.lo,
      diff_hi: d.hi,
      n_points: d.nPoints,
    })),
  }
}

export const r2DifferencesTable = (rows: ReadonlyArray<R2DifferenceRow>): arrow.Table => R2Differences.fromRows(rows)

export const taskMetricsTable = (rows: ReadonlyArray<MetricRow>): arrow.Table =>
  TaskMetricsTable.fromRows(rows.map((r) => ({ ...r, parent: r.parent ?? null, aggregate: r.aggregate ?? false })))

export const correlationsTable = (rows: ReadonlyArray<CorrelationRow>): arrow.Table => Correlations.fromRows(rows)

/** A row of agreement.parquet (./contract.ts Agreement), match one of MatchKind. */
export type AgreementRow = ContractAgreementRow & { readonly match: MatchKind }

export const agreementTable = (rows: ReadonlyArray<AgreementRow>): arrow.Table => Agreement.fromRows(rows)
