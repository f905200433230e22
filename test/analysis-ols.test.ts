/**
 * The pure math of regress: OLS against statsmodels, the t p-values against scipy and @stdlib,
 * degenerate fits, thresholds, and regression tests for the paper's regression bugs.
 *
 * Reference values were computed once with Debian 12's python3-statsmodels 0.13.5 / scipy 1.10.1 /
 * numpy 1.24.2 by `python3 tools/reference/ols_reference.py` (sm.OLS(y, sm.add_constant(x)).fit(),
 * slope p-value = fit.pvalues[1]; t p-values = 2·scipy.stats.t.sf(|t|, df)) and pasted here.
 */
import { describe, expect, it } from "vitest"
import { emptyFit, fitLine, fitShared, ols, prepareX } from "../lib/analysis/ols.ts"
import { PValueTable, SignificanceTest, criticalT, fastTwoSidedP, twoSidedP } from "../lib/analysis/tdist.ts"
import { axisValues, startIndex, thresholdStarts } from "../lib/analysis/window.ts"

const rel = (a: number, b: number) => (a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b)))
const expectRel = (actual: number | null, expected: number, tol = 1e-9) => {
  expect(actual).not.toBeNull()
  const r = rel(actual as number, expected)
  if (!(r <= tol)) throw new Error(`expected ${expected}, got ${actual} (relative error ${r.toExponential(2)} > ${tol})`)
}

const STEPS = Array.from({ length: 20 }, (_, k) => (k + 1) * 100)
const LN_STEPS = STEPS.map(Math.log)

// statsmodels references (tools/reference/ols_reference.py, "pure" and "nan").
const PURE: Array<{ name: string; x: number[]; y: number[]; ref: { n: number; slope: number; intercept: number; r2: number; p_value: number } }> = [
  {
    name: "worked example",
    x: [Math.log(100), Math.log(200), Math.log(400)],
    y: [1, 1.5, 2.5],
    ref: { n: 3, slope: 1.0820212806667215, intercept: -4.06622547566437, r2: 0.9642857142857143, p_value: 0.12103771832367669 },
  },
  {
    name: "noisy rise, 20 points",
    x: LN_STEPS,
    y: Array.from({ length: 20 }, (_, k) => 1 + 0.02 * k + 0.03 * Math.sin(1.3 * k)),
    ref: { n: 20, slope: 0.1309817806011222, intercept: 0.3093233100806664, r2: 0.8356823273061199, p_value: 1.754822433562371e-8 },
  },
  {
    name: "fall, 7 points",
    x: LN_STEPS.slice(13),
    y: [1.0, 0.97, 0.951, 0.93, 0.925, 0.9, 0.884],
    ref: { n: 7, slope: -0.31007924305276435, intercept: 3.241458829620939, r2: 0.9864275896013813, p_value: 7.322141471679751e-6 },
  },
  {
    // Residuals of 1e-4 on values near 4.5: with 1e-6 the residuals themselves would carry ~1e-9
    // relative rounding error in any double-precision implementation, statsmodels included.
    name: "near-perfect fit",
    x: LN_STEPS,
    y: LN_STEPS.map((x, k) => 2.0 + 0.5 * x + 1e-4 * Math.cos(7 * k)),
    ref: { n: 20, slope: 0.499993012817145, intercept: 2.0000565041946627, r2: 0.9999999677237569, p_value: 7.050531171940357e-69 },
  },
  {
    name: "no trend",
    x: LN_STEPS,
    y: Array.from({ length: 20 }, (_, k) => 1 + 0.1 * Math.sin(2.9 * k * k)),
    ref: { n: 20, slope: -0.0015710637665273045, intercept: 1.0102946740350607, r2: 0.00043913379402882313, p_value: 0.9301224660503233 },
  },
]

describe("ols equals statsmodels OLS", () => {
  for (const c of PURE) {
    it(c.name, () => {
      const r = ols(c.x, c.y)
      expect(r.n).toBe(c.ref.n)
      expectRel(r.slope, c.ref.slope)
      expectRel(r.intercept, c.ref.intercept)
      expectRel(r.pValue, c.ref.p_value)
      // r² near 0 is a small difference of large sums: 1e-7 relative there.
      expectRel(r.r2, c.ref.r2, c.name === "no trend" ? 1e-7 : 1e-9)
    })
  }

  it("the fast paths give the same bits as ols, and p within 1e-12 of @stdlib", () => {
    for (const c of PURE) {
      const a = fitLine(c.x, 0, c.y, 0, c.x.length, emptyFit())
      const b = fitShared(prepareX(Float64Array.from(c.x), 0, c.x.length), Float64Array.from(c.y), 0, emptyFit())
      expect(b).toEqual(a)
      expectRel(fastTwoSidedP(a.t, a.n - 2), ols(c.x, c.y).pValue!, 1e-12)
    }
  })
})

