/**
 * The document bootstrap of class shares (lib/analysis/doc-shares.ts) and the per-document counts
 * of the classify tallies. The hand case recomputes its draws from mulberry32 here and takes the
 * percentiles by hand; the large case checks the interval against the delta-method standard error
 * of a ratio over clusters (documents), a formula that shares nothing with the resampling.
 */
import { describe, expect, it } from "vitest"
import { CLASSES } from "../lib/analysis/classes.ts"
import { documentShareIntervals, DocumentCounts, STREAM_CLASS_SHARES } from "../lib/analysis/doc-shares.ts"
import { ClassTallies } from "../lib/analysis/tallies.ts"
import { mulberry32, STREAM, streamSeed } from "../lib/random.ts"

describe("documentShareIntervals", () => {
  it("a hand case: 3 documents, 2 cells, B = 4", () => {
    // documents of 4, 2 and 6 tokens; cell 0 (say upward) 1, 2, 0 of them, cell 1 the rest
    const tokens = Int32Array.of(4, 2, 6)
    const counts = Int32Array.of(1, 3, 2, 0, 0, 6)
    // The draws of replicates 0…3 under seed 0, from the generator itself: ⌊u · 3⌋ of 3 numbers
    const draws = [0, 1, 2, 3].map((b) => {
      const next = mulberry32(streamSeed(0, STREAM_CLASS_SHARES, b))
      return [next(), next(), next()].map((u) => Math.floor(u * 3))
    })
    expect(draws).toEqual([[2, 0, 1], [0, 1, 2], [2, 2, 1], [1, 1, 2]]) // as printed once, pinned
    // cell 0 per replicate: 3/12, 3/12, (0+0+2)/(6+6+2) = 1/7, (2+2+0)/(2+2+6) = 0.4
    // sorted 1/7, 0.25, 0.25, 0.4; numpy's linear percentiles: h = 3 · 0.025 = 0.075, 3 · 0.975 = 2.925
    //   lo = 1/7 + 0.075 · (0.25 − 1/7) = 4.225 / 28,  hi = 0.25 + 0.925 · (0.4 − 0.25) = 0.38875
    // cell 1: 0.75, 0.75, 6/7, 0.6 → sorted 0.6, 0.75, 0.75, 6/7
    //   lo = 0.6 + 0.075 · 0.15 = 0.61125,  hi = 0.75 + 0.925 · (6/7 − 0.75) = 0.75 + 2.775 / 28
    const got = documentShareIntervals(tokens, counts, 2, 4, 0)!
    expect(got.lo[0]).toBeCloseTo(4.225 / 28, 14)
    expect(got.hi[0]).toBeCloseTo(0.38875, 14)
    expect(got.lo[1]).toBeCloseTo(0.61125, 14)
    expect(got.hi[1]).toBeCloseTo(0.75 + 2.775 / 28, 14)
  })

  it("one document, or documents that all have the same share: the interval is the share, exactly", () => {
    const one = documentShareIntervals(Int32Array.of(10), Int32Array.of(3, 7), 2, 50, 1)!
    expect([one.lo, one.hi]).toEqual([[3 / 10, 7 / 10], [3 / 10, 7 / 10]])
    // shares 3/10 = 6/20 = 9/30 in every document (a correctly rounded ratio of the same rational)
    const same = documentShareIntervals(Int32Array.of(10, 20, 30), Int32Array.of(3, 6, 9), 1, 200, 2)!
    expect([same.lo[0], same.hi[0]]).toEqual([0.3, 0.3])
  })

  it("no documents: null; the same seed gives the same intervals, another seed others", () => {
    expect(documentShareIntervals(new Int32Array(0), new Int32Array(0), 4, 100, 0)).toBeNull()
    const tokens = Int32Array.of(5, 8, 3, 9, 4)
    const counts = Int32Array.of(1, 6, 0, 8, 2)
    const a = documentShareIntervals(tokens, counts, 1, 100, 7)!
    expect(documentShareIntervals(tokens, counts, 1, 100, 7)).toEqual(a)
    expect(documentShareIntervals(tokens, counts, 1, 100, 8)).not.toEqual(a)
  })

  it("realistic documents: lo ≤ share ≤ hi, and the width is that of documents, not of tokens", () => {
    // 300 documents of 20…400 tokens whose own share of the cell varies (0.05…0.45): tokens of a
    // document are alike, so the interval is far wider than a binomial one over the tokens.
    const next = mulberry32(streamSeed(123, STREAM.shots, 0))
    const D = 300
    const tokens = new Int32Array(D)
    const counts = new Int32Array(D)
    for (let d = 0; d < D; d++) {
      tokens[d] = 20 + Math.floor(next() * 380)
      counts[d] = Math.round(tokens[d] * (0.05 + 0.4 * next()))
    }
    const N = tokens.reduce((a, b) => a + b, 0)
    const n = counts.reduce((a, b) => a + b, 0)
    const share = n / N
    const ci = documentShareIntervals(tokens, counts, 1, 2000, 0)!
    const [lo, hi] = [ci.lo[0]!, ci.hi[0]!]
    expect(lo).toBeLessThan(share)
    expect(hi).toBeGreaterThan(share)
    // the delta-method standard error of a ratio over clusters: √(Σ (n_d − r·N_d)²) / N
    let ss = 0
    for (let d = 0; d < D; d++) ss += (counts[d] - share * tokens[d]) ** 2
    const se = Math.sqrt(ss) / N
    expect((hi - lo) / 2 / (1.96 * se)).toBeGreaterThan(0.85)
    expect((hi - lo) / 2 / (1.96 * se)).toBeLessThan(1.15)
    const binomial = Math.sqrt((share * (1 - share)) / N)
    expect(se).toBeGreaterThan(3 * binomial)
  })
})

