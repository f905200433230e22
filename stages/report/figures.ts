/**
 * The report's figures 1–5 (validation perplexity and the token classes) as Vega-Lite specs, built
 * from the run's tables. Pure: Arrow tables in, specs out; the data is filtered, aggregated and
 * thinned here so the rendered page stays small. Figures 6, 9 and 10 are in figures-downstream.ts,
 * 7 and 8 (a panel per task) in figures-tasks.ts, 11–13 in figures-sequences.ts; buildFigures
 * numbers them by position.
 *
 * Every figure function returns a Figure; when its table is missing or lacks a column, the figure
 * comes back without a spec and with a note saying why, never an error.
 */
import { groupBy, num, sameFraction, sizeOrder, str, thin, type ReportOptions, type ReportTables, type Row, rowsOf } from "./data.ts"
import { agreementFigure, correlationFigure, downstreamFigure } from "./figures-downstream.ts"
import { marginFigure, taskAccuracyFigure } from "./figures-tasks.ts"
import { generatedFigure, mauveFigure, noiseFigure } from "./figures-sequences.ts"
import { CLASSES, classColor, vlConfig, leftOut, lineMark, logAxis, logScale, MAX_POINTS_PER_SERIES, need, PANEL_COLUMNS, PANEL_HEIGHT, PANEL_WIDTH, sizeColor, top, type Figure, type Json } from "./spec.ts"

export { MAX_POINTS_PER_SERIES }

/** Token categories beyond this many (by token count) are merged into one bar. */
export const MAX_CATEGORIES = 12
/** At most this many size pairs get a transition heatmap. */
export const MAX_PAIRS = 6

/**
 * The dataset a figure shows: the configured validation dataset when the table has it, else the
 * first one it has (with a note).
 */
export const chooseDataset = (rows: ReadonlyArray<Row>, wanted: string, file: string): { dataset: string; notes: string[] } => {
  const have = [...new Set(rows.map((r) => str(r.dataset)))]
  if (have.includes(wanted) || have.length === 0) return { dataset: wanted, notes: [] }
  return { dataset: have[0], notes: [`${file} has no rows for dataset "${wanted}"; showing "${have[0]}"`] }
}

/** The threshold a figure shows: the configured one when present, else the smallest present. */
const chooseThreshold = (rows: ReadonlyArray<Row>, wanted: number, file: string): { threshold: number; notes: string[] } => {
  const have = [...new Set(rows.map((r) => num(r.threshold)))].filter(Number.isFinite).sort((a, b) => a - b)
  if (have.some((t) => sameFraction(t, wanted)) || have.length === 0) return { threshold: wanted, notes: [] }
  return { threshold: have[0], notes: [`${file} has no rows at threshold ${wanted}; showing ${have[0]}`] }
}

/**
 * Panel width of figure 1: three panels side by side (steps, tokens, FLOPs share a row, so that a
 * dataset's curves are compared along one line), legend below, fit the page's 1,120 px.
 */
const VALIDATION_PANEL_WIDTH = 290

const pct = (t: number) => `${+(t * 100).toFixed(1)}%`

/**
 * 1. Validation perplexity against steps, tokens and FLOPs, one line per size (the paper's Figure
 * 1), a row of panels per dataset of checkpoints.parquet: the configured validation dataset first,
 * then the others in the order the table has them.
 */
