/**
 * Text widths for laying out figures without a canvas.
 *
 * With no canvas, vega estimates every string as 0.8 em per character, about 1.5× too wide for
 * Helvetica: axis titles then "overflow" their axis and vega pads the figure with empty space.
 * The report sets its fonts to Helvetica/Arial (metric-compatible; Liberation Sans on Debian), so
 * widths from Helvetica's glyph table (AFM, 1/1000 em) match what the browser draws.
 */
import * as vega from "vega"

// Helvetica advance widths for ASCII 32…126, in 1/1000 em.
const ASCII = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // ' '…'/'
  556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // '0'…'?'
  1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // '@'…'O'
  667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // 'P'…'_'
  333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // '`'…'o'
  556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'…'~'
]
/** Anything else (Greek, arrows, CJK…): a wide-ish default. */
const OTHER = 600

/** Width in pixels of `text` in Helvetica at `fontSize` px; bold is about 6% wider. */
export const helveticaWidth = (text: string, fontSize: number, bold = false): number => {
  let w = 0
  for (const ch of text) {
    const c = ch.codePointAt(0)!
    w += c >= 32 && c <= 126 ? ASCII[c - 32] : OTHER
  }
  return (w / 1000) * fontSize * (bold ? 1.06 : 1)
}

interface TextItem {
  readonly fontSize?: number
  readonly fontWeight?: string | number
  readonly limit?: number
}

interface TextMetrics {
  width: (item: TextItem, text: unknown) => number
}

/**
 * Make vega measure text with Helvetica's widths (process-wide; idempotent). Widths are capped at
 * the item's `limit` so that vega's own truncation search stays correct.
 */
export const useHelveticaMetrics = (): void => {
  const metrics = (vega as unknown as { textMetrics: TextMetrics }).textMetrics
  metrics.width = (item, text) => {
    const s = text == null ? "" : String(text).trim()
    const size = item.fontSize != null ? +item.fontSize || 0 : 11
    const bold = item.fontWeight === "bold" || (typeof item.fontWeight === "number" && item.fontWeight >= 600)
    const w = helveticaWidth(s, size, bold)
    return item.limit !== undefined && item.limit > 0 ? Math.min(w, item.limit) : w
  }
}
