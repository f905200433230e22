/**
 * The score stage: planning, a unit run through the real UnitContext over windows planted here,
 * its errors, and one run through the real runner.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { parseConfig, type Config } from "../pipeline/config.ts"
import type { Stage, UnitPlan } from "../pipeline/stage.ts"
import { planRun } from "../pipeline/runner.ts"
import { parquetRowGroups, readParquetFile } from "../pipeline/store.ts"
import { scoresFile } from "../stages/score/contract.ts"
import { scoreStage, type ScoreParams } from "../stages/score/index.ts"
import { tokenizeUnit, windowsFile } from "../stages/tokenize/contract.ts"
import { StageServicesLive } from "../stages/services.ts"
import { plantedRun, type PlantedRun } from "./fixtures/planted.ts"
import { runOnDisk } from "./fixtures/run.ts"
import { maskedLogits, maskedModel, maskedWeights, linearModel, linearWeights, referenceScores, saveModel } from "./fixtures/onnx.ts"
import { slidingWindows, windowsTable, type WindowRow } from "./fixtures/windows.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-score-stage-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const mw = maskedWeights({ vocab: 13, maxPos: 8 })
const nanWeights = (() => {
  const w = linearWeights({ vocab: 13 })
  w.emb[7 * w.dim] = Number.NaN
  return w
})()

/** A project folder: config, dummy tokenizer and dataset files, two models × two checkpoints. */
const project = (name: string, scoring: string): Config => {
  const dir = path.join(tmp, name)
  fs.mkdirSync(path.join(dir, "data"), { recursive: true })
  fs.writeFileSync(path.join(dir, "tok.json"), "{}")
  fs.writeFileSync(path.join(dir, "data/press.txt"), "press")
  fs.writeFileSync(path.join(dir, "data/fiction.txt"), "fiction")
  saveModel(maskedModel(mw), path.join(dir, "ckpt"), "s-8.onnx")
  saveModel(maskedModel(maskedWeights({ vocab: 13, maxPos: 8, seed: 9 })), path.join(dir, "ckpt"), "s-16.onnx")
  saveModel(linearModel(linearWeights({ vocab: 5 })), path.join(dir, "ckpt"), "narrow-8.onnx")
  saveModel(linearModel(nanWeights), path.join(dir, "ckpt"), "nan-8.onnx")
  const yaml = `
run: r
output: out
tokenizer: tok.json
context_length: 6
stride: 3
models:
  - { name: s, params: 1000, tokens_per_step: 64, checkpoints: [{ step: 8, path: ckpt/s-8.onnx }, { step: 16, path: ckpt/s-16.onnx }] }
  - { name: narrow, params: 500, tokens_per_step: 64, checkpoints: [{ step: 8, path: ckpt/narrow-8.onnx }] }
  - { name: nan, params: 500, tokens_per_step: 64, checkpoints: [{ step: 8, path: ckpt/nan-8.onnx }] }
datasets:
  - { name: press, format: text, path: data/press.txt }
  - { name: fiction, format: text, path: data/fiction.txt }
scoring: ${scoring}
`
  fs.writeFileSync(path.join(dir, "config.yaml"), yaml)
  const c = parseConfig(path.join(dir, "config.yaml"), yaml)
  if (Either.isLeft(c)) throw new Error(c.left.message)
  return c.right
}

/** Three documents; with context 6 and stride 3 the first gives three windows, the others one short window each. */
const docs = [
  [1, 5, 2, 9, 12, 0, 3, 3, 7, 11],
  [4, 6, 8],
  [12, 11, 10, 9],
]

/** A planted run with the windows of `rows` for `dataset` (row groups of 2 windows) recorded as the tokenize unit's. */
const withWindows = async (config: Config, rows: ReadonlyArray<WindowRow>, dataset = "press"): Promise<PlantedRun> => {
  const run = plantedRun(config, undefined, StageServicesLive)
  await run.plant(tokenizeUnit(dataset), windowsFile(dataset), windowsTable(rows), { rowGroupSize: 2 })
  return run
}

const unitFor = (config: Config, id: string): UnitPlan<ScoreParams> => {
  const u = scoreStage.plan(config).find((p) => p.id === id)
  if (!u) throw new Error(`no unit ${id}`)
  return u
}

const runUnit = async (run: PlantedRun, unit: UnitPlan<ScoreParams>) => {
  const r = await run.run(scoreStage, unit)
  return Object.assign(r.result, { progress: r.progress })
}
const runPath = (config: Config, rel: string) => path.join(config.runDir, rel)

