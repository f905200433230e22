/**
 * The bootstrap of the correlation table (stages/correlate/bootstrap.ts) on planted hits.
 *
 * Expected values: computed ONCE by tools/reference/bootstrap_reference.py (Debian's numpy 1.24,
 * python3-scipy 1.10, python3-statsmodels 0.13), an implementation of its own that shares only the
 * random draws (mulberry32 and streamSeed ported), and pasted here. The planted hits are built by
 * the same rule there and here; change both together.
 */
import { describe, expect, it } from "vitest"
import { percentileInterval, quantileSorted } from "../lib/stats.ts"
import { bootstrapCorrelations, type TaskHits } from "../stages/correlate/bootstrap.ts"

const REF_INTERVALS: Record<string, readonly [number, number]> = {
  "t0/u/spearman": [-0.9758930080516257, -0.5383793381697232],
  "t0/u/pearson": [-0.9581531854870886, -0.6679278230276676],
  "t0/u/r2_pooled": [0.4464605356442404, 0.9180676733300103],
  "t0/u/size_effect": [3.84082433167815e-05, 0.060467584972616936],
  "t0/v/spearman": [0.5961348229446208, 0.9019205879406565],
  "t0/v/pearson": [0.5808685135029915, 0.8501834142302591],
  "t0/v/r2_pooled": [0.33867416018862195, 0.722816047056661],
  "t0/v/size_effect": [0.05092406380027733, 0.3234375],
  "t1/u/spearman": [-0.9322586314422672, -0.6058835483244291],
  "t1/u/pearson": [-0.9398392517729481, -0.6708005880088953],
  "t1/u/r2_pooled": [0.4500938475409445, 0.8832985707163038],
  "t1/u/size_effect": [1.2461088294110636e-05, 0.06306452067139796],
  "t1/v/spearman": [0.28887948004942243, 0.8050473686826043],
  "t1/v/pearson": [0.4672168887864098, 0.7888886489314446],
  "t1/v/r2_pooled": [0.2182939094803501, 0.6224099784483389],
  "t1/v/size_effect": [0.04458433165049115, 0.4765666666666665],
  "mean/u/spearman": [-0.9745265848773416, -0.6580851920273791],
  "mean/u/pearson": [-0.968035974332954, -0.7544457179846047],
  "mean/u/r2_pooled": [0.5691900219703386, 0.9371063046662043],
  "mean/u/size_effect": [0.0001830286679651766, 0.03400779698391037],
  "mean/v/spearman": [0.5849099744074704, 0.9081292832965595],
  "mean/v/pearson": [0.5879019642354031, 0.8441797408491994],
  "mean/v/r2_pooled": [0.34565040847648326, 0.7126395126783786],
  "mean/v/size_effect": [0.08605863234030699, 0.4380500881285323],
}
const REF_DIFF: Record<string, { diff: number; ci: readonly [number, number] }> = {
  t0: { diff: 0.19351818021894762, ci: [-0.005971188579884342, 0.3221291005291006] },
  t1: { diff: 0.28747077549541467, ci: [-0.02838700498190634, 0.4048021762833177] },
  mean: { diff: 0.2507414978568986, ci: [0.028892516391635856, 0.41643561100860055] },
}

const MODELS = ["A", "A", "A", "A", "A", "B", "B", "B", "B", "B"]
const STEPS = [0, 1, 2, 4, 8, 0, 1, 2, 4, 8]
const U = Float64Array.from([0, 1, 2, 3, 4, 0, 1, 2, 3, 4], (k, i) => 3 - 0.25 * k - (MODELS[i] === "B" ? 0.4 : 0))
const V = Float64Array.from(STEPS, (s) => Math.log(s))
const N_EX = [12, 9]
const LEVEL = [
  [2, 3, 4, 6, 7, 3, 4, 6, 8, 9],
  [1, 2, 2, 3, 5, 2, 3, 5, 6, 8],
]
const hitOf = (t: number, p: number, e: number) => (t === 1 && p === 3 && e === 4 ? 255 : (e * 7 + p * 3 + t) % 10 < LEVEL[t][p] ? 1 : 0)
const TASKS: TaskHits[] = N_EX.map((n, t) => ({
  task: `t${t}`,
  examples: n,
  hits: Uint8Array.from({ length: 10 * n }, (_, k) => hitOf(t, Math.floor(k / n), k % n)),
}))
const GROUP = Int32Array.from(MODELS, (m) => (m === "A" ? 0 : 1))
const SERIES = [
  { name: "t0", tasks: [0] },
  { name: "t1", tasks: [1] },
  { name: "mean", tasks: [0, 1] },
]

