/**
 * Vega-Lite → Vega → SVG in Node, and the one-file HTML page.
 *
 * Figures are rendered with a headless `vega.View` (`renderer: "none"`, no canvas needed for
 * SVG), so the page shows them with JavaScript off and loads nothing from the network; with
 * scripts on, live.ts replaces each with a live Vega view of the same figure (interactive.ts). Several
 * SVGs share one HTML document, so the ids vega gives clip paths and gradients ("clip1",
 * "gradient_0") are prefixed with the figure's id before they are inlined.
 */
import * as vega from "vega"
import { compile, type TopLevelSpec } from "vega-lite"
import type { ReportOptions, ReportTables } from "./data.ts"
import { figureCsv, figureFiles, PNG_SCRIPT } from "./downloads.ts"
import { buildFigures } from "./figures.ts"
import { interactiveSpec, paramNames, SIZE_PARAM } from "./interactive.ts"
import { LIVE_SCRIPT, liveHint, packedRuntime, packText } from "./live.ts"
import type { Figure, TextTable } from "./spec.ts"
import { checksTable, sizeSummary, tableInventory } from "./summary.ts"
import { useHelveticaMetrics } from "./text-width.ts"
import { firstLine } from "../../pipeline/errors.ts"

type Logger = NonNullable<NonNullable<Parameters<typeof compile>[1]>["logger"]>

/** A logger that collects warnings (and throws on errors) instead of printing them. */
const collectingLogger = (warnings: string[]): Logger => {
  const logger: Logger = {
    level: (() => logger) as Logger["level"],
    error(...args: unknown[]) {
      throw new Error(args.map(String).join(" "))
    },
    warn(...args: unknown[]) {
      warnings.push(args.map(String).join(" "))
      return this
    },
    info() {
      return this
    },
    debug() {
      return this
    },
  }
  return logger
}

export interface RenderedSvg {
  readonly svg: string
  /** Vega-Lite and Vega warnings (e.g. a channel dropped); a correct spec has none. */
  readonly warnings: ReadonlyArray<string>
}

/** A figure's live view for the page: its interactive spec compiled to Vega, packed (live.ts). */
export interface LiveSpec {
  readonly packed: string
  readonly hint: string
}

/**
 * Compile a figure's interactive spec (interactive.ts) to Vega and check that Vega parses it;
 * Vega-Lite's and Vega's warnings are collected as in renderSvg.
 */
export const compileLive = (spec: TopLevelSpec): { live: LiveSpec; warnings: ReadonlyArray<string> } => {
  const warnings: string[] = []
  const logger = collectingLogger(warnings)
  const interactive = interactiveSpec(spec)
  const compiled = compile(interactive, { logger }).spec
  vega.parse(compiled)
  const params = paramNames(interactive)
  const hint = liveHint({ zoom: params.some((p) => p.startsWith("zoom_")), legend: params.includes(SIZE_PARAM) })
  return { live: { packed: packText(JSON.stringify(compiled)), hint }, warnings }
}

/** Render a Vega-Lite spec to an SVG string; ids inside it are prefixed with `idPrefix`. */
export const renderSvg = async (spec: TopLevelSpec, idPrefix: string): Promise<RenderedSvg> => {
  useHelveticaMetrics()
  const warnings: string[] = []
  const logger = collectingLogger(warnings)
  const compiled = compile(spec, { logger }).spec
  const view = new vega.View(vega.parse(compiled), { renderer: "none", logger })
  try {
    const svg = await view.toSVG()
    return { svg: slimSvg(roundCoordinates(prefixIds(svg, idPrefix))), warnings }
  } finally {
    view.finalize()
  }
}

/**
 * Round the coordinates in geometry attributes to 2 decimals (`translate(21.663710468815193,8.0053)`
 * → `translate(21.66,8.01)`): invisible on screen, a third of the page on suites with many points.
 * Text content is left alone.
 */
export const roundCoordinates = (svg: string): string =>
  svg.replace(/\s(d|transform|points|x|y|x1|x2|y1|y2|width|height)="([^"]*)"/g, (_, name: string, value: string) =>
    ` ${name}="${value.replace(/-?\d+\.\d{3,}/g, (n) => String(Math.round(Number(n) * 100) / 100))}"`,
  )