describe("paper bug: NaNs are removed from x and y together", () => {
  // x: ln 0 = −∞ at 0 (a step-0 checkpoint), NaN at 3; y: NaN at 7. statsmodels on the jointly
  // filtered arrays gives the reference; the paper filtered y only, so x and y no longer lined up.
  const x = [-Infinity, ...LN_STEPS.slice(1, 3), NaN, ...LN_STEPS.slice(4, 10)]
  const y = [1.0, 1.1, 1.25, 1.3, 1.42, 1.5, 1.49, NaN, 1.71, 1.8]
  const ref = { n: 7, slope: 0.4064492638819358, intercept: -1.0804153986021043, r2: 0.953960642382738, p_value: 0.00015702891314411856 }

  it("matches statsmodels on the pairs where both are finite", () => {
    const r = ols(x, y)
    expect(r.n).toBe(ref.n)
    expectRel(r.slope, ref.slope)
    expectRel(r.intercept, ref.intercept)
    expectRel(r.r2, ref.r2)
    expectRel(r.pValue, ref.p_value)
  })

  it("differs from dropping NaNs from y alone (the paper's misalignment)", () => {
    const keepY = y.map((v, j) => [x[j], v] as const).filter(([, v]) => Number.isFinite(v))
    // y without its NaN, paired with the first 9 x values as np.isnan(y) filtering would leave them
    const yOnly = keepY.map(([, v]) => v)
    const misaligned = ols(x.slice(0, yOnly.length), yOnly)
    expect(misaligned.slope).not.toBeCloseTo(ref.slope, 3)
  })

  it("fitShared defers to the filtering fit when x or y has a non-finite value", () => {
    const shared = prepareX(Float64Array.from(x), 0, x.length)
    expect(shared.allFinite).toBe(false)
    const f = fitShared(shared, Float64Array.from(y), 0, emptyFit())
    expect(f.n).toBe(7)
    expectRel(f.slope, ref.slope)
    const finiteX = prepareX(Float64Array.from(LN_STEPS.slice(0, 10)), 0, 10)
    const g = fitShared(finiteX, Float64Array.from(y), 0, emptyFit())
    expect(g.n).toBe(9)
    expect(g).toEqual(fitLine(LN_STEPS.slice(0, 10), 0, y, 0, 10, emptyFit()))
  })
})

describe("degenerate fits have documented finite answers", () => {
  it("constant y: slope 0, intercept y, r² 0, p 1", () => {
    expect(ols(LN_STEPS, LN_STEPS.map(() => 1))).toEqual({ n: 20, slope: 0, intercept: 1, r2: 0, pValue: 1 })
    expect(ols(LN_STEPS.slice(0, 5), [0.1, 0.1, 0.1, 0.1, 0.1])).toEqual({ n: 5, slope: 0, intercept: 0.1, r2: 0, pValue: 1 })
  })

  it("constant x: slope 0, intercept ȳ, r² 0, p 1", () => {
    expect(ols([2, 2, 2, 2], [1, 2, 3, 6])).toEqual({ n: 4, slope: 0, intercept: 3, r2: 0, pValue: 1 })
  })

  it("an exactly perfect fit: r² 1, p 0", () => {
    const r = ols([1, 2, 3, 4], [3, 5, 7, 9])
    expect(r).toEqual({ n: 4, slope: 2, intercept: 1, r2: 1, pValue: 0 })
    expect(ols([1, 2, 3, 4], [9, 7, 5, 3]).pValue).toBe(0)
  })

  it("fewer than 3 finite pairs: no fit (nulls), n kept", () => {
    expect(ols([1, 2], [1, 2])).toEqual({ n: 2, slope: null, intercept: null, r2: null, pValue: null })
    expect(ols([1, 2, NaN, 4], [1, NaN, 3, 4])).toEqual({ n: 2, slope: null, intercept: null, r2: null, pValue: null })
    expect(ols([], [])).toEqual({ n: 0, slope: null, intercept: null, r2: null, pValue: null })
  })

  it("never returns NaN for finite input", () => {
    for (const y of [[5, 5, 5], [1, 1, 2], [0, 0, 0, 0], [1e300, 1e300, 1e300]]) {
      const r = ols([1, 2, 3, 4].slice(0, y.length), y)
      for (const v of [r.slope, r.intercept, r.r2, r.pValue]) expect(Number.isFinite(v)).toBe(true)
    }
  })
})