export const validationFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-validation-ppl",
    title: "1. Perplexity over training, per dataset",
    caption: "Perplexity of every checkpoint on each dataset (a row each) against training steps, tokens seen and FLOPs, one line per size (log axes).",
    sources: ["checkpoints.parquet"],
  }
  const got = need(tables, "checkpoints", ["model", "step", "tokens_seen", "flops", "dataset", "ppl"])
  if ("why" in got) return leftOut(meta, [got.why])
  const notes: string[] = []
  const present = [...new Set(got.rows.map((r) => str(r.dataset)))]
  const datasets = [...present.filter((d) => d === options.validDataset), ...present.filter((d) => d !== options.validDataset)]
  const rows = got.rows.filter((r) => Number.isFinite(num(r.ppl)))
  const sizes = sizeOrder(options, rows.map((r) => str(r.model)))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))

  // Flagged checkpoints (the checks stage), drawn as red rings.
  const flagged = new Map<string, string>()
  const checks = need(tables, "checkpoint_checks", ["model", "step", "check"])
  if ("rows" in checks) for (const c of checks.rows) flagged.set(`${str(c.model)}@${num(c.step)}`, str(c.check))

  const data: Json[] = []
  let longest = 0
  for (const rs of groupBy(rows, (r) => `${str(r.dataset)}|${str(r.model)}`).values()) {
    const model = str(rs[0].model)
    rs.sort((a, b) => num(a.step) - num(b.step))
    const isFlagged = (r: Row) => flagged.has(`${model}@${num(r.step)}`)
    const kept = thin(rs, MAX_POINTS_PER_SERIES, isFlagged)
    longest = Math.max(longest, kept.length)
    for (const r of kept) {
      data.push({ dataset: str(r.dataset), size: labelOf.get(model), step: num(r.step), tokens: num(r.tokens_seen), flops: num(r.flops), ppl: num(r.ppl), flagged: isFlagged(r) })
    }
  }
  const dropped = new Set(data.filter((d) => !((d.step as number) > 0)).map((d) => `${d.size}@${d.step}`)).size
  if (dropped) notes.push(`${dropped} checkpoint(s) at step 0 are not drawn on the log axes`)
  const anyFlagged = data.some((d) => d.flagged)
  const labels = sizes.map((s) => s.label)
  /** One column of panels (a row per dataset); the dataset names are shown left of the first column only. */
  const panel = (field: string, title: string, format: string, first: boolean): Json => {
    const x = { field, type: "quantitative", title, scale: logScale(), axis: logAxis(format) }
    const y = { field: "ppl", type: "quantitative", title: "perplexity", scale: logScale(), axis: logAxis() }
    return {
      facet: { row: { field: "dataset", type: "nominal", sort: datasets, title: null, header: first ? { labelAngle: -90 } : { labels: false } } },
      spec: {
        width: VALIDATION_PANEL_WIDTH,
        height: 200,
        transform: [{ filter: `datum.${field} > 0` }],
        layer: [
          { mark: lineMark(longest), encoding: { x, y, color: sizeColor(labels) } },
          ...(anyFlagged
            ? [{ transform: [{ filter: "datum.flagged" }], mark: { type: "point", shape: "circle", size: 110, strokeWidth: 2, color: "#e31a1c", filled: false }, encoding: { x, y } }]
            : []),
        ],
      },
    }
  }
  return {
    ...meta,
    caption: meta.caption + (anyFlagged ? " Red rings: checkpoints flagged by the checks stage (table below)." : ""),
    spec: top({
      data: { values: data },
      hconcat: [panel("step", "training step", "~s", true), panel("tokens", "tokens seen", "~s", false), panel("flops", "FLOPs", "~e", false)],
      resolve: { scale: { y: "shared" } },
      config: { ...vlConfig, legend: { ...(vlConfig.legend as Json), orient: "bottom" } },
    }),
    notes,
  }
}

