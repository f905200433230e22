/**
 * lib/onnx feeds for every export signature, checked on what is fed (names, element types, shapes,
 * data) and on what the fixture models compute from it: expected logits come from the fixtures'
 * reference forward passes (test/fixtures/onnx.ts, float64 over the same float32 weights), never
 * from the code under test. Also: the next-token path on a merged decoder with a float64 past.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type * as ort from "onnxruntime-node"
import { afterAll, describe, expect, it } from "vitest"
import { feedAll, feedFor, feedsFor, type FeedBatch } from "../lib/onnx/feeds.ts"
import { openNextToken } from "../lib/onnx/next-token.ts"
import { createSession, sessionOptions } from "../lib/onnx/session.ts"
import {
  gptModel,
  gptWeights,
  linearLogits,
  linearModel,
  linearWeights,
  maskedLogits,
  maskedModel,
  maskedWeights,
  optimumModel,
  saveModel,
} from "./fixtures/onnx.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-onnx-feeds-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** Two rows, right-padded to 4 columns: [3 1 4 1] and [5 9 _ _]. */
const batch: FeedBatch = {
  rows: 2,
  cols: 4,
  ids: Int32Array.of(3, 1, 4, 1, 5, 9, 0, 0),
  mask: Int32Array.of(1, 1, 1, 1, 1, 1, 0, 0),
}
/** The batch's rows without their padding. */
const rows = [Int32Array.of(3, 1, 4, 1), Int32Array.of(5, 9)]

const meta = (name: string, type: string, shape: ReadonlyArray<number | string>): ort.InferenceSession.ValueMetadata =>
  ({ name, isTensor: true, type, shape }) as ort.InferenceSession.ValueMetadata

/** A session's feeds, or fail the test with the reason. */
const open = async (file: string) => {
  const session = await createSession(file, sessionOptions({ threads: 1 }), path.basename(file))
  const feeds = feedsFor(session.inputMetadata)
  if (typeof feeds === "string") throw new Error(feeds)
  return { session, feeds }
}

/** What one tensor holds, as plain values (bigint → number, bool → 0/1). */
const view = (t: ort.Tensor) => ({ type: t.type, dims: [...t.dims], data: Array.from(t.data as ArrayLike<number | bigint>, Number) })

/** Logits [rows, cols, vocab] of row r at its real positions 0…len−1 vs a reference [len, vocab]. */
const expectRowLogits = (logits: ort.Tensor, r: number, len: number, ref: Float64Array) => {
  const [, cols, vocab] = logits.dims
  const got = (logits.data as Float32Array).subarray(r * cols * vocab, (r * cols + len) * vocab)
  expect(got.length).toBe(ref.length)
  for (let i = 0; i < ref.length; i++) expect(got[i]).toBeCloseTo(ref[i], 4)
}

