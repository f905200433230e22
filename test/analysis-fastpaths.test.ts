/**
 * The regress/classify kernels' fast paths against the plain definitions they replace: to the bit
 * where a path promises the same bits, to a stated tolerance for the suffix-sum fits.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { afterAll, describe, expect, it } from "vitest"
import { encodeParquet, openRowGroups } from "../pipeline/store.ts"
import { CategoryCodes, closeReaders, DocumentRunsBuilder, readBlockTokens, readCategories } from "../lib/analysis/block-tasks.ts"
import { classifyBlock, regressBlock, regressColumns } from "../lib/analysis/blocks.ts"
import { CLASSES } from "../lib/analysis/classes.ts"
import { SuffixFits, emptyFit, fitLine } from "../lib/analysis/ols.ts"
import { groupSums } from "./fixtures/analysis.ts"
import { SignificanceTest } from "../lib/analysis/tdist.ts"
import { exp } from "../lib/analysis/exp.ts"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fastpaths-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** A small deterministic generator (LCG), independent of the code under test. */
const lcg = (seed: number) => () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
  return seed / 2 ** 32
}

/** Distance between two doubles in units in the last place of `b`. */
const ulps = (a: number, b: number): number => {
  const v = new Float64Array([b])
  const bits = new BigInt64Array(v.buffer)
  bits[0] ^= 1n
  return Math.abs(a - b) / Math.abs(v[0] - b)
}

describe("exp", () => {
  it("matches e^x to 2 ulp at values computed with Python's decimal module (50 digits)", () => {
    // python3: from decimal import *; getcontext().prec = 50; float(Decimal(x).exp())
    const reference: Array<[number, number]> = [
      [0.5, 1.6487212707001282],
      [-3.7, 0.024723526470339388],
      [10.25, 28282.541920334977],
      [29.900390625, 9673299963133.473],
      [-699.5, 1.6255858439919858e-304],
      [699.5, 6.151628372601221e303],
      [2 ** -30, 1.0000000009313226],
      [0.0054152123481245725, 1.0054299011128027],
    ]
    for (const [x, e] of reference) expect(ulps(exp(x), e), `exp(${x})`).toBeLessThanOrEqual(2)
    expect(exp(1e-300)).toBe(1)
    expect(exp(0)).toBe(1)
  })

  it("stays within 2 ulp of Math.exp over ±700 and over float32 log-probs, and is Math.exp outside", () => {
    const rand = lcg(99)
    const f32 = new Float32Array(1)
    let worst = 0
    for (let i = 0; i < 300_000; i++) {
      const x = i % 3 === 0 ? (rand() - 0.5) * 1399.8 : i % 3 === 1 ? ((f32[0] = rand() * 30), f32[0]) : (rand() - 0.5) * 0.02
      worst = Math.max(worst, ulps(exp(x), Math.exp(x)))
    }
    expect(worst).toBeLessThanOrEqual(2)
    for (const x of [Number.NaN, Infinity, -Infinity, 700, -700, 709.7, 710, -745, -1000]) expect(exp(x)).toBe(Math.exp(x))
  })
})