describe("score stage: plan", () => {
  it("one unit per model × checkpoint × dataset; params only what changes outputs", () => {
    const config = project("plan", "{ entropy: true, row_group_size: 4, threads: 1, batch_size: 2 }")
    const units = scoreStage.plan(config)
    expect(units.map((u) => u.id).slice(0, 4)).toEqual([
      "model=s/step=8/dataset=press",
      "model=s/step=8/dataset=fiction",
      "model=s/step=16/dataset=press",
      "model=s/step=16/dataset=fiction",
    ])
    expect(units).toHaveLength(2 * 2 + 2 + 2)
    expect(units[0].params).toEqual({ model: "s", step: 8, dataset: "press", entropy: true, row_group_size: 4 })
    expect(units[1].inputs).toEqual([{ stage: "tokenize", id: "dataset=fiction" }])
    expect(units[2].files).toEqual([path.join(tmp, "plan/ckpt/s-16.onnx")])
    const other = project("plan2", "{ entropy: true, row_group_size: 4, threads: 2, batch_size: 16, execution_provider: cuda, cuda_device: 3 }")
    expect(scoreStage.plan(other)[0].params).toEqual(units[0].params)
    expect(scoreStage.plan(other)[0].id).toBe(units[0].id)
  })
})

describe("score stage: external weights", () => {
  it("a checkpoint's external-data file is among its units' files: other weights there, another key", () => {
    const dir = path.join(tmp, "extkey")
    fs.mkdirSync(path.join(dir, "data"), { recursive: true })
    fs.writeFileSync(path.join(dir, "tok.json"), "{}")
    fs.writeFileSync(path.join(dir, "data/press.txt"), "press")
    const model = saveModel(linearModel(linearWeights({ vocab: 13 })), path.join(dir, "ckpt"), "model.onnx", { externalData: "weights.bin" })
    const yaml = `run: r
tokenizer: tok.json
models: [{ name: s, params: 1000, tokens_per_step: 64, checkpoints: [{ step: 1, path: ckpt/model.onnx }] }]
datasets: [{ name: press, format: text, path: data/press.txt }]
`
    const c = parseConfig(path.join(dir, "config.yaml"), yaml)
    if (Either.isLeft(c)) throw new Error(c.left.message)
    const [unit] = scoreStage.plan(c.right)
    expect(unit.files).toEqual([model, path.join(dir, "ckpt/weights.bin")])
    const key = () => planRun(c.right, [scoreStage]).find((p) => p.stage.name === "score")!.key
    const before = key()
    const w = fs.readFileSync(path.join(dir, "ckpt/weights.bin"))
    w[0] ^= 1
    fs.writeFileSync(path.join(dir, "ckpt/weights.bin"), w)
    expect(key()).not.toBe(before)
  })
})

