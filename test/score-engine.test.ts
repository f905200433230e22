/**
 * The scoring engine against fixture models whose log-probs are computed independently here
 * (test/fixtures/onnx.ts reference forward passes in float64 over the same float32 weights).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import * as ort from "onnxruntime-node"
import { createRequire } from "node:module"
import { afterAll, describe, expect, it } from "vitest"
import { IN, OUT, chunkFor, findSignature, planPositionsHead, type Signature } from "../lib/onnx/head.ts"
import { externalizeWeights, readModelHeader } from "../lib/onnx/file.ts"
import { withScorer, type ScoreRequest, type ScoreResult, type Scorer, type ScorerOptions } from "../lib/onnx/scorer.ts"
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
  referenceScores,
  saveModel,
} from "./fixtures/onnx.ts"

const require = createRequire(import.meta.url)
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-score-engine-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const cacheDir = path.join(tmp, "cache")
const base: ScorerOptions = { threads: 1, batchSize: 3, entropy: true, cacheDir }

const score = (file: string, reqs: ReadonlyArray<ScoreRequest>, opts: Partial<ScorerOptions> = {}) =>
  Effect.runPromise(
    withScorer(file, { ...base, ...opts }, (s: Scorer) =>
      Effect.map(s.scoreAll(reqs), (results) => ({ results, graph: s.graph, vocab: s.vocabSize })),
    ),
  )

/** The OnnxError message of a failing open or scoreAll. */
const failure = async (file: string, reqs: ReadonlyArray<ScoreRequest>, opts: Partial<ScorerOptions> = {}): Promise<string> => {
  const r = await Effect.runPromise(Effect.either(withScorer(file, { ...base, ...opts }, (s) => s.scoreAll(reqs))))
  if (Either.isRight(r)) throw new Error("expected a failure")
  expect(r.left._tag).toBe("OnnxError")
  expect(r.left.message).not.toContain("\n")
  return r.left.message
}

const seq = (...ids: number[]) => Int32Array.from(ids)

/** Lengths 2…9, first targets 1…4: one batch of 3 always mixes lengths. */
const mixed = (vocab: number): ScoreRequest[] =>
  [
    [seq(1, 2, 3, 4, 5), 1],
    [seq(7, 3), 1],
    [seq(0, 9, 8, 7, 6, 5, 4, 3, 2), 4],
    [seq(vocab - 1, 0, vocab - 1), 2],
    [seq(4, 4, 4, 4, 4, 4), 3],
    [seq(2, 5, 1, 9), 1],
    [seq(3, 1, 4, 1, 5, 9, 2), 1],
  ].map(([ids, firstTarget]) => ({ ids: ids as Int32Array, firstTarget: firstTarget as number }))

const expectMatches = (
  results: ReadonlyArray<ScoreResult>,
  reqs: ReadonlyArray<ScoreRequest>,
  logits: (ids: Int32Array) => Float64Array,
  vocab: number,
  tol = 1e-5,
) => {
  expect(results.length).toBe(reqs.length)
  reqs.forEach((r, i) => {
    const want = referenceScores(logits(r.ids), vocab, r.ids, r.firstTarget)
    const got = results[i]
    expect(got.logprob.length).toBe(r.ids.length - r.firstTarget)
    want.logprob.forEach((x, k) => expect(Math.abs(got.logprob[k] - x)).toBeLessThan(tol))
    if (got.entropy) want.entropy.forEach((x, k) => expect(Math.abs(got.entropy![k] - x)).toBeLessThan(tol))
  })
}

const lw = linearWeights()
const mw = maskedWeights()
const file = (name: string) => path.join(tmp, name)