/**
 * Drop what a static SVG of Vega's carries but never shows (a suite-sized page is a quarter
 * smaller for it): the empty background path of every group without a fill or stroke of its own
 * (Vega's root group sets `fill="none"`), the hidden foreground path, ARIA roles and labels (the
 * page labels each chart as one image; `config.aria` is off), `pointer-events` (nothing listens),
 * and attributes equal to their default where no ancestor sets another (`opacity="1"`,
 * `stroke-width="1"`: Vega puts neither on a group) and `<g transform="translate(0,0)">`. Text
 * content is left alone: only the inside of tags is touched.
 */
export const slimSvg = (svg: string): string =>
  svg
    .replace(/<path class="background" aria-hidden="true" d="[^"]*"(?: pointer-events="none")?\/>/g, "")
    .replace(/<path class="foreground" aria-hidden="true" d="[^"]*"(?: pointer-events="none")? display="none"\/>/g, "")
    .replace(/<[a-z][^>]*>/g, (tag) =>
      tag
        .replace(/ (?:aria-hidden="true"|role="graphics-(?:symbol|object|document)"|aria-roledescription="[^"]*"|aria-label="[^"]*"|pointer-events="none"|opacity="1"|stroke-width="1")(?=[ />])/g, "")
        .replace(/^<g transform="translate\(0,0\)"/, "<g"),
    )

/** `id="clip1"` → `id="P-clip1"`, and every `url(#clip1)` / `href="#clip1"` with it. */
export const prefixIds = (svg: string, prefix: string): string => {
  const ids = new Set([...svg.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]))
  if (ids.size === 0) return svg
  return svg
    .replace(/\sid="([^"]+)"/g, (_, id: string) => ` id="${prefix}-${id}"`)
    .replace(/url\(#([^)]+)\)/g, (m, id: string) => (ids.has(id) ? `url(#${prefix}-${id})` : m))
    .replace(/href="#([^"]+)"/g, (m, id: string) => (ids.has(id) ? `href="#${prefix}-${id}"` : m))
}

/** Escape text for HTML element content and double-quoted attributes. */
export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

/** A link from `report/index.html` to a file under the run folder: "checkpoints.parquet" → "../checkpoints.parquet". */
export const runLink = (rel: string): string => `../${rel.split("/").map(encodeURIComponent).join("/")}`

const textTable = (t: TextTable, cls = "data"): string => {
  const head = `<tr>${t.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>`
  const body = t.rows
    .map((r, i) => `<tr${t.strong?.has(i) ? ' class="best"' : ""}>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`)
    .join("\n")
  return `<table class="${cls}"><thead>${head}</thead><tbody>\n${body}\n</tbody></table>`
}

export interface RenderedFigure extends Figure {
  /** Present when the figure was drawn. */
  readonly svg?: string
  /** Its live view, when drawn and its interactive spec compiled. */
  readonly live?: LiveSpec
}

export interface PageInput {
  readonly run: string
  readonly figures: ReadonlyArray<RenderedFigure>
  readonly summary: TextTable
  readonly inventory: ReadonlyArray<{ readonly file: string; readonly rows: number | undefined }>
  readonly checks?: { readonly table: TextTable; readonly total: number }
  /** `analysis.exclude_flagged` of the run (said in the checks section). */
  readonly excludeFlagged: boolean
  /** Files that exist and may be linked (relative to the run folder); other sources are named, not linked. */
  readonly existing: ReadonlySet<string>
  /** The provenance section, as HTML (provenance.ts provenanceHtml); absent: none. */
  readonly provenance?: string
  /** The packed Vega runtime (live.ts packedRuntime); absent: the page has only its static figures. */
  readonly runtime?: string
}

/** The page's width for a chart (main's 1,180 px less its padding): a wider SVG is scaled down, and its 12 px text with it. */
export const MAX_CHART_WIDTH = 1124

