/**
 * Correlation statistics and checkpoint matching on planted points.
 *
 * Expected values: computed ONCE with Debian's python3-scipy 1.10 (spearmanr, pearsonr) and
 * python3-statsmodels 0.13 (`ols("y ~ x")` and `ols("y ~ x + C(model)")` R²) by
 * tools/reference/correlate_stats.py, which holds the same planted points, and pasted here.
 */
import { describe, expect, it } from "vitest"
import { logDistance, matchCheckpoints } from "../stages/correlate/match.ts"
import { averageRanks, correlationStats, groupR2, pearson, pooledR2, spearman, wilson } from "../stages/correlate/stats.ts"
import { X_AXES, atChance, correlationRows, meanTasks, type MetricRow } from "../stages/correlate/tables.ts"
import { MEAN_TASK } from "../stages/correlate/contract.ts"

const TIES_X = [1, 2, 2, 3, 4, 4, 4, 5, 6, 6]
const TIES_Y = [1.5, 1.0, 2.5, 2.5, 4.0, 3.0, 5.0, 5.0, 7.0, 6.5]

const MODEL = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
const SHARED_X = [6.0, 5.6, 5.3, 5.1, 5.0, 6.0, 5.4, 5.0, 4.8, 4.7, 5.9, 5.2, 4.8, 4.5, 4.4]
/** 1.9 − 0.3x + noise, rounded to 6 decimals (printed by the script). */
const SHARED_Y = [0.104, 0.217, 0.312, 0.369, 0.403, 0.098, 0.281, 0.396, 0.462, 0.49, 0.133, 0.339, 0.458, 0.554, 0.577]
const SHIFT_X = [1.0, 2.0, 3.0, 4.0, 5.0, 1.5, 2.5, 3.5, 4.5, 5.5, 2.0, 3.0, 4.0, 5.0, 6.0]
/** 0.1x + 0.2·model + noise. */
const SHIFT_Y = [0.104, 0.197, 0.302, 0.399, 0.503, 0.348, 0.451, 0.546, 0.652, 0.75, 0.603, 0.699, 0.798, 0.904, 0.997]

const REF = {
  ties: { spearman: 0.9472780613872165, pearson: 0.9384975739224123 },
  shared: {
    spearman: -0.9973178315576519,
    pearson: -0.9998513489447592,
    r2_pooled: 0.9997027199866552,
    r2_models: 0.9997188024072108,
    size_effect: 1.6082420555618704e-5,
  },
  shifted: {
    spearman: 0.7491087544556233,
    pearson: 0.775367305194606,
    r2_pooled: 0.6011944579647449,
    r2_models: 0.9998961022896801,
    size_effect: 0.39870164432493516,
  },
  tokens: { pearson: 0.9719810426916159, spearman: 0.975539729830124 },
}

const close = (got: number | null, want: number, rel = 1e-9) => {
  expect(got).not.toBeNull()
  expect(Math.abs(got! - want)).toBeLessThanOrEqual(rel * Math.max(1, Math.abs(want)))
}