describe("fixture models vs independent log-probs (1e-5)", () => {
  const linear = saveModel(linearModel(lw), tmp, "linear.onnx")

  it("(a) embedding → linear, a batch mixing lengths, results in request order", async () => {
    const reqs = mixed(lw.vocab)
    const { results, graph, vocab } = await score(linear, reqs)
    expect(graph).not.toBe("logits")
    expect(vocab).toBe(lw.vocab)
    expectMatches(results, reqs, (ids) => linearLogits(lw, ids), lw.vocab)
    expect(results.every((r) => r.entropy !== undefined)).toBe(true)
  })

  it("(a) batch size does not change results; entropy only when asked", async () => {
    const reqs = mixed(lw.vocab)
    const one = await score(linear, reqs, { batchSize: 1, entropy: false })
    const many = await score(linear, reqs, { batchSize: 16, entropy: false })
    expect(one.results[0].entropy).toBeUndefined()
    one.results.forEach((r, i) => r.logprob.forEach((x, k) => expect(Math.abs(x - many.results[i].logprob[k])).toBeLessThan(1e-6)))
    expectMatches(many.results, reqs, (ids) => linearLogits(lw, ids), lw.vocab)
  })

  it("(a) a memory budget cuts the batch of a head over every position: batch × longest × vocab × 4 bytes × copies fits it, and results do not change; the head on scored positions (one chunk of logits at a time) is not cut", async () => {
    const mw = maskedWeights()
    const merged = saveModel(optimumModel(mw, { layers: 1 }), tmp, "budget-merged.onnx") // its logits come from Where: the head over every position
    const reqs = mixed(mw.vocab) // 7 requests, the longest 9 tokens
    const perSeq = 9 * mw.vocab * 4 * 3 // with entropy: logits, the log-sum-exp's temporary, the entropy's
    const calls = async (file: string, opts: Partial<ScorerOptions>) => {
      let n = 0
      const r = await Effect.runPromise(
        withScorer(file, { ...base, ...opts }, (s) =>
          Effect.map(s.scoreAll(reqs, () => n++), (results) => ({ results, batch: s.batchFor(9), positionsOnly: s.positionsOnly })),
        ),
      )
      return { ...r, calls: n }
    }
    const free = await calls(merged, { batchSize: 8 })
    expect([free.positionsOnly, free.batch, free.calls]).toEqual([false, 8, 1])
    const cut = await calls(merged, { batchSize: 8, maxMemoryBytes: 2.5 * perSeq })
    expect([cut.batch, cut.calls]).toEqual([2, 4]) // ⌊2.5⌋ = 2 sequences a call, ⌈7 / 2⌉ calls
    const tiny = await calls(merged, { batchSize: 8, maxMemoryBytes: 1 })
    expect([tiny.batch, tiny.calls]).toEqual([1, 7]) // never below 1
    tiny.results.forEach((r, i) => r.logprob.forEach((x, k) => expect(Math.abs(x - free.results[i].logprob[k])).toBeLessThan(1e-6)))
    expectMatches(cut.results, reqs, (ids) => maskedLogits(mw, ids), mw.vocab)
    const positions = await Effect.runPromise(withScorer(linear, { ...base, batchSize: 8, maxMemoryBytes: 1 }, (s) => Effect.succeed([s.positionsOnly, s.batchFor(9)])))
    expect(positions).toEqual([true, 8])
  })

  it("(a) opset 11 (axes as attributes), int32 input_ids, and a vocabulary the model does not declare", async () => {
    const reqs = mixed(lw.vocab)
    for (const [name, o] of [
      ["opset11.onnx", { opset: 11 }],
      ["int32.onnx", { idsType: "int32" as const }],
      ["symbolic.onnx", { symbolicVocab: true }],
    ] as const) {
      const { results, graph, vocab } = await score(saveModel(linearModel(lw, o), tmp, name), reqs)
      expect(graph).toBe("rewritten")
      expect(vocab).toBe(lw.vocab)
      expectMatches(results, reqs, (ids) => linearLogits(lw, ids), lw.vocab)
    }
  })

  it("(a) float16 logits: the head casts to float; same values as the TypeScript path, within fp16 of the reference", async () => {
    const reqs = mixed(lw.vocab)
    const f = saveModel(linearModel(lw, { logitsType: "float16" }), tmp, "fp16.onnx")
    const head = await score(f, reqs)
    const ts = await score(f, reqs, { mode: "logits" })
    expect([head.graph, ts.graph]).toEqual(["rewritten", "logits"])
    head.results.forEach((r, i) => {
      r.logprob.forEach((x, k) => expect(Math.abs(x - ts.results[i].logprob[k])).toBeLessThan(1e-5))
      r.entropy!.forEach((x, k) => expect(Math.abs(x - ts.results[i].entropy![k])).toBeLessThan(1e-5))
    })
    expectMatches(head.results, reqs, (ids) => linearLogits(lw, ids), lw.vocab, 1e-2)
  })

  it("(b) output depends on attention_mask and position_ids", async () => {
    const f = saveModel(maskedModel(mw), tmp, "masked.onnx")
    const reqs = mixed(mw.vocab)
    const { results } = await score(f, reqs)
    expectMatches(results, reqs, (ids) => maskedLogits(mw, ids), mw.vocab)
    // The fixture really reads both inputs: other positions or mask give other logits.
    const s = await ort.InferenceSession.create(f)
    const ids = new ort.Tensor("int64", BigInt64Array.of(1n, 2n, 3n), [1, 3])
    const run = async (mask: bigint[], pos: bigint[]) =>
      (
        await s.run({
          input_ids: ids,
          attention_mask: new ort.Tensor("int64", BigInt64Array.from(mask), [1, 3]),
          position_ids: new ort.Tensor("int64", BigInt64Array.from(pos), [1, 3]),
        })
      ).logits.data as Float32Array
    const ref = await run([1n, 1n, 1n], [0n, 1n, 2n])
    expect((await run([1n, 1n, 0n], [0n, 1n, 2n]))[2 * mw.vocab]).not.toBeCloseTo(ref[2 * mw.vocab], 3)
    expect((await run([1n, 1n, 1n], [0n, 0n, 0n]))[2 * mw.vocab]).not.toBeCloseTo(ref[2 * mw.vocab], 3)
    await s.release()
  })

  it("(c) Optimum merged-decoder signature: empty past (float32, float16 and float64), use_cache_branch false", async () => {
    const reqs = mixed(mw.vocab)
    for (const pastType of ["float32", "float16", "float64"] as const) {
      const f = saveModel(optimumModel(mw, { pastType, layers: 2, heads: 2, headDim: 3 }), tmp, `optimum-${pastType}.onnx`)
      const head = await score(f, reqs)
      expect(head.graph).toBe("rewritten")
      expectMatches(head.results, reqs, (ids) => maskedLogits(mw, ids), mw.vocab)
      expectMatches((await score(f, reqs, { mode: "logits" })).results, reqs, (ids) => maskedLogits(mw, ids), mw.vocab)
    }
  })

  it("(d) weights in an external data file (in a subfolder), with and without the cache", async () => {
    const dir = path.join(tmp, "external")
    const w = linearWeights({ vocab: 40, dim: 16, seed: 4 })
    const f = saveModel(linearModel(w), dir, "model.onnx", { externalData: "data/weights.bin" })
    expect(fs.statSync(path.join(dir, "data/weights.bin")).size).toBe((2 * 40 * 16 + 40) * 4)
    expect(fs.statSync(f).size).toBeLessThan(1000)
    const reqs = mixed(w.vocab)
    const first = await score(f, reqs)
    const again = await score(f, reqs)
    const uncached = await score(f, reqs, { cacheDir: undefined })
    expect([first.graph, again.graph, uncached.graph]).toEqual(["rewritten", "cached", "rewritten"])
    // 2e-5: this fixture's logits reach ~±40, and the head's float32 log-sum-exp is rounded at that magnitude (ulp 3.8e-6).
    for (const r of [first, again, uncached]) expectMatches(r.results, reqs, (ids) => linearLogits(w, ids), w.vocab, 2e-5)
  })

  it("a GPT-shaped model: the head equals the TypeScript log-softmax, and padding does not leak into shorter rows", async () => {
    const gw = gptWeights({ vocab: 64, context: 16, layers: 2, dim: 16, heads: 2, seed: 5 })
    const f = saveModel(gptModel(gw), tmp, "gpt.onnx")
    const reqs = Array.from({ length: 7 }, (_, i) => ({ ids: Int32Array.from({ length: 16 - 2 * i }, (_, k) => (k * 7 + i * 13) % 64), firstTarget: 1 + (i % 3) }))
    const head = await score(f, reqs, { batchSize: 4 })
    const single = await score(f, reqs, { batchSize: 1 })
    const ts = await score(f, reqs, { mode: "logits" })
    head.results.forEach((r, i) =>
      r.logprob.forEach((x, k) => {
        expect(Math.abs(x - single.results[i].logprob[k])).toBeLessThan(1e-5)
        expect(Math.abs(x - ts.results[i].logprob[k])).toBeLessThan(1e-5)
        expect(Math.abs(r.entropy![k] - ts.results[i].entropy![k])).toBeLessThan(1e-5)
      }),
    )
  })
})