const CSS = `
body{font:15px/1.45 Helvetica,Arial,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 8px}
p.lead{color:#555;margin:0 0 18px}
nav ol{columns:2;margin:0 0 20px;padding-left:22px}
section.fig{margin:28px 0;padding:16px 0 0;border-top:1px solid #e4e4e4}
figure{margin:0}
.chart{overflow-x:auto}
.chart svg{max-width:100%;height:auto;display:block}
figcaption,p.caption{margin:6px 0 0;color:#333}
.src{color:#666;font-size:13px;margin-left:6px}
p.downloads{margin:4px 0 0;font-size:13px;color:#555}
p.hint{margin:4px 0 0;font-size:13px;color:#555;font-style:italic}
.chart.live .vega-view svg{max-width:none}
#vg-tooltip-element{font:12px Helvetica,Arial,sans-serif}
p.downloads button{font:inherit;color:#1a5fb4;background:none;border:0;padding:0;text-decoration:underline;cursor:pointer}
.note{background:#fff8e1;border-left:3px solid #f0b400;padding:6px 10px;margin:8px 0;font-size:14px}
section.missing h2{color:#777}
table.data{border-collapse:collapse;margin:10px 0;font-size:13px}
table.data th,table.data td{border:1px solid #ddd;padding:3px 8px;text-align:left}
table.data th{background:#f3f3f3;font-weight:600}
table.data tr.best td{font-weight:700;background:#eef7ee}
h3{font-size:15px;margin:14px 0 4px}
table.provenance th{text-align:left;width:140px}
details pre{font-size:12px;max-height:420px;overflow:auto;background:#f6f6f6;padding:8px}
table.samples td{white-space:pre-wrap;vertical-align:top;max-width:520px}
a{color:#1a5fb4}
`

/**
 * One figure's section. A drawn figure is `<figure>` (chart + caption); a left-out one keeps its
 * heading and caption as a paragraph. Notes and tables follow, outside the `<figure>` (HTML wants
 * figcaption as its first or last child).
 */
const figureHtml = (f: RenderedFigure, existing: ReadonlySet<string>): string => {
  const sources = f.sources
    .map((s) => (existing.has(s) ? `<a href="${escapeHtml(runLink(s))}">${escapeHtml(s)}</a>` : `${escapeHtml(s)} (missing)`))
    .join(", ")
  const caption = `${escapeHtml(f.caption)}<span class="src">Source: ${sources}</span>`
  const files = figureFiles(f.id)
  const downloads = f.svg
    ? `<p class="downloads" data-figure="${escapeHtml(f.id)}">Download: <a class="svg" href="${escapeHtml(files.svgLink)}" download>SVG</a> · <a class="csv" href="${escapeHtml(files.csvLink)}" download>CSV</a> (the data drawn)</p>`
    : ""
  const notes = f.notes.map((n) => `<p class="note">${f.svg ? "" : "Left out: "}${escapeHtml(n)}</p>`).join("\n")
  const table = f.table && f.table.rows.length ? textTable(f.table) : ""
  const samples = f.samples && f.samples.table.rows.length ? `<h3>${escapeHtml(f.samples.title)}</h3>\n${textTable(f.samples.table, "data samples")}` : ""
  return [
    `<section class="fig${f.svg ? "" : " missing"}" id="${escapeHtml(f.id)}">`,
    `<h2>${escapeHtml(f.title)}</h2>`,
    f.svg
      ? `<figure><div class="chart" role="img" aria-label="${escapeHtml(f.title)}">${f.svg}</div>\n<figcaption>${caption}</figcaption></figure>`
      : `<p class="caption">${caption}</p>`,
    downloads,
    f.svg && f.live
      ? `<script type="application/gzip+base64" class="vega-spec" data-figure="${escapeHtml(f.id)}" data-hint="${escapeHtml(f.live.hint)}">${f.live.packed}</script>`
      : "",
    notes,
    table,
    samples,
    `</section>`,
  ]
    .filter((s) => s !== "")
    .join("\n")
}

/**
 * The whole page: one HTML file, inline CSS and SVG, links relative to `report/`. Its scripts add
 * the PNG links (downloads.ts PNG_SCRIPT) and replace each static SVG with a live view of the
 * same figure (live.ts LIVE_SCRIPT, from the packed runtime and specs), so the page reads the same
 * with scripts off, only without tooltips, zoom and the legend toggle.
 */
