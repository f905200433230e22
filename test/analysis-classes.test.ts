/** The per-token rules of DESIGN.md "Definitions" (classes, double descent) and the tallies, directly. */
import { describe, expect, it } from "vitest"
import { classifyBlock } from "../lib/analysis/blocks.ts"
import { CLASSES, CLASS_CODE, StepWindows, classOf, doubleDescentPeak, isStagnated, trajectoryOf } from "../lib/analysis/classes.ts"
import { emptyFit, fitLine } from "../lib/analysis/ols.ts"
import { ClassTallies } from "../lib/analysis/tallies.ts"
import { groupSums } from "./fixtures/analysis.ts"
import { SignificanceTest } from "../lib/analysis/tdist.ts"

const rules = { test: new SignificanceTest(0.05), delta: 0.05, ddRise: 0.1 }
const STEPS = Array.from({ length: 12 }, (_, k) => (k + 1) * 100)
const LN = Float64Array.from(STEPS, Math.log)
const ln = (ps: number[]) => ps.map(Math.log)

describe("stagnation", () => {
  it("the worked example: p = 100, 103, 98, 101, 99 is stagnated", () => {
    const t = trajectoryOf(ln([100, 103, 98, 101, 99]))
    expect(isStagnated(t, 0, 0.05)).toBe(true)
    const y = t.p.map((v) => v / t.p[0])
    const fit = fitLine(LN, 0, y, 0, 5, emptyFit())
    expect(CLASSES[classOf(fit, t, 0, rules)]).toBe("stagnated")
  })

  it("each condition can fail on its own", () => {
    expect(isStagnated(trajectoryOf(ln([100, 100, 100, 100, 110])), 0, 0.05)).toBe(false) // g/p_C − 1 ≈ −7%
    expect(isStagnated(trajectoryOf(ln([90, 100, 100, 100, 100])), 0, 0.05)).toBe(false) // g/p_i0 − 1 ≈ +9%
    // both ends within 15% of g = 3.19 but Var(p) = 11.1 ≥ g
    expect(isStagnated(trajectoryOf(ln([3.6, 1, 9, 1, 9, 3.6])), 0, 0.15)).toBe(false)
    expect(isStagnated(trajectoryOf(ln([3.6, 3, 4, 3, 4, 3.6])), 0, 0.15)).toBe(true)
    expect(isStagnated(trajectoryOf(ln([100, 100, 100, 100, 104])), 0, 0.05)).toBe(true)
  })

  it("is judged on the window only", () => {
    const t = trajectoryOf(ln([500, 300, 100, 101, 99, 100]))
    expect(isStagnated(t, 0, 0.05)).toBe(false)
    expect(isStagnated(t, 2, 0.05)).toBe(true)
  })

  it("leaves non-finite perplexities out of g and the variance, but needs both ends", () => {
    expect(isStagnated(trajectoryOf([Math.log(100), NaN, Math.log(101), Math.log(100)]), 0, 0.05)).toBe(true)
    expect(isStagnated(trajectoryOf([NaN, Math.log(100), Math.log(101), Math.log(100)]), 0, 0.05)).toBe(false)
  })
})

describe("class of a token", () => {
  const classOfL = (L: number[], i0 = 0) => {
    const t = trajectoryOf(L)
    const y = t.p.map((v) => v / t.p[i0])
    return CLASSES[classOf(fitLine(LN, i0, y, i0, L.length - i0, emptyFit()), t, i0, rules)]
  }
  it("upward / downward need a significant slope of the right sign", () => {
    expect(classOfL(STEPS.map((s) => 2 + 0.2 * Math.log(s)))).toBe("upward")
    expect(classOfL(STEPS.map((s) => 6 - 0.2 * Math.log(s)))).toBe("downward")
    // a slope that is not significant and not flat enough to stagnate: other
    expect(classOfL(STEPS.map((_, c) => 4 + (c % 2 ? 0.4 : -0.4)))).toBe("other")
  })
  it("a constant trajectory is stagnated (slope 0, p 1)", () => {
    expect(classOfL(STEPS.map(() => 3))).toBe("stagnated")
  })
  it("class codes map to the literals", () => {
    expect(CLASSES.map((c) => CLASS_CODE[c])).toEqual([0, 1, 2, 3])
  })
})

