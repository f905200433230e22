/**
 * aggregate and regress through their stage wrappers, on score files the test writes itself.
 *
 * The planted log-probs and the statsmodels references come from
 * `python3 tools/reference/ols_reference.py` (Debian 12 python3-statsmodels 0.13.5; "planted"):
 * y = p_c / p_i0 with p = exp(−float32 log-prob), x = ln step or ln(6·params·step·tokens_per_step),
 * sm.OLS(y, sm.add_constant(x)).fit(), slope p-value = pvalues[1].
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { DuckDBInstance } from "@duckdb/node-api"
import { afterAll, describe, expect, it } from "vitest"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { ols } from "../lib/analysis/ols.ts"
import { regressStage } from "../stages/regress/index.ts"
import { type Outputs, plantScores, plantedConfig, readRows, runPlanted } from "./fixtures/analysis.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-regress-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const STEPS = Array.from({ length: 20 }, (_, k) => (k + 1) * 100)
const PLANTED = {
  up: [-3.0148, -3.2188, -3.2482, -3.3079, -3.4388, -3.4772, -3.4425, -3.5019, -3.5979, -3.581,
    -3.5495, -3.6287, -3.6893, -3.6399, -3.6341, -3.7241, -3.7433, -3.6826, -3.7114, -3.7952],
  down: [-6.0713, -5.8409, -5.7362, -5.8019, -5.6167, -5.6443, -5.6686, -5.5044, -5.609, -5.5547,
    -5.4517, -5.5794, -5.454, -5.4399, -5.5345, -5.3764, -5.4493, -5.4697, -5.3314, -5.4592],
  noise: [-4.1933, -3.8164, -4.1526, -3.904, -4.0104, -4.1, -3.7854, -4.2919, -3.7227, -4.1366,
    -4.0937, -3.7214, -4.2514, -4.0138, -3.7239, -4.2081, -4.1498, -3.7157, -3.9376, -4.2953],
}
type Ref = { n: number; slope: number; intercept: number; r2: number; p_value: number }
// statsmodels, tools/reference/ols_reference.py "planted" (token, threshold, x-axis)
const REF: Record<string, Ref> = {
  "up 0.1 log_step": { n: 19, slope: 0.33027149826735946, intercept: -0.8342010400271951, r2: 0.933378743358902, p_value: 1.9696745896002707e-11 },
  "up 0.1 log_flops": { n: 19, slope: 0.33027149826736013, intercept: -8.270272181424966, r2: 0.9333787433589027, p_value: 1.969674589600074e-11 },
  "up 0.7 log_step": { n: 7, slope: 0.37247678424208197, intercept: -1.6999085586414342, r2: 0.6016388892919617, p_value: 0.04040676567469755 },
  "up 0.7 log_flops": { n: 7, slope: 0.3724767842420855, intercept: -10.086232781814488, r2: 0.6016388892919677, p_value: 0.040406765674695595 },
  "down 0.1 log_step": { n: 19, slope: -0.1526365480174704, intercept: 1.8005664490826052, r2: 0.8449759342777183, p_value: 2.6989556759706427e-8 },
  "down 0.1 log_flops": { n: 19, slope: -0.15263654801747048, intercept: 5.237182190343072, r2: 0.8449759342777193, p_value: 2.6989556759705263e-8 },
  "down 0.7 log_step": { n: 7, slope: -0.1546472136922472, intercept: 2.148392201136402, r2: 0.092317024202347, p_value: 0.5076656050351855 },
  "down 0.7 log_flops": { n: 7, slope: -0.1546472136922472, intercept: 5.630278130946728, r2: 0.09231702420234944, p_value: 0.5076656050351858 },
  "noise 0.1 log_step": { n: 19, slope: 0.052011235259177405, intercept: 0.8722595289566742, r2: 0.019072469318563434, p_value: 0.572874535047055 },
  "noise 0.1 log_flops": { n: 19, slope: 0.05201123525917775, intercept: -0.29877474910910395, r2: 0.019072469318563434, p_value: 0.5728745350470528 },
  "noise 0.7 log_step": { n: 7, slope: 0.4978287499261037, intercept: -2.6849172622560715, r2: 0.07982323472332697, p_value: 0.5392737585146312 },
  "noise 0.7 log_flops": { n: 7, slope: 0.49782874992611403, intercept: -13.893544164983801, r2: 0.07982323472332986, p_value: 0.5392737585146233 },
}
const NAMES = ["up", "down", "noise"] as const

const rel = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b)))

/** [checkpoints] arrays of [tokens] float32 log-probs from per-token trajectories. */
const byCheckpoint = (trajectories: ReadonlyArray<ReadonlyArray<number>>): Float32Array[] =>
  trajectories[0].map((_, c) => Float32Array.from(trajectories, (t) => t[c]))

