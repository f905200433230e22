/**
 * What each drawn figure offers for download next to the page: its SVG, the CSV of the data it
 * draws (both files under report/, written by the report stage), and a PNG made in the browser
 * from the inline SVG by a small script (no canvas in Node; with scripts off the page keeps its
 * SVG and CSV links and simply has no PNG link). Pure.
 */
import type { Json } from "./spec.ts"

/** The files of a figure, relative to the run folder and to report/index.html. */
export const figureFiles = (id: string): { readonly svg: string; readonly csv: string; readonly svgLink: string; readonly csvLink: string } => ({
  svg: `report/figures/${id}.svg`,
  csv: `report/data/${id}.csv`,
  svgLink: `figures/${encodeURIComponent(id)}.svg`,
  csvLink: `data/${encodeURIComponent(id)}.csv`,
})

/** Every distinct `values` array of inline data in a spec, in the order first met (one shared by several layers once). */
const inlineData = (spec: unknown): Array<ReadonlyArray<Json>> => {
  const out: Array<ReadonlyArray<Json>> = []
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== "object") return
    if (Array.isArray(v)) return v.forEach(walk)
    for (const [k, x] of Object.entries(v)) {
      if (k === "values" && Array.isArray(x) && (x.length === 0 || typeof x[0] === "object") && !out.includes(x)) out.push(x as Json[])
      else walk(x)
    }
  }
  walk(spec)
  return out
}

const cell = (v: unknown): string => {
  if (v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v))) return ""
  const s = typeof v === "object" ? JSON.stringify(v) : String(v)
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

/**
 * The data a figure draws as CSV (RFC 4180, "\n" line ends, empty for a missing value): the rows of
 * its spec's inline data, columns in the order first met. A figure whose layers draw several data
 * sets (a line and its baseline) gets a first column `data` numbering them 1, 2, ….
 *   [{ size: "s", ppl: 12.5 }, { size: "m, big", ppl: null }]  →  "size,ppl\ns,12.5\n\"m, big\",\n"
 */
export const figureCsv = (spec: unknown): string => {
  const sets = inlineData(spec)
  const columns = [...new Set(sets.flatMap((rows) => rows.flatMap((r) => Object.keys(r))))]
  const numbered = sets.length > 1
  const head = [...(numbered ? ["data"] : []), ...columns].map(cell).join(",")
  const lines = sets.flatMap((rows, i) => rows.map((r) => [...(numbered ? [String(i + 1)] : []), ...columns.map((c) => cell(r[c]))].join(",")))
  return [head, ...lines].join("\n") + "\n"
}

/**
 * The page's one script: a "PNG" button (styled as a link) in each figure's downloads, which draws the figure's inline
 * SVG on a canvas at twice its size (white background) and saves it as <figure id>.png.
 */
export const PNG_SCRIPT = `
for (const box of document.querySelectorAll(".downloads[data-figure]")) {
  const id = box.dataset.figure
  const a = document.createElement("button")
  a.type = "button"
  a.className = "png"
  a.textContent = "PNG"
  a.addEventListener("click", () => {
    const svg = document.querySelector("#" + CSS.escape(id) + " .chart svg")
    const w = svg.width.baseVal.value, h = svg.height.baseVal.value, scale = 2
    const url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" }))
    const img = new Image()
    img.onload = () => {
      const canvas = document.createElement("canvas")
      canvas.width = Math.ceil(w * scale)
      canvas.height = Math.ceil(h * scale)
      const g = canvas.getContext("2d")
      g.fillStyle = "#fff"
      g.fillRect(0, 0, canvas.width, canvas.height)
      g.drawImage(img, 0, 0, canvas.width, canvas.height)
      URL.revokeObjectURL(url)
      canvas.toBlob((blob) => {
        const link = document.createElement("a")
        link.href = URL.createObjectURL(blob)
        link.download = id + ".png"
        document.body.appendChild(link)
        link.click()
        link.remove()
      }, "image/png")
    }
    img.src = url
  })
  box.append(" · ", a)
}
`