describe("feeds for each signature (declared metadata)", () => {
  it("plain: input_ids int64 or int32 [rows, cols], the batch's ids", () => {
    for (const type of ["int64", "int32"]) {
      const f = feedFor(meta("input_ids", type, ["batch", "seq"]))
      if (typeof f === "string") throw new Error(f)
      expect(view(f(batch))).toEqual({ type, dims: [2, 4], data: [3, 1, 4, 1, 5, 9, 0, 0] })
    }
    expect(feedFor(meta("input_ids", "float32", ["batch", "seq"]))).toBe('input "input_ids" has type float32, expected int64 or int32')
  })

  it("attention_mask: int64, int32 or float32 [rows, past + cols], 1 on tokens, 0 on the padding", () => {
    for (const type of ["int64", "int32", "float32"]) {
      const f = feedFor(meta("attention_mask", type, ["batch", "seq"]))
      if (typeof f === "string") throw new Error(f)
      expect(view(f(batch))).toEqual({ type, dims: [2, 4], data: [1, 1, 1, 1, 1, 1, 0, 0] })
    }
    // after a cache of 3 positions, one new token per row: the mask covers past + new
    const f = feedFor(meta("attention_mask", "int64", ["batch", "seq"]))
    if (typeof f === "string") throw new Error(f)
    const step = { rows: 2, cols: 1, ids: Int32Array.of(7, 8), mask: new Int32Array(8).fill(1), past: 3 }
    expect(view(f(step))).toEqual({ type: "int64", dims: [2, 4], data: [1, 1, 1, 1, 1, 1, 1, 1] })
    expect(feedFor(meta("attention_mask", "bool", ["batch", "seq"]))).toMatch(/has type bool, expected int64 or int32 or float32$/)
  })

  it("position_ids: int64 or int32 [rows, cols], past…past + cols − 1 in every row", () => {
    const f = feedFor(meta("position_ids", "int64", ["batch", "seq"]))
    if (typeof f === "string") throw new Error(f)
    expect(view(f(batch))).toEqual({ type: "int64", dims: [2, 4], data: [0, 1, 2, 3, 0, 1, 2, 3] })
    expect(view(f({ rows: 2, cols: 2, ids: new Int32Array(4), mask: new Int32Array(10).fill(1), past: 3 }))).toEqual({
      type: "int64",
      dims: [2, 2],
      data: [3, 4, 3, 4],
    })
    const i32 = feedFor(meta("position_ids", "int32", ["batch", "seq"]))
    if (typeof i32 === "string") throw new Error(i32)
    expect(view(i32(batch)).type).toBe("int32")
  })

  it("merged decoder: past_key_values.* of the declared dtype (float32, float16, float64), empty; use_cache_branch false", () => {
    for (const type of ["float32", "float16", "float64"]) {
      const f = feedFor(meta("past_key_values.0.key", type, ["batch", 4, "past_sequence_length", 16]))
      if (typeof f === "string") throw new Error(f)
      const t = f(batch)
      expect({ type: t.type, dims: [...t.dims], size: t.size }).toEqual({ type, dims: [2, 4, 0, 16], size: 0 })
      expect((t.data as ArrayLike<number>).length).toBe(0)
    }
    expect(feedFor(meta("past.0", "int8", ["batch", 2, "past", 3]))).toBe('input "past.0" has type int8, which cannot be fed from JavaScript')
    expect(feedFor(meta("past_key_values.0.value", "float32", []))).toMatch(/declares no shape/)
    const branch = feedFor(meta("use_cache_branch", "bool", [1]))
    if (typeof branch === "string") throw new Error(branch)
    expect(view(branch(batch))).toEqual({ type: "bool", dims: [1], data: [0] })
    // fed with a cache of earlier runs, the branch is true
    expect(view(branch({ ...batch, past: 2 })).data).toEqual([1])
    expect(feedFor(meta("use_cache_branch", "int64", [1]))).toBe('input "use_cache_branch" has type int64, expected bool')
  })

  it("any other input, or a non-tensor input, is an error naming it", () => {
    expect(feedFor(meta("token_type_ids", "int64", ["batch", "seq"]))).toMatch(/^input "token_type_ids" is not one the scorer can feed/)
    expect(feedFor({ name: "state", isTensor: false })).toBe('input "state" is not a tensor')
    expect(feedsFor([meta("input_ids", "int64", ["b", "s"]), meta("extra", "int64", ["b"])])).toMatch(/^input "extra"/)
  })
})