describe("head on scored positions", () => {
  const info = (file: string, opts: Partial<ScorerOptions> = {}) =>
    Effect.runPromise(withScorer(file, { ...base, ...opts }, (s) => Effect.succeed({ positionsOnly: s.positionsOnly, why: s.everyPositionWhy, vocab: s.vocabSize })))

  it("runs the output layer on the scored positions of fixture exports (linear, float16, masked, GPT); a merged decoder gets the head over every position and says why", async () => {
    const lw = linearWeights()
    const mw = maskedWeights()
    for (const [name, m] of [
      ["p-linear.onnx", linearModel(lw)],
      ["p-fp16.onnx", linearModel(lw, { logitsType: "float16" })],
      ["p-symbolic.onnx", linearModel(lw, { symbolicVocab: true })],
      ["p-masked.onnx", maskedModel(mw)],
      ["p-gpt.onnx", gptModel(gptWeights({ vocab: 64, context: 16, layers: 1, dim: 16, heads: 2, seed: 5 }))],
    ] as const) {
      const i = await info(saveModel(m, tmp, name))
      expect([name, i.positionsOnly, i.why]).toEqual([name, true, undefined])
    }
    expect((await info(saveModel(linearModel(lw, { symbolicVocab: true }), tmp, "p-symbolic.onnx"))).vocab).toBe(lw.vocab) // probed through the new head
    const merged = await info(saveModel(optimumModel(mw, { layers: 1 }), tmp, "p-optimum.onnx"))
    expect(merged.positionsOnly).toBe(false)
    expect(merged.why).toMatch(/^logits come from /)
  })

  it("long rows scored from deep inside, shorter rows padded in the same batch: equal to the TypeScript log-softmax of the full logits", async () => {
    const gw = gptWeights({ vocab: 64, context: 16, layers: 2, dim: 16, heads: 2, seed: 8 })
    const f = saveModel(gptModel(gw), tmp, "p-deep.onnx")
    expect((await info(f)).positionsOnly).toBe(true)
    // Strided windows (first targets 8 of 16), a prompt with a 1-token option, a first window (1), a row with no target.
    const reqs: ScoreRequest[] = [
      { ids: Int32Array.from({ length: 16 }, (_, k) => (k * 5 + 1) % 64), firstTarget: 8 },
      { ids: Int32Array.from({ length: 11 }, (_, k) => (k * 11 + 3) % 64), firstTarget: 10 },
      { ids: Int32Array.from({ length: 16 }, (_, k) => (k * 3 + 7) % 64), firstTarget: 1 },
      { ids: Int32Array.from({ length: 5 }, (_, k) => (k * 13) % 64), firstTarget: 5 },
      { ids: Int32Array.from({ length: 9 }, (_, k) => (k * 17 + 2) % 64), firstTarget: 8 },
    ]
    const head = await score(f, reqs, { batchSize: 4 })
    const ts = await score(f, reqs, { mode: "logits", batchSize: 1 })
    head.results.forEach((r, i) => {
      expect(r.logprob.length).toBe(reqs[i].ids.length - reqs[i].firstTarget)
      r.logprob.forEach((x, k) => expect(Math.abs(x - ts.results[i].logprob[k])).toBeLessThan(1e-5))
      r.entropy!.forEach((x, k) => expect(Math.abs(x - ts.results[i].entropy![k])).toBeLessThan(1e-5))
    })
  })
})

