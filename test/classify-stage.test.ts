/**
 * classify through its stage wrapper (after aggregate and regress) on planted trajectories whose
 * classes are known by construction. Two models on steps 100…2000, ten tokens in row groups of 4:
 *
 *   token  model a   model b   category      L = ln p (nats) of the shapes, s = step
 *   0      STAG      STAG      function      STAG   ln 100 ± 0.01 (alternating)
 *   1      STAG2     STAG      punctuation   STAG2  ln 50 ± 0.02
 *   2      NOISE     STAG      content       NOISE  4 ± 0.5·(1 + 0.3 sin c) (alternating)
 *   3      UP        BUMP      content       UP     3 + 0.3 ln(s/100)
 *   4      UP        BUMP      content       DOWN   6 − 0.3 ln(s/100)
 *   5      DOWN      DOWN      piece         CONST  5
 *   6      NOISE     NOISE     number        BUMP   4 + 2·max(0, 1 − |ln(s/1000)| / ln 5): a rise to
 *   7      CONST     CONST     function             step 1000, then a fall (double descent)
 *   8      BUMP      DOWN      content
 *   9      DOWN      DOWN      piece         (a tie: the same trajectories as token 5)
 *
 * a's stagnated tokens {0, 1, 7} are a subset of b's {0, 1, 2, 7}; a's upward tokens {3, 4} rise
 * then fall in b, so the group trajectory of (ref a, upward) in b rises then falls.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { classifyStage } from "../stages/classify/index.ts"
import { bundledWorker, parallelSettings } from "../lib/analysis/parallel.ts"
import { STREAM_CLASS_SHARES } from "../lib/analysis/doc-shares.ts"
import { mulberry32, streamSeed } from "../lib/random.ts"
import { regressStage } from "../stages/regress/index.ts"
import { type Outputs, plantScores, plantTokens, plantedConfig, readRows, runPlanted } from "./fixtures/analysis.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-classify-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const STEPS = Array.from({ length: 20 }, (_, k) => (k + 1) * 100)
const THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
const alt = (c: number) => (c % 2 ? 1 : -1)
const SHAPES = {
  STAG: (c: number) => Math.log(100) + 0.01 * alt(c),
  STAG2: (c: number) => Math.log(50) + 0.02 * alt(c),
  NOISE: (c: number) => 4 + 0.5 * alt(c) * (1 + 0.3 * Math.sin(c)),
  UP: (_c: number, s: number) => 3 + 0.3 * Math.log(s / 100),
  DOWN: (_c: number, s: number) => 6 - 0.3 * Math.log(s / 100),
  CONST: () => 5,
  BUMP: (_c: number, s: number) => 4 + 2 * Math.max(0, 1 - Math.abs(Math.log(s / 1000)) / Math.log(5)),
}
type Shape = keyof typeof SHAPES
const A: Shape[] = ["STAG", "STAG2", "NOISE", "UP", "UP", "DOWN", "NOISE", "CONST", "BUMP", "DOWN"]
const B: Shape[] = ["STAG", "STAG", "STAG", "BUMP", "BUMP", "DOWN", "NOISE", "CONST", "DOWN", "DOWN"]
const CATEGORIES = ["function", "punctuation", "content", "content", "content", "piece", "number", "function", "content", "piece"]
/** Classes of each shape at every threshold (BUMP depends on the window). */
const EXPECTED: Record<Shape, string[]> = {
  STAG: Array(7).fill("stagnated"),
  STAG2: Array(7).fill("stagnated"),
  CONST: Array(7).fill("stagnated"),
  NOISE: Array(7).fill("other"),
  UP: Array(7).fill("upward"),
  DOWN: Array(7).fill("downward"),
  BUMP: ["upward", "other", "other", "downward", "downward", "downward", "downward"],
}

/** Stored log-probs: float32 of −L. */
const logprobs = (shapes: Shape[]): Float32Array[] => STEPS.map((s, c) => Float32Array.from(shapes, (sh) => -SHAPES[sh](c, s)))
/** p as the stages see it: exp of minus the float32 log-prob. */
const ppl = (sh: Shape, c: number) => Math.exp(-Math.fround(-SHAPES[sh](c, STEPS[c])))