const run = (samples: number, seed: number, tasks = TASKS) =>
  bootstrapCorrelations({ tasks, series: SERIES, axes: [{ name: "u", x: U }, { name: "v", x: V }], group: GROUP, samples, seed })

describe("bootstrap intervals", () => {
  it("equal an independent implementation's (numpy, scipy, statsmodels) on the same draws", () => {
    const { intervals, differences } = run(60, 7)
    expect(intervals).toHaveLength(6)
    for (const i of intervals) {
      for (const [stat, ci] of Object.entries(i.stats)) {
        const ref = REF_INTERVALS[`${i.name}/${i.axis}/${stat}`]
        expect(ci.lo, `${i.name}/${i.axis}/${stat}`).toBeCloseTo(ref[0], 9)
        expect(ci.hi, `${i.name}/${i.axis}/${stat}`).toBeCloseTo(ref[1], 9)
      }
    }
    expect(differences.map((d) => [d.name, d.axisA, d.axisB, d.nPoints])).toEqual([
      ["t0", "u", "v", 8],
      ["t1", "u", "v", 8],
      ["mean", "u", "v", 8],
    ])
    for (const d of differences) {
      expect(d.diff).toBeCloseTo(REF_DIFF[d.name].diff, 10)
      expect(d.r2A! - d.r2B!).toBeCloseTo(d.diff!, 12)
      expect(d.lo).toBeCloseTo(REF_DIFF[d.name].ci[0], 9)
      expect(d.hi).toBeCloseTo(REF_DIFF[d.name].ci[1], 9)
    }
    // The planted data's point: u beats v on the mean (interval above 0), not on either task alone.
    expect(differences.map((d) => d.lo! > 0)).toEqual([false, false, true])
  })

  it("collapse onto the observed statistic when every example has the same outcomes", () => {
    // Every example of a task hits at the same points: a resample changes no accuracy.
    const same = TASKS.map((t) => ({ ...t, hits: Uint8Array.from(t.hits, (_, k) => hitOf(t.task === "t0" ? 0 : 1, Math.floor(k / t.examples), 0)) }))
    const once = run(1, 3, same)
    const many = run(40, 3, same)
    many.intervals.forEach((i, k) => {
      for (const [stat, ci] of Object.entries(i.stats)) {
        const o = once.intervals[k].stats[stat as keyof typeof i.stats]
        expect(ci.lo).toBeCloseTo(o.lo!, 12)
        expect(ci.hi).toBeCloseTo(o.lo!, 12)
      }
    })
    many.differences.forEach((d) => {
      expect(d.lo).toBeCloseTo(d.diff!, 12)
      expect(d.hi).toBeCloseTo(d.diff!, 12)
    })
  })

  it("are the same for the same seed and differ for another", () => {
    expect(run(30, 1)).toEqual(run(30, 1))
    expect(run(30, 2).differences[0].lo).not.toBe(run(30, 1).differences[0].lo)
  })

  it("percentiles are numpy's linear ones; too few values give no interval", () => {
    // numpy.percentile([3, 1, 4, 1, 5, 9, 2, 6], [2.5, 50, 97.5]) = [1.0, 3.5, 8.475]
    const xs = [3, 1, 4, 1, 5, 9, 2, 6].sort((a, b) => a - b)
    expect(quantileSorted(xs, 0.025)).toBeCloseTo(1.0, 12)
    expect(quantileSorted(xs, 0.5)).toBeCloseTo(3.5, 12)
    expect(quantileSorted(xs, 0.975)).toBeCloseTo(8.475, 12)
    expect(percentileInterval([1, null, null, null, 2], 5)).toEqual({ lo: null, hi: null })
    expect(percentileInterval([1, 2, null], 3).lo).toBeCloseTo(1.025, 12)
  })
})
