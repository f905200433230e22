/**
 * The checks stage end to end on planted families: real ONNX files (the linear fixture, some with
 * external data) and score files written by the test, aggregate then checks through their stage
 * wrappers. Each family plants one fault at a known step; a clean, noisy-but-monotone family
 * must raise nothing.
 *
 * Log-probs: token t of checkpoint c is −(L_c + u_t + e_{t,c}) with u ~ N(0, 1) fixed per token
 * and e ~ N(0, 0.3²) per checkpoint, both centred (mean NLL = L_c) except in the clean family,
 * where the noise is left in (mean NLL = L_c + ē_c, plus a jitter of sd 0.01 on L_c).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Cause, Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Config } from "../pipeline/config.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import type { RunStore } from "../pipeline/run-store.ts"
import { checksStage } from "../stages/checks/index.ts"
import { DigestCache, checkpointDigest, externalDataFiles } from "../stages/checks/digest.ts"
import { checkWarnings, flaggedCheckpoints, flaggedFor } from "../stages/checks/flagged.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { linearModel, linearWeights, normal, rng, saveModel } from "./fixtures/onnx.ts"
import { plantScores, plantedConfig, readRows, runPlanted, type Outputs, type PlantedModel } from "./fixtures/analysis.ts"
import { plantedRun } from "./fixtures/planted.ts"

/** An effect that reads the run's tables through the disk store of its folder. */
const onDisk = <A, E>(config: Config, e: Effect.Effect<A, E, RunStore>): Promise<A> => Effect.runPromise(Effect.provide(e, nodeRunStore(config.runDir)))
import { TEST_VOCAB_SIZE, writeTestTokenizer } from "./fixtures/tokenizer.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-checks-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const TOKENS = 512
const ROW_GROUP = 128
const DATASETS = ["a", "b"]
const LN_V = Math.log(TEST_VOCAB_SIZE) // 5.638

/** A linear-fixture checkpoint (vocab 16: every initializer is ≥ 64 bytes, so all move to external data). */
const writeCheckpoint = (dir: string, file: string, seed: number, externalData?: string): string =>
  saveModel(linearModel(linearWeights({ vocab: 16, dim: 4, seed })), dir, file, externalData ? { externalData } : {})

/** Log-probs of one checkpoint with mean NLL L (exactly, when centred). */
const logprobs = (L: number, u: Float32Array, seed: number, centred = true): Float32Array => {
  const e = normal(rng(seed), u.length, 0.3)
  const mean = (x: Float32Array) => (centred ? x.reduce((a, b) => a + b, 0) / x.length : 0)
  const mu = mean(u)
  const me = mean(e)
  return Float32Array.from(u, (ut, t) => -(L + ut - mu + e[t] - me))
}

interface Family {
  readonly model: PlantedModel
  /** step → ONNX path */
  readonly paths: Record<number, string>
  /** dataset → [checkpoints] log-probs */
  readonly scores: Record<string, Float32Array[]>
}

/** A config of planted models with real checkpoint files and the test tokenizer. */
const setup = (name: string, families: ReadonlyArray<Family>, analysis: Record<string, unknown> = {}): { config: Config; outputs: Outputs } => {
  const runDir = path.join(tmp, name, "out")
  const base = plantedConfig(runDir, families.map((f) => f.model), DATASETS, analysis, ROW_GROUP)
  const tokenizer = writeTestTokenizer(path.join(tmp, name))
  const config: Config = {
    ...base,
    tokenizer,
    tokenizerSource: { path: tokenizer },
    tokenizerFiles: [tokenizer],
    models: base.models.map((m, i) => ({ ...m, checkpoints: m.checkpoints.map((c) => ({ step: c.step, path: families[i].paths[c.step] })) })),
  }
  const outputs: Outputs = new Map()
  for (const f of families) for (const d of DATASETS) plantScores(config, outputs, f.model.name, d, f.scores[d])
  return { config, outputs }
}

const runChecks = async (config: Config, outputs: Outputs) => {
  expect(await runPlanted(aggregateStage, config, outputs)).toBeUndefined()
  expect(await runPlanted(checksStage, config, outputs)).toBeUndefined()
  return readRows(config.runDir, "checkpoint_checks.parquet")
}

/** Files for steps with distinct weights (seeded by model and step). */
const distinctFiles = (dir: string, steps: ReadonlyArray<number>, seed: number): Record<number, string> =>
  Object.fromEntries(steps.map((s, k) => [s, writeCheckpoint(dir, `step-${s}.onnx`, seed * 1000 + k)]))

