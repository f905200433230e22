/**
 * Pieces shared by every figure: the Figure record, the page-wide Vega-Lite config, the colours of
 * sizes and classes, and the "left out" figure.
 */
import type { TopLevelSpec } from "vega-lite"
import { missingColumns, rowsOf, tableFiles, tableSpecs, type ReportTables, type Row, type TableName } from "./data.ts"

/** A JSON object that becomes a Vega-Lite spec (checked when compiled, see render.ts). */
export type Json = { [k: string]: unknown }

/** A small table printed under a figure or in a section. Cells are plain text (escaped when rendered). */
export interface TextTable {
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ReadonlyArray<string>>
  /** Index of rows to emphasise (e.g. the best predictor). */
  readonly strong?: ReadonlySet<number>
}

export interface Figure {
  /** HTML id and SVG id prefix, e.g. "fig-validation-ppl". */
  readonly id: string
  readonly title: string
  /** One line saying what the figure shows. */
  readonly caption: string
  /** Parquet files it is built from, relative to the run folder. */
  readonly sources: ReadonlyArray<string>
  /** Absent when the figure is left out; `notes` then says why. */
  readonly spec?: TopLevelSpec
  /** Caveats (e.g. a fallback dataset), or the reason the figure is left out. */
  readonly notes: ReadonlyArray<string>
  readonly table?: TextTable
  /** A second table under the first, with a heading (e.g. example generations). */
  readonly samples?: { readonly title: string; readonly table: TextTable }
}

export const CLASSES = ["stagnated", "upward", "downward", "other"] as const
/**
 * Colours of the classes, from hues the sizes' viridis never takes (amber, red, magenta, grey;
 * viridis runs from purple through blue and green to yellow-green), so that a class is never read
 * as a size.
 */
export const CLASS_COLORS = ["#e08a00", "#d7301f", "#c51b7d", "#bdbdbd"]

/** Which stage writes each table (for the notes of left-out figures). */

/**
 * The rows of a table when it exists and has the columns a figure needs; otherwise the sentence
 * that says why not ("class_summary.parquet is missing (written by the classify stage)").
 */
export const need = (
  tables: ReportTables,
  name: TableName,
  columns: ReadonlyArray<string>,
  keep?: Parameters<typeof rowsOf>[2],
): { rows: Row[] } | { why: string } => {
  const t = tables[name]
  if (!t) return { why: `${tableFiles[name]} is missing (written by the ${tableSpecs[name].stage} stage)` }
  const lacking = missingColumns(t, columns)
  if (lacking.length) return { why: `${tableFiles[name]} lacks column${lacking.length > 1 ? "s" : ""} ${lacking.join(", ")}` }
  const rows = rowsOf(t, columns, keep)
  if (rows.length === 0) return { why: `${tableFiles[name]} has no rows for this figure` }
  return { rows }
}

export const leftOut = (fig: Omit<Figure, "spec" | "notes" | "table" | "samples">, why: ReadonlyArray<string>): Figure => ({ ...fig, notes: why })

/**
 * Page-wide look: readable labels (no text under 12 px), light grid, no border around views.
 * `labelSeparation`: labels of one axis keep this many pixels apart, the others are hidden
 * (`labelOverlap`), so that "300" and "400" on a log axis never read as "400300".
 */
/** Pixels kept between two labels of one axis (vlConfig). */
export const LABEL_SEPARATION = 6

export const vlConfig: Json = {
  // No ARIA attributes on every point (they would double the page); each figure is one labelled image.
  aria: false,
  font: "Helvetica, Arial, sans-serif",
  padding: 6,
  axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: "normal", gridColor: "#ececec", labelOverlap: "greedy", labelSeparation: LABEL_SEPARATION },
  legend: { labelFontSize: 12, titleFontSize: 13, labelLimit: 220, titleFontWeight: "normal" },
  header: { labelFontSize: 13, titleFontSize: 13, labelFontWeight: "bold" },
  title: { fontSize: 14, fontWeight: "normal", anchor: "start" },
  view: { stroke: "#d0d0d0" },
  line: { strokeWidth: 1.8 },
  point: { size: 24 },
}

/** Width of one panel of a figure, in pixels (panels wrap into PANEL_COLUMNS columns). */
export const PANEL_WIDTH = 360
export const PANEL_HEIGHT = 230
/** Panels side by side on the page (two panels of PANEL_WIDTH and their axes fit its 1,120 px). */
export const PANEL_COLUMNS = 2

/** A log axis's labels: SI format ("300", "1k", "2M"), few ticks. */
export const logAxis = (format = "~s"): Json => ({ format, tickCount: 6 })

/** At most this many checkpoints per series (size, class, pair…) are drawn. */
export const MAX_POINTS_PER_SERIES = 120
/** Series longer than this are drawn as plain lines, without a dot per checkpoint. */
export const MAX_DOTTED_POINTS = 40

/** A line mark, with a dot per point when the longest series is short enough to show them. */
export const lineMark = (longestSeries: number): Json => ({
  type: "line",
  point: longestSeries <= MAX_DOTTED_POINTS ? { size: 14 } : false,
})

/** Wrap a spec body with the schema and config. */
export const top = (body: Json): TopLevelSpec =>
  ({ $schema: "https://vega.github.io/schema/vega-lite/v6.json", config: vlConfig, ...body }) as unknown as TopLevelSpec

/** Colour by size, smallest (dark) to largest (green), legend in size order. `labels` smallest first. */
export const sizeColor = (labels: ReadonlyArray<string>, field = "size"): Json => ({
  field,
  type: "ordinal",
  title: "size",
  sort: labels,
  scale: { domain: labels, range: sizeRange(labels.length) },
})

/** `n` colours from viridis without its pale yellow end (legible on white). */
const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b"]
export const sizeRange = (n: number): string[] => {
  if (n <= 1) return [VIRIDIS[3]]
  const last = VIRIDIS.length - 2 // stop before the palest colour
  return Array.from({ length: n }, (_, i) => VIRIDIS[Math.round((i * last) / (n - 1))])
}

export const classColor = (classes: ReadonlyArray<string> = CLASSES): Json => ({
  field: "class",
  type: "nominal",
  title: "class",
  sort: classes,
  scale: { domain: classes, range: classes.map((c) => CLASS_COLORS[CLASSES.indexOf(c as (typeof CLASSES)[number])] ?? "#999") },
})

/**
 * A log scale fitted to the data (Vega's "nice" log domains round out to whole decades and leave
 * most of a panel empty), with a few pixels of padding; `reverse` for perplexity axes.
 */
export const logScale = (reverse = false): Json => ({ type: "log", nice: false, padding: 8, ...(reverse ? { reverse: true } : {}) })

/** Format numbers in tables: 3 significant digits, or "–" when missing. */
export const fmt = (v: number | null | undefined, digits = 3): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : String(+v.toPrecision(digits))