describe("SuffixFits", () => {
  const C = 24
  const lnStep = Float64Array.from({ length: C }, (_, c) => Math.log((c + 1) * 500))
  const flops = Float64Array.from(lnStep, (v) => v + Math.log(6 * 1e7 * 2048))
  const withNaN = Float64Array.from(lnStep, (v, c) => (c === 20 ? Number.NaN : v))
  // unsorted, with a repeated start and the shortest window (3 points)
  const starts = [9, 2, 0, 15, 9, 21]
  const axes = [lnStep, flops, withNaN]
  const relErr = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(b), 1e-300))

  /** fitLine on y = p / p_i0 over the window: the two-pass definition. */
  const reference = (x: Float64Array, p: Float64Array, i0: number) => {
    const y = Float64Array.from(p.subarray(i0), (v) => v / p[i0])
    return { ...fitLine(x, i0, y, 0, C - i0, emptyFit()) }
  }

  const trajectories = (() => {
    const next = lcg(11)
    const out: Array<[string, Float64Array]> = []
    for (let j = 0; j < 200; j++) {
      const slope = [0.4, -0.4, 0.02, 0][j % 4]
      const noise = [0.3, 0.01, 1e-4, 1e-6][j % 4 === 3 ? 3 : j % 3]
      out.push([`random ${j}`, Float64Array.from({ length: C }, (_, c) => Math.exp(3 + slope * lnStep[c] * 0.2 + noise * (next() - 0.5)))])
    }
    out.push(["constant", Float64Array.from({ length: C }, () => 20)])
    out.push(["constant tail", Float64Array.from({ length: C }, (_, c) => (c < 10 ? 30 - c : 7))])
    out.push(["perfect line", Float64Array.from({ length: C }, (_, c) => 5 + 2 * lnStep[c])])
    out.push(["NaN inside", Float64Array.from({ length: C }, (_, c) => (c === 12 ? Number.NaN : 10 + c))])
    out.push(["Infinity at the end", Float64Array.from({ length: C }, (_, c) => (c === C - 1 ? Infinity : 10 + c))])
    out.push(["huge level, tiny spread", Float64Array.from({ length: C }, (_, c) => 1e6 * (1 + 1e-9 * Math.sin(c)))])
    return out
  })()

  // The two-pass fit regresses the rounded ratios y = p / p_i0 (as statsmodels does); the suffix
  // sums work on p − p_{C−1}, which is exact. The two differ by ~1e-16 / (relative spread of p),
  // so windows with a spread under 1e-4 take the two-pass path (the same bits); above it they
  // agree to 1e-11 (near-perfect fits lose a little more in SSR than the 1e-13 of typical ones).
  const tolerance = (p: Float64Array, i0: number) => {
    const w = Array.from(p.subarray(i0)).filter(Number.isFinite)
    const spread = (Math.max(...w) - Math.min(...w)) / Math.max(...w)
    return spread < 1e-4 ? 0 : 1e-11
  }

  it("agrees with the two-pass fit on every window and axis (n and ok exactly)", () => {
    const fits = new SuffixFits(C, starts, axes)
    const fit = emptyFit()
    let worst = 0
    for (const [name, p] of trajectories) {
      fits.load(p)
      for (const [k, i0] of starts.entries()) {
        for (const [a, x] of axes.entries()) {
          const want = reference(x, p, i0)
          const got = { ...fits.fit(k, a, fit) }
          const where = `${name}, start ${i0}, axis ${a}`
          const tol = tolerance(p, i0)
          expect([got.ok, got.n], where).toEqual([want.ok, want.n])
          if (!want.ok) continue
          for (const key of ["slope", "intercept", "r2", "t"] as const) {
            const e = Number.isFinite(want[key]) ? relErr(got[key], want[key]) : got[key] === want[key] ? 0 : Infinity
            // slopes that are pure rounding noise (|t| < 1e-6) have no relative digits to keep
            if (key === "slope" && Math.abs(want.t) < 1e-6) continue
            const err = key === "r2" ? Math.min(e, Math.abs(got.r2 - want.r2)) : e
            if (tol === 1e-11) worst = Math.max(worst, err)
            if (!(err <= tol)) throw new Error(`${where} ${key}: ${got[key]} vs ${want[key]}`)
          }
        }
      }
    }
    expect(worst).toBeLessThan(1e-11)
  })

  it("sumSquares is Σ(p − p̄)² over the window, NaN when the window has a non-finite p", () => {
    const fits = new SuffixFits(C, starts, [lnStep])
    for (const [name, p] of trajectories) {
      fits.load(p)
      for (const [k, i0] of starts.entries()) {
        const w = Array.from(p.subarray(i0))
        if (!w.every(Number.isFinite)) {
          expect(fits.sumSquares(k), name).toBeNaN()
          continue
        }
        const mean = w.reduce((s, v) => s + v, 0) / w.length
        const ss = w.reduce((s, v) => s + (v - mean) ** 2, 0)
        expect(Math.abs(fits.sumSquares(k) - ss), `${name}, start ${i0}`).toBeLessThanOrEqual(1e-12 * Math.max(ss, mean * mean * 1e-3))
      }
    }
  })
})

/**
 * [C] arrays of [B] log-probs: rising, falling and flat tokens with noise; token 11 has a NaN at
 * checkpoint 5 and token 12 a −∞ at checkpoint 2.
 */
const trendBlock = (C: number, B: number, seed: number): Float32Array[] => {
  const next = lcg(seed)
  return Array.from({ length: C }, (_, c) =>
    Float32Array.from({ length: B }, (_, i) => {
      if (i === 11 && c === 5) return Number.NaN
      if (i === 12 && c === 2) return -Infinity
      const trend = [0.3, -0.3, 0][i % 3] * Math.log(c + 1)
      return -(3 + trend + 0.2 * next())
    }),
  )
}

