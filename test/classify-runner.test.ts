/**
 * aggregate → regress → classify through the real runner (pipeline/runner.ts), with two planted
 * upstream stages standing in for tokenize and score: they write the tokens table and the score
 * files through ctx.writeParquet, so unit ids, inputs and outputsOf are the real contract.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import type { Sink } from "../pipeline/progress.ts"
import type { Stage } from "../pipeline/stage.ts"
import { scoresFile } from "../stages/score/contract.ts"
import { tokensFile } from "../stages/tokenize/contract.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { classifyStage } from "../stages/classify/index.ts"
import { regressStage } from "../stages/regress/index.ts"
import { runOnDisk } from "./fixtures/run.ts"
import { plantedConfig, readRows } from "./fixtures/analysis.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-analysis-runner-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const STEPS = Array.from({ length: 12 }, (_, k) => (k + 1) * 50)
const TOKENS = 9
/** ln p of token i at checkpoint c: rising for i % 3 = 0, falling for 1, flat for 2. */
const L = (i: number, c: number) => (i % 3 === 0 ? 2 + 0.2 * Math.log(STEPS[c]) : i % 3 === 1 ? 6 - 0.2 * Math.log(STEPS[c]) : 4)

const plantedTokenize: Stage = {
  name: "tokenize",
  version: 1,
  after: [],
  describe: "planted tokens",
  plan: (c) => c.datasets.map((d) => ({ id: `dataset=${d.name}`, params: {}, inputs: [], files: [] })),
  run: (unit, ctx) =>
    ctx.writeParquet(
      tokensFile(unit.id.slice("dataset=".length)),
      arrow.tableFromArrays({
        token_index: Int32Array.from({ length: TOKENS }, (_, i) => i),
        doc_id: Array.from({ length: TOKENS }, (_, i) => (i < 4 ? "a" : "b")),
        category: Array.from({ length: TOKENS }, (_, i) => (i < 5 ? "content" : "function")),
      }),
    ),
}

const plantedScore: Stage = {
  name: "score",
  version: 1,
  after: ["tokenize"],
  describe: "planted scores",
  plan: (c) =>
    c.models.flatMap((m) =>
      m.checkpoints.flatMap((cp) =>
        c.datasets.map((d) => ({
          id: `model=${m.name}/step=${cp.step}/dataset=${d.name}`,
          params: { m: m.name, step: cp.step, d: d.name },
          inputs: [{ stage: "tokenize" as const, id: `dataset=${d.name}` }],
          files: [],
        })),
      ),
    ),
  run: (unit, ctx) => {
    const { m, step, d } = unit.params as { m: string; step: number; d: string }
    const c = STEPS.indexOf(step)
    const shift = m === "big" ? -0.5 : 0
    const logprob = Float32Array.from({ length: TOKENS }, (_, i) => -(L(i, c) + shift))
    return ctx.writeParquet(
      scoresFile(m, step, d),
      arrow.tableFromArrays({ token_index: Int32Array.from({ length: TOKENS }, (_, i) => i), token_id: new Int32Array(TOKENS), logprob }),
      { rowGroupSize: 4 },
    )
  },
}

const sink: Sink = { isTTY: false, write: () => {} }

describe("the analysis stages under the runner", () => {
  it("run in DAG order, write every table, and a re-run does no work", async () => {
    const runDir = path.join(tmp, "run")
    const config = plantedConfig(runDir, [{ name: "small", params: 1e6, steps: STEPS }, { name: "big", params: 1e7, steps: STEPS }], ["d"], { thresholds: [0.2, 0.5] }, 4)
    const stages = [plantedTokenize, plantedScore, aggregateStage, regressStage, classifyStage]
    const first = await Effect.runPromise(Effect.either(runOnDisk(config, { stages, sink })))
    if (Either.isLeft(first)) throw new Error(first.left.message)
    const ran = first.right.outcomes.filter((o) => o.outcome === "ran").map((o) => `${o.stage}/${o.id}`)
    expect(ran.slice(-4)).toEqual(["aggregate/all", "regress/model=small/dataset=d", "regress/model=big/dataset=d", "classify/all"])

    expect(readRows(runDir, "checkpoints.parquet")).toHaveLength(2 * STEPS.length)
    expect(readRows(runDir, "regressions/model=big/dataset=d")).toHaveLength(2 * TOKENS)
    const classes = readRows(runDir, "classes/model=small/dataset=d").filter((r) => r.threshold === 0.2)
    expect(classes.map((r) => r.class)).toEqual(Array.from({ length: TOKENS }, (_, i) => ["upward", "downward", "stagnated"][i % 3]))
    expect(readRows(runDir, "class_summary.parquet")).toHaveLength(2 * 2 * 4)
    const trans = readRows(runDir, "class_transitions.parquet").filter((r) => r.class_from === r.class_to && r.threshold === 0.5)
    expect(trans.every((r) => r.share === 1)).toBe(true)
    // reference model by default: the second-smallest
    expect(readRows(runDir, "group_trajectories.parquet").every((r) => r.ref_model === "big")).toBe(true)
    expect(readRows(runDir, "class_categories.parquet").filter((r) => r.model === "big" && r.threshold === 0.2 && r.class === "upward")).toEqual([
      { model: "big", dataset: "d", threshold: 0.2, class: "upward", category: "content", n: 2, share: 2 / 3 },
      { model: "big", dataset: "d", threshold: 0.2, class: "upward", category: "function", n: 1, share: 1 / 3 },
    ])

    const second = await Effect.runPromise(Effect.either(runOnDisk(config, { stages, sink })))
    if (Either.isLeft(second)) throw new Error(second.left.message)
    expect(second.right.count("ran")).toBe(0)
  })
})
