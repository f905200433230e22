/**
 * The report's per-task figures: each task's accuracy with its Wilson interval and random
 * baseline, and the margin between correct and incorrect options, against validation perplexity.
 * Pure, like figures.ts.
 */
import { groupBy, num, scoredTaskRows, sizeOrder, str, thin, type ReportOptions, type ReportTables, type Row } from "./data.ts"
import { checkpointIndex } from "./figures-downstream.ts"
import { leftOut, logScale, need, sizeColor, top, type Figure, type Json } from "./spec.ts"

/**
 * Checkpoints drawn in all the panels of a per-task figure together: each (task, size) series gets
 * an equal part of them, at most MAX_POINTS_PER_TASK_SERIES and at least MIN_POINTS_PER_TASK_SERIES,
 * drawn as plain lines (a suite has 74 tasks × 8 sizes: with a dot per checkpoint, or 120 per
 * series as elsewhere, the page would grow by megabytes).
 */
export const TASK_FIGURE_POINTS = 5000
export const MAX_POINTS_PER_TASK_SERIES = 20
export const MIN_POINTS_PER_TASK_SERIES = 8

/** Panels per row of the per-task figures. */
export const TASK_COLUMNS = 2

/**
 * The x of a task point: validation perplexity (the configured dataset) when checkpoints.parquet
 * is there, else the step; points without a positive x are not drawn on the log axis.
 */
const taskX = (tables: ReportTables, options: ReportOptions) => {
  const ckpt = checkpointIndex(tables, options.validDataset)
  return {
    ckpt,
    x: (model: string, step: number): number | null => (ckpt ? (ckpt.get(`${model}@${step}`)?.ppl ?? null) : step > 0 ? step : null),
    title: ckpt ? "validation perplexity (reversed)" : "training step",
  }
}

/**
 * Rows of each (task, size), sorted by step and thinned to its share of TASK_FIGURE_POINTS, in task
 * order (first seen) then size order. `rows` must have model, step and task.
 */
const taskSeries = (rows: ReadonlyArray<Row>, sizes: ReadonlyArray<{ name: string }>): Array<{ task: string; model: string; rows: Row[] }> => {
  const out: Array<{ task: string; model: string; rows: Row[] }> = []
  for (const [task, rs] of groupBy(rows, (r) => str(r.task))) {
    const byModel = groupBy(rs, (r) => str(r.model))
    for (const { name } of sizes) {
      const series = [...(byModel.get(name) ?? [])].sort((a, b) => num(a.step) - num(b.step))
      if (series.length) out.push({ task, model: name, rows: series })
    }
  }
  const each = Math.max(MIN_POINTS_PER_TASK_SERIES, Math.min(MAX_POINTS_PER_TASK_SERIES, Math.floor(TASK_FIGURE_POINTS / Math.max(1, out.length))))
  return out.map((s) => ({ ...s, rows: thin(s.rows, each) }))
}

/**
 * The points of a per-task figure: each (task, size) series (taskSeries), a point per row with a
 * positive x, carrying task, size, step, x and what `fields` gives (null: the row is not drawn);
 * the tasks in order of first appearance.
 */
const taskPoints = (
  rows: ReadonlyArray<Row>,
  sizes: ReadonlyArray<{ name: string; label: string }>,
  x: (model: string, step: number) => number | null,
  fields: (r: Row) => Record<string, unknown> | null,
): { data: Json[]; tasks: string[] } => {
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const data: Json[] = []
  const tasks: string[] = []
  for (const s of taskSeries(rows, sizes)) {
    if (!tasks.includes(s.task)) tasks.push(s.task)
    for (const r of s.rows) {
      const xv = x(s.model, num(r.step))
      if (xv === null || !(xv > 0)) continue
      const f = fields(r)
      if (f !== null) data.push({ task: s.task, size: labelOf.get(s.model), step: num(r.step), x: xv, ...f })
    }
  }
  return { data, tasks }
}

/**
 * One panel per task (in `tasks` order, TASK_COLUMNS to a row): per size a line of `value.field`
 * against x (log; reversed for validation perplexity) over its interval [lo, hi] as a band (points
 * without one have no band), and `value.rule` as a layer of its own.
 */
const bandedTaskPanels = (
  data: Json[],
  tasks: ReadonlyArray<string>,
  sizes: ReadonlyArray<{ label: string }>,
  xTitle: string,
  reversed: boolean,
  value: { readonly field: string; readonly title: string; readonly y: Record<string, unknown>; readonly rule: Json },
  lo: string,
  hi: string,
) => {
  const labels = sizes.map((s) => s.label)
  const x = { field: "x", type: "quantitative", title: xTitle, scale: logScale(reversed), axis: { tickCount: 5, format: "~s", grid: false } }
  return top({
    data: { values: data },
    facet: { field: "task", type: "nominal", title: null, sort: tasks },
    columns: TASK_COLUMNS,
    spec: {
      width: 360,
      height: 200,
      layer: [
        {
          transform: [{ filter: `isValid(datum.${lo}) && isValid(datum.${hi})` }],
          mark: { type: "area", opacity: 0.15 },
          encoding: { x, y: { field: lo, type: "quantitative", title: value.title }, y2: { field: hi }, color: { ...sizeColor(labels), legend: null } },
        },
        {
          mark: { type: "line", strokeWidth: 1.6 },
          encoding: { x, y: { field: value.field, type: "quantitative", title: value.title, ...value.y }, color: sizeColor(labels), order: { field: "step", type: "quantitative" } },
        },
        value.rule,
      ],
    },
    resolve: { scale: { y: "independent" } },
  })
}