describe("statistics against scipy / statsmodels", () => {
  it("average ranks for ties", () => {
    expect([...averageRanks([1, 5, 5, 2])]).toEqual([1, 3.5, 3.5, 2])
    expect([...averageRanks(TIES_X)]).toEqual([1, 2.5, 2.5, 4, 6, 6, 6, 8, 9.5, 9.5])
  })

  it("Spearman with ties, Pearson", () => {
    close(spearman(TIES_X, TIES_Y), REF.ties.spearman)
    close(pearson(TIES_X, TIES_Y), REF.ties.pearson)
  })

  it("all sizes on one curve: high pooled R², size effect ≈ 0", () => {
    const s = correlationStats(SHARED_X, SHARED_Y, MODEL)
    close(s.spearman, REF.shared.spearman)
    close(s.pearson, REF.shared.pearson)
    close(s.r2_pooled, REF.shared.r2_pooled)
    close(groupR2(SHARED_X, SHARED_Y, MODEL), REF.shared.r2_models)
    close(s.size_effect, REF.shared.size_effect, 1e-9)
    expect(s.size_effect!).toBeLessThan(1e-4)
    expect(s.n_points).toBe(15)
  })

  it("sizes on shifted curves: the intercepts explain what x cannot (size effect ≈ 0.4)", () => {
    const s = correlationStats(SHIFT_X, SHIFT_Y, MODEL)
    close(s.spearman, REF.shifted.spearman)
    close(s.pearson, REF.shifted.pearson)
    close(s.r2_pooled, REF.shifted.r2_pooled)
    close(groupR2(SHIFT_X, SHIFT_Y, MODEL), REF.shifted.r2_models)
    close(s.size_effect, REF.shifted.size_effect)
  })

  it("per-token log-prob agreement (Float32 input, ties)", () => {
    const a = Float32Array.of(-1.0, -2.5, -0.25, -4.0, -2.5, -3.0, -0.5, -6.0, -1.0, -2.0)
    const b = Float32Array.of(-1.25, -2.0, -0.5, -3.5, -3.0, -3.0, -0.25, -5.0, -1.5, -1.75)
    close(pearson(a, b), REF.tokens.pearson)
    close(spearman(a, b), REF.tokens.spearman)
  })

  it("non-finite points are dropped from x and y together (step 0: ln 0 = −∞), and groups re-coded", () => {
    const x = [-Infinity, ...SHARED_X, Number.NaN]
    const y = [0.9, ...SHARED_Y, 0.1]
    const g = [5, ...MODEL.map((m) => m + 7), 9]
    const s = correlationStats(x, y, g)
    expect(s.n_points).toBe(15)
    close(s.r2_pooled, REF.shared.r2_pooled)
    close(s.size_effect, REF.shared.size_effect)
  })

  it("missing values are null, not NaN: < 3 points, constant y; constant x has R² 0", () => {
    expect(correlationStats([1, 2], [3, 4], [0, 0])).toEqual({ spearman: null, pearson: null, r2_pooled: null, size_effect: null, n_points: 2 })
    const flat = correlationStats([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5], [0, 0, 1, 1])
    expect(flat).toEqual({ spearman: null, pearson: null, r2_pooled: null, size_effect: null, n_points: 4 })
    expect(pooledR2([0.1, 0.1, 0.1], [1, 2, 4])).toBe(0)
    expect(pearson([0.1, 0.1, 0.1], [1, 2, 4])).toBeNull()
    // x constant within each model: the intercepts explain everything x can; R² = that of the model means.
    // y = [1, 2 | 4, 5]: SST = 10, within SSR = 0.5 + 0.5 → R² = 0.9
    close(groupR2([1, 1, 2, 2], [1, 2, 4, 5], [0, 0, 1, 1]), 0.9)
  })

  it("one model: size effect 0", () => {
    expect(correlationStats(SHARED_X.slice(0, 5), SHARED_Y.slice(0, 5), [0, 0, 0, 0, 0]).size_effect).toBe(0)
  })
})

