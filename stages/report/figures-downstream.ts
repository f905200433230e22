/**
 * The report's figures 6, 9 and 10: downstream accuracy, what predicts it, and agreement between sizes at
 * equal perplexity. Pure, like figures.ts.
 */
import { MEAN_TASK, r2Lead } from "../correlate/contract.ts"
import { groupBy, num, scoredTaskRows, sizeOrder, str, thin, type Cell, type ReportOptions, type ReportTables, type Row } from "./data.ts"
import { fmt, leftOut, lineMark, logAxis, logScale, MAX_POINTS_PER_SERIES, need, PANEL_COLUMNS, PANEL_HEIGHT, PANEL_WIDTH, sizeColor, top, type Figure, type Json, type TextTable } from "./spec.ts"


const X_AXES: ReadonlyArray<{ readonly key: string; readonly label: string }> = [
  { key: "log_valid_ppl", label: "ln valid ppl" },
  { key: "log_flops", label: "ln FLOPs" },
  { key: "log_tokens", label: "ln tokens" },
  { key: "log_step", label: "ln step" },
]
const axisLabel = (k: string) => X_AXES.find((a) => a.key === k)?.label ?? k

/**
 * Validation perplexity and FLOPs of each (model, step) on the chosen dataset (the first one the
 * table has when it lacks `dataset`), from checkpoints.parquet, keyed "model@step"; undefined
 * without the table.
 */
export const checkpointIndex = (tables: ReportTables, dataset: string): Map<string, { ppl: number; flops: number }> | undefined => {
  const got = need(tables, "checkpoints", ["model", "step", "dataset", "ppl", "flops"])
  if ("why" in got) return undefined
  const have = new Set(got.rows.map((r) => str(r.dataset)))
  const ds = have.has(dataset) ? dataset : [...have][0]
  return new Map(got.rows.filter((r) => str(r.dataset) === ds).map((r) => [`${str(r.model)}@${num(r.step)}`, { ppl: num(r.ppl), flops: num(r.flops) }]))
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN)
const geoMean = (xs: number[]) => {
  const ok = xs.filter((x) => x > 0 && Number.isFinite(x))
  return ok.length ? Math.exp(mean(ok.map(Math.log))) : Number.NaN
}

