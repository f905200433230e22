import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { argmax, combine, makeSampler, nucleus, sampleNucleus, softmax } from "../stages/sequences/decode.ts"
import { openNextToken, type NextToken } from "../lib/onnx/next-token.ts"
import { generateJoint } from "../stages/sequences/generate.ts"
import { pplOf, shuffleWords, substitute } from "../stages/sequences/noise.ts"
import { mulberry32 } from "../lib/random.ts"
import { gptModel, gptWeights, linearLogits, linearModel, linearWeights, saveModel } from "./fixtures/onnx.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-seq-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** A NextToken whose distribution is a fixed function of the prefix. */
const fake = (label: string, dist: (prefix: Int32Array) => number[]): NextToken => ({
  label,
  next: async (ps) => ps.map((p) => Float64Array.from(dist(p))),
  release: async () => undefined,
})

describe("combine", () => {
  it("max(λs·ps + λl·pl, 0) renormalised (the worked example)", () => {
    const { q, fallback } = combine([0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 1, -1)
    expect(fallback).toBe(false)
    expect([...q]).toEqual([1, 0, 0])
    const mix = combine([0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 1, 1)
    expect([...mix.q].map((x) => +x.toFixed(12))).toEqual([0.35, 0.3, 0.35])
    expect([...combine([0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 0, 1).q].map((x) => +x.toFixed(12))).toEqual([0.2, 0.3, 0.5])
  })

  it("λ = (1, −1) on identical distributions takes the fallback (the large model's p), never NaN", () => {
    const p = [0.1, 0.6, 0.3]
    const { q, fallback } = combine(p, p, 1, -1)
    expect(fallback).toBe(true)
    expect([...q].every(Number.isFinite)).toBe(true)
    expect([...q].map((x) => +x.toFixed(12))).toEqual(p)
    expect(combine(p, p, 0, 0).fallback).toBe(true)
    // Even a degenerate large distribution gives a uniform q, not NaN.
    expect([...combine([0, 0], [0, 0], 1, -1).q]).toEqual([0.5, 0.5])
  })
})

describe("greedy and nucleus", () => {
  it("greedy picks the argmax of the combined distribution; ties go to the lowest id", () => {
    expect(argmax([0.2, 0.4, 0.4])).toBe(1)
    const ps = [0.25, 0.5, 0.25]
    const pl = [0.125, 0.75, 0.125]
    // p_s − p_l = [0.125, −0.25, 0.125] → [0.5, 0, 0.5] → tie → id 0
    expect(makeSampler("greedy", 0.9, 1).next(combine([0.1, 0.5, 0.4], [0.05, 0.6, 0.3], 1, -1).q)).toBe(2)
    expect(makeSampler("greedy", 0.9, 1).next(combine(ps, pl, 1, -1).q)).toBe(0)
    // p_l alone → id 1
    expect(makeSampler("greedy", 0.9, 1).next(combine(ps, pl, 0, 1).q)).toBe(1)
  })

  it("the nucleus is the smallest descending prefix reaching top_p", () => {
    const q = [0.05, 0.5, 0.1, 0.3, 0.05]
    expect([...nucleus(q, 0.5).ids]).toEqual([1])
    expect([...nucleus(q, 0.8).ids]).toEqual([1, 3])
    expect([...nucleus(q, 0.81).ids]).toEqual([1, 3, 2])
    expect([...nucleus(q, 1).ids]).toEqual([1, 3, 2, 0, 4])
    expect(sampleNucleus(q, 0.8, 0)).toBe(1)
    expect(sampleNucleus(q, 0.8, 0.999)).toBe(3)
  })

  it("nucleus sampling with a fixed seed is reproducible and stays inside the top-p set", () => {
    const q = softmax([2, 1, 0.5, 0, -1, -3, 1.5, 0.2])
    const top = new Set(nucleus(q, 0.7).ids)
    const draw = (seed: number) => {
      const s = makeSampler("nucleus", 0.7, seed)
      return Array.from({ length: 200 }, () => s.next(q))
    }
    const a = draw(42)
    expect(draw(42)).toEqual(a)
    expect(draw(43)).not.toEqual(a)
    expect(a.every((id) => top.has(id))).toBe(true)
    expect(new Set(a).size).toBe(top.size) // every member of the nucleus is drawn
  })
})

describe("joint generation", () => {
  it("identical models with λ = (1, −1) fall back at every step and decode like the model alone", async () => {
    const m = fake("m", (p) => (p[p.length - 1] % 2 === 0 ? [0.1, 0.7, 0.2] : [0.6, 0.1, 0.3]))
    const opts = { decoding: "greedy" as const, topP: 0.9, maxNewTokens: 5, seeds: [1], contextLength: 16 }
    const diff = await generateJoint(m, m, [Int32Array.of(0)], { ...opts, lambdaS: 1, lambdaL: -1 })
    const alone = await generateJoint(m, m, [Int32Array.of(0)], { ...opts, lambdaS: 0, lambdaL: 1 })
    expect(diff.fallbacks).toBe(5)
    expect(alone.fallbacks).toBe(0)
    expect([...diff.generated[0]]).toEqual([...alone.generated[0]])
    expect([...alone.generated[0]]).toEqual([1, 0, 1, 0, 1])
  })

  it("greedy decoding on two ONNX fixtures follows the reference argmax of the combined distribution", async () => {
    const ws = linearWeights({ vocab: 13, dim: 4, seed: 3 })
    const wl = linearWeights({ vocab: 13, dim: 4, seed: 4 })
    const small = await openNextToken(saveModel(linearModel(ws), tmp, "s.onnx"), { threads: 1 })
    const large = await openNextToken(saveModel(linearModel(wl), tmp, "l.onnx"), { threads: 1 })
    try {
      for (const [ls, ll] of [[1, -1], [-1, 1], [1, 0], [0.5, 0.5]]) {
        const prompts = [Int32Array.of(2, 7), Int32Array.of(5)]
        const got = await generateJoint(small, large, prompts, { lambdaS: ls, lambdaL: ll, decoding: "greedy", topP: 1, maxNewTokens: 6, seeds: [0, 0], contextLength: 8 })
        prompts.forEach((p, i) => {
          let last = p[p.length - 1]
          const want: number[] = []
          for (let k = 0; k < 6; k++) {
            const { q } = combine(softmax(linearLogits(ws, Int32Array.of(last))), softmax(linearLogits(wl, Int32Array.of(last))), ls, ll)
            last = argmax(q)
            want.push(last)
          }
          expect([...got.generated[i]], `λ=(${ls}, ${ll}) prompt ${i}`).toEqual(want)
        })
      }
    } finally {
      await small.release()
      await large.release()
    }
  })

  it("prompts of different lengths decoded together (right padding) equal each decoded alone", async () => {
    const file = saveModel(gptModel(gptWeights({ vocab: 40, context: 32, layers: 1, dim: 16, heads: 2, seed: 5 })), tmp, "gpt.onnx")
    const m = await openNextToken(file, { threads: 1 })
    try {
      const prompts = [Int32Array.of(3, 9, 1, 4, 4), Int32Array.of(7), Int32Array.of(2, 2, 8)]
      const o = { lambdaS: 1, lambdaL: 1, decoding: "nucleus" as const, topP: 0.9, maxNewTokens: 8, seeds: [11, 12, 13], contextLength: 10 }
      const together = await generateJoint(m, m, prompts, o)
      for (const [i, p] of prompts.entries()) {
        const alone = await generateJoint(m, m, [p], { ...o, seeds: [o.seeds[i]] })
        expect([...alone.generated[0]]).toEqual([...together.generated[i]])
      }
    } finally {
      await m.release()
    }
  })
})

describe("KV cache", () => {
  const gw = gptWeights({ vocab: 40, context: 12, layers: 2, dim: 16, heads: 2, seed: 9 })
  const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let m = 0
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
    return m
  }

  it("an export with past_key_values/present is stepped through its cache, equal to re-running the prefix", async () => {
    const plain = await openNextToken(saveModel(gptModel(gw), tmp, "plain.onnx"), { threads: 1 })
    const kvFile = saveModel(gptModel(gw, { kvCache: true }), tmp, "kv.onnx")
    const cached = await openNextToken(kvFile, { threads: 1 })
    const rerun = await openNextToken(kvFile, { threads: 1, kvCache: false })
    try {
      expect([plain.kvCache, cached.kvCache, rerun.kvCache]).toEqual([false, true, false])
      expect(cached.begin).toBeDefined()
      // rows of two lengths (two cache groups), 9 steps past a context of 12 (re-prefill)
      const prompts = [Int32Array.of(3, 9, 1), Int32Array.of(7, 7, 2, 30, 5), Int32Array.of(0, 1, 2)]
      const seqs = prompts.map((p) => Array.from(p))
      const stepper = await cached.begin!(prompts, gw.context)
      let got = stepper.first
      for (let k = 0; k < 9; k++) {
        const cut = seqs.map((q) => Int32Array.from(q.slice(-gw.context)))
        // the plain graph on the whole prefix, and the KV graph fed an empty past: the same distributions
        const want = await plain.next(cut)
        const viaEmptyPast = await rerun.next(cut)
        for (const r of want.keys()) {
          expect(maxDiff(got[r], want[r]), `step ${k} row ${r}`).toBeLessThan(1e-5)
          expect(maxDiff(viaEmptyPast[r], want[r])).toBeLessThan(1e-6)
        }
        const ids = Int32Array.from(got, (q) => argmax(q))
        seqs.forEach((q, r) => q.push(ids[r]))
        got = await stepper.append(ids)
      }
    } finally {
      await Promise.all([plain.release(), cached.release(), rerun.release()])
    }
  })

  it("joint nucleus decoding with the cache draws the same tokens as without it", async () => {
    const kvFile = saveModel(gptModel(gw, { kvCache: true }), tmp, "kv2.onnx")
    const small = await openNextToken(saveModel(gptModel(gptWeights({ ...gw, seed: 10 }), { kvCache: true }), tmp, "kv-s.onnx"), { threads: 1 })
    const large = await openNextToken(kvFile, { threads: 1 })
    const smallRe = await openNextToken(path.join(tmp, "kv-s.onnx"), { threads: 1, kvCache: false })
    const largeRe = await openNextToken(kvFile, { threads: 1, kvCache: false })
    try {
      const prompts = [Int32Array.of(5, 6), Int32Array.of(1, 2, 3, 4), Int32Array.of(9, 8)]
      const o = { lambdaS: -1, lambdaL: 1, decoding: "nucleus" as const, topP: 0.9, maxNewTokens: 15, seeds: [1, 2, 3], contextLength: gw.context }
      const withCache = await generateJoint(small, large, prompts, o)
      const without = await generateJoint(smallRe, largeRe, prompts, o)
      expect(withCache.generated.map((g) => [...g])).toEqual(without.generated.map((g) => [...g]))
      expect(withCache.fallbacks).toBe(without.fallbacks)
    } finally {
      await Promise.all([small.release(), large.release(), smallRe.release(), largeRe.release()])
    }
  })
})

describe("noise", () => {
  it("rate 0 is the original; rate 1 replaces every position from `from` on; reproducible", () => {
    const ids = Int32Array.from({ length: 50 }, (_, i) => i % 7)
    expect([...substitute(ids, 1, 0, 100, mulberry32(1))]).toEqual([...ids])
    const all = substitute(ids, 1, 1, 100, mulberry32(1))
    expect(all[0]).toBe(ids[0])
    expect([...all.subarray(1)].some((v, i) => v !== ids[i + 1])).toBe(true)
    expect([...substitute(ids, 1, 0.3, 100, mulberry32(9))]).toEqual([...substitute(ids, 1, 0.3, 100, mulberry32(9))])
    expect([...all].every((v) => v >= 0 && v < 100)).toBe(true)
  })

  it("shuffleWords keeps the multiset of words", () => {
    const t = "the quick brown fox jumps over the lazy dog"
    const s = shuffleWords(t, mulberry32(3))
    expect(s.split(" ").sort()).toEqual(t.split(" ").sort())
    expect(s).not.toBe(t)
    expect(pplOf([Float32Array.of(Math.log(0.5), Math.log(0.5))]).ppl).toBeCloseTo(2, 6)
    expect(pplOf([]).ppl).toBeNull()
  })
})
