/**
 * docs/new-stage.md stays true: its two files are copied out of the page into stages/ppl-drop/,
 * type-checked with the project's compiler options, registered after the analysis stages and run
 * through the real runner (memory store) on planted checkpoints; the output is checked against
 * values computed here by hand.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Either, Schema } from "effect"
import ts from "typescript"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { resolveAnalysis, type Config } from "../pipeline/config.ts"
import { memoryRunStore } from "../pipeline/run-store-memory.ts"
import type { Stage } from "../pipeline/stage.ts"
import { decodeParquet } from "../pipeline/store.ts"
import { Analysis, Scoring } from "../schemas/config.ts"
import { aggregateUnit, Checkpoints, checkpointsFile } from "../stages/aggregate/contract.ts"
import { plantedRun } from "./fixtures/planted.ts"

const root = path.resolve(".")
const page = fs.readFileSync(path.join(root, "docs/new-stage.md"), "utf8")
const blocks = [...page.matchAll(/```ts file=(\S+)\n([\s\S]*?)```/g)].map((m) => ({ file: m[1], code: m[2] }))
const folder = path.join(root, "stages/ppl-drop")

beforeAll(() => {
  if (fs.existsSync(folder)) throw new Error(`${folder} exists: this test writes it from docs/new-stage.md and removes it`)
  for (const b of blocks) {
    fs.mkdirSync(path.dirname(path.join(root, b.file)), { recursive: true })
    fs.writeFileSync(path.join(root, b.file), b.code)
  }
})
afterAll(() => fs.rmSync(folder, { recursive: true, force: true }))

const config: Config = {
  file: "/planted/config.yaml",
  run: "docs",
  outputRoot: "/planted/out",
  runDir: "/planted/out/docs",
  tokenizer: "",
  tokenizerSource: { path: "" },
  tokenizerFiles: [],
  download: { keep: true },
  context_length: 8,
  stride: 4,
  models: [
    { name: "s", params: 10, tokens_per_step: 1, checkpoints: [1, 2, 4].map((step) => ({ step, path: "" })) },
    { name: "l", params: 20, tokens_per_step: 1, checkpoints: [1, 2, 4].map((step) => ({ step, path: "" })) },
  ],
  datasets: [{ name: "d", format: "text", files: [], text_field: "text", id_field: "id" }],
  tasks: [],
  analysis: resolveAnalysis(Schema.decodeSync(Analysis)({}), [{ name: "s", params: 10 }, { name: "l", params: 20 }], [{ name: "d" }]),
  scoring: { ...Schema.decodeSync(Scoring)({}), threads: 1, max_memory_gb: 1 },
}

describe("docs/new-stage.md", () => {
  it("has the stage's two files", () => {
    expect(blocks.map((b) => b.file)).toEqual(["stages/ppl-drop/contract.ts", "stages/ppl-drop/index.ts"])
  })

  it("its files type-check with the project's compiler options", () => {
    const { config: tsconfig } = ts.readConfigFile(path.join(root, "tsconfig.json"), ts.sys.readFile)
    const { options } = ts.parseJsonConfigFileContent(tsconfig, ts.sys, root)
    const program = ts.createProgram(blocks.map((b) => path.join(root, b.file)), options)
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file?.fileName.includes("stages/ppl-drop/"))
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"))
    expect(problems).toEqual([])
  }, 60_000)

  it("is one folder plus one registry line: it plans, reads through its contract inputs and writes its table", async () => {
    // A computed specifier: the folder exists only while this file runs.
    const { pplDropStage } = (await import(pathToFileURL(path.join(folder, "index.ts")).href)) as { pplDropStage: Stage<{ models: string[]; datasets: string[] }> }
    expect(pplDropStage.plan(config)).toEqual([{ id: "all", params: { models: ["s", "l"], datasets: ["d"] }, inputs: [aggregateUnit], files: [] }])
    const ppl: Record<string, number | null> = { "s@1": 200, "s@2": 120, "s@4": 80, "l@1": 210, "l@2": null, "l@4": 42 }
    const rows = Object.entries(ppl).map(([k, p]) => {
      const [model, step] = k.split("@")
      return { model, step: Number(step), tokens_seen: 0, flops: 0, params: 0, dataset: "d", n_tokens: 5, mean_nll: p === null ? null : Math.log(p), ppl: p }
    })
    const mem = memoryRunStore()
    const run = plantedRun(config, mem.store)
    await run.plant(aggregateUnit, checkpointsFile, Checkpoints.fromRows(rows))
    const r = await run.run(pplDropStage, pplDropStage.plan(config)[0])
    expect(Either.isRight(r.result) ? "ok" : r.result.left.message).toBe("ok")
    expect(r.written).toEqual(["ppl_drop.parquet"])
    const out = decodeParquet(mem.files.get("ppl_drop.parquet")!).toArray().map((x) => x.toJSON())
    expect(out).toEqual([
      { model: "s", dataset: "d", first_step: 1, last_step: 4, first_ppl: 200, last_ppl: 80, drop: 1 - 80 / 200 },
      { model: "l", dataset: "d", first_step: 1, last_step: 4, first_ppl: 210, last_ppl: 42, drop: 1 - 42 / 210 },
    ])
    // Without the aggregate unit's table: one line naming the unit and the file.
    const bare = plantedRun(config, memoryRunStore().store)
    await bare.record(aggregateUnit, [])
    const failed = await bare.run(pplDropStage, pplDropStage.plan(config)[0])
    expect(Either.isLeft(failed.result) && failed.result.left.message).toBe("aggregate/all recorded no checkpoints.parquet (it wrote nothing); re-run it")
  })
})