describe("feeds for each signature (fixture sessions)", () => {
  it("plain (input_ids only, int64 and int32): what is fed, and logits equal the reference", async () => {
    const w = linearWeights({ vocab: 11, dim: 4, seed: 21 })
    for (const idsType of ["int64", "int32"] as const) {
      const { session, feeds } = await open(saveModel(linearModel(w, { idsType }), tmp, `linear-${idsType}.onnx`))
      try {
        expect(feeds.map(([n]) => n)).toEqual(["input_ids"])
        const fed = feedAll(feeds, batch)
        expect(view(fed.input_ids)).toEqual({ type: idsType, dims: [2, 4], data: [3, 1, 4, 1, 5, 9, 0, 0] })
        const out = await session.run(fed, ["logits"])
        rows.forEach((ids, r) => expectRowLogits(out.logits, r, ids.length, linearLogits(w, ids)))
      } finally {
        await session.release()
      }
    }
  })

  it("with attention_mask (a GPT export): the padded row's logits equal the row run alone", async () => {
    const { session, feeds } = await open(saveModel(gptModel(gptWeights({ vocab: 16, context: 8, layers: 1, dim: 8, heads: 2, seed: 22 })), tmp, "gpt.onnx"))
    try {
      expect(feeds.map(([n]) => n)).toEqual(["input_ids", "attention_mask"])
      const fed = feedAll(feeds, batch)
      expect(view(fed.attention_mask)).toEqual({ type: "int64", dims: [2, 4], data: [1, 1, 1, 1, 1, 1, 0, 0] })
      const padded = await session.run(fed, ["logits"])
      const alone = await session.run(feedAll(feeds, { rows: 1, cols: 2, ids: Int32Array.of(5, 9), mask: Int32Array.of(1, 1) }), ["logits"])
      expectRowLogits(padded.logits, 1, 2, Float64Array.from(alone.logits.data as Float32Array))
    } finally {
      await session.release()
    }
  })

  it("with attention_mask and position_ids: what is fed, and logits equal the reference", async () => {
    const mw = maskedWeights({ vocab: 13, dim: 5, seed: 23 })
    const { session, feeds } = await open(saveModel(maskedModel(mw), tmp, "masked.onnx"))
    try {
      expect(feeds.map(([n]) => n)).toEqual(["input_ids", "attention_mask", "position_ids"])
      const fed = feedAll(feeds, batch)
      expect(view(fed.position_ids)).toEqual({ type: "int64", dims: [2, 4], data: [0, 1, 2, 3, 0, 1, 2, 3] })
      const out = await session.run(fed, ["logits"])
      rows.forEach((ids, r) => expectRowLogits(out.logits, r, ids.length, maskedLogits(mw, ids)))
    } finally {
      await session.release()
    }
  })

  it("merged decoder with a float32, float16 or float64 past: empty past of that dtype, use_cache_branch false, logits equal the reference", async () => {
    const mw = maskedWeights({ vocab: 13, dim: 5, seed: 24 })
    for (const pastType of ["float32", "float16", "float64"] as const) {
      const { session, feeds } = await open(saveModel(optimumModel(mw, { pastType, layers: 2, heads: 2, headDim: 3 }), tmp, `optimum-${pastType}.onnx`))
      try {
        const pasts = ["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]
        expect(feeds.map(([n]) => n)).toEqual(["input_ids", "attention_mask", "position_ids", ...pasts, "use_cache_branch"])
        const fed = feedAll(feeds, batch)
        for (const p of pasts) expect({ type: fed[p].type, dims: [...fed[p].dims], size: fed[p].size }).toEqual({ type: pastType, dims: [2, 2, 0, 3], size: 0 })
        expect(view(fed.use_cache_branch)).toEqual({ type: "bool", dims: [1], data: [0] })
        const out = await session.run(fed, ["logits", "present.0.key"])
        expect(out["present.0.key"].type).toBe(pastType)
        expect([...out["present.0.key"].dims]).toEqual([2, 2, 4, 3])
        rows.forEach((ids, r) => expectRowLogits(out.logits, r, ids.length, maskedLogits(mw, ids)))
      } finally {
        await session.release()
      }
    }
  })
})

describe("next-token path on a merged decoder with a float64 past", () => {
  /** Softmax of the reference logits' last row [vocab] (float64). */
  const lastSoftmax = (logits: Float64Array, vocab: number): number[] => {
    const row = Array.from(logits.subarray(logits.length - vocab))
    const max = Math.max(...row)
    const e = row.map((z) => Math.exp(z - max))
    const s = e.reduce((a, b) => a + b, 0)
    return e.map((x) => x / s)
  }
  const mw = maskedWeights({ vocab: 13, dim: 5, seed: 25 })
  const prompts = [Int32Array.of(3, 1, 4, 1), Int32Array.of(5, 9), Int32Array.of(2, 6, 5, 3)]

  it("next (padded rows) and begin (rows grouped by length, empty float64 past) give the reference distributions", async () => {
    const m = await openNextToken(saveModel(optimumModel(mw, { pastType: "float64" }), tmp, "optimum-next-f64.onnx"), { threads: 1 })
    try {
      expect(m.kvCache).toBe(true)
      const want = prompts.map((p) => lastSoftmax(maskedLogits(mw, p), mw.vocab))
      const check = (got: ReadonlyArray<Float64Array>) =>
        got.forEach((q, r) => {
          expect(q.length).toBe(mw.vocab)
          q.forEach((x, v) => expect(x).toBeCloseTo(want[r][v], 5))
        })
      check(await m.next(prompts))
      const stepper = await m.begin!(prompts, 16)
      check(stepper.first)
    } finally {
      await m.release()
    }
  })

  it("decoding with a float64 KV cache (GPT export) follows the plain export re-run on the whole prefix", async () => {
    // This fixture's past is a real cache (the optimum fixture's is not), so steps after the prompt can be checked:
    // against the graph without a cache, which onnxruntime runs on the whole prefix every step.
    const gw = gptWeights({ vocab: 24, context: 12, layers: 2, dim: 8, heads: 2, seed: 26 })
    const plain = await openNextToken(saveModel(gptModel(gw), tmp, "gpt-plain.onnx"), { threads: 1 })
    const cached = await openNextToken(saveModel(gptModel(gw, { kvCache: true, pastType: "float64" }), tmp, "gpt-kv-f64.onnx"), { threads: 1 })
    try {
      expect([plain.kvCache, cached.kvCache]).toEqual([false, true])
      const seqs = [Array.from(prompts[0]), Array.from(prompts[2])] // one length: one cache group
      const stepper = await cached.begin!(seqs.map((s) => Int32Array.from(s)), 12)
      let got = stepper.first
      for (let step = 0; step < 5; step++) {
        const want = await plain.next(seqs.map((s) => Int32Array.from(s)))
        got.forEach((q, r) => q.forEach((x, v) => expect(x).toBeCloseTo(want[r][v], 5)))
        const ids = want.map((q) => q.indexOf(Math.max(...q)))
        seqs.forEach((s, r) => s.push(ids[r]))
        got = await stepper.append(ids)
      }
    } finally {
      await plain.release()
      await cached.release()
    }
  })
})