const setup = async (name: string, models: Array<{ name: string; params: number; shapes: Shape[] }>, analysis: Record<string, unknown> = {}, threads = 1) => {
  const config = plantedConfig(path.join(tmp, name), models.map((m) => ({ name: m.name, params: m.params, steps: STEPS })), ["d"], analysis, 4, threads)
  const outputs: Outputs = new Map()
  for (const m of models) plantScores(config, outputs, m.name, "d", logprobs(m.shapes))
  plantTokens(config, outputs, "d", CATEGORIES.slice(0, models[0].shapes.length))
  return { config, outputs }
}

describe("classify on planted trajectories", () => {
  let run: Awaited<ReturnType<typeof setup>>
  const rows = (rel: string) => readRows(run.config.runDir, rel)

  beforeAll(async () => {
    run = await setup("two", [{ name: "a", params: 1e6, shapes: A }, { name: "b", params: 4e6, shapes: B }], { reference_model: "a" })
    for (const stage of [aggregateStage, regressStage, classifyStage]) expect(await runPlanted(stage, run.config, run.outputs)).toBeUndefined()
  })

  it("every token gets its planted class at every threshold, in both models", () => {
    for (const [model, shapes] of [["a", A], ["b", B]] as const) {
      const got = rows(`classes/model=${model}/dataset=d`)
      expect(got).toHaveLength(THRESHOLDS.length * 10)
      for (const r of got) {
        const k = THRESHOLDS.indexOf(r.threshold as number)
        expect({ model, token: r.token_index, threshold: r.threshold, class: r.class }).toEqual({
          model, token: r.token_index, threshold: r.threshold, class: EXPECTED[shapes[r.token_index as number]][k],
        })
      }
    }
  })

  it("double descent: flagged with its peak step exactly where the window holds the rise and the fall", () => {
    const got = rows("classes/model=a/dataset=d")
    const flagged = got.filter((r) => r.double_descent).map((r) => [r.token_index, r.threshold, r.peak_step])
    // The peak (step 1000) needs 3 points before it in the window: windows from 200, 400, 600, 800.
    expect(flagged).toEqual([[8, 0.1, 1000], [8, 0.2, 1000], [8, 0.3, 1000], [8, 0.4, 1000]])
    expect(got.filter((r) => !r.double_descent).every((r) => r.peak_step === null)).toBe(true)
    const b = rows("classes/model=b/dataset=d").filter((r) => r.double_descent)
    expect(b.map((r) => `${r.token_index}@${r.threshold}:${r.peak_step}`).sort()).toEqual(
      ["3@0.1:1000", "3@0.2:1000", "3@0.3:1000", "3@0.4:1000", "4@0.1:1000", "4@0.2:1000", "4@0.3:1000", "4@0.4:1000"],
    )
  })

  it("ties: identical trajectories get identical rows; a constant trajectory is stagnated with slope 0 and p 1", () => {
    const cls = rows("classes/model=a/dataset=d")
    const strip = (t: number) => cls.filter((r) => r.token_index === t).map(({ token_index: _, ...r }) => r)
    expect(strip(9)).toEqual(strip(5))
    const reg = rows("regressions/model=a/dataset=d")
    const strip2 = (t: number) => reg.filter((r) => r.token_index === t).map(({ token_index: _, ...r }) => r)
    expect(strip2(9)).toEqual(strip2(5))
    for (const r of reg.filter((x) => x.token_index === 7)) expect(r).toMatchObject({ slope: 0, intercept: 1, r2: 0, p_value: 1 })
  })

  it("classes agree with the log_step regressions (same fit, same bits)", () => {
    const reg = new Map(rows("regressions/model=b/dataset=d").map((r) => [`${r.threshold}/${r.token_index}`, r]))
    for (const c of rows("classes/model=b/dataset=d")) {
      const r = reg.get(`${c.threshold}/${c.token_index}`)!
      const sig = (r.p_value as number) < 0.05
      const expected = sig && (r.slope as number) > 0 ? "upward" : sig && (r.slope as number) < 0 ? "downward" : undefined
      if (expected) expect(c.class).toBe(expected)
      else expect(["stagnated", "other"]).toContain(c.class)
    }
  })

  it("class_summary: counts and shares of every class, zeros included; one document: the interval is the share", () => {
    const got = rows("class_summary.parquet")
    expect(got).toHaveLength(2 * THRESHOLDS.length * 4)
    expect(got.filter((r) => r.model === "a" && r.threshold === 0.3)).toEqual([
      { model: "a", dataset: "d", threshold: 0.3, class: "stagnated", n_tokens: 3, share: 0.3, share_lo: 0.3, share_hi: 0.3 },
      { model: "a", dataset: "d", threshold: 0.3, class: "upward", n_tokens: 2, share: 0.2, share_lo: 0.2, share_hi: 0.2 },
      { model: "a", dataset: "d", threshold: 0.3, class: "downward", n_tokens: 2, share: 0.2, share_lo: 0.2, share_hi: 0.2 },
      { model: "a", dataset: "d", threshold: 0.3, class: "other", n_tokens: 3, share: 0.3, share_lo: 0.3, share_hi: 0.3 },
    ])
    expect(got.every((r) => r.share_lo === r.share && r.share_hi === r.share)).toBe(true)
  })

  it("transitions: a's stagnated tokens are a subset of b's", () => {
    const got = rows("class_transitions.parquet").filter((r) => r.threshold === 0.3 && r.class_from === "stagnated")
    const share = (from: string, to: string, cls: string) => got.find((r) => r.model_from === from && r.model_to === to && r.class_to === cls)
    expect(share("a", "b", "stagnated")).toMatchObject({ n: 3, share: 1 })
    expect(share("a", "b", "other")).toMatchObject({ n: 0, share: 0 })
    expect(share("b", "a", "stagnated")).toMatchObject({ n: 3, share: 0.75 })
    expect(share("b", "a", "other")).toMatchObject({ n: 1, share: 0.25 })
    // every class_from with tokens has a row for each class_to, and the shares sum to 1
    const all = rows("class_transitions.parquet")
    const groups = new Map<string, number>()
    for (const r of all) groups.set(`${r.threshold}/${r.model_from}/${r.class_from}`, (groups.get(`${r.threshold}/${r.model_from}/${r.class_from}`) ?? 0) + (r.share as number))
    for (const v of groups.values()) expect(v).toBeCloseTo(1, 12)
  })

  it("class_categories: the categories of each class", () => {
    const got = rows("class_categories.parquet").filter((r) => r.model === "a" && r.threshold === 0.3 && r.class === "stagnated")
    expect(Object.fromEntries(got.map((r) => [r.category, [r.n, r.share]]))).toEqual({
      function: [2, 2 / 3], punctuation: [1, 1 / 3], content: [0, 0], piece: [0, 0], number: [0, 0],
    })
  })

  it("group trajectories: a's upward tokens rise then fall in b", () => {
    const got = rows("group_trajectories.parquet").filter((r) => r.threshold === 0.3 && r.class === "upward")
    expect(got.every((r) => r.ref_model === "a" && r.n_tokens === 2)).toBe(true)
    const inB = got.filter((r) => r.model === "b")
    expect(inB.map((r) => r.step)).toEqual(STEPS)
    // group_ppl = mean p of tokens 3 and 4 (both BUMP in b)
    inB.forEach((r, c) => expect(r.group_ppl as number).toBeCloseTo((ppl("BUMP", c) + ppl("BUMP", c)) / 2, 9))
    const curve = inB.map((r) => r.group_ppl as number)
    const peak = curve.indexOf(Math.max(...curve))
    expect(STEPS[peak]).toBe(1000)
    for (let c = 1; c <= peak; c++) expect(curve[c]).toBeGreaterThanOrEqual(curve[c - 1])
    for (let c = peak + 1; c < curve.length; c++) expect(curve[c]).toBeLessThan(curve[c - 1])
    // in a itself the group rises
    const inA = got.filter((r) => r.model === "a").map((r) => r.group_ppl as number)
    expect(inA[19]).toBeGreaterThan(inA[0])
    // valid_ppl is the dataset's perplexity from checkpoints.parquet
    const cp = rows("checkpoints.parquet").filter((r) => r.model === "b")
    expect(inB.map((r) => r.valid_ppl)).toEqual(cp.map((r) => r.ppl))
  })
})