/** Group sums equal to 1e-13 relative, element by element. */
const closeSums = (got: Float64Array, expected: Float64Array) => {
  expect(got.length).toBe(expected.length)
  for (let j = 0; j < got.length; j++) expect(Math.abs(got[j] - expected[j])).toBeLessThanOrEqual(1e-13 * Math.abs(expected[j]))
}

describe("classifyBlock group sums", () => {
  it("equal the sums over p = exp(−logprob) by definition, for the reference model and another", () => {
    const C = 9
    const B = 200
    const lnStep = Float64Array.from({ length: C }, (_, c) => Math.log((c + 1) * 100))
    const lp = trendBlock(C, B, 7)
    const other = lp.map((col) => col.map((v) => v * 1.1))
    const spec = { starts: [0, 2, 5], lnStep, rules: { test: new SignificanceTest(0.05), delta: 0.05, ddRise: 0.1 } }
    const size = spec.starts.length * CLASSES.length * C
    const target = { sum: new Float64Array(size), missing: new Float64Array(size) }
    /** [checkpoints × tokens] p = exp(−logprob), c-major, as the definition's input */
    const perplexities = (x: Float32Array[]) => {
      const out = new Float64Array(C * B)
      for (let c = 0; c < C; c++) for (let i = 0; i < B; i++) out[c * B + i] = Math.exp(-x[c][i])
      return out
    }
    const p = perplexities(lp)
    const ref = classifyBlock({ lp, tokens: B }, spec, target)
    const want = groupSums(ref.cls, p, B, spec.starts.length, C)
    // The kernel's exp is within 2 ulp of Math.exp and it adds by class tuple: equal to ~1e-15.
    closeSums(target.sum, want.sum)
    expect(target.missing).toEqual(want.missing)
    expect(want.missing.reduce((a, b) => a + b, 0)).toBe(2 * spec.starts.length)

    const target2 = { refCls: ref.cls, sum: new Float64Array(size), missing: new Float64Array(size) }
    const p2 = perplexities(other)
    classifyBlock({ lp: other, tokens: B }, spec, target2)
    const want2 = groupSums(ref.cls, p2, B, spec.starts.length, C)
    closeSums(target2.sum, want2.sum)
    expect(target2.missing).toEqual(want2.missing)
  })
})

describe("kernels on slices", () => {
  it("regressBlock and classifyBlock give the same rows on slices of a block as on the whole block", () => {
    const C = 12
    const B = 1000
    const lnStep = Float64Array.from({ length: C }, (_, c) => Math.log((c + 1) * 250))
    const lp = trendBlock(C, B, 11)
    const block = { lp, tokens: B }
    const starts = [0, 3, 6, 9]
    const whole = regressBlock(block, { starts, axes: [lnStep] })
    const sliced = regressColumns(starts.length * B)
    for (const [from, to] of [[0, 333], [333, 334], [334, 1000]]) regressBlock(block, { starts, axes: [lnStep] }, sliced, from, to)
    expect(sliced).toEqual(whole)

    const spec = { starts, lnStep, rules: { test: new SignificanceTest(0.05), delta: 0.05, ddRise: 0.1 } }
    const size = starts.length * CLASSES.length * C
    const g1 = { sum: new Float64Array(size), missing: new Float64Array(size) }
    const g2 = { sum: new Float64Array(size), missing: new Float64Array(size) }
    const all = classifyBlock(block, spec, g1)
    const cols = { cls: new Uint8Array(starts.length * B), peak: new Int16Array(starts.length * B) }
    for (const [from, to] of [[0, 500], [500, 999], [999, 1000]]) classifyBlock(block, spec, g2, cols, from, to)
    expect(cols.cls).toEqual(all.cls)
    expect(cols.peak).toEqual(all.peak)
    expect(g2.missing).toEqual(g1.missing)
    closeSums(g2.sum, g1.sum)
    // a slice without columns for the whole block is refused
    expect(() => regressBlock(block, { starts, axes: [lnStep] }, undefined, 0, 10)).toThrow(/slice/)
  })
})