describe("head on scored positions, in chunks", () => {
  it("chunks of at most 1, 2, 3 and 64 positions (padded to equal chunks) give the same log-probs and entropies as the reference", async () => {
    const lw = linearWeights({ vocab: 40, dim: 16, seed: 4 })
    const f = saveModel(linearModel(lw), tmp, "chunks.onnx")
    const h = readModelHeader(f)
    const ids = [seq(1, 2, 3, 4, 5, 6, 7), seq(9, 8, 7, 0, 0, 0, 0)] // row 2: 4 tokens, then padding
    const scored = [[0, 3], [1, 2], [1, 3], [0, 1], [0, 2], [0, 6]] as const // [row, j]: predict ids[row][j]
    for (const chunk of [1, 2, 3, 64]) {
      const p = planPositionsHead(externalizeWeights(f), h, findSignature(h) as Signature, { entropy: true, chunk })
      if (!p.ok) throw new Error(p.reason)
      const s = await ort.InferenceSession.create(p.bytes, { extra: { session: { model_external_initializers_file_folder_path: tmp } } })
      const out = await s.run({
        input_ids: new ort.Tensor("int64", BigInt64Array.from([...ids[0], ...ids[1]], BigInt), [2, 7]),
        [IN.positions]: new ort.Tensor("int64", BigInt64Array.from(scored.map(([r, j]) => BigInt(r * 7 + j - 1))), [scored.length]),
        [IN.targets]: new ort.Tensor("int64", BigInt64Array.from(scored.map(([r, j]) => BigInt(ids[r][j]))), [scored.length]),
      })
      await s.release()
      const lp = out[OUT.logprob].data as Float32Array
      const ent = out[OUT.entropy].data as Float32Array
      expect([chunk, lp.length, ent.length, [...(out[OUT.logitsShape].data as BigInt64Array)].map(Number)]).toEqual([chunk, 6, 6, [Math.min(chunk, 6, Math.ceil(6 / Math.ceil(6 / chunk))), 40]])
      scored.forEach(([r, j], k) => {
        const want = referenceScores(linearLogits(lw, ids[r].subarray(0, j + 1)), lw.vocab, ids[r].subarray(0, j + 1), j)
        expect(Math.abs(lp[k] - want.logprob[0])).toBeLessThan(1e-5)
        expect(Math.abs(ent[k] - want.entropy[0])).toBeLessThan(1e-5)
      })
    }
  })

  it("chunks hold 64 MiB of float32 logits at most (16…4096 positions)", () => {
    expect([chunkFor(50_304), chunkFor(1024), chunkFor(256_000), chunkFor(4_000_000)]).toEqual([333, 4096, 65, 16])
  })
})

