/**
 * The interactive version of a figure, for the page's inline Vega runtime: the same Vega-Lite spec
 * with three kinds of interaction added, and nothing else changed (the static SVG, the CSV and
 * the downloads are made from the plain spec). Pure.
 *
 * - Tooltips with exact values: every point, bar, cell and text mark shows all the fields of its
 *   data row (`tooltip: {content: "data"}`, unformatted); a line gets dots to hover (invisible
 *   ones, `fillOpacity: 0`, where it had none: the opacity the legend sets would show dots made
 *   transparent by `opacity`), so that a tooltip names one checkpoint, never a whole series.
 * - A legend that toggles sizes: clicking a size in the legend keeps it drawn and fades the others,
 *   clicking more adds them, clicking one again removes it, double-click shows all (one point
 *   selection on `size` bound to the legend, the opacity of every size-coloured mark conditioned on it).
 * - Zoom and pan: every view whose x and y are both quantitative (the trajectories and scatter
 *   plots; not bars or heatmaps) gets an interval selection bound to its scales: Ctrl + wheel
 *   (or a pinch) zooms, a drag pans, double-click resets.
 */
import type { TopLevelSpec } from "vega-lite"
import type { Json } from "./spec.ts"

/** The selection the size legend drives. */
export const SIZE_PARAM = "size_shown"
/** Opacity of a size not selected, as a share of its mark's own opacity. */
export const FADED = 0.12

/**
 * The wheel zooms only with Ctrl (⌘ on a Mac) held, as on web maps: a plain wheel over a figure
 * scrolls the page, as it would without the live views (the page has a dozen figures, nearly all
 * zoomable). A trackpad's pinch arrives as a wheel with Ctrl. (Shift would not do: with Shift the
 * browser turns the wheel sideways, and Vega-Lite's zoom reads only its vertical delta.)
 */
export const ZOOM_EVENTS = "wheel![event.ctrlKey || event.metaKey]"

/** Marks whose items are single data rows (a tooltip there names one row). */
const ROW_MARKS = new Set(["point", "circle", "square", "rect", "bar", "text", "tick"])

type Mutable = { [k: string]: any }

/**
 * `spec` with tooltips, the size legend toggle and zoom added (see the module's comment). The input
 * is not changed. A spec without a size-coloured mark gets no legend selection, one without a
 * quantitative x–y view no zoom.
 */
export const interactiveSpec = (spec: TopLevelSpec): TopLevelSpec => {
  const out = structuredClone(spec) as unknown as Mutable
  let legendDefined = false
  let zooms = 0

  /** A unit spec (has `mark`); `view.zoomed`: its view (a layer's units share one) already has a zoom. */
  const unit = (u: Mutable, view: { zoomed: boolean }): void => {
    const mark: Mutable = typeof u.mark === "string" ? { type: u.mark } : { ...u.mark }
    const enc: Mutable = u.encoding ?? {}
    if (ROW_MARKS.has(mark.type)) mark.tooltip = { content: "data" }
    else if (mark.type === "line") {
      // Dots carry the tooltip; the line's own path would name only its first row.
      const point = mark.point && typeof mark.point === "object" ? mark.point : { filled: true, fillOpacity: 0, size: 70 }
      mark.point = { ...point, tooltip: { content: "data" } }
    }
    u.mark = mark

    const color = enc.color
    if (color && typeof color === "object" && color.field === "size" && enc.opacity === undefined && enc.fillOpacity === undefined) {
      // A band (area) fades through its fill, so that the legend, which takes its symbols' opacity
      // from the layers' `opacity`, draws the sizes at full strength.
      const channel = mark.type === "area" ? "fillOpacity" : "opacity"
      const base = typeof mark[channel] === "number" ? mark[channel] : typeof mark.opacity === "number" ? mark.opacity : 1
      if (channel === "fillOpacity") delete mark.opacity
      enc[channel] = { condition: { param: SIZE_PARAM, value: base, empty: true }, value: round(base * FADED) }
      if (!legendDefined) {
        u.params = [...(u.params ?? []), { name: SIZE_PARAM, select: { type: "point", fields: ["size"], toggle: "true" }, bind: "legend" }]
        legendDefined = true
      }
    }

    const quantitative = (c: Mutable | undefined) => !!c && c.type === "quantitative" && !c.bin && !c.aggregate && !c.timeUnit
    if (!view.zoomed && quantitative(enc.x) && quantitative(enc.y)) {
      u.params = [...(u.params ?? []), { name: `zoom_${++zooms}`, select: { type: "interval", encodings: ["x", "y"], zoom: ZOOM_EVENTS }, bind: "scales" }]
      view.zoomed = true
    }
    if (Object.keys(enc).length) u.encoding = enc
  }

  /** Any spec: a unit, a layer (one view: one zoom among its layers), a facet, or a concatenation. */
  const walk = (s: Mutable, view?: { zoomed: boolean }): void => {
    if (!s || typeof s !== "object") return
    if (s.mark !== undefined) return unit(s, view ?? { zoomed: false })
    if (Array.isArray(s.layer)) {
      const shared = view ?? { zoomed: false }
      for (const l of s.layer) walk(l, shared)
      return
    }
    for (const k of ["hconcat", "vconcat", "concat"]) if (Array.isArray(s[k])) for (const c of s[k]) walk(c)
    if (s.spec) walk(s.spec)
  }
  walk(out)
  return out as unknown as TopLevelSpec
}

const round = (x: number) => Math.round(x * 1000) / 1000

/** The parameter names a spec defines, in order (the live hint says what they offer). */
export const paramNames = (spec: unknown): string[] => {
  const names: string[] = []
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== "object") return
    if (Array.isArray(v)) return v.forEach(walk)
    for (const [k, x] of Object.entries(v as Json)) {
      if (k === "params" && Array.isArray(x)) for (const p of x) names.push(String((p as Json).name))
      else if (k !== "data" && k !== "datasets") walk(x)
    }
  }
  walk(spec)
  return names
}