describe("classify edge cases and errors", () => {
  it("a single-model run has an empty transitions table and no error; an empty group has a null group_ppl", async () => {
    const noDown = A.map((s) => (s === "DOWN" ? "UP" : s))
    const run = await setup("single", [{ name: "solo", params: 1e6, shapes: noDown }])
    for (const stage of [aggregateStage, classifyStage]) expect(await runPlanted(stage, run.config, run.outputs)).toBeUndefined()
    expect(readRows(run.config.runDir, "class_transitions.parquet")).toEqual([])
    const groups = readRows(run.config.runDir, "group_trajectories.parquet")
    expect(groups.every((r) => r.ref_model === "solo")).toBe(true)
    const empty = groups.filter((r) => r.class === "downward" && r.threshold === 0.3) // BUMP is "other" at 0.3
    expect(empty).toHaveLength(20)
    expect(empty.every((r) => r.n_tokens === 0 && r.group_ppl === null)).toBe(true)
    expect(groups.filter((r) => (r.n_tokens as number) > 0).every((r) => Number.isFinite(r.group_ppl))).toBe(true)
  })

  it("fewer than 3 checkpoints after a threshold: one line naming model, dataset and threshold", async () => {
    const run = await setup("few", [{ name: "a", params: 1e6, shapes: A }], { thresholds: [0.5, 0.97] })
    expect(await runPlanted(aggregateStage, run.config, run.outputs)).toBeUndefined()
    expect((await runPlanted(classifyStage, run.config, run.outputs))?.message).toBe(
      "model a, dataset d, threshold 0.97: only 2 checkpoints (step 1900, 2000) from 0.97 of the final step on; a regression needs at least 3 — add checkpoints or lower the threshold",
    )
  })

  it("a model with a missing checkpoint score file is an error naming the file", async () => {
    const run = await setup("missing", [{ name: "a", params: 1e6, shapes: A }, { name: "b", params: 4e6, shapes: B }])
    expect(await runPlanted(aggregateStage, run.config, run.outputs)).toBeUndefined()
    const file = run.outputs.get("score/model=b/step=1300/dataset=d")![0]
    fs.rmSync(file)
    expect((await runPlanted(classifyStage, run.config, run.outputs))?.message).toBe(
      `${file}: file missing (written by score/model=b/step=1300/dataset=d; re-run it)`,
    )
  })

  it("α and δ come from the config", async () => {
    // δ = 0.005 is tighter than the ±1% wobble of STAG: those tokens become "other".
    const run = await setup("cfg", [{ name: "a", params: 1e6, shapes: A }], { thresholds: [0.3], delta: 0.005, alpha: 0.01 })
    for (const stage of [aggregateStage, classifyStage]) expect(await runPlanted(stage, run.config, run.outputs)).toBeUndefined()
    const cls = readRows(run.config.runDir, "classes/model=a/dataset=d").map((r) => r.class)
    expect(cls[0]).toBe("other") // STAG: g/p_i0 − 1 ≈ 0.01 > δ
    expect(cls[7]).toBe("stagnated") // CONST stays stagnated
    expect(cls[3]).toBe("upward")
  })
})

