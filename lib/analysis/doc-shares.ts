/**
 * Bootstrap intervals of class shares, resampling documents (pure: counts in, intervals out).
 *
 * The tokens of one document are not independent draws: they share its topic, genre and
 * vocabulary, so their classes are correlated, and a binomial interval over tokens would be far too
 * narrow. The unit that was sampled is the document, so a replicate b (b = 0…B−1) draws D documents with
 * replacement from the dataset's D documents, and the share of a cell (one model, threshold and
 * class) in it is
 *   share*(cell) = Σ_draws n_cell(doc) / Σ_draws n_tokens(doc)
 * One draw serves every cell of the dataset, so the intervals of a dataset's models, thresholds and
 * classes come from the same resampled documents (the four classes of a replicate still sum to 1).
 * The 95% interval is the 2.5th and 97.5th percentiles of the B replicates (lib/stats.ts, as the
 * correlation table's).
 *
 * The draws: replicate b uses mulberry32(streamSeed(seed, STREAM_CLASS_SHARES, b)) (lib/random.ts)
 * and takes document ⌊u · D⌋ for each of its D numbers u, in order. Documents are numbered by first
 * appearance in token order, so the draws depend on the dataset's documents only: not on the other
 * datasets, the threads, or the blocks the tokens were read in.
 *
 * Worked example: documents of 4, 2 and 6 tokens with 1, 2 and 0 upward tokens (share 3/12 = 0.25);
 * a replicate that draws documents 1, 1, 0 has share (2 + 2 + 1) / (2 + 2 + 4) = 5/8.
 *
 * Cost: B · D · cells multiply-adds at most (about 0.63 of it: documents not drawn are skipped),
 * on the main thread after the blocks. With B = 1,000 (2-core machine, under load): a demo dataset
 * (2–3 documents, 84 cells) ≈ 0.04 s, mostly the percentiles' sorts; 500 documents × 84 cells
 * ≈ 0.1 s; 10,000 documents × 224 cells (8 models, 7 thresholds) ≈ 5 s.
 * Memory: the counts, D × cells int32.
 */
import { mulberry32, streamSeed } from "../random.ts"
import { percentileInterval } from "../stats.ts"

/** lib/random.ts stream purpose of the document draws (correlate's examples use 21). */
export const STREAM_CLASS_SHARES = 22

/**
 * The documents of a block of tokens, as runs of one doc_id in token order: run r is the block's
 * tokens ends[r − 1]…ends[r] − 1 (ends[−1] = 0), of document ids[r]; the last end is the block's
 * token count. A document cut by a block boundary is a run in each block (same id).
 *
 *   doc_id  a a a b b | b c     →  block 0: ids [a, b], ends [3, 5];  block 1: ids [b, c], ends [1, 2]
 */
export interface DocumentRuns {
  readonly ids: ReadonlyArray<string>
  readonly ends: Int32Array
}

/**
 * Per-document token counts of one dataset, filled as blocks arrive: a document is a distinct
 * doc_id, numbered by first appearance.
 */
export class DocumentCounts {
  /** Cells per document (models × thresholds × classes for classify). */
  readonly cells: number
  private readonly index = new Map<string, number>()
  private tokenCounts = new Int32Array(16)
  private cellCounts: Int32Array

  constructor(cells: number) {
    this.cells = cells
    this.cellCounts = new Int32Array(16 * cells)
  }

  get docs(): number {
    return this.index.size
  }

  /** The number of document `id`, a new one (its counts zero) when first seen. */
  documentOf(id: string): number {
    let d = this.index.get(id)
    if (d === undefined) {
      d = this.index.size
      this.index.set(id, d)
      if (d === this.tokenCounts.length) {
        const tokens = new Int32Array(2 * d)
        tokens.set(this.tokenCounts)
        this.tokenCounts = tokens
        const cells = new Int32Array(2 * d * this.cells)
        cells.set(this.cellCounts)
        this.cellCounts = cells
      }
    }
    return d
  }

  /** Count `n` tokens of document d (its total, the denominator of its shares). */
  addTokens(d: number, n: number): void {
    this.tokenCounts[d] += n
  }

  /** [docs × cells] row d: document d's tokens in each cell (a view, for adding to). */
  row(d: number): Int32Array {
    return this.cellCounts.subarray(d * this.cells, (d + 1) * this.cells)
  }

  /** [docs] tokens of each document, and [docs × cells] their counts (views of the first `docs`). */
  counts(): { readonly tokens: Int32Array; readonly cells: Int32Array } {
    return { tokens: this.tokenCounts.subarray(0, this.docs), cells: this.cellCounts.subarray(0, this.docs * this.cells) }
  }
}

/**
 * The 95% percentile interval of every cell's share under the document bootstrap (module comment).
 * @param tokens [docs] tokens of each document (each > 0)
 * @param counts [docs × cells] tokens of each cell in each document, row d = document d
 * @param samples B, the number of replicates
 * @returns lo, hi: [cells] shares in [0, 1] (null where most replicates drew no tokens, which
 *          documents of at least one token each never do); null when there are no documents
 */
export const documentShareIntervals = (
  tokens: Int32Array,
  counts: Int32Array,
  cells: number,
  samples: number,
  seed: number,
): { readonly lo: ReadonlyArray<number | null>; readonly hi: ReadonlyArray<number | null> } | null => {
  const D = tokens.length
  if (D === 0) return null
  // values[cell · B + b]: the share of the cell in replicate b
  const values = new Float64Array(cells * samples)
  const acc = new Float64Array(cells)
  // times each document is drawn: a document drawn k times adds k × its row, once (about 37%
  // of the documents are not drawn at all); the sums are of integers, exact in float64
  const drawn = new Int32Array(D)
  for (let b = 0; b < samples; b++) {
    const next = mulberry32(streamSeed(seed, STREAM_CLASS_SHARES, b))
    drawn.fill(0)
    for (let j = 0; j < D; j++) drawn[Math.floor(next() * D)]++
    acc.fill(0)
    let total = 0
    for (let d = 0; d < D; d++) {
      const k = drawn[d]
      if (k === 0) continue
      total += k * tokens[d]
      const row = d * cells
      for (let c = 0; c < cells; c++) acc[c] += k * counts[row + c]
    }
    for (let c = 0; c < cells; c++) values[c * samples + b] = acc[c] / total
  }
  const intervals = Array.from({ length: cells }, (_, c) => percentileInterval(Array.from(values.subarray(c * samples, (c + 1) * samples)), samples))
  return { lo: intervals.map((ci) => ci.lo), hi: intervals.map((ci) => ci.hi) }
}