/** aggregate then regress over one model with the three planted tokens. */
const plantedRun = async (name: string, opts: { steps?: number[]; analysis?: Record<string, unknown>; rowGroupSize?: number } = {}) => {
  const steps = opts.steps ?? STEPS
  const config = plantedConfig(path.join(tmp, name), [{ name: "m", params: 1e6, tokens_per_step: 1000, steps }], ["d"], opts.analysis ?? {}, opts.rowGroupSize ?? 2)
  const outputs: Outputs = new Map()
  plantScores(config, outputs, "m", "d", byCheckpoint(NAMES.map((n) => PLANTED[n].slice(PLANTED[n].length - steps.length))))
  return { config, outputs }
}

describe("aggregate", () => {
  it("writes checkpoints.parquet: ppl from the mean NLL, tokens and FLOPs from the config", async () => {
    const { config, outputs } = await plantedRun("aggregate")
    expect(await runPlanted(aggregateStage, config, outputs)).toBeUndefined()
    const rows = readRows(config.runDir, "checkpoints.parquet")
    expect(rows).toHaveLength(20)
    const r = rows[4]
    const lp = NAMES.map((n) => Math.fround(PLANTED[n][4]))
    const mean = -(lp[0] + lp[1] + lp[2]) / 3
    expect(r).toMatchObject({ model: "m", step: 500, tokens_seen: 500_000, flops: 6 * 1e6 * 500_000, params: 1e6, dataset: "d", n_tokens: 3 })
    expect(rel(r.mean_nll as number, mean)).toBeLessThan(1e-15)
    expect(rel(r.ppl as number, Math.exp(mean))).toBeLessThan(1e-15)
    expect(rows.map((x) => x.step)).toEqual(STEPS)
  })
})

describe("regress equals statsmodels through the stage", () => {
  it("every planted token, threshold and x-axis to 1e-9", async () => {
    const { config, outputs } = await plantedRun("sm", { analysis: { thresholds: [0.1, 0.7], x_axes: ["log_step", "log_flops"] } })
    expect(await runPlanted(regressStage, config, outputs)).toBeUndefined()
    // 3 tokens in row groups of 2 → two parts
    const dir = path.join(config.runDir, "regressions/model=m/dataset=d")
    expect(fs.readdirSync(dir).sort()).toEqual(["part-00000.parquet", "part-00001.parquet"])
    const rows = readRows(config.runDir, "regressions/model=m/dataset=d")
    expect(rows).toHaveLength(3 * 2 * 2)
    // part 0: tokens 0, 1 threshold-major then x-axis; part 1: token 2
    expect(rows.slice(0, 4).map((r) => [r.threshold, r.x_axis, r.token_index])).toEqual([
      [0.1, "log_step", 0], [0.1, "log_step", 1], [0.1, "log_flops", 0], [0.1, "log_flops", 1],
    ])
    for (const r of rows) {
      const ref = REF[`${NAMES[r.token_index as number]} ${r.threshold} ${r.x_axis}`]
      expect(r.n).toBe(ref.n)
      for (const [k, v] of [["slope", ref.slope], ["intercept", ref.intercept], ["r2", ref.r2], ["p_value", ref.p_value]] as const) {
        const e = rel(r[k] as number, v)
        if (!(e <= 1e-9)) throw new Error(`${NAMES[r.token_index as number]} ${r.threshold} ${r.x_axis} ${k}: ${r[k]} vs statsmodels ${v} (${e.toExponential(2)})`)
      }
    }
  })

  it("DuckDB reads the score files and the regressions parts as written (plain floats, delta token_index)", async () => {
    const { config, outputs } = await plantedRun("duck", { analysis: { thresholds: [0.1, 0.7], x_axes: ["log_step"] } })
    expect(await runPlanted(regressStage, config, outputs)).toBeUndefined()
    const db = await DuckDBInstance.create(":memory:")
    const conn = await db.connect()
    const q = (glob: string, sql: string) =>
      conn.runAndReadAll(sql.replace("FILES", `read_parquet('${path.join(config.runDir, glob).replaceAll("'", "''")}', hive_partitioning = true)`))
    try {
      const scores = (await q("scores/**/*.parquet", "SELECT CAST(step AS INTEGER) AS step, token_index, logprob FROM FILES ORDER BY step, token_index")).getRowObjects()
      expect(scores).toHaveLength(3 * STEPS.length)
      for (const r of scores) {
        const c = STEPS.indexOf(Number(r.step))
        expect(r.logprob).toBe(Math.fround(PLANTED[NAMES[Number(r.token_index)]][c]))
      }
      const duck = (await q("regressions/**/*.parquet", "SELECT threshold, x_axis, token_index, slope, p_value, n FROM FILES ORDER BY threshold, token_index")).getRowObjects()
      const ours = readRows(config.runDir, "regressions/model=m/dataset=d").sort((a, b) => (a.threshold as number) - (b.threshold as number) || (a.token_index as number) - (b.token_index as number))
      expect(duck.map((r) => [r.threshold, r.x_axis, r.token_index, r.slope, r.p_value, r.n])).toEqual(ours.map((r) => [r.threshold, "log_step", r.token_index, r.slope, r.p_value, r.n]))
      expect(ours.every((r) => r.x_axis === "log_step")).toBe(true)
    } finally {
      conn.closeSync()
    }
  })

  it("log_valid_ppl regresses on the validation mean NLL from checkpoints.parquet", async () => {
    const { config, outputs } = await plantedRun("valid", { analysis: { thresholds: [0.3], x_axes: ["log_valid_ppl"] } })
    expect(await runPlanted(aggregateStage, config, outputs)).toBeUndefined()
    expect(await runPlanted(regressStage, config, outputs)).toBeUndefined()
    const nll = readRows(config.runDir, "checkpoints.parquet").map((r) => r.mean_nll as number)
    const rows = readRows(config.runDir, "regressions/model=m/dataset=d")
    const i0 = 5 // 0.3 · 2000 = 600 → step 600
    for (const [t, name] of NAMES.entries()) {
      const p = PLANTED[name].map((v) => Math.exp(-Math.fround(v)))
      const expected = ols(nll.slice(i0), p.slice(i0).map((v) => v / p[i0]))
      const r = rows.find((x) => x.token_index === t)!
      expect(r.x_axis).toBe("log_valid_ppl")
      // the stage's one-pass suffix sums (SuffixFits) against the two-pass fit: equal to ~1e-15
      expect(rel(r.slope as number, expected.slope!)).toBeLessThan(1e-12)
      expect(rel(r.p_value as number, expected.pValue!)).toBeLessThan(1e-12)
    }
  })
})