/** 2. Share of tokens per class (stagnated / upward / downward) against the threshold, per size. */
export const classShareFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-class-shares",
    title: "2. Token classes by training threshold",
    caption: "Share of tokens whose perplexity stagnates, rises or falls after each threshold (fraction of training), per size; the rest are 'other'.",
    sources: ["class_summary.parquet"],
  }
  const got = need(tables, "class_summary", ["model", "dataset", "threshold", "class", "share"])
  if ("why" in got) return leftOut(meta, [got.why])
  const { dataset, notes } = chooseDataset(got.rows, options.validDataset, "class_summary.parquet")
  const rows = got.rows.filter((r) => str(r.dataset) === dataset && str(r.class) !== "other")
  const sizes = sizeOrder(options, rows.map((r) => str(r.model)))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  // The 95% intervals (documents resampled) as bands, when the table has them (classify v2).
  const ci = tables.class_summary!.schema.fields.some((f) => f.name === "share_lo") ? rowsOf(tables.class_summary!, ["model", "dataset", "threshold", "class", "share_lo", "share_hi"]) : []
  const ciOf = new Map(ci.map((r) => [`${str(r.model)}|${str(r.dataset)}|${num(r.threshold)}|${str(r.class)}`, r]))
  const data = rows.map((r) => {
    const c = ciOf.get(`${str(r.model)}|${str(r.dataset)}|${num(r.threshold)}|${str(r.class)}`)
    const lo = c?.share_lo === null || c?.share_lo === undefined ? null : num(c.share_lo)
    const hi = c?.share_hi === null || c?.share_hi === undefined ? null : num(c.share_hi)
    return { size: labelOf.get(str(r.model)), class: str(r.class), threshold: num(r.threshold), share: num(r.share), share_lo: lo, share_hi: hi }
  })
  const banded = data.some((d) => d.share_lo !== null && d.share_hi !== null)
  const x = { field: "threshold", type: "quantitative", title: "threshold τ (fraction of training)", axis: { format: ".0%" } }
  const color = sizeColor(sizes.map((s) => s.label))
  const line = { mark: { type: "line", point: true }, encoding: { x, y: { field: "share", type: "quantitative", title: "share of tokens", axis: { format: ".0%" } }, color } }
  const band = {
    mark: { type: "area", opacity: 0.15 },
    encoding: { x, y: { field: "share_lo", type: "quantitative" }, y2: { field: "share_hi" }, color },
  }
  return {
    ...meta,
    caption: `${meta.caption}${banded ? " Bands: 95% bootstrap intervals resampling the dataset's documents (few documents give coarse bands)." : ""} Dataset ${dataset}.`,
    spec: top({
      data: { values: data },
      facet: { field: "class", type: "nominal", sort: CLASSES.slice(0, 3), title: null },
      columns: PANEL_COLUMNS,
      spec: banded ? { width: PANEL_WIDTH, height: 200, layer: [band, line] } : { width: PANEL_WIDTH, height: 200, ...line },
      resolve: { scale: { y: "independent" } },
    }),
    notes,
  }
}

/** 3. Group trajectories against validation perplexity, x reversed: the double-descent figure. */
export const groupTrajectoryFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-group-trajectories",
    title: "3. Token classes in every size (double descent)",
    caption: "",
    sources: ["group_trajectories.parquet"],
  }
  const got = need(tables, "group_trajectories", ["dataset", "ref_model", "threshold", "class", "model", "step", "valid_ppl", "group_ppl"])
  if ("why" in got) return leftOut({ ...meta, caption: "Mean perplexity of a reference size's token classes in every size." }, [got.why])
  const { dataset, notes } = chooseDataset(got.rows, options.validDataset, "group_trajectories.parquet")
  let rows = got.rows.filter((r) => str(r.dataset) === dataset)
  const refs = [...new Set(rows.map((r) => str(r.ref_model)))]
  const ref = refs.includes(options.referenceModel) || refs.length === 0 ? options.referenceModel : refs[0]
  if (ref !== options.referenceModel) notes.push(`no group trajectories for reference size "${options.referenceModel}"; showing "${ref}"`)
  rows = rows.filter((r) => str(r.ref_model) === ref)
  const th = chooseThreshold(rows, options.referenceThreshold, "group_trajectories.parquet")
  notes.push(...th.notes)
  rows = rows.filter((r) => sameFraction(num(r.threshold), th.threshold) && str(r.class) !== "other")
  rows = rows.filter((r) => num(r.valid_ppl) > 0 && num(r.group_ppl) > 0)
  const sizes = sizeOrder(options, rows.map((r) => str(r.model)))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const data: Json[] = []
  let longest = 0
  for (const rs of groupBy(rows, (r) => `${str(r.class)}|${str(r.model)}`).values()) {
    rs.sort((a, b) => num(a.step) - num(b.step))
    const kept = thin(rs, MAX_POINTS_PER_SERIES)
    longest = Math.max(longest, kept.length)
    for (const r of kept) {
      data.push({ size: labelOf.get(str(r.model)), class: str(r.class), step: num(r.step), valid_ppl: num(r.valid_ppl), group_ppl: num(r.group_ppl) })
    }
  }
  const title = `3. Token classes of size ${labelOf.get(ref) ?? ref} in every size (double descent)`
  const caption =
    `Mean perplexity of the tokens that ${ref} puts in each class at threshold ${pct(th.threshold)}, in every size, ` +
    `against that size's validation perplexity (x reversed: training runs left to right; log axes). Dataset ${dataset}.`
  if (data.length === 0) return leftOut({ ...meta, title, caption }, [...notes, "group_trajectories.parquet has no positive perplexities to draw"])
  return {
    ...meta,
    title,
    caption,
    spec: top({
      data: { values: data },
      facet: { field: "class", type: "nominal", sort: CLASSES.slice(0, 3), title: null },
      columns: PANEL_COLUMNS,
      spec: {
        width: PANEL_WIDTH,
        height: PANEL_HEIGHT,
        mark: lineMark(longest),
        encoding: {
          x: { field: "valid_ppl", type: "quantitative", title: "validation perplexity (reversed)", scale: logScale(true), axis: logAxis() },
          y: { field: "group_ppl", type: "quantitative", title: "mean perplexity of the group", scale: logScale(), axis: logAxis() },
          color: sizeColor(sizes.map((s) => s.label)),
          order: { field: "step", type: "quantitative" },
        },
      },
      resolve: { scale: { y: "independent" } },
    }),
    notes,
  }
}