describe("graph cache and fallback", () => {
  it("rewrites once per checkpoint and variant, reuses the cache, and redoes it when the file changes", async () => {
    const dir = path.join(tmp, "cachetest")
    const cache = path.join(dir, "cache")
    const f = saveModel(linearModel(lw), dir, "m.onnx")
    const then = new Date("2025-01-01T00:00:00Z") // whole seconds: utimes can set it back exactly
    fs.utimesSync(f, then, then)
    const reqs = mixed(lw.vocab)
    const graphs = async (o: Partial<ScorerOptions>) => (await score(f, reqs, { cacheDir: cache, ...o })).graph
    expect(await graphs({})).toBe("rewritten")
    expect(await graphs({})).toBe("cached")
    expect(await graphs({ entropy: false })).toBe("rewritten") // another head
    expect(await graphs({ entropy: false })).toBe("cached")
    const cached = fs.readdirSync(path.join(cache, "score-graphs")).filter((n) => n.endsWith(".onnx"))
    expect(cached).toHaveLength(2)
    // Replaced by other weights of the same size, with the same mtime: rewritten, and scored with the new weights.
    const st = fs.statSync(f)
    const other = linearWeights({ seed: 99 })
    saveModel(linearModel(other), dir, "m.onnx")
    fs.utimesSync(f, then, then)
    expect([fs.statSync(f).size, fs.statSync(f).mtimeMs]).toEqual([st.size, st.mtimeMs])
    const again = await score(f, reqs, { cacheDir: cache })
    expect(again.graph).toBe("rewritten")
    expectMatches(again.results, reqs, (ids) => linearLogits(other, ids), other.vocab)
  })

  it("a cached graph holds no weights: they are read from the checkpoint file", async () => {
    const dir = path.join(tmp, "gptcache")
    const gw = gptWeights({ vocab: 256, context: 16, layers: 2, dim: 32, heads: 2, seed: 6 })
    const f = saveModel(gptModel(gw), dir, "gpt.onnx")
    const reqs = [{ ids: Int32Array.from({ length: 16 }, (_, k) => (k * 37) % 256), firstTarget: 1 }]
    const a = await score(f, reqs, { cacheDir: path.join(dir, "cache") })
    const b = await score(f, reqs, { cacheDir: path.join(dir, "cache") })
    const ts = await score(f, reqs, { mode: "logits" })
    expect([a.graph, b.graph]).toEqual(["rewritten", "cached"])
    const [cached] = fs.readdirSync(path.join(dir, "cache", "score-graphs"))
    expect(fs.statSync(path.join(dir, "cache", "score-graphs", cached)).size).toBeLessThan(fs.statSync(f).size / 10)
    b.results[0].logprob.forEach((x, k) => expect(Math.abs(x - ts.results[0].logprob[k])).toBeLessThan(1e-5))
  })

  it("a graph that cannot take the head (opset 10) falls back to TypeScript, says so once, and is still exact", async () => {
    const f = saveModel(linearModel(lw, { opset: 10 }), tmp, "opset10.onnx")
    const notes: string[] = []
    const reqs = mixed(lw.vocab)
    const { results, graph } = await score(f, reqs, { log: (m) => notes.push(m), batchSize: 2 })
    expect(graph).toBe("logits")
    expect(notes).toHaveLength(1)
    expect(notes[0]).toMatch(/opset10\.onnx: cannot append the scoring head \(opset 10 < 11.*TypeScript/)
    expectMatches(results, reqs, (ids) => linearLogits(lw, ids), lw.vocab)
  })

  it("a rewritten graph that onnxruntime refuses falls back to the original graph", async () => {
    const m = linearModel(lw)
    // The model already produces a tensor under one of the head's names: the merged graph is invalid.
    m.graph!.node!.push({ opType: "Shape", input: ["logits"], output: [OUT.logitsShape], name: "clash" })
    m.graph!.output!.push({ name: OUT.logitsShape, type: { tensorType: { elemType: 7 } } })
    const f = saveModel(m, tmp, "clash.onnx")
    const notes: string[] = []
    const { results, graph } = await score(f, mixed(lw.vocab), { log: (n) => notes.push(n) })
    expect(graph).toBe("logits")
    expect(notes).toEqual([expect.stringMatching(/^clash\.onnx: cannot append the scoring head \(the rewritten graph does not load: /)])
    expectMatches(results, mixed(lw.vocab), (ids) => linearLogits(lw, ids), lw.vocab)
  })

  it("sequences without targets and an empty call give empty results", async () => {
    const f = saveModel(linearModel(lw), tmp, "linear.onnx")
    const { results } = await score(f, [{ ids: seq(1, 2), firstTarget: 2 }, { ids: seq(1, 2, 3), firstTarget: 1 }])
    expect(results[0].logprob.length).toBe(0)
    expect(results[0].entropy!.length).toBe(0)
    expect(results[1].logprob.length).toBe(2)
    expect((await score(f, [])).results).toEqual([])
  })

  it("reports scored tokens per batch", async () => {
    const f = saveModel(linearModel(lw), tmp, "linear.onnx")
    const counts: number[] = []
    const reqs = mixed(lw.vocab)
    await Effect.runPromise(withScorer(f, { ...base, batchSize: 3 }, (s) => s.scoreAll(reqs, (n) => counts.push(n))))
    expect(counts).toHaveLength(3)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(reqs.reduce((a, r) => a + r.ids.length - r.firstTarget, 0))
  })
})

describe("errors: one line each", () => {
  const reqs = [{ ids: seq(1, 2, 3), firstTarget: 1 }]

  it("missing file", async () => {
    expect(await failure(file("nope.onnx"), reqs, { label: "s step 8" })).toBe(`s step 8: checkpoint file not found: ${file("nope.onnx")}`)
  })

  it("not an ONNX model", async () => {
    fs.writeFileSync(file("text.onnx"), "this is not a model\n".repeat(20))
    expect(await failure(file("text.onnx"), reqs)).toMatch(/^text\.onnx: not an ONNX model: .*text\.onnx/)
    fs.writeFileSync(file("empty.onnx"), "")
    expect(await failure(file("empty.onnx"), reqs)).toMatch(/^empty\.onnx: not an ONNX model/)
  })

  it("no input_ids, no logits", async () => {
    const noIds = saveModel(linearModel(lw, { inputName: "tokens" }), tmp, "noids.onnx")
    expect(await failure(noIds, reqs)).toBe(`noids.onnx: the model has no input "input_ids" (its inputs: tokens)`)
    const noLogits = saveModel(linearModel(lw, { outputName: "scores" }), tmp, "nologits.onnx")
    expect(await failure(noLogits, reqs)).toBe(`nologits.onnx: the model has no output "logits" (its outputs: scores)`)
  })

  it("token ids beyond the logits' width: tokenizer/model mismatch, naming both numbers", async () => {
    const f = saveModel(linearModel(lw), tmp, "linear.onnx")
    const msg = await failure(f, [...reqs, { ids: seq(1, 40, 2), firstTarget: 1, id: "seq_id 9" }])
    expect(msg).toBe(`linear.onnx: token id 40 (seq_id 9) is outside the model's logits of width ${lw.vocab}: tokenizer/model mismatch`)
  })

  it("NaN log-probs name the checkpoint, the sequence and the position", async () => {
    const bad = linearWeights()
    bad.emb[5 * bad.dim] = Number.NaN // every position after token 5 predicts NaN
    for (const mode of ["auto", "logits"] as const) {
      const f = saveModel(linearModel(bad), tmp, "nan.onnx")
      const msg = await failure(f, [{ ids: seq(1, 2, 3), firstTarget: 1 }, { ids: seq(1, 2, 5, 3), firstTarget: 1, id: "seq_id 4" }], {
        mode,
        label: "s step 16",
      })
      expect(msg).toBe("s step 16: log-prob is NaN at seq_id 4, position 3")
    }
  })

  it("an input the scorer cannot feed", async () => {
    const m = linearModel(lw)
    m.graph!.input!.push({ name: "token_type_ids", type: { tensorType: { elemType: 7, shape: { dim: [{ dimParam: "b" }] } } } })
    const f = saveModel(m, tmp, "extra.onnx")
    expect(await failure(f, reqs)).toMatch(/^extra\.onnx: input "token_type_ids" is not one the scorer can feed/)
  })

  it("a bad first target", async () => {
    const f = saveModel(linearModel(lw), tmp, "linear.onnx")
    expect(await failure(f, [{ ids: seq(1, 2, 3), firstTarget: 0 }])).toBe("linear.onnx: sequence 0: firstTarget 0 is outside 1…3")
  })

  it("the CUDA provider missing from this onnxruntime-node build says how to get it", async () => {
    const f = saveModel(linearModel(lw), tmp, "linear.onnx")
    const bin = path.dirname(path.join(path.dirname(require.resolve("onnxruntime-node")), "..", "bin", "napi-v6", "linux", "x64", "x"))
    // The CUDA provider files are not installed by default (this project's .npmrc sets ignore-scripts).
    if (!fs.existsSync(path.join(bin, "libonnxruntime_providers_cuda.so"))) {
      expect(await failure(f, reqs, { executionProvider: "cuda" })).toMatch(/execution provider "cuda" is not available .*execution_provider: cpu$/)
    }
  })
})