/** Scores of both datasets from per-step mean NLLs; `edit` may change a dataset's arrays after. */
const scoresOf = (L: ReadonlyArray<number>, seed: number, edit: (d: string, lp: Float32Array[]) => void = () => {}): Record<string, Float32Array[]> =>
  Object.fromEntries(
    DATASETS.map((d, di) => {
      const u = normal(rng(seed * 10 + di), TOKENS, 1)
      const lp = L.map((l, c) => logprobs(l, u, seed * 100 + di * 50 + c))
      edit(d, lp)
      return [d, lp]
    }),
  )

describe("checks on planted faults", () => {
  let config: Config
  let outputs: Outputs
  let rows: Array<Record<string, unknown>>
  let dupDir: string

  beforeAll(async () => {
    // dup: step 1000 is a copy of step 5000's file; steps 2000, 3000, 4000 keep their weights in
    // external data (same .onnx bytes), and 4000's weights are 2000's.
    dupDir = path.join(tmp, "planted", "dup")
    const dupSteps = [0, 1000, 2000, 3000, 4000, 5000]
    const dupPaths: Record<number, string> = {
      0: writeCheckpoint(dupDir, "step-0.onnx", 10),
      2000: writeCheckpoint(path.join(dupDir, "step-2000"), "model.onnx", 7, "weights.bin"),
      3000: writeCheckpoint(path.join(dupDir, "step-3000"), "model.onnx", 8, "weights.bin"),
      4000: writeCheckpoint(path.join(dupDir, "step-4000"), "model.onnx", 7, "weights.bin"),
      5000: writeCheckpoint(dupDir, "step-5000.onnx", 11),
    }
    dupPaths[1000] = path.join(dupDir, "step-1000.onnx")
    fs.copyFileSync(dupPaths[5000], dupPaths[1000])
    // the copies predict what their originals predict
    const dupScores = scoresOf([5.5, 3.0, 3.2, 3.3, 3.2, 3.0], 1, (_d, lp) => {
      lp[1] = lp[5].slice()
      lp[2] = lp[4].slice()
    })

    // twin: distinct files; step 300 predicts within 3e-7 of step 500; steps 400 and 450 predict
    // alike and differ from 500 by 1e-4 on one token (the screen can't tell them apart, the exact
    // comparison does: 300 → 500 in the first round, 400 → 450 in the second).
    const twinSteps = [100, 200, 300, 400, 450, 500, 600]
    const twinScores = scoresOf([5.0, 4.5, 4.0, 4.0, 4.0, 4.0, 3.9], 2, (_d, lp) => {
      lp[2] = lp[5].map((v, t) => v + (t % 2 ? 3e-7 : -3e-7))
      lp[3] = lp[5].slice()
      lp[3][17] += 1e-4
      lp[4] = lp[3].slice()
    })

    // late: step 3000 holds a checkpoint trained ~40× longer (mean NLL 2.76, below all later ones)
    const lateSteps = Array.from({ length: 10 }, (_, k) => (k + 1) * 1000)
    const lateL = lateSteps.map((s) => 4.6 - 0.5 * Math.log(s / 1000))
    lateL[2] = 4.6 - 0.5 * Math.log(40)

    // nan: step 4000 has 3 NaN/Inf log-probs on dataset a; step 8000 is worse than uniform on b;
    // step 0 is worse than uniform too, but it is in the first 10% of training.
    const nanSteps = [0, 2000, 4000, 6000, 8000, 10000]
    const nanScores = scoresOf([LN_V + 0.3, 4.5, 4.0, 3.7, 3.5, 3.4], 4, (d, lp) => {
      if (d === "a") {
        lp[2][5] = NaN
        lp[2][77] = NaN
        lp[2][300] = -Infinity
      } else lp[4] = lp[4].map(() => -(LN_V + 1))
    })

    const families: Family[] = [
      { model: { name: "dup", params: 1e6, steps: dupSteps }, paths: dupPaths, scores: dupScores },
      { model: { name: "twin", params: 2e6, steps: twinSteps }, paths: distinctFiles(path.join(tmp, "planted", "twin"), twinSteps, 2), scores: twinScores },
      { model: { name: "late", params: 3e6, steps: lateSteps }, paths: distinctFiles(path.join(tmp, "planted", "late"), lateSteps, 3), scores: scoresOf(lateL, 3) },
      { model: { name: "nan", params: 4e6, steps: nanSteps }, paths: distinctFiles(path.join(tmp, "planted", "nan"), nanSteps, 4), scores: nanScores },
    ]
    ;({ config, outputs } = setup("planted", families))
    rows = await runChecks(config, outputs)
  })

  const summary = () => rows.map((r) => `${r.model} ${r.step} ${r.check} ${r.severity} ${r.related_step}`)

  it("finds exactly the planted faults, each once, at its step", () => {
    expect(summary()).toEqual([
      "dup 1000 identical_weights error 5000",
      "dup 1000 out_of_order warning 2000", // 2000 and 4000 tie for the lowest of the next three: the first is named
      "dup 2000 identical_weights error 4000",
      "twin 300 identical_predictions error 500",
      "twin 400 identical_predictions error 450",
      "late 3000 out_of_order warning 6000",
      "nan 4000 broken error null",
      "nan 8000 broken error null",
    ])
  })

  it("details say what was seen and where", () => {
    const detail = (model: string, step: number, check: string) => String(rows.find((r) => r.model === model && r.step === step && r.check === check)?.detail)
    expect(detail("dup", 1000, "identical_weights")).toMatch(/^same ONNX content as step 5000 \(sha256 [0-9a-f]{12}…\)$/)
    expect(detail("twin", 300, "identical_predictions")).toBe("log-probs within 0.000001 of step 500's on every token of a, b")
    expect(detail("nan", 4000, "broken")).toBe("a: 3 of 512 log-probs are NaN or infinite")
    expect(detail("nan", 8000, "broken")).toBe(`b: ppl ${Math.exp(LN_V + 1).toPrecision(4)} is above the uniform distribution's (281, the vocabulary size)`)
    // flagged on both datasets: one row, both findings
    // e^4.6/√40 = 15.73 (the planted checkpoint), e^4.6/√6 = 40.61 (step 6000), on both datasets
    const late = "ppl 15.73 is more than 5.1% below each of the next 3 checkpoints' (lowest 40.61 at step 6000)"
    expect(detail("late", 3000, "out_of_order")).toBe(`a: ${late}; b: ${late}`)
  })

  it("external data counts: the same graph file with other weights is not a duplicate", () => {
    const graph = (s: number) => fs.readFileSync(path.join(dupDir, `step-${s}`, "model.onnx"))
    expect(graph(2000).equals(graph(3000))).toBe(true)
    expect(graph(2000).equals(graph(4000))).toBe(true)
    expect(externalDataFiles(path.join(dupDir, "step-3000", "model.onnx"))).toEqual([
      { location: "weights.bin", file: path.join(dupDir, "step-3000", "weights.bin") },
    ])
    expect(externalDataFiles(path.join(dupDir, "step-0.onnx"))).toEqual([])
  })

  it("hashes each file once: the digest cache answers until a file's mtime changes", async () => {
    const cacheFile = path.join(config.runDir, ".cache", "checks", "digests.json")
    const cached = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as { files: Record<string, unknown> }
    // 6 + 7 + 10 + 6 .onnx files and 3 weights.bin
    expect(Object.keys(cached.files)).toHaveLength(32)
    const cps = config.models.flatMap((m) => m.checkpoints)
    const cache = new DigestCache(cacheFile)
    const before = await Promise.all(cps.map((c) => checkpointDigest(c.path!, cache)))
    expect(cache.hashed).toBe(0)
    const w = path.join(dupDir, "step-3000", "weights.bin")
    fs.utimesSync(w, new Date(), new Date(Date.now() + 5000))
    const again = new DigestCache(cacheFile)
    const after = await Promise.all(cps.map((c) => checkpointDigest(c.path!, again)))
    expect(again.hashed).toBe(1)
    expect(after).toEqual(before)
  })

  it("plans one unit after aggregate and every score unit", () => {
    const [unit, ...more] = checksStage.plan(config)
    expect(more).toEqual([])
    expect(unit.id).toBe("all")
    expect(unit.inputs[0]).toEqual({ stage: "aggregate", id: "all" })
    expect(unit.inputs).toHaveLength(1 + (6 + 7 + 10 + 6) * 2)
    expect(unit.inputs).toContainEqual({ stage: "score", id: "model=late/step=3000/dataset=b" })
    expect(unit.files).toContain(config.tokenizer)
  })

  it("exclude_flagged: later stages get the flagged set; without it, an empty one", async () => {
    const expected = ["dup/1000", "dup/2000", "late/3000", "nan/4000", "nan/8000", "twin/300", "twin/400"]
    expect([...(await onDisk(config, flaggedCheckpoints()))].sort()).toEqual(expected)
    const on: Config = { ...config, analysis: { ...config.analysis, exclude_flagged: true } }
    const contextOf = async (c: Config, recorded: Outputs) => {
      const run = plantedRun(c)
      for (const [name, files] of recorded) {
        const cut = name.indexOf("/")
        await run.record({ stage: name.slice(0, cut), id: name.slice(cut + 1) }, files.map((f) => path.relative(c.runDir, f)))
      }
      return run.context("regress", "model=dup/dataset=a")
    }
    const got = await Effect.runPromise(flaggedFor(await contextOf(on, outputs)))
    expect([...got].sort()).toEqual(expected)
    expect((await Effect.runPromise(flaggedFor(await contextOf(config, outputs)))).size).toBe(0)
    // Asked to drop flagged checkpoints when the checks unit is not an input: a defect, not silence.
    const undeclared = await Effect.runPromiseExit(flaggedFor(await contextOf(on, new Map())))
    expect(undeclared._tag === "Failure" && Cause.isDie(undeclared.cause)).toBe(true)
    const noChecks = await contextOf(on, new Map([["checks/all", []]]))
    const missing = await Effect.runPromise(Effect.either(flaggedFor(noChecks)))
    expect(missing._tag === "Left" && missing.left.message).toBe("checks/all recorded no checkpoint_checks.parquet (it wrote nothing); re-run it")
  })

  it("the CLI block lists every flagged checkpoint", async () => {
    const lines = await onDisk(config, checkWarnings(config.runDir))
    expect(lines[0]).toBe(`checkpoint checks flagged 7 checkpoint(s) (6 errors, 2 warnings) — ${path.join(config.runDir, "checkpoint_checks.parquet")}:`)
    expect(lines).toContain("  error    model nan, step 4000: broken: a: 3 of 512 log-probs are NaN or infinite")
    expect(lines).toHaveLength(1 + 8 + 1)
  })
})