/** 4. Class × token-category shares: which kinds of tokens stagnate, rise or fall. */
export const categoryFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-categories",
    title: "4. Token kinds in each class",
    caption: "",
    sources: ["class_categories.parquet"],
  }
  const got = need(tables, "class_categories", ["model", "dataset", "threshold", "class", "category", "n"])
  if ("why" in got) return leftOut({ ...meta, caption: "Share of each token category in each class, per size." }, [got.why])
  const { dataset, notes } = chooseDataset(got.rows, options.validDataset, "class_categories.parquet")
  let rows = got.rows.filter((r) => str(r.dataset) === dataset)
  const th = chooseThreshold(rows, options.referenceThreshold, "class_categories.parquet")
  notes.push(...th.notes)
  rows = rows.filter((r) => sameFraction(num(r.threshold), th.threshold))
  // Keep the most frequent categories; merge the rest.
  const totals = new Map<string, number>()
  for (const r of rows) totals.set(str(r.category), (totals.get(str(r.category)) ?? 0) + num(r.n))
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([c]) => c)
  const kept = new Set(ranked.slice(0, MAX_CATEGORIES))
  const rest = ranked.length > MAX_CATEGORIES ? `${ranked.length - MAX_CATEGORIES} other categories` : ""
  const sizes = sizeOrder(options, rows.map((r) => str(r.model)))
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const sums = new Map<string, Json>()
  for (const r of rows) {
    const category = kept.has(str(r.category)) ? str(r.category) : rest
    const k = `${str(r.model)}|${category}|${str(r.class)}`
    const d = sums.get(k) ?? { size: labelOf.get(str(r.model)), category, class: str(r.class), n: 0 }
    d.n = (d.n as number) + num(r.n)
    sums.set(k, d)
  }
  const categories = [...ranked.slice(0, MAX_CATEGORIES), ...(rest ? [rest] : [])]
  return {
    ...meta,
    caption: `Of the tokens of each category (most frequent first), the share in each class at threshold ${pct(th.threshold)}, per size. Dataset ${dataset}.`,
    spec: top({
      data: { values: [...sums.values()] },
      facet: { field: "size", type: "ordinal", sort: sizes.map((s) => s.label), title: null },
      columns: PANEL_COLUMNS,
      spec: {
        width: PANEL_WIDTH,
        height: { step: 15 },
        mark: "bar",
        encoding: {
          y: { field: "category", type: "nominal", sort: categories, title: null },
          x: { field: "n", type: "quantitative", stack: "normalize", title: "share of the category's tokens", axis: { format: ".0%", tickCount: 4 } },
          color: classColor(),
          order: { field: "class_order", type: "quantitative" },
        },
      },
      transform: [{ calculate: `indexof(${JSON.stringify(CLASSES)}, datum.class)`, as: "class_order" }],
    }),
    notes,
  }
}