/** 6. Mean downstream accuracy against validation perplexity, FLOPs and steps; option perplexities. */
export const downstreamFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-downstream",
    title: "6. Downstream accuracy",
    caption: "",
    sources: ["task_metrics.parquet", "checkpoints.parquet"],
  }
  const got = need(tables, "task_metrics", ["model", "step", "task", "accuracy", "random_baseline", "correct_ppl", "incorrect_ppl"], scoredTaskRows)
  if ("why" in got) return leftOut({ ...meta, caption: "Mean accuracy over the tasks against validation perplexity, FLOPs and steps, per size." }, [got.why])
  const notes: string[] = []
  const ckpt = checkpointIndex(tables, options.validDataset)
  if (!ckpt) notes.push("checkpoints.parquet is missing: accuracy is shown against steps only")
  const tasks = new Set(got.rows.map((r) => str(r.task)))
  const sizes = sizeOrder(options, got.rows.map((r) => str(r.model)))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const points: Json[] = []
  let longest = 0
  for (const [model, rs] of groupBy(got.rows, (r) => str(r.model))) {
    const bySteps = [...groupBy(rs, (r) => String(num(r.step))).values()].sort((a, b) => num(a[0].step) - num(b[0].step))
    const kept = thin(bySteps, MAX_POINTS_PER_SERIES)
    longest = Math.max(longest, kept.length)
    for (const g of kept) {
      const step = num(g[0].step)
      const c = ckpt?.get(`${model}@${step}`)
      points.push({
        size: labelOf.get(model),
        step,
        accuracy: mean(g.map((r) => num(r.accuracy)).filter(Number.isFinite)),
        baseline: mean(g.map((r) => num(r.random_baseline)).filter(Number.isFinite)),
        correct: geoMean(g.map((r) => num(r.correct_ppl))),
        incorrect: geoMean(g.map((r) => num(r.incorrect_ppl))),
        valid_ppl: c?.ppl ?? null,
        flops: c?.flops ?? null,
      })
    }
  }
  const baseline = mean(points.map((p) => p.baseline as number).filter(Number.isFinite))
  const labels = sizes.map((s) => s.label)
  const accPanel = (field: string, title: string, reverse: boolean, format = "~s"): Json => {
    const x = { field, type: "quantitative", title, scale: logScale(reverse), axis: logAxis(format) }
    return {
      width: PANEL_WIDTH,
      height: PANEL_HEIGHT,
      layer: [
        {
          data: { values: points },
          transform: [{ filter: `isValid(datum.${field}) && datum.${field} > 0 && isValid(datum.accuracy)` }],
          mark: lineMark(longest),
          encoding: {
            x,
            y: { field: "accuracy", type: "quantitative", title: "mean accuracy", axis: { format: ".0%" }, scale: { zero: false } },
            color: sizeColor(labels),
            order: { field: "step", type: "quantitative" },
          },
        },
        ...(Number.isFinite(baseline)
          ? [{ data: { values: [{ baseline }] }, mark: { type: "rule", strokeDash: [5, 4], color: "#777" }, encoding: { y: { field: "baseline", type: "quantitative" } } }]
          : []),
      ],
    }
  }
  const accPanels = [
    ...(ckpt ? [accPanel("valid_ppl", "validation perplexity (reversed)", true), accPanel("flops", "FLOPs", false, "~e")] : []),
    accPanel("step", "training step", false),
  ]
  const optionRows = points.flatMap((p) => [
    { size: p.size, step: p.step, x: ckpt ? p.valid_ppl : p.step, option: "correct", ppl: p.correct },
    { size: p.size, step: p.step, x: ckpt ? p.valid_ppl : p.step, option: "incorrect", ppl: p.incorrect },
  ])
  const optionPanel: Json = {
    width: PANEL_WIDTH,
    height: PANEL_HEIGHT,
    data: { values: optionRows },
    transform: [{ filter: "isValid(datum.x) && datum.x > 0 && isValid(datum.ppl) && datum.ppl > 0" }],
    mark: lineMark(longest),
    encoding: {
      x: { field: "x", type: "quantitative", title: ckpt ? "validation perplexity (reversed)" : "training step", scale: logScale(!!ckpt), axis: logAxis() },
      y: { field: "ppl", type: "quantitative", title: "option perplexity (geo. mean)", scale: logScale(), axis: logAxis() },
      color: sizeColor(labels),
      strokeDash: { field: "option", type: "nominal", title: "option", sort: ["correct", "incorrect"], scale: { domain: ["correct", "incorrect"], range: [[1, 0], [4, 3]] } },
      detail: { field: "option" },
      order: { field: "step", type: "quantitative" },
    },
  }
  return {
    ...meta,
    caption:
      `Mean accuracy over ${tasks.size} task${tasks.size === 1 ? "" : "s"} against validation perplexity (reversed), FLOPs and steps, one line per size, ` +
      `the mean random baseline dashed; right, perplexity of the correct (solid) and incorrect (dashed) options.`,
    spec: top({ concat: [...accPanels, optionPanel], columns: PANEL_COLUMNS, resolve: { scale: { color: "shared" } } }),
    notes,
  }
}

/** The x axis whose correlations figure 9's heatmaps show negated (as −x). */
const NEGATED_AXIS = "log_valid_ppl"