describe("correlation rows", () => {
  it("per task and for the mean over tasks; steps, tokens and FLOPs share the within-model fit", () => {
    // Two models of different tokens_per_step; accuracy is a function of ln ppl only.
    const tps: Record<string, number> = { s: 10, l: 40 }
    const params: Record<string, number> = { s: 100, l: 800 }
    const ppl = (m: string, step: number) => (m === "s" ? 1000 / (1 + step) : 900 / (1 + 3 * step))
    const steps = [0, 1, 2, 4, 8]
    const metrics: MetricRow[] = []
    for (const model of ["s", "l"]) {
      for (const step of steps) {
        for (const [task, shift] of [["a", 0], ["b", 0.1]] as const) {
          const accuracy = 1.2 - 0.15 * Math.log(ppl(model, step)) + shift
          metrics.push({ model, step, task, accuracy, acc_lo: 0, acc_hi: 1, grade: accuracy, n_examples: 10, accuracy_norm: 0, acc_norm_lo: 0, acc_norm_hi: 1, random_baseline: 0.5, correct_ppl: 1, incorrect_ppl: 1 })
        }
      }
    }
    const rows = correlationRows(metrics, ["a", "b"], (m, step) => ({
      log_valid_ppl: Math.log(ppl(m, step)),
      log_flops: Math.log(6 * params[m] * tps[m] * step),
      log_tokens: Math.log(tps[m] * step),
      log_step: Math.log(step),
    }))
    expect(rows.map((r) => `${r.task}/${r.x_axis}`)).toEqual(["a", "b", MEAN_TASK].flatMap((t) => X_AXES.map((x) => `${t}/${x}`)))
    const get = (task: string, x: string) => rows.find((r) => r.task === task && r.x_axis === x)!
    for (const task of ["a", "b", MEAN_TASK]) {
      expect(get(task, "log_valid_ppl").n_points).toBe(10)
      close(get(task, "log_valid_ppl").r2_pooled, 1, 1e-12)
      close(get(task, "log_valid_ppl").pearson, -1, 1e-12)
      expect(get(task, "log_valid_ppl").size_effect!).toBeLessThan(1e-12)
      // step 0 is dropped from the log axes
      for (const x of ["log_flops", "log_tokens", "log_step"]) expect(get(task, x).n_points).toBe(8)
      // ln tokens and ln FLOPs are ln step plus a per-model constant: with one intercept per model the fits agree
      const full = (x: string) => get(task, x).r2_pooled! + get(task, x).size_effect!
      close(full("log_tokens"), full("log_step"), 1e-9)
      close(full("log_flops"), full("log_step"), 1e-9)
    }
    // The mean row's accuracy is the mean of a and b: a + 0.05, the same correlation.
    close(get(MEAN_TASK, "log_step").spearman, get("a", "log_step").spearman!, 1e-12)
  })

  it("the mean over tasks uses only points every task has", () => {
    const m = (model: string, step: number, task: string, accuracy: number): MetricRow => ({
      model, step, task, accuracy, acc_lo: 0, acc_hi: 1, grade: accuracy, n_examples: 1, accuracy_norm: 0, acc_norm_lo: 0, acc_norm_hi: 1, random_baseline: 0, correct_ppl: 1, incorrect_ppl: 1,
    })
    const metrics = [m("s", 1, "a", 0.1), m("s", 2, "a", 0.2), m("s", 3, "a", 0.4), m("s", 4, "a", 0.5), m("s", 1, "b", 0.3), m("s", 2, "b", 0.2), m("s", 3, "b", 0.4)]
    const rows = correlationRows(metrics, ["a", "b"], (_m, step) => ({ log_valid_ppl: -step, log_flops: step, log_tokens: step, log_step: step }))
    const mean = rows.filter((r) => r.task === MEAN_TASK)
    expect(mean.every((r) => r.n_points === 3)).toBe(true)
    // mean accuracy at steps 1, 2, 3 = 0.2, 0.2, 0.4 → Spearman with ties
    close(mean.find((r) => r.x_axis === "log_step")!.spearman, spearman([1, 2, 3], [0.2, 0.2, 0.4])!, 1e-12)
    expect(correlationRows(metrics, [], () => ({ log_valid_ppl: 0, log_flops: 0, log_tokens: 0, log_step: 0 }))).toEqual([])
  })
})

describe("matching checkpoints of two sizes", () => {
  it("the worked example of match.ts: nearest on a log scale", () => {
    const A = [900, 300, 150].map((ppl, i) => ({ step: i, ppl, flops: 0 }))
    const B = [1000, 400, 120, 90].map((ppl, i) => ({ step: 10 + i, ppl, flops: 0 }))
    expect(matchCheckpoints(A, B, "ppl").map(([a, b]) => [a.ppl, b.ppl])).toEqual([[900, 1000], [300, 400], [150, 120]])
  })

  it("FLOPs: 0 matches only 0, ties go to the smaller step, unmatched points are left out", () => {
    expect(logDistance(0, 0)).toBe(0)
    expect(logDistance(0, 5)).toBe(Infinity)
    const A = [{ step: 0, ppl: 1, flops: 0 }, { step: 1, ppl: 1, flops: 100 }]
    const B = [{ step: 2, ppl: 1, flops: 100 }, { step: 3, ppl: 1, flops: 100 }, { step: 4, ppl: 1, flops: 400 }]
    // 100 is as near to step 2 as to step 3: the smaller step wins; step 0 has no partner.
    expect(matchCheckpoints(A, B, "flops").map(([a, b]) => [a.step, b.step])).toEqual([[1, 2]])
    expect(matchCheckpoints(A, [{ step: 0, ppl: 1, flops: 0 }, ...B], "flops").map(([a, b]) => [a.step, b.step])).toEqual([[0, 0], [1, 2]])
  })
})