/** 5. Transitions between sizes: where one size's class-K tokens go in a larger size. */
export const transitionFigure = (tables: ReportTables, options: ReportOptions): Figure => {
  const meta = {
    id: "fig-transitions",
    title: "5. Class transitions between sizes",
    caption: "",
    sources: ["class_transitions.parquet"],
  }
  const got = need(tables, "class_transitions", ["dataset", "threshold", "model_from", "class_from", "model_to", "class_to", "n"])
  if ("why" in got) return leftOut({ ...meta, caption: "Where the tokens of each class in one size go in another size." }, [got.why])
  const { dataset, notes } = chooseDataset(got.rows, options.validDataset, "class_transitions.parquet")
  let rows = got.rows.filter((r) => str(r.dataset) === dataset)
  const th = chooseThreshold(rows, options.referenceThreshold, "class_transitions.parquet")
  notes.push(...th.notes)
  rows = rows.filter((r) => sameFraction(num(r.threshold), th.threshold))
  const sizes = sizeOrder(options, rows.flatMap((r) => [str(r.model_from), str(r.model_to)]))
  // Each size against the next larger one, and the smallest against the largest.
  const wanted: Array<[string, string]> = sizes.slice(1).map((s, i) => [sizes[i].name, s.name])
  if (sizes.length > 2) wanted.push([sizes[0].name, sizes[sizes.length - 1].name])
  const present = new Set(rows.map((r) => `${str(r.model_from)}|${str(r.model_to)}`))
  const pairs = wanted.filter(([a, b]) => present.has(`${a}|${b}`)).slice(0, MAX_PAIRS)
  if (pairs.length === 0) return leftOut({ ...meta, caption: "Where the tokens of each class in one size go in another size." }, [...notes, "class_transitions.parquet has no pair of sizes (a one-size run)"])
  const labelOf = new Map(sizes.map((s) => [s.name, s.label]))
  const pairLabel = (a: string, b: string) => `${labelOf.get(a)} → ${labelOf.get(b)}`
  const data: Json[] = []
  for (const [a, b] of pairs) {
    const rs = rows.filter((r) => str(r.model_from) === a && str(r.model_to) === b)
    const rowTotal = new Map<string, number>()
    for (const r of rs) rowTotal.set(str(r.class_from), (rowTotal.get(str(r.class_from)) ?? 0) + num(r.n))
    for (const r of rs) {
      const total = rowTotal.get(str(r.class_from)) ?? 0
      data.push({ pair: pairLabel(a, b), class_from: str(r.class_from), class_to: str(r.class_to), share: total > 0 ? num(r.n) / total : 0 })
    }
  }
  return {
    ...meta,
    caption:
      `Of the tokens the smaller size puts in each class (rows), the share the larger size puts in each class (columns), ` +
      `at threshold ${pct(th.threshold)}. Dataset ${dataset}.`,
    spec: top({
      data: { values: data },
      facet: { field: "pair", type: "nominal", sort: pairs.map(([a, b]) => pairLabel(a, b)), title: null },
      columns: 3,
      spec: {
        width: { step: 76 },
        height: { step: 30 },
        encoding: {
          x: { field: "class_to", type: "nominal", sort: CLASSES, title: "class in the larger size", axis: { labelAngle: 0, labelOverlap: false } },
          y: { field: "class_from", type: "nominal", sort: CLASSES, title: "class in the smaller size" },
        },
        layer: [
          { mark: "rect", encoding: { color: { field: "share", type: "quantitative", title: "share", scale: { domain: [0, 1], scheme: "blues" }, legend: { format: ".0%" } } } },
          {
            mark: { type: "text", fontSize: 12 },
            encoding: {
              text: { field: "share", type: "quantitative", format: ".0%" },
              color: { condition: { test: "datum.share > 0.55", value: "white" }, value: "#222" },
            },
          },
        ],
      },
    }),
    notes,
  }
}

/**
 * Every figure of the page, in order, numbered by position: each figure function's own number
 * ("6. …") is replaced, so a figure added in the middle renumbers the ones after it.
 */
export const buildFigures = (tables: ReportTables, options: ReportOptions): Figure[] =>
  [
    validationFigure(tables, options),
    classShareFigure(tables, options),
    groupTrajectoryFigure(tables, options),
    categoryFigure(tables, options),
    transitionFigure(tables, options),
    downstreamFigure(tables, options),
    taskAccuracyFigure(tables, options),
    marginFigure(tables, options),
    correlationFigure(tables, options),
    agreementFigure(tables, options),
    generatedFigure(tables, options),
    noiseFigure(tables, options),
    mauveFigure(tables),
  ].map((f, i) => ({ ...f, title: f.title.replace(/^\d+\./, `${i + 1}.`) }))