/** 9. Correlation of each x axis with accuracy, per task and for the mean over tasks. */
export const correlationFigure = (tables: ReportTables, _options: ReportOptions): Figure => {
  const meta = {
    id: "fig-correlations",
    title: "9. What predicts accuracy",
    caption:
      "Spearman ρ of accuracy with each x axis (with −ln validation perplexity: lower perplexity ↔ higher accuracy), pooled R² of accuracy ~ x over all sizes, and the size effect (ΔR² from one intercept per size; near 0 means size-invariant), per task and for the mean over tasks; the table gives ρ of ln perplexity itself.",
    sources: ["correlations.parquet", "r2_differences.parquet"],
  }
  const got = need(tables, "correlations", ["task", "x_axis", "spearman", "pearson", "r2_pooled", "size_effect", "n_points"])
  if ("why" in got) return leftOut(meta, [got.why])
  const taskLabel = (t: string) => (t === MEAN_TASK ? "mean over tasks" : t)
  const tasks = [...new Set(got.rows.map((r) => str(r.task)))].sort((a, b) => (a === MEAN_TASK ? -1 : b === MEAN_TASK ? 1 : a.localeCompare(b)))
  const axes = [...X_AXES.map((a) => a.key).filter((k) => got.rows.some((r) => str(r.x_axis) === k)), ...new Set(got.rows.map((r) => str(r.x_axis)).filter((k) => !X_AXES.some((a) => a.key === k)))]
  // Lower perplexity goes with higher accuracy, so ρ of ln perplexity is negative where the other
  // axes' are positive: the heatmaps show its column as −ln valid ppl (ρ negated; R² and the size
  // effect do not change with the sign), so that every strong predictor reads as dark blue.
  const heatLabel = (k: string) => (k === NEGATED_AXIS ? `−${axisLabel(k)}` : axisLabel(k))
  const data = got.rows.map((r) => ({
    task: taskLabel(str(r.task)),
    x_axis: heatLabel(str(r.x_axis)),
    spearman: str(r.x_axis) === NEGATED_AXIS && r.spearman !== null ? -num(r.spearman) : r.spearman,
    r2_pooled: r.r2_pooled,
    size_effect: r.size_effect,
  }))
  const maxEffect = Math.max(0.05, ...data.map((d) => num(d.size_effect)).filter(Number.isFinite))
  /** `dark`: a Vega expression true where the cell's colour is dark enough for white text. */
  const heat = (field: string, title: string, scale: Json, dark: string): Json => ({
    width: { step: 84 },
    height: { step: 20 },
    title,
    encoding: {
      x: { field: "x_axis", type: "nominal", sort: axes.map(heatLabel), title: null, axis: { orient: "top", labelAngle: 0, labelOverlap: false } },
      y: { field: "task", type: "nominal", sort: tasks.map(taskLabel), title: null, axis: { labelLimit: 180 } },
    },
    layer: [
      { mark: { type: "rect", color: "#f2f2f2" } },
      { transform: [{ filter: `isValid(datum.${field})` }], mark: "rect", encoding: { color: { field, type: "quantitative", title, scale, legend: { orient: "bottom", gradientLength: 140 } } } },
      {
        transform: [{ calculate: `isValid(datum.${field}) ? format(datum.${field}, '.2f') : '–'`, as: "label" }],
        mark: { type: "text", fontSize: 12 },
        encoding: { text: { field: "label" }, color: { condition: { test: `isValid(datum.${field}) && ${dark}`, value: "white" }, value: "#222" } },
      },
    ],
  })
  const overall = got.rows.filter((r) => str(r.task) === MEAN_TASK)
  overall.sort((a, b) => axes.indexOf(str(a.x_axis)) - axes.indexOf(str(b.x_axis)))
  // The best x axis is emphasised only when the 95% bootstrap interval of its R² difference with
  // the runner-up (r2_differences.parquet) excludes 0.
  const ranked = overall.map((r, i) => i).filter((i) => Number.isFinite(num(overall[i].r2_pooled))).sort((a, b) => num(overall[b].r2_pooled) - num(overall[a].r2_pooled))
  const [first, second] = ranked.map((i) => str(overall[i].x_axis))
  const lead = tables.r2_differences ? r2Lead(tables.r2_differences.toArray().map((r) => r.toJSON()), MEAN_TASK, first, second) : undefined
  const excludesZero = lead !== undefined && lead.lo > 0
  const ci = (r: Record<string, Cell>, stat: string) => {
    const [lo, hi] = [num(r[`${stat}_lo`]), num(r[`${stat}_hi`])]
    return `${fmt(num(r[stat]))}${Number.isFinite(lo) && Number.isFinite(hi) ? ` [${fmt(lo)}, ${fmt(hi)}]` : ""}`
  }
  const verdict =
    lead === undefined
      ? []
      : [
          excludesZero
            ? `${axisLabel(first)} predicts mean accuracy better than ${axisLabel(second)}: R² difference ${fmt(Math.abs(lead.diff))} [${fmt(lead.lo)}, ${fmt(lead.hi)}] (95% bootstrap interval).`
            : `No x axis predicts mean accuracy significantly better: the R² difference of ${axisLabel(first)} and ${axisLabel(second)} is ${fmt(Math.abs(lead.diff))}, and its 95% bootstrap interval [${fmt(lead.lo)}, ${fmt(lead.hi)}] covers 0.`,
        ]
  const table: TextTable | undefined = overall.length
    ? {
        columns: ["x axis (mean over tasks)", "Spearman ρ [95% CI]", "Pearson r [95% CI]", "pooled R² [95% CI]", "size effect ΔR² [95% CI]", "points"],
        rows: overall.map((r) => [axisLabel(str(r.x_axis)), ci(r, "spearman"), ci(r, "pearson"), ci(r, "r2_pooled"), ci(r, "size_effect"), String(num(r.n_points))]),
        strong: new Set(excludesZero ? [ranked[0]] : []),
      }
    : undefined
  return {
    ...meta,
    spec: top({
      data: { values: data },
      // Two per row: three heatmaps with their task labels would not fit the page side by side.
      columns: PANEL_COLUMNS,
      concat: [
        heat("spearman", "Spearman ρ", { domain: [-1, 1], scheme: "redblue" }, "abs(datum.spearman) > 0.55"),
        heat("r2_pooled", "pooled R²", { domain: [0, 1], scheme: "greens" }, "datum.r2_pooled > 0.55"),
        heat("size_effect", "size effect ΔR²", { domain: [0, maxEffect], scheme: "oranges" }, `datum.size_effect > ${0.55 * maxEffect}`),
      ],
      resolve: { scale: { color: "independent" }, legend: { color: "independent" } },
    }),
    notes: verdict,
    ...(table ? { table } : {}),
  }
}