describe("paper bugs, through the stage", () => {
  it("a step-0 checkpoint (ln 0 = −∞) is dropped with its y, not misaligned", async () => {
    // 0.1 · 2000 = 200 is nearer to step 0 than to 1100, so the window starts at step 0.
    const steps = [0, ...STEPS.slice(10)]
    const { config, outputs } = await plantedRun("step0", { steps, analysis: { thresholds: [0.1] } })
    expect(await runPlanted(regressStage, config, outputs)).toBeUndefined()
    const rows = readRows(config.runDir, "regressions/model=m/dataset=d")
    for (const [t, name] of NAMES.entries()) {
      const lp = PLANTED[name].slice(PLANTED[name].length - steps.length)
      const p = lp.map((v) => Math.exp(-Math.fround(v)))
      const y = p.map((v) => v / p[0])
      const r = rows.find((x) => x.token_index === t)!
      expect(r.n).toBe(steps.length - 1)
      const expected = ols(steps.slice(1).map(Math.log), y.slice(1)) // both dropped at step 0
      // equal but for rounding: the kernel's exp is within 2 ulp of Math.exp (exp.ts), which the
      // intercept (ȳ − b·x̄, x̄ ≈ 7) amplifies to ~1e-13
      expect(rel(r.slope as number, expected.slope!)).toBeLessThan(1e-11)
      expect(rel(r.intercept as number, expected.intercept!)).toBeLessThan(1e-11)
    }
  })

  it("thresholds are fractions of the final step: uneven early checkpoints do not move the window", async () => {
    // 4 early checkpoints then 500, 600, …, 2000: τ = 0.5 starts at step 1000 (index 9, 11 points),
    // where a fraction of the checkpoint count (⌊0.5 · 20⌋ = 10) would start at step 1100.
    const steps = [10, 20, 40, 80, ...Array.from({ length: 16 }, (_, k) => 500 + k * 100)]
    const { config, outputs } = await plantedRun("uneven", { steps, analysis: { thresholds: [0.5] } })
    expect(await runPlanted(regressStage, config, outputs)).toBeUndefined()
    const rows = readRows(config.runDir, "regressions/model=m/dataset=d")
    expect(rows.map((r) => r.n)).toEqual([11, 11, 11]) // steps 1000…2000
  })
})

describe("regress errors", () => {
  it("fewer than 3 checkpoints after a threshold: one line naming model, dataset and threshold", async () => {
    const { config, outputs } = await plantedRun("few", { analysis: { thresholds: [0.1, 0.95] } })
    const err = await runPlanted(regressStage, config, outputs)
    expect(err?.message).toBe(
      "model m, dataset d, threshold 0.95: only 2 checkpoints (step 1900, 2000) from 0.95 of the final step on; a regression needs at least 3 — add checkpoints or lower the threshold",
    )
    expect(err?.message).not.toContain("\n")
  })

  it("a missing score file is an error naming it", async () => {
    const { config, outputs } = await plantedRun("missing")
    const file = outputs.get("score/model=m/step=700/dataset=d")![0]
    fs.rmSync(file)
    const err = await runPlanted(regressStage, config, outputs)
    expect(err?.message).toBe(`${file}: file missing (written by score/model=m/step=700/dataset=d; re-run it)`)
    outputs.delete("score/model=m/step=800/dataset=d")
    fs.copyFileSync(outputs.get("score/model=m/step=600/dataset=d")![0], file) // 700 readable again
    outputs.set("score/model=m/step=700/dataset=d", [file])
    expect((await runPlanted(regressStage, config, outputs))?.message).toBe(
      "score/model=m/step=800/dataset=d is not done, so scores/model=m/step=800/dataset=d/scores.parquet cannot be read",
    )
  })
})