describe("score stage: a unit", () => {
  const rows = slidingWindows(docs, 6, 3)

  it("writes every predicted token once, in token_index order, in row groups of row_group_size, matching the reference", async () => {
    expect(rows.at(-1)!.ids.length).toBeLessThan(6) // the dataset's last window is short
    const config = project("run", "{ entropy: true, row_group_size: 4, threads: 1, batch_size: 2 }")
    const r = await runUnit(await withWindows(config, rows), unitFor(config, "model=s/step=8/dataset=press"))
    expect(Either.isRight(r) ? "ok" : r.left.message).toBe("ok")
    const progress = r.progress

    const file = runPath(config, scoresFile("s", 8, "press").path)
    const t = readParquetFile(file)
    const n = docs.reduce((a, d) => a + d.length - 1, 0)
    expect(t.numRows).toBe(n)
    expect(t.schema.fields.map((f) => f.name)).toEqual(["token_index", "token_id", "logprob", "entropy"])
    expect(await parquetRowGroups(file)).toEqual([4, 4, 4, 2]) // 9 + 2 + 3 tokens
    expect([...t.getChild("token_index")!.toArray()]).toEqual(Array.from({ length: n }, (_, i) => i))
    expect([...t.getChild("token_id")!.toArray()]).toEqual(docs.flatMap((d) => d.slice(1)))

    const lp = t.getChild("logprob")!.toArray() as Float32Array
    const h = t.getChild("entropy")!.toArray() as Float32Array
    for (const w of rows) {
      const ids = Int32Array.from(w.ids)
      const want = referenceScores(maskedLogits(mw, ids), mw.vocab, ids, w.firstTarget)
      want.logprob.forEach((x, k) => expect(Math.abs(lp[w.firstTokenIndex + k] - x)).toBeLessThan(1e-5))
      want.entropy.forEach((x, k) => expect(Math.abs(h[w.firstTokenIndex + k] - x)).toBeLessThan(1e-5))
    }
    expect(progress).toEqual({ total: n, done: n, what: "tokens" })
  })

  it("leaves out entropy when not asked", async () => {
    const config = project("noent", "{ entropy: false, row_group_size: 100, threads: 1 }")
    await runUnit(await withWindows(config, rows), unitFor(config, "model=s/step=16/dataset=press"))
    const t = readParquetFile(runPath(config, scoresFile("s", 16, "press").path))
    expect(t.schema.fields.map((f) => f.name)).toEqual(["token_index", "token_id", "logprob"])
  })

  it("fails when the dataset's token ids exceed the logits' width, naming both", async () => {
    const config = project("narrow", "{ threads: 1 }")
    const r = await runUnit(await withWindows(config, rows), unitFor(config, "model=narrow/step=8/dataset=press"))
    expect(Either.isLeft(r) && r.left.message).toBe(
      "narrow step 8: dataset press has token id 12 but the model's logits have width 5: tokenizer/model mismatch",
    )
    expect(fs.existsSync(runPath(config, scoresFile("narrow", 8, "press").path))).toBe(false)
  })

  it("fails on NaN log-probs, naming the checkpoint, the seq_id and the position", async () => {
    const config = project("nan", "{ threads: 1 }")
    // Token 7 (NaN embedding) is only at position 8 of document 0; the token after it is predicted by
    // window seq_id 2 = doc[4:10], where 7 sits at position 4 and its successor at 5.
    const run = await withWindows(config, rows)
    expect([rows[2].ids.indexOf(7), rows[2].firstTarget]).toEqual([4, 5])
    const r = await runUnit(run, unitFor(config, "model=nan/step=8/dataset=press"))
    expect(Either.isLeft(r) && r.left.message).toBe("nan step 8: log-prob is NaN at seq_id 2, position 5")
  })

  it("fails when the tokenize unit recorded no windows, or the checkpoint is gone", async () => {
    const config = project("missing", "{ threads: 1 }")
    const none = plantedRun(config, undefined, StageServicesLive)
    await none.record(tokenizeUnit("press"), [])
    const r = await runUnit(none, unitFor(config, "model=s/step=8/dataset=press"))
    expect(Either.isLeft(r) && r.left.message).toBe("tokenize/dataset=press recorded no windows/dataset=press/windows.parquet (it wrote nothing); re-run it")
    const run = await withWindows(config, rows)
    fs.rmSync(path.join(tmp, "missing/ckpt/s-8.onnx"))
    const r2 = await runUnit(run, unitFor(config, "model=s/step=8/dataset=press"))
    expect(Either.isLeft(r2) && r2.left.message).toBe(`s step 8: checkpoint file not found: ${path.join(tmp, "missing/ckpt/s-8.onnx")}`)
  })

  it("fails on windows whose token_index values are not consecutive", async () => {
    const config = project("gap", "{ threads: 1 }")
    const broken = rows.map((w, i) => (i === 3 ? { ...w, firstTokenIndex: w.firstTokenIndex + 1 } : w))
    const r = await runUnit(await withWindows(config, broken), unitFor(config, "model=s/step=8/dataset=press"))
    expect(Either.isLeft(r) && r.left.message).toBe(
      `dataset press: windows are not consecutive at seq_id 3 (first_token_index ${rows[3].firstTokenIndex + 1}, expected ${rows[3].firstTokenIndex})`,
    )
  })
})

describe("score stage under the runner", () => {
  /** Stands in for tokenize: writes the hand-made windows of every dataset. */
  const fakeTokenize: Stage = {
    name: "tokenize",
    version: 1,
    after: [],
    describe: "fake: hand-made windows",
    plan: (c) => c.datasets.map((d) => ({ id: `dataset=${d.name}`, params: {}, inputs: [], files: [] })),
    run: (unit, ctx) => ctx.writeParquet(windowsFile(unit.id.slice("dataset=".length)), windowsTable(slidingWindows(docs, 6, 3))),
  }

  it("scores every unit, records them, and a re-run with other threads and batch size does no work", async () => {
    const config = project("runner", "{ entropy: false, row_group_size: 8, threads: 1, batch_size: 2 }")
    const sModel = { ...config, models: config.models.filter((m) => m.name === "s") }
    const sink = { isTTY: false, write: () => undefined }
    const first = await Effect.runPromise(runOnDisk(sModel, { stages: [fakeTokenize, scoreStage], sink }))
    expect(first.count("ran")).toBe(2 + 4)
    const t = readParquetFile(path.join(config.runDir, scoresFile("s", 16, "fiction").path))
    expect(t.numRows).toBe(docs.reduce((a, d) => a + d.length - 1, 0))
    const again = await Effect.runPromise(
      runOnDisk({ ...sModel, scoring: { ...sModel.scoring, threads: 2, batch_size: 7 } }, { stages: [fakeTokenize, scoreStage], sink }),
    )
    expect(again.count("ran")).toBe(0)
  })
})
