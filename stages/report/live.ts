/**
 * The page's live figures: each drawn figure's interactive Vega spec (interactive.ts, compiled to
 * Vega here in Node) and the Vega runtime with vega-tooltip, inlined so that the page stays one
 * file that works offline. The page shows the static SVGs first (and only them with scripts off);
 * LIVE_SCRIPT replaces a figure's SVG with a live view of the same figure once it nears the
 * viewport.
 *
 * Both travel gzip-compressed and base64-encoded (`<script type="application/gzip+base64">`, which
 * the browser does not run) and are unpacked with the browser's own DecompressionStream: JSON of
 * thousands of data rows compresses about 9×, and a suite-sized page (74 tasks × 8 sizes) stays
 * under 4 MB with the static SVGs beside them. A browser without DecompressionStream keeps the
 * static page.
 */
import { createRequire } from "node:module"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"

/** gzip (level 9, deterministic for a given zlib) then base64. */
export const packText = (text: string): string => gzipSync(Buffer.from(text, "utf8"), { level: 9 }).toString("base64")

let runtime: string | undefined

/**
 * vega.min.js (the package's own UMD build: global `vega`) followed by vega-tooltip bundled by
 * esbuild as an IIFE (global `vegaTooltip`), as one packed text; made once per process.
 */
export const packedRuntime = async (): Promise<string> => {
  if (runtime !== undefined) return runtime
  const require = createRequire(import.meta.url)
  // The package's exports name only its ES module; the UMD build lies beside it.
  const vegaJs = fs.readFileSync(path.join(path.dirname(require.resolve("vega")), "vega.min.js"), "utf8")
  const esbuild = await import("esbuild")
  const tooltip = await esbuild.build({
    stdin: { contents: `export { Handler } from "vega-tooltip"`, resolveDir: path.dirname(fileURLToPath(import.meta.url)), loader: "js" },
    bundle: true,
    format: "iife",
    globalName: "vegaTooltip",
    minify: true,
    target: "es2020",
    write: false,
    logLevel: "silent",
    legalComments: "inline",
  })
  runtime = packText(`${vegaJs}\n;${tooltip.outputFiles[0].text}`)
  return runtime
}

/** What a live figure offers, said in the hint under it. */
export interface LiveFeatures {
  readonly zoom: boolean
  readonly legend: boolean
}

/** The hint shown under a figure once it is live. */
export const liveHint = (f: LiveFeatures): string =>
  [
    "Hover a mark for its exact values",
    ...(f.zoom ? ["Ctrl + scroll (or pinch) to zoom, drag to pan"] : []),
    ...(f.legend ? ["click sizes in the legend to show only those"] : []),
    ...(f.zoom || f.legend ? ["double-click to reset"] : []),
  ].join("; ") + "."

/**
 * The page's script for live figures. Unpacks the runtime once, then, for each figure's packed
 * spec, when the figure comes within 600 px of the viewport: renders a Vega view (SVG renderer,
 * vega-tooltip) off-page, and only when it has rendered puts it in place of the static SVG
 * (`.chart.live`, the view kept as `chart.vegaView`) with the hint under the chart. A figure
 * whose view fails keeps its static SVG (`data-live="failed"`) and the error goes to the console.
 */
export const LIVE_SCRIPT = `
(() => {
  const runtime = document.getElementById("vega-runtime")
  if (!runtime || typeof DecompressionStream === "undefined" || typeof IntersectionObserver === "undefined") return
  const unpack = (el) => {
    const bytes = Uint8Array.from(atob(el.textContent.trim()), (c) => c.charCodeAt(0))
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text()
  }
  const ready = unpack(runtime).then((code) => {
    const s = document.createElement("script")
    s.textContent = code
    document.head.append(s)
    const handler = new vegaTooltip.Handler({ theme: "light", maxDepth: 1 })
    // A data row as drawn, without the sort keys Vega-Lite adds to it ("color_size_sort_index").
    return (h, event, item, value) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        value = Object.fromEntries(Object.entries(value).filter(([k]) => !k.endsWith("_sort_index")))
      }
      return handler.call(h, event, item, value)
    }
  })
  const goLive = async (block) => {
    const id = block.dataset.figure
    const section = document.getElementById(id)
    const chart = section && section.querySelector(".chart")
    if (!chart) return
    try {
      const [tooltip, text] = await Promise.all([ready, unpack(block)])
      const holder = document.createElement("div")
      holder.className = "vega-view"
      const view = new vega.View(vega.parse(JSON.parse(text)), { renderer: "svg", container: holder, hover: true })
      view.tooltip(tooltip)
      await view.runAsync()
      chart.replaceChildren(holder)
      chart.classList.add("live")
      chart.vegaView = view
      const hint = document.createElement("p")
      hint.className = "hint"
      hint.textContent = block.dataset.hint
      chart.after(hint)
    } catch (e) {
      chart.dataset.live = "failed"
      console.error("figure " + id + ": the live view failed, the static one stays: " + e)
    }
  }
  const blocks = new Map([...document.querySelectorAll("script.vega-spec")].map((b) => [b.dataset.figure, b]))
  const seen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue
      seen.unobserve(e.target)
      goLive(blocks.get(e.target.id))
    }
  }, { rootMargin: "600px 0px" })
  for (const id of blocks.keys()) {
    const section = document.getElementById(id)
    if (section) seen.observe(section)
  }
})()
`