describe("DocumentCounts", () => {
  it("numbers documents by first appearance and grows past its first capacity", () => {
    const c = new DocumentCounts(3)
    for (let d = 0; d < 100; d++) {
      expect(c.documentOf(`doc${d}`)).toBe(d)
      c.addTokens(d, d + 1)
      c.row(d)[d % 3] += d + 1
    }
    expect(c.documentOf("doc7")).toBe(7)
    expect(c.docs).toBe(100)
    const { tokens, cells } = c.counts()
    expect(tokens.length).toBe(100)
    expect(cells.length).toBe(300)
    expect([...tokens.subarray(0, 3)]).toEqual([1, 2, 3])
    expect([...cells.subarray(3 * 50, 3 * 51)]).toEqual([0, 0, 51])
  })
})

describe("per-document counts of the tallies", () => {
  // 2 models, 1 threshold, 12 tokens in 3 documents: p ×4, q ×5, r ×3
  const ids = ["p", "p", "p", "p", "q", "q", "q", "q", "q", "r", "r", "r"]
  const cls = [
    Uint8Array.from([0, 0, 1, 3, 1, 1, 1, 2, 0, 3, 3, 0]),
    Uint8Array.from([0, 0, 0, 0, 1, 2, 1, 2, 2, 3, 0, 0]),
  ]
  /** Tallies fed with the tokens cut into blocks at `cuts`. */
  const fed = (cuts: ReadonlyArray<number>) => {
    const t = new ClassTallies([{ name: "a", steps: [1] }, { name: "b", steps: [1] }], [0.5])
    const bounds = [0, ...cuts, ids.length]
    for (let g = 0; g + 1 < bounds.length; g++) {
      const [from, to] = [bounds[g], bounds[g + 1]]
      const block = cls.map((c) => c.slice(from, to))
      for (const mi of [0, 1]) t.addClasses(mi, block[mi], new Uint8Array(to - from))
      // the block's runs of one doc_id
      const runIds: string[] = []
      const ends: number[] = []
      for (let i = from; i < to; i++) {
        if (runIds.at(-1) === ids[i]) ends[ends.length - 1] = i - from + 1
        else (runIds.push(ids[i]), ends.push(i - from + 1))
      }
      t.addDocuments(block, { ids: runIds, ends: Int32Array.from(ends) }, to - from)
      t.addTokens(to - from)
    }
    return t
  }

  it("do not depend on how the tokens were cut into blocks (documents across a cut are one)", () => {
    const whole = fed([]).summaryRows("d", { samples: 64, seed: 3 })
    expect(fed([]).docs).toBe(3)
    for (const cuts of [[2], [4, 9], [1, 2, 3, 5, 6, 10, 11], [6]]) {
      expect(fed(cuts).docs).toBe(3)
      expect(fed(cuts).summaryRows("d", { samples: 64, seed: 3 })).toEqual(whole)
    }
  })

  it("intervals from the documents' own counts (recomputed here), with the same draws for every cell", () => {
    const rows = fed([5]).summaryRows("d", { samples: 64, seed: 3 })
    // per document, per model, per class, counted from the arrays above
    const docs = ["p", "q", "r"]
    const tokens = Int32Array.from(docs, (doc) => ids.filter((x) => x === doc).length)
    const K = CLASSES.length
    const counts = new Int32Array(docs.length * 2 * K)
    ids.forEach((doc, i) => cls.forEach((c, mi) => counts[(docs.indexOf(doc) * 2 + mi) * K + c[i]]++))
    const want = documentShareIntervals(tokens, counts, 2 * K, 64, 3)!
    rows.forEach((r, cell) => {
      expect([r.share_lo, r.share_hi]).toEqual([want.lo[cell], want.hi[cell]])
      expect(r.share_lo!).toBeLessThanOrEqual(r.share)
      expect(r.share_hi!).toBeGreaterThanOrEqual(r.share)
    })
    expect(rows.filter((r) => r.model === "b").map((r) => r.n_tokens)).toEqual([6, 2, 3, 1])
  })

  it("tallies without documents have null intervals", () => {
    const t = new ClassTallies([{ name: "a", steps: [1] }], [0.5])
    t.addClasses(0, Uint8Array.of(0, 1), new Uint8Array(2))
    t.addTokens(2)
    expect(t.summaryRows("d", { samples: 10, seed: 0 }).map((r) => [r.share, r.share_lo, r.share_hi])).toEqual([
      [0.5, null, null], [0.5, null, null], [0, null, null], [0, null, null],
    ])
  })
})