describe("RowGroupReader.readFloat32", () => {
  it("returns what read() returns, per row group, for a float32 column", async () => {
    const next = lcg(3)
    const n = 10_000
    const t = arrow.tableFromArrays({
      token_index: Int32Array.from({ length: n }, (_, i) => i),
      logprob: Float32Array.from({ length: n }, () => -10 * next()),
    })
    const f = path.join(dir, "scores.parquet")
    fs.writeFileSync(f, encodeParquet(t, { rowGroupSize: 4096 }))
    const r = await openRowGroups(f)
    try {
      expect(r.rowGroupRows).toEqual([4096, 4096, 1808])
      for (let g = 0; g < 3; g++) {
        const fast = await r.readFloat32(g, "logprob")
        const slow = (await r.read(g, ["logprob"])).getChild("logprob")?.toArray()
        expect(fast).toBeInstanceOf(Float32Array)
        expect(fast).toEqual(slow)
        expect(fast?.[0]).toBe(t.getChild("logprob")?.get(g * 4096))
      }
      // into an array of the row group's length: that array, holding the same values
      const into = new Float32Array(4096).fill(Number.NaN)
      const again = await r.readFloat32(1, "logprob", into)
      expect(again).toBe(into)
      expect(into).toEqual((await r.read(1, ["logprob"])).getChild("logprob")?.toArray())
      // an array of another length is left alone
      const wrong = new Float32Array(100)
      const fresh = await r.readFloat32(2, "logprob", wrong)
      expect(fresh).not.toBe(wrong)
      expect(fresh).toHaveLength(1808)
      expect(wrong.every((v) => v === 0)).toBe(true)
      // not float32: the caller falls back to read()
      expect(await r.readFloat32(0, "token_index")).toBeUndefined()
    } finally {
      r.close()
    }
  })

  it("is undefined for a column with nulls", async () => {
    const v = arrow.vectorFromArray([1.5, null, -2], new arrow.Float32())
    const f = path.join(dir, "nulls.parquet")
    fs.writeFileSync(f, encodeParquet(new arrow.Table({ logprob: v })))
    const r = await openRowGroups(f)
    try {
      expect(await r.readFloat32(0, "logprob")).toBeUndefined()
    } finally {
      r.close()
    }
  })
})

describe("readCategories", () => {
  const names = ["content", "function", "ponctuación", "piece", "number", ""]
  const cats = Array.from({ length: 1000 }, (_, i) => names[(i * 7 + (i >> 5)) % names.length])
  /** Codes by first appearance within start…start+count−1, from the strings themselves. */
  const expected = (source: ReadonlyArray<string>, start: number, count: number) => {
    const order: string[] = []
    const codes = source.slice(start, start + count).map((c) => (order.includes(c) ? order.indexOf(c) : order.push(c) - 1))
    return { codes, names: order }
  }

  it("codes and names by first appearance, across row groups, for UTF-8, dictionary and nullable columns", async () => {
    const plain = path.join(dir, "tokens-plain.parquet")
    const utf8Schema = new arrow.Schema([new arrow.Field("category", new arrow.Utf8(), false)])
    fs.writeFileSync(plain, encodeParquet(new arrow.Table(utf8Schema, { category: arrow.vectorFromArray(cats, new arrow.Utf8()) } as never), { rowGroupSize: 128 }))
    const dictionary = path.join(dir, "tokens-dictionary.parquet")
    fs.writeFileSync(dictionary, encodeParquet(arrow.tableFromArrays({ category: cats }), { rowGroupSize: 128 }))
    const nullable = path.join(dir, "tokens-nullable.parquet")
    const withNull = cats.map((c, i) => (i === 999 ? null : c))
    fs.writeFileSync(nullable, encodeParquet(new arrow.Table({ category: arrow.vectorFromArray(withNull, new arrow.Utf8()) }), { rowGroupSize: 128 }))
    try {
      for (const [start, count] of [[0, 1000], [100, 300], [127, 2], [500, 1]]) {
        for (const [file, source] of [[plain, cats], [dictionary, cats], [nullable, withNull.map(String)]] as const) {
          const got = await readCategories(file, start, count)
          const want = expected(source, start, count)
          expect({ codes: [...got.codes], names: got.names }, `${file} ${start}+${count}`).toEqual(want)
        }
      }
      // the null row is read as the string "null", as before
      expect((await readCategories(nullable, 999, 1)).names).toEqual(["null"])
      await expect(readCategories(plain, 990, 20)).rejects.toThrow(/fewer than/)
      // the three files really are read as the three kinds of Arrow column
      const r = await openRowGroups(plain)
      expect(String((await r.read(0, ["category"])).getChild("category")?.type)).toBe("Utf8")
      r.close()
      const d = await openRowGroups(dictionary)
      expect(String((await d.read(0, ["category"])).getChild("category")?.type)).toMatch(/^Dictionary/)
      d.close()
    } finally {
      closeReaders()
    }
  })

  it("codes sliced Arrow chunks (buffers already sliced) of UTF-8 and dictionary columns", () => {
    for (const type of [new arrow.Utf8(), new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32())]) {
      const whole = arrow.vectorFromArray(cats, type as arrow.DataType)
      const sliced = whole.slice(300, 700) // one chunk whose Data has offset 300
      expect(sliced.data[0].offset).toBe(300)
      const out = new CategoryCodes("test", 400)
      out.add(sliced, 0, 400, 0)
      expect({ codes: [...out.codes], names: out.names }, String(type)).toEqual(expected(cats, 300, 400))
    }
  })
})