describe("class_summary intervals resample documents", () => {
  // 30 tokens (the ten shapes three times, shuffled between the models) in 7 documents of 1…8
  // tokens; the last one has the id of the second: a document is a distinct doc_id.
  const shapesA = [...A, ...B, ...A]
  const shapesB = [...B, ...A.slice(5), ...A.slice(0, 5), ...B]
  const sizes = [3, 5, 2, 7, 1, 4, 8]
  const docIds = sizes.flatMap((n, d) => Array<string>(n).fill(d === 6 ? "doc-1" : `doc-${d}`))
  const analysis = { reference_model: "a", thresholds: [0.1, 0.3, 0.6], bootstrap_samples: 300, bootstrap_seed: 5 }
  const plant = async (name: string, rowGroupSize: number, threads: number) => {
    const models = [{ name: "a", params: 1e6, steps: STEPS }, { name: "b", params: 4e6, steps: STEPS }]
    const config = plantedConfig(path.join(tmp, name), models, ["d"], analysis, rowGroupSize, threads)
    const outputs: Outputs = new Map()
    plantScores(config, outputs, "a", "d", logprobs(shapesA))
    plantScores(config, outputs, "b", "d", logprobs(shapesB))
    plantTokens(config, outputs, "d", [...CATEGORIES, ...CATEGORIES, ...CATEGORIES], docIds)
    for (const stage of [aggregateStage, classifyStage]) expect(await runPlanted(stage, config, outputs)).toBeUndefined()
    return config.runDir
  }
  let runDir: string
  beforeAll(async () => {
    runDir = await plant("docs", 4, 1)
  })

  it("equal a bootstrap recomputed here from the classes/ parts and the tokens' doc_id", () => {
    const tokens = readRows(runDir, "tokens/dataset=d/tokens.parquet")
    const docOf = new Map(tokens.map((t) => [t.token_index as number, t.doc_id as string]))
    const docs = [...new Set(tokens.map((t) => t.doc_id as string))] // first appearance
    expect(docs).toHaveLength(6)
    const docTokens = docs.map((d) => tokens.filter((t) => t.doc_id === d).length)
    // n[model/threshold/class][doc], from the per-token classes
    const n = new Map<string, number[]>()
    for (const model of ["a", "b"]) {
      for (const r of readRows(runDir, `classes/model=${model}/dataset=d`)) {
        const key = `${model}/${r.threshold}/${r.class}`
        if (!n.has(key)) n.set(key, docs.map(() => 0))
        n.get(key)![docs.indexOf(docOf.get(r.token_index as number)!)]++
      }
    }
    const draws = Array.from({ length: 300 }, (_, b) => {
      const next = mulberry32(streamSeed(5, STREAM_CLASS_SHARES, b))
      return docs.map(() => Math.floor(next() * docs.length))
    })
    const quantile = (v: number[], q: number) => {
      const h = (v.length - 1) * q
      const i = Math.floor(h)
      return v[i] + (h - i) * (v[Math.min(v.length - 1, i + 1)] - v[i])
    }
    const rows = readRows(runDir, "class_summary.parquet")
    expect(rows).toHaveLength(2 * 3 * 4)
    let wide = 0
    for (const r of rows) {
      const counts = n.get(`${r.model}/${r.threshold}/${r.class}`) ?? docs.map(() => 0)
      const shares = draws.map((ds) => ds.reduce((a, d) => a + counts[d], 0) / ds.reduce((a, d) => a + docTokens[d], 0)).sort((x, y) => x - y)
      expect(r.share_lo as number, `${r.model}/${r.threshold}/${r.class}`).toBeCloseTo(quantile(shares, 0.025), 14)
      expect(r.share_hi as number).toBeCloseTo(quantile(shares, 0.975), 14)
      expect(r.share_lo as number).toBeLessThanOrEqual(r.share as number)
      expect(r.share_hi as number).toBeGreaterThanOrEqual(r.share as number)
      if ((r.share_hi as number) > (r.share_lo as number)) wide++
    }
    expect(wide).toBeGreaterThan(12)
  })

  it("do not depend on the blocks or the threads", async () => {
    parallelSettings.minWork = 0
    let other: string
    try {
      other = await plant("docs-threads", 3, 2)
    } finally {
      parallelSettings.minWork = 1 << 23
    }
    expect(readRows(other, "class_summary.parquet")).toEqual(readRows(runDir, "class_summary.parquet"))
  })
})