describe("t p-values", () => {
  // 2·scipy.stats.t.sf(|t|, df) (tools/reference/ols_reference.py, "t")
  const T = [
    { t: 0.5, df: 1, p: 0.7048327646991336 },
    { t: 12.7, df: 1, p: 0.05002432768934415 },
    { t: 2.1, df: 3, p: 0.12656520254968454 },
    { t: 5.0, df: 10, p: 0.0005373336027564525 },
    { t: 2.06, df: 25, p: 0.049952496772810696 },
    { t: 12.0, df: 25, p: 7.182973075034835e-12 },
    { t: 40.0, df: 28, p: 2.985721407534327e-26 },
    { t: 3.0, df: 200, p: 0.003043047113905904 },
    { t: 0.01, df: 7, p: 0.9923003176436218 },
    { t: 150.0, df: 5, p: 2.4982781050197287e-10 },
  ]

  it("@stdlib and the fast table both equal scipy", () => {
    for (const { t, df, p } of T) {
      expectRel(twoSidedP(t, df), p, 1e-12)
      expectRel(twoSidedP(-t, df), p, 1e-12)
      expectRel(fastTwoSidedP(t, df), p, 1e-12)
    }
  })

  it("the fast table stays within 1e-12 of @stdlib over a dense sweep", () => {
    let worst = 0
    for (const df of [1, 2, 3, 5, 8, 13, 17, 25, 28, 60, 150]) {
      const table = new PValueTable(df)
      for (let k = 0; k < 3000; k++) {
        const t = k < 2000 ? k * 0.0137 : 27 + (k - 2000) * 0.041 // to ~68, past the table's end
        worst = Math.max(worst, rel(table.p(t), twoSidedP(t, df)))
      }
    }
    expect(worst).toBeLessThan(1e-12)
  })

  it("conventions: t = 0 → 1, t = ±∞ → 0, NaN → NaN", () => {
    expect(twoSidedP(0, 5)).toBe(1)
    expect(fastTwoSidedP(0, 5)).toBe(1)
    expect(twoSidedP(Infinity, 5)).toBe(0)
    expect(fastTwoSidedP(-Infinity, 5)).toBe(0)
    expect(twoSidedP(NaN, 5)).toBeNaN()
  })

  it("significance by critical t agrees with p < α, at the boundary too", () => {
    const test = new SignificanceTest(0.05)
    for (const df of [1, 2, 7, 25]) {
      const c = criticalT(0.05, df)
      expectRel(twoSidedP(c, df), 0.05, 1e-12)
      for (const t of [c * 0.5, c * (1 - 1e-12), c, c * (1 + 1e-12), c * 1.5, -c * 1.5, Infinity]) {
        expect(test.significant(t, df)).toBe(fastTwoSidedP(t, df) < 0.05)
      }
    }
  })
})

describe("paper bug: threshold is a fraction of the final step", () => {
  it("starts at the checkpoint whose step is nearest to τ·s_C", () => {
    const steps = [8, 16, 32, 64, 100, 200, 300, 400, 500, 600, 700]
    expect(startIndex(steps, 0.3)).toBe(5) // 210 → step 200; a fraction of the count would give index 3 (step 64)
    expect(startIndex(steps, 0.1)).toBe(3) // 70 → step 64
    expect(startIndex(STEPS, 0.1)).toBe(1) // 200
    expect(startIndex(STEPS, 0.7)).toBe(13) // 1400
  })

  it("a tie goes to the earlier checkpoint (one more point)", () => {
    expect(startIndex(STEPS, 0.125)).toBe(1) // 250: between 200 and 300
    expect(startIndex([0, 10], 0.5)).toBe(0)
  })

  it("fewer than 3 checkpoints after a threshold is an error naming model, dataset and threshold", () => {
    const r = thresholdStarts([100, 200, 300, 400], [0.1, 0.7], "model s, dataset press")
    expect(r).toEqual({
      error: "model s, dataset press, threshold 0.7: only 2 checkpoints (step 300, 400) from 0.7 of the final step on; a regression needs at least 3 — add checkpoints or lower the threshold",
    })
    expect(thresholdStarts([100, 200, 300, 400], [0.9], "m")).toMatchObject({ error: expect.stringContaining("only 1 checkpoint (step 400)") })
    expect(thresholdStarts([100, 200, 300, 400], [0.1, 0.5], "m")).toEqual({ starts: [0, 1] })
  })
})

describe("paper bug: the regressor is the vector of log steps from the threshold on", () => {
  it("regresses on ln s_i0…ln s_C, one x per point, not on one scalar", () => {
    // The paper passed x = log(steps[start]) (one number) to sm.OLS with a constant: a design of
    // one row. Here x has one entry per checkpoint of the window and the slope recovers the trend.
    const i0 = startIndex(STEPS, 0.3)
    const y = STEPS.slice(i0).map((s) => 1 + 0.25 * Math.log(s / STEPS[i0]))
    const x = axisValues("log_step", { params: 1, tokens_per_step: 1 }, STEPS).subarray(i0)
    expect(x.length).toBe(y.length)
    const r = ols(x, y)
    expect(r.n).toBe(STEPS.length - i0)
    expectRel(r.slope, 0.25, 1e-12)
  })

  it("x-axes: ln step, ln tokens, ln FLOPs from the config, ln validation ppl = mean NLL", () => {
    const m = { params: 2e6, tokens_per_step: 512 }
    expect([...axisValues("log_step", m, [1, 10])]).toEqual([0, Math.log(10)])
    expect([...axisValues("log_tokens", m, [10])]).toEqual([Math.log(5120)])
    expect([...axisValues("log_flops", m, [10])]).toEqual([Math.log(6 * 2e6 * 10 * 512)])
    expect([...axisValues("log_valid_ppl", m, [10, 20], [5.5, 5.25])]).toEqual([5.5, 5.25])
    expect(axisValues("log_step", m, [0])[0]).toBe(-Infinity)
  })
})