describe("wilson", () => {
  it("equals statsmodels' proportion_confint(k, n, alpha=0.05, method='wilson')", () => {
    // /usr/bin/python3 -c "from statsmodels.stats.proportion import proportion_confint as c; print(c(k, n, alpha=0.05, method='wilson'))" (statsmodels 0.13)
    const want: ReadonlyArray<readonly [number, number, number, number]> = [
      [1, 1, 0.2065493143772374, 1.0],
      [2, 4, 0.15003898915214947, 0.8499610108478506],
      [3, 4, 0.30064184258240184, 0.9544127391902995],
      [0, 10, 0.0, 0.27753279986288926],
      [10, 10, 0.7224672001371106, 1.0],
      [37, 100, 0.2818236053432453, 0.46779470419057095],
      [0, 1, 0.0, 0.7934506856227627],
      [512, 1000, 0.4810325544060909, 0.5428756033902558],
    ]
    for (const [k, n, lo, hi] of want) {
      const [l, h] = wilson(k, n)
      expect(Math.abs(l - lo)).toBeLessThan(1e-12)
      expect(Math.abs(h - hi)).toBeLessThan(1e-12)
    }
    expect(wilson(0, 0)).toEqual([0, 1])
  })
})

describe("tasks at chance", () => {
  const row = (model: string, step: number, task: string, accuracy: number, lo: number, hi: number, baseline = 0.5): MetricRow => ({
    model, step, task, accuracy, acc_lo: lo, acc_hi: hi, grade: accuracy, n_examples: 100, accuracy_norm: 0, acc_norm_lo: 0, acc_norm_hi: 1,
    random_baseline: baseline, correct_ppl: 1, incorrect_ppl: 1,
  })
  it("a task is at chance when its interval covers the baseline at every checkpoint", () => {
    expect(atChance([row("s", 1, "a", 0.5, 0.4, 0.6), row("s", 2, "a", 0.55, 0.45, 0.65)])).toBe(true)
    expect(atChance([row("s", 1, "a", 0.5, 0.4, 0.6), row("s", 2, "a", 0.7, 0.6, 0.8)])).toBe(false) // above chance once
    expect(atChance([row("s", 1, "a", 0.1, 0.05, 0.2, 0.25)])).toBe(false) // below chance is not chance either
    expect(atChance([])).toBe(false)
  })

  it("the mean is over the tasks above chance, unless none is or they are kept; at_chance is on every task row", () => {
    expect(meanTasks(["a", "b", "c"], new Set(["b"]), false)).toEqual(["a", "c"])
    expect(meanTasks(["a", "b"], new Set(["a", "b"]), false)).toEqual(["a", "b"])
    expect(meanTasks(["a", "b"], new Set(["b"]), true)).toEqual(["a", "b"])
    // Task a rises with x, task b sits at chance: the mean over a alone is a's own series.
    const metrics = [1, 2, 3, 4].flatMap((step) => [row("s", step, "a", 0.5 + 0.1 * step, 0.45 + 0.1 * step, 0.55 + 0.1 * step + 0.05), row("s", step, "b", 0.5 + ((step * 7) % 3) * 0.01, 0.4, 0.6)])
    const xOf = (_m: string, step: number) => ({ log_valid_ppl: -step, log_flops: step, log_tokens: step, log_step: step })
    const rows = correlationRows(metrics, ["a", "b"], xOf, ["a"])
    const get = (task: string) => rows.find((r) => r.task === task && r.x_axis === "log_step")!
    expect([get("a").at_chance, get("b").at_chance, get(MEAN_TASK).at_chance]).toEqual([false, true, null])
    expect(get(MEAN_TASK).spearman).toBe(get("a").spearman)
    expect(get(MEAN_TASK).r2_pooled).toBeCloseTo(get("a").r2_pooled!, 12)
    const both = correlationRows(metrics, ["a", "b"], xOf)
    expect(both.find((r) => r.task === MEAN_TASK && r.x_axis === "log_step")!.r2_pooled).not.toBeCloseTo(get("a").r2_pooled!, 6)
  })
})