describe("per-token double descent", () => {
  const windows = new StepWindows(LN)
  const peak = (L: number[], i0 = 0, r = rules) => doubleDescentPeak(trajectoryOf(L), windows, i0, r, emptyFit())
  // rise from 3 to 5 by step 600, then back to 3.5: linear in ln step on each side
  const bump = STEPS.map((s) => (s <= 600 ? 3 + 2 * Math.log(s / 100) / Math.log(6) : 5 - 1.5 * Math.log(s / 600) / Math.log(2)))

  it("flags a significant rise then a significant fall, at the peak's step", () => {
    expect(STEPS[peak(bump)]).toBe(600)
  })

  it("needs 3 points on each side of the peak", () => {
    expect(peak(bump, 3)).toBe(5) // window 400…: 400, 500, 600 before the peak
    expect(peak(bump, 4)).toBe(-1) // window 500…: only 2 points up to the peak
  })

  it("needs the smoothed peak to exceed both ends by ln(1 + dd_rise)", () => {
    const t = trajectoryOf(bump) // stored as float32 log-probs, like a score file
    const rise = t.smooth[5] - t.L[11] // ≈ 4.821 − 3.5: the smaller of the two rises
    expect(rise).toBeCloseTo(1.321, 3)
    expect(peak(bump, 0, { ...rules, ddRise: Math.exp(rise + 1e-9) - 1 })).toBe(-1)
    expect(peak(bump, 0, { ...rules, ddRise: Math.exp(rise - 1e-9) - 1 })).toBe(5)
  })

  it("does not flag a monotone, a falling-then-rising, or a noisy trajectory", () => {
    expect(peak(STEPS.map((s) => Math.log(s)))).toBe(-1)
    expect(peak(bump.map((v) => 8 - v))).toBe(-1)
    expect(peak(STEPS.map((_, c) => 4 + (c % 3 === 1 ? 0.5 : 0)))).toBe(-1)
  })

  it("takes the first maximum of the smoothed curve on ties", () => {
    // a plateau at the top: the smoothed values at 600 and 700 tie; the first wins
    const plateau = [3, 3.5, 4, 4.5, 5, 5, 5, 5, 4.5, 4, 3.5, 3].map((v) => v)
    const t = trajectoryOf(plateau)
    expect(t.smooth[5]).toBe(t.smooth[6])
    expect(STEPS[peak(plateau)]).toBe(600)
  })

  it("never flags a window with a non-finite value", () => {
    const withNaN = [...bump]
    withNaN[9] = NaN
    expect(peak(withNaN)).toBe(-1)
  })
})

describe("classifyBlock", () => {
  it("computes each token alone: the same token anywhere in a block gets the same rows", () => {
    const L = [STEPS.map((s) => 2 + 0.2 * Math.log(s)), STEPS.map(() => 3), STEPS.map((_, c) => 4 + (c % 2 ? 0.4 : -0.4))]
    const tokens = [0, 1, 2, 1, 0, 2]
    const lp = STEPS.map((_, c) => Float32Array.from(tokens, (k) => -L[k][c]))
    const out = classifyBlock({ lp, tokens: tokens.length }, { starts: [0, 4], lnStep: LN, rules })
    const row = (k: number, i: number) => [out.cls[k * tokens.length + i], out.peak[k * tokens.length + i]]
    for (const k of [0, 1]) {
      expect(row(k, 3)).toEqual(row(k, 1))
      expect(row(k, 4)).toEqual(row(k, 0))
      expect(row(k, 5)).toEqual(row(k, 2))
    }
    expect([...out.cls.subarray(0, 3)].map((c) => CLASSES[c])).toEqual(["upward", "stagnated", "other"])
  })
})

describe("tallies", () => {
  it("group sums skip non-finite perplexities and count them out", () => {
    // 1 threshold, 3 tokens, 2 checkpoints; ref classes: stagnated, stagnated, upward
    const refCls = Uint8Array.of(0, 0, 1)
    const p = Float64Array.of(10, Infinity, 5, 20, 30, 6) // c-major
    const s = groupSums(refCls, p, 3, 1, 2)
    // [class][checkpoint]: stagnated → c0: 10 (one missing), c1: 50; upward → 5, 6
    expect([...s.sum.subarray(0, 2)]).toEqual([10, 50])
    expect([...s.missing.subarray(0, 2)]).toEqual([1, 0])
    expect([...s.sum.subarray(2, 4)]).toEqual([5, 6])
    const t = new ClassTallies([{ name: "m", steps: [1, 2] }], [0.5])
    t.addGroupSizes(refCls, 3)
    t.addGroupSums(0, s)
    const rows = t.groupRows("d", "m", [[7, 8]])
    expect(rows.filter((r) => r.class === "stagnated").map((r) => [r.step, r.group_ppl, r.n_tokens])).toEqual([[1, 10, 2], [2, 25, 2]])
    expect(rows.filter((r) => r.class === "downward").every((r) => r.group_ppl === null && r.n_tokens === 0)).toBe(true)
  })
})