describe("readBlockTokens: the documents of a block", () => {
  // documents of 1…40 tokens, ids of several lengths and one non-ASCII; "ab" and "abc" share bytes
  const docIds: string[] = []
  for (let d = 0; docIds.length < 1000; d++) for (let k = 0; k < 1 + ((d * 13) % 40); k++) docIds.push(["ab", "abc", "é/x.txt", `doc${d}`][d % 4] + (d % 4 < 3 ? d : ""))
  docIds.length = 1000
  const cats = docIds.map((_, i) => (i % 3 ? "content" : "piece"))
  /** Runs of equal ids in start…start+count−1, from the strings themselves. */
  const runs = (start: number, count: number) => {
    const ids: string[] = []
    const ends: number[] = []
    for (let i = 0; i < count; i++) {
      if (ids.at(-1) === docIds[start + i]) ends[ends.length - 1] = i + 1
      else (ids.push(docIds[start + i]), ends.push(i + 1))
    }
    return { ids, ends }
  }

  it("runs of one doc_id across row groups and chunks, for UTF-8 and dictionary columns, with the categories", async () => {
    const schema = new arrow.Schema([new arrow.Field("category", new arrow.Utf8(), false), new arrow.Field("doc_id", new arrow.Utf8(), false)])
    const plain = path.join(dir, "docs-plain.parquet")
    fs.writeFileSync(plain, encodeParquet(new arrow.Table(schema, { category: arrow.vectorFromArray(cats, new arrow.Utf8()), doc_id: arrow.vectorFromArray(docIds, new arrow.Utf8()) } as never), { rowGroupSize: 128 }))
    const dictionary = path.join(dir, "docs-dictionary.parquet")
    fs.writeFileSync(dictionary, encodeParquet(arrow.tableFromArrays({ category: cats, doc_id: docIds }), { rowGroupSize: 100 }))
    try {
      for (const [start, count] of [[0, 1000], [100, 300], [127, 2], [500, 1], [37, 512]]) {
        for (const file of [plain, dictionary]) {
          const got = await readBlockTokens(file, start, count)
          expect({ ids: got.docs.ids, ends: [...got.docs.ends] }, `${file} ${start}+${count}`).toEqual(runs(start, count))
          expect({ codes: [...got.codes], names: got.names }).toEqual(await readCategories(file, start, count).then((c) => ({ codes: [...c.codes], names: c.names })))
        }
      }
      await expect(readBlockTokens(plain, 990, 20)).rejects.toThrow(/fewer than/)
      const noDocs = path.join(dir, "docs-none.parquet")
      fs.writeFileSync(noDocs, encodeParquet(arrow.tableFromArrays({ category: cats })))
      await expect(readBlockTokens(noDocs, 0, 10)).rejects.toThrow(/no doc_id column/)
    } finally {
      closeReaders()
    }
  })

  it("sliced chunks and chunks that continue the run before them", () => {
    const whole = arrow.vectorFromArray(docIds, new arrow.Utf8())
    const out = new DocumentRunsBuilder()
    // rows 300…699 in two calls, as two row groups would give them: the run at the cut is one
    out.add(whole.slice(300, 520), 0, 220, 0)
    out.add(whole.slice(520, 700), 0, 180, 220)
    const got = out.finish()
    expect({ ids: got.ids, ends: [...got.ends] }).toEqual(runs(300, 400))
  })
})
