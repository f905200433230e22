/**
 * Hugging Face folders through the Onnx module as the stages use it (withScorer, openNextToken):
 * the graph built from the folder (lib/onnx/source.ts), the scoring head appended, the weights read
 * in place from the folder. Log-probs equal a log-softmax computed here in float64 from the built
 * graph's own logits (whose agreement with PyTorch test/hf-graphs.test.ts checks), every
 * checkpoint of one size shares one built graph in the cache, and a folder that cannot be built
 * fails with one line.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { buildHfGraph } from "../lib/onnx/hf/build.ts"
import { openNextToken } from "../lib/onnx/next-token.ts"
import { withScorer } from "../lib/onnx/scorer.ts"
import { openBuilt, runBuilt } from "./fixtures/built-graph.ts"
import { SEQUENCES, VARIANTS } from "./fixtures/hf-variants.ts"
import { writeRandomCheckpoint } from "./fixtures/safetensors.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hf-scorer-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** log p(ids[j] | ids[<j]) from the built graph's raw logits, log-softmax in float64. */
const fromLogits = async (folder: string, seq: ReadonlyArray<number>): Promise<number[]> => {
  const s = await openBuilt(buildHfGraph(folder))
  try {
    return (await runBuilt(s, [seq])).logprobs[0]
  } finally {
    await s.release()
  }
}

const score = (folder: string, cacheDir: string, entropy = false) =>
  Effect.runPromise(
    withScorer(folder, { batchSize: 2, threads: 1, entropy, cacheDir, label: path.basename(folder) }, (s) =>
      Effect.map(s.scoreAll(SEQUENCES.map((ids) => ({ ids: Int32Array.from(ids), firstTarget: 1 }))), (r) => ({ r, graph: s.graph, vocab: s.vocabSize })),
    ),
  )

describe("Hugging Face folders through the scorer", () => {
  for (const name of ["neox-parallel-rot25", "gpt2-prefix-tied", "llama-bias-bf16-sharded"]) {
    it(`${name}: the head's log-probs equal the built graph's log-softmax; entropy is that of the same distribution`, async () => {
      const v = VARIANTS.find((x) => x.name === name)!
      const folder = path.join(tmp, name)
      writeRandomCheckpoint(folder, v.spec)
      const cache = path.join(tmp, `cache-${name}`)
      const first = await score(folder, cache, true)
      expect(first.graph).toBe("rewritten")
      for (const [i, seq] of SEQUENCES.entries()) {
        const want = await fromLogits(folder, seq)
        want.forEach((x, j) => expect(Math.abs(first.r[i].logprob[j] - x)).toBeLessThan(2e-5))
        first.r[i].entropy!.forEach((h) => expect(h).toBeGreaterThan(0))
      }
      const again = await score(folder, cache, true)
      expect(again.graph).toBe("cached")
      again.r.forEach((x, i) => x.logprob.forEach((lp, j) => expect(Math.abs(lp - first.r[i].logprob[j])).toBeLessThan(1e-6)))
    })
  }

  it("every checkpoint of a size shares one built graph; each reads its own weights", async () => {
    const v = VARIANTS.find((x) => x.name === "neox-parallel-rot25")!
    const cache = path.join(tmp, "cache-shared")
    const folders = [1, 2].map((k) => {
      const f = path.join(tmp, "run", `checkpoint-${k * 100}`)
      writeRandomCheckpoint(f, { ...v.spec, seed: 500 + k })
      return f
    })
    const [a, b] = [await score(folders[0], cache), await score(folders[1], cache)]
    expect(fs.readdirSync(path.join(cache, "hf-graphs"))).toHaveLength(1)
    expect(b.graph).toBe("cached") // the rewritten graph too is shared
    expect(Math.abs(a.r[0].logprob[0] - b.r[0].logprob[0])).toBeGreaterThan(1e-3) // other weights, other scores
    const want = await fromLogits(folders[1], SEQUENCES[0])
    want.forEach((x, j) => expect(Math.abs(b.r[0].logprob[j] - x)).toBeLessThan(2e-5))
  })

  it("next-token distributions of a built graph (the sequences stage) sum to 1 and match its log-probs", async () => {
    const v = VARIANTS.find((x) => x.name === "gpt2-prefix-tied")!
    const folder = path.join(tmp, "next")
    writeRandomCheckpoint(folder, v.spec)
    const m = await openNextToken(folder, { threads: 1, cacheDir: path.join(tmp, "cache-next") })
    try {
      const seq = SEQUENCES[0]
      const [p] = await m.next([Int32Array.from(seq.slice(0, 5))])
      expect(p.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 6)
      const want = await fromLogits(folder, seq.slice(0, 6))
      expect(Math.abs(Math.log(p[seq[5]]) - want[4])).toBeLessThan(2e-5)
    } finally {
      await m.release()
    }
  })

  it("a folder that cannot be built fails in one line naming it", async () => {
    const folder = path.join(tmp, "bad")
    fs.mkdirSync(folder, { recursive: true })
    fs.writeFileSync(path.join(folder, "config.json"), JSON.stringify({ model_type: "mamba" }))
    const e = await Effect.runPromise(
      Effect.either(withScorer(folder, { threads: 1, label: "m step 1" }, (s) => s.scoreAll([{ ids: Int32Array.of(1, 2), firstTarget: 1 }]))),
    )
    expect(Either.isLeft(e)).toBe(true)
    const msg = Either.isLeft(e) ? e.left.message : ""
    expect(msg).toMatch(/^m step 1: .*model_type "mamba".*gpt_neox/)
    expect(msg.split("\n")).toHaveLength(1)
  })
})