/** At most this many size pairs get a line in figure 10 when no adjacent pairs exist. */
const MAX_DRAWN_PAIRS = 8

/** 10. Agreement of per-token predictions between sizes, matched by perplexity against matched by FLOPs. */
export const agreementFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-agreement",
    title: "10. Agreement between sizes at equal perplexity",
    caption:
      "Pearson correlation of per-token log-probs between checkpoints of two sizes, paired by nearest validation perplexity (left) or nearest FLOPs (right), against the smaller size's validation perplexity (reversed).",
    sources: ["agreement.parquet"],
  }
  const hasDataset = tables.agreement !== undefined && tables.agreement.schema.fields.some((f) => f.name === "dataset")
  const got = need(tables, "agreement", ["match", "model_a", "model_b", "step_a", "ppl_a", "pearson", ...(hasDataset ? ["dataset"] : [])])
  if ("why" in got) return leftOut(meta, [got.why])
  let rows: Row[] = got.rows
  const notes: string[] = []
  if (hasDataset) {
    const have = [...new Set(rows.map((r) => str(r.dataset)))]
    const dataset = have.includes(options.validDataset) ? options.validDataset : have[0]
    if (dataset !== options.validDataset) notes.push(`agreement.parquet has no rows for dataset "${options.validDataset}"; showing "${dataset}"`)
    rows = rows.filter((r) => str(r.dataset) === dataset)
  }
  const sizes = sizeOrder(options, rows.flatMap((r) => [str(r.model_a), str(r.model_b)]))
  const rank = new Map(sizes.map((s, i) => [s.name, i]))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const pairKey = (r: Row) => `${str(r.model_a)}|${str(r.model_b)}`
  const pairs = [...groupBy(rows, pairKey).keys()].sort((p, q) => {
    const [a1, b1] = p.split("|").map((n) => rank.get(n) ?? 0)
    const [a2, b2] = q.split("|").map((n) => rank.get(n) ?? 0)
    return a1 - a2 || b1 - b2
  })
  const pairLabel = (k: string) => k.split("|").map((n) => labelOf.get(n) ?? n).join(" vs ")
  // Lines for each size against the next larger one and the smallest against the largest (as in
  // figure 5); the table below lists every pair.
  const names = sizes.map((s) => s.name)
  const wanted = new Set([...names.slice(1).map((b, i) => `${names[i]}|${b}`), ...(names.length > 2 ? [`${names[0]}|${names[names.length - 1]}`] : [])])
  let drawn = new Set(pairs.filter((k) => wanted.has(k)))
  if (drawn.size === 0) drawn = new Set(pairs.slice(0, MAX_DRAWN_PAIRS))
  const matchLabel = (m: string) => (m === "ppl" ? "matched by perplexity" : m === "flops" ? "matched by FLOPs" : m)
  const data: Json[] = []
  let longest = 0
  for (const rs of groupBy(rows.filter((r) => drawn.has(pairKey(r))), (r) => `${pairKey(r)}|${str(r.match)}`).values()) {
    rs.sort((a, b) => num(a.step_a) - num(b.step_a))
    const kept = thin(rs, MAX_POINTS_PER_SERIES)
    longest = Math.max(longest, kept.length)
    for (const r of kept) {
      data.push({ pair: pairLabel(pairKey(r)), match: matchLabel(str(r.match)), step: num(r.step_a), ppl: num(r.ppl_a), pearson: r.pearson })
    }
  }
  const meanOf = (k: string, m: string) => mean(rows.filter((r) => pairKey(r) === k && str(r.match) === m).map((r) => num(r.pearson)).filter(Number.isFinite))
  const table: TextTable = {
    columns: ["sizes", "mean r, equal perplexity", "mean r, equal FLOPs", "pairs"],
    rows: pairs.map((k) => [pairLabel(k), fmt(meanOf(k, "ppl")), fmt(meanOf(k, "flops")), String(rows.filter((r) => pairKey(r) === k && str(r.match) === "ppl").length)]),
  }
  const matches = [...new Set(rows.map((r) => str(r.match)))].sort((a, b) => (a === "ppl" ? -1 : b === "ppl" ? 1 : a.localeCompare(b))).map(matchLabel)
  const some = drawn.size < pairs.length ? ` Lines for each size against the next larger one and the smallest against the largest; the table lists all ${pairs.length} pairs.` : ""
  return {
    ...meta,
    caption: meta.caption + some,
    spec: top({
      data: { values: data },
      transform: [{ filter: "isValid(datum.pearson) && datum.ppl > 0" }],
      facet: { column: { field: "match", type: "nominal", sort: matches, title: null } },
      spec: {
        width: PANEL_WIDTH,
        height: PANEL_HEIGHT,
        mark: lineMark(longest),
        encoding: {
          x: { field: "ppl", type: "quantitative", title: "validation perplexity of the smaller size (reversed)", scale: logScale(true), axis: logAxis() },
          y: { field: "pearson", type: "quantitative", title: "Pearson r of per-token log-probs", scale: { zero: false } },
          color: { field: "pair", type: "nominal", title: "sizes", sort: pairs.filter((k) => drawn.has(k)).map(pairLabel), scale: { scheme: "tableau10" } },
          order: { field: "step", type: "quantitative" },
        },
      },
    }),
    notes,
    table,
  }
}