export const renderPage = (p: PageInput): string => {
  const shown = p.figures.filter((f) => f.svg).length
  const inventoryHtml = [
    `<table class="data inventory"><thead><tr><th>table</th><th>rows</th></tr></thead><tbody>`,
    ...p.inventory.map((t) => {
      const name = p.existing.has(t.file) ? `<a href="${escapeHtml(runLink(t.file))}">${escapeHtml(t.file)}</a>` : escapeHtml(t.file)
      return `<tr><td>${name}</td><td>${t.rows === undefined ? "missing" : t.rows}</td></tr>`
    }),
    `</tbody></table>`,
  ].join("\n")
  const checks = p.checks
    ? [
        `<section id="checks"><h2>Checkpoint checks</h2>`,
        `<p>${p.checks.total} finding${p.checks.total === 1 ? "" : "s"} of the checks stage` +
          `${p.checks.total > p.checks.table.rows.length ? ` (first ${p.checks.table.rows.length} shown)` : ""}; ` +
          `source: <a href="${escapeHtml(runLink("checkpoint_checks.parquet"))}">checkpoint_checks.parquet</a>. ` +
          (p.excludeFlagged
            ? "<code>analysis.exclude_flagged</code> is on: the analysis stages dropped these checkpoints.</p>"
            : "<code>analysis.exclude_flagged</code> is off: these checkpoints are included in every table and figure.</p>"),
        textTable(p.checks.table),
        `</section>`,
      ].join("\n")
    : ""
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(`Training trajectories — ${p.run}`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>Training trajectories: ${escapeHtml(p.run)}</h1>
<p class="lead">${shown} of ${p.figures.length} figures drawn from this run's Parquet tables (links are relative to the run folder).</p>
<nav><ol>${p.figures.map((f) => `<li><a href="#${escapeHtml(f.id)}">${escapeHtml(f.title.replace(/^\d+\.\s*/, ""))}</a>${f.svg ? "" : " (left out)"}</li>`).join("")}</ol></nav>
<section id="summary"><h2>Summary</h2>
${textTable(p.summary)}
${inventoryHtml}
</section>
${p.figures.map((f) => figureHtml(f, p.existing)).join("\n")}
${checks}
${p.provenance ?? ""}
</main>
<script>${PNG_SCRIPT}</script>
${p.runtime !== undefined && p.figures.some((f) => f.live) ? `<script type="application/gzip+base64" id="vega-runtime">${p.runtime}</script>\n<script>${LIVE_SCRIPT}</script>` : ""}
</body>
</html>
`
}

/**
 * Build the whole page from the run's tables: every figure's spec (figures.ts), rendered to SVG;
 * a figure vega cannot draw is left out with the error as its note, never failing the page.
 * `files`: each drawn figure's SVG and CSV (downloads.ts figureFiles), to be written next to the page.
 * `existing`: files under the run folder that may be linked.
 */
export const buildReportHtml = async (
  tables: ReportTables,
  options: ReportOptions,
  existing: ReadonlySet<string>,
  provenance?: string,
): Promise<{ html: string; figures: ReadonlyArray<RenderedFigure>; files: ReadonlyArray<{ readonly path: string; readonly data: string }>; warnings: ReadonlyArray<string> }> => {
  const warnings: string[] = []
  const figures: RenderedFigure[] = []
  const files: Array<{ path: string; data: string }> = []
  for (const f of buildFigures(tables, options)) {
    if (!f.spec) {
      figures.push(f)
      continue
    }
    try {
      const r = await renderSvg(f.spec, f.id)
      warnings.push(...r.warnings.map((w) => `${f.id}: ${w}`))
      // A figure whose interactive spec does not compile is drawn static only, with the reason as a warning.
      let live: LiveSpec | undefined
      try {
        const c = compileLive(f.spec)
        warnings.push(...c.warnings.map((w) => `${f.id} (interactive): ${w}`))
        live = c.live
      } catch (e) {
        warnings.push(`${f.id} (interactive): ${firstLine(e)}; the figure stays static`)
      }
      figures.push({ ...f, svg: r.svg, ...(live ? { live } : {}) })
      const paths = figureFiles(f.id)
      files.push({ path: paths.svg, data: r.svg }, { path: paths.csv, data: figureCsv(f.spec) })
    } catch (e) {
      const { spec: _spec, ...rest } = f
      figures.push({ ...rest, notes: [...f.notes, `the figure could not be drawn: ${firstLine(e)}`] })
    }
  }
  const checks = checksTable(tables)
  let runtime: string | undefined
  if (figures.some((f) => f.live)) {
    try {
      runtime = await packedRuntime()
    } catch (e) {
      warnings.push(`the Vega runtime could not be inlined (${firstLine(e)}); every figure stays static`)
    }
  }
  const html = renderPage({
    run: options.run,
    figures,
    summary: sizeSummary(tables, options),
    inventory: tableInventory(tables),
    ...(checks ? { checks } : {}),
    excludeFlagged: options.excludeFlagged,
    existing,
    ...(provenance !== undefined ? { provenance } : {}),
    ...(runtime !== undefined ? { runtime } : {}),
  })
  return { html, figures, files, warnings }
}