describe("checks on a clean family", () => {
  it("a noisy-but-monotone family with a loss spike raises nothing", async () => {
    // Three sizes, Pythia-like steps (log-spaced, then every 1000); L(s) = E + (ln V − E)(1 + s/50)^−0.6
    // plus a jitter of sd 0.01 per checkpoint and dataset, and uncentred token noise (sd 0.3/√512 in
    // the mean): near the end, neighbours differ by less than the noise, so the curve goes up and down.
    const steps = [0, 16, 32, 64, 128, 256, 512, ...Array.from({ length: 10 }, (_, k) => (k + 1) * 1000)]
    const finals = { s: 3.0, m: 2.7, l: 2.5 }
    const families: Family[] = Object.entries(finals).map(([name, E], mi) => {
      const jitter = rng(100 + mi)
      const scores = Object.fromEntries(
        DATASETS.map((d, di) => {
          const u = normal(rng(200 + mi * 10 + di), TOKENS, 1)
          const lp = steps.map((s, c) => {
            // uniform jitter on ±√3·0.01: sd 0.01
            let L = E + (LN_V - E) * (1 + s / 50) ** -0.6 + (jitter() - 0.5) * Math.sqrt(12) * 0.01
            if (s === 0) L = LN_V + 0.05 // a fresh model: a little worse than uniform
            if (name === "m" && s === 4000) L += 0.15 // a loss spike, recovered at the next checkpoint
            return logprobs(L, u, 300 + mi * 100 + di * 50 + c, false)
          })
          return [d, lp]
        }),
      )
      return {
        model: { name, params: 1e6 * (mi + 1), steps },
        paths: distinctFiles(path.join(tmp, "clean", name), steps, 10 + mi),
        scores,
      }
    })
    const { config, outputs } = setup("clean", families)
    const rows = await runChecks(config, outputs)
    expect(rows).toEqual([])
    // the trajectories really are noisy: some later checkpoint is worse than the one before it
    const ck = readRows(config.runDir, "checkpoints.parquet")
    const ups = ck.filter((r, i) => i > 0 && ck[i - 1].model === r.model && ck[i - 1].dataset === r.dataset && (r.mean_nll as number) > (ck[i - 1].mean_nll as number))
    expect(ups.length).toBeGreaterThan(5)
    // and step 0 is at (or above) the uniform perplexity, which is allowed there
    expect(ck.filter((r) => r.step === 0).some((r) => (r.ppl as number) > TEST_VOCAB_SIZE)).toBe(true)
    expect(await onDisk(config, checkWarnings(config.runDir))).toEqual([])
  })
})