describe("worker threads", () => {
  it("give byte-identical tables to the single-thread path", async () => {
    const files = (dir: string) =>
      fs.readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name.endsWith(".parquet") && !e.parentPath.includes("scores") && !e.parentPath.includes("tokens"))
        .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
        .sort()
    const runs: string[] = []
    // the stage's own thread; workers started from the esbuild bundle; workers started through tsx
    for (const [name, minWork, bundle] of [["one", Infinity, true], ["bundled", 0, true], ["tsx", 0, false]] as const) {
      parallelSettings.minWork = minWork
      parallelSettings.bundle = bundle
      try {
        const run = await setup(`threads-${name}`, [{ name: "a", params: 1e6, shapes: A }, { name: "b", params: 4e6, shapes: B }], { reference_model: "a" }, 2)
        for (const stage of [aggregateStage, regressStage, classifyStage]) expect(await runPlanted(stage, run.config, run.outputs)).toBeUndefined()
        runs.push(run.config.runDir)
      } finally {
        parallelSettings.minWork = 1 << 23
        parallelSettings.bundle = true
      }
    }
    const [one, ...others] = runs
    expect((await bundledWorker())?.protocol).toBe("data:")
    expect(files(one).filter((f) => f.startsWith("regressions/") || f.startsWith("classes/"))).toHaveLength(2 * 2 * 3)
    for (const two of others) {
      expect(files(two)).toEqual(files(one))
      for (const f of files(one)) expect(fs.readFileSync(path.join(two, f)).equals(fs.readFileSync(path.join(one, f))), f).toBe(true)
    }
  })
})
