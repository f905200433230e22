/**
 * The summary after a run shows only what this run's selection produced or found current
 * (currentStages in pipeline/cli.ts, runSummaryLines' `current`): after `run --only tokenize`,
 * no perplexity line read from an earlier run's checkpoints.parquet.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { currentStages } from "../pipeline/cli.ts"
import { parseConfig } from "../pipeline/config.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import type { UnitOutcome } from "../pipeline/runner.ts"
import { writeParquetFile } from "../pipeline/store.ts"
import { Checkpoints } from "../stages/aggregate/contract.ts"
import { runSummaryLines } from "../stages/summary.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-summary-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const o = (stage: string, outcome: UnitOutcome["outcome"]): UnitOutcome => ({ stage, id: "u", outcome })

describe("summary of this run only", () => {
  it("currentStages: every unit ran or up to date, and in the --only selection", () => {
    const outcomes = [o("tokenize", "ran"), o("tokenize", "up-to-date"), o("score", "ran"), o("score", "failed"), o("aggregate", "up-to-date"), o("report", "not-run")]
    expect([...currentStages(outcomes)].sort()).toEqual(["aggregate", "tokenize"])
    expect([...currentStages(outcomes, ["tokenize"])]).toEqual(["tokenize"])
  })

  it("runSummaryLines leaves out a stage's line when that stage is not current", async () => {
    const yaml = `run: s
output: out
tokenizer: tok.json
models:
  - { name: tiny, params: 1000, tokens_per_step: 64, checkpoints: [{ step: 8, path: a.onnx }] }
datasets:
  - { name: press, format: text, path: a.txt }
`
    const r = parseConfig(path.join(tmp, "s.yaml"), yaml, { checkPaths: false })
    if (Either.isLeft(r)) throw new Error(r.left.message)
    const config = r.right
    fs.mkdirSync(config.runDir, { recursive: true })
    writeParquetFile(
      path.join(config.runDir, "checkpoints.parquet"),
      Checkpoints.fromRows([{ model: "tiny", step: 8, tokens_seen: 512, flops: 3e6, params: 1000, dataset: "press", n_tokens: 10, mean_nll: Math.log(42), ppl: 42 }]),
    )
    const lines = (current?: ReadonlySet<string>) => Effect.runPromise(runSummaryLines(config, current).pipe(Effect.provide(nodeRunStore(config.runDir))))
    expect(await lines()).toEqual(["final validation perplexity on press: tiny 42.0"])
    expect(await lines(new Set(["aggregate"]))).toEqual(["final validation perplexity on press: tiny 42.0"])
    expect(await lines(new Set(["tokenize"]))).toEqual([])
  })
})