/**
 * Accuracy per task against validation perplexity (reversed), one panel per task: per size a line
 * with its 95% Wilson interval (task_metrics acc_lo, acc_hi) as a band, and the task's random
 * baseline (mean over the points of random_baseline: the hit rate of a uniform guess, |correct| /
 * |options| per example averaged) as a dashed rule. A BIG-bench parent's aggregate rows (the mean
 * of its subtasks, which have panels of their own, and no interval) are not drawn.
 */
export const taskAccuracyFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-task-accuracy",
    title: "7. Accuracy per task",
    caption:
      "Accuracy of each task against validation perplexity (reversed), one panel per task and a line per size; bands: 95% Wilson intervals over the task's examples; dashed: the task's random baseline.",
    sources: ["task_metrics.parquet", "checkpoints.parquet"],
  }
  const got = need(tables, "task_metrics", ["model", "step", "task", "accuracy", "acc_lo", "acc_hi", "random_baseline"], scoredTaskRows)
  if ("why" in got) return leftOut(meta, [got.why])
  const notes: string[] = []
  const { ckpt, x, title } = taskX(tables, options)
  if (!ckpt) notes.push("checkpoints.parquet is missing: accuracy is shown against steps")
  if (tables.task_metrics!.schema.fields.some((f) => f.name === "aggregate") && got.rows.length < tables.task_metrics!.numRows)
    notes.push("BIG-bench parent tasks (their subtasks' mean) have no panel: each subtask has its own")
  const sizes = sizeOrder(options, got.rows.map((r) => str(r.model)))
  const { data, tasks } = taskPoints(got.rows, sizes, x, (r) => ({ accuracy: num(r.accuracy), acc_lo: r.acc_lo, acc_hi: r.acc_hi, baseline: num(r.random_baseline) }))
  return {
    ...meta,
    caption: ckpt ? meta.caption : meta.caption.replace("validation perplexity (reversed)", "training step"),
    spec: bandedTaskPanels(data, tasks, sizes, title, !!ckpt, {
      field: "accuracy",
      title: "accuracy",
      y: { axis: { format: ".0%" }, scale: { zero: false } },
      rule: { mark: { type: "rule", strokeDash: [5, 4], color: "#777" }, encoding: { y: { field: "baseline", type: "quantitative", aggregate: "mean" } } },
    }, "acc_lo", "acc_hi"),
    notes,
  }
}

/**
 * The margin of the correct options over the incorrect ones (task_margins.parquet: mean over
 * examples of the correct options' mean per-token log-prob minus the incorrect ones', nats) against
 * validation perplexity (reversed), one panel per task, a line per size with its interval (± 1.96
 * standard errors over the examples) as a band, and 0 (no preference) as a rule.
 */
export const marginFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-margins",
    title: "8. Margin of the correct options",
    caption:
      "Mean per-token log-prob of the correct options minus that of the incorrect ones (nats; > 0: the correct options are likelier, i.e. have the lower perplexity) against validation perplexity (reversed), one panel per task and a line per size; bands: ± 1.96 standard errors over the examples; the rule: no preference.",
    sources: ["task_margins.parquet", "checkpoints.parquet"],
  }
  const got = need(tables, "task_margins", ["model", "step", "task", "margin", "margin_lo", "margin_hi"])
  if ("why" in got) return leftOut(meta, [got.why])
  const notes: string[] = []
  const { ckpt, x, title } = taskX(tables, options)
  if (!ckpt) notes.push("checkpoints.parquet is missing: the margin is shown against steps")
  const sizes = sizeOrder(options, got.rows.map((r) => str(r.model)))
  const { data, tasks } = taskPoints(got.rows, sizes, x, (r) =>
    r.margin === null ? null : { margin: num(r.margin), margin_lo: r.margin_lo, margin_hi: r.margin_hi },
  )
  return {
    ...meta,
    caption: ckpt ? meta.caption : meta.caption.replace("validation perplexity (reversed)", "training step"),
    spec: bandedTaskPanels(data, tasks, sizes, title, !!ckpt, {
      field: "margin",
      title: "margin (nats per token)",
      y: {},
      rule: { data: { values: [{ zero: 0 }] }, mark: { type: "rule", strokeDash: [5, 4], color: "#777" }, encoding: { y: { field: "zero", type: "quantitative" } } },
    }, "margin_lo", "margin_hi"),
    notes,
  }
}
