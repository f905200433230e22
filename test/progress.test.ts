/** The progress line's pure parts (pipeline/progress-eta.ts) and the Reporter's TTY and plain output. */
import { describe, expect, it } from "vitest"
import { fmtSeconds, Reporter, type Sink } from "../pipeline/progress.ts"
import { bar, runEta, runEtaText, stageBar, stageEta } from "../pipeline/progress-eta.ts"

describe("progress ETA", () => {
  it("bar fills its cells by fraction, clamped", () => {
    expect(bar(0.5, 8)).toBe("████░░░░")
    expect(bar(0, 4)).toBe("░░░░")
    expect(bar(1.7, 4)).toBe("████")
    expect(bar(NaN, 4)).toBe("░░░░")
  })

  it("a stage's ETA is its remaining weight over its measured rate", () => {
    // 30 of 120 weight done in 10 s: 3/s, 90 left → 30 s.
    expect(stageEta({ total: 4, done: 1, totalWeight: 120, doneWeight: 30, elapsed: 10 })).toBe(30)
    expect(stageEta({ total: 4, done: 0, totalWeight: 120, doneWeight: 0, elapsed: 5 })).toBe(Infinity)
    expect(stageEta({ total: 4, done: 0, totalWeight: 120, doneWeight: 0 })).toBe(Infinity)
    expect(stageEta({ total: 4, done: 4, totalWeight: 120, doneWeight: 120, elapsed: 40 })).toBe(0)
  })

  it("the run's ETA adds the stages' and is a lower bound while a stage with work left is unmeasured", () => {
    const measured = { total: 4, done: 1, totalWeight: 120, doneWeight: 30, elapsed: 10 }
    const later = { total: 2, done: 0, totalWeight: 2, doneWeight: 0 }
    expect(runEta([measured])).toEqual({ seconds: 30, lowerBound: false })
    expect(runEta([measured, later])).toEqual({ seconds: 30, lowerBound: true })
    expect(runEtaText([measured, later], fmtSeconds)).toBe(" · run ETA ≥ 30s")
    expect(runEtaText([later], fmtSeconds)).toBe("")
  })

  it("a stage's bar: units done / total, the rate, its ETA", () => {
    expect(stageBar("score", { total: 4, done: 1, totalWeight: 120, doneWeight: 60, elapsed: 10 }, "3.4k tokens/s", fmtSeconds, 8)).toBe(
      "score ████░░░░ 1/4 · 3.4k tokens/s · ETA 10s",
    )
    expect(stageBar("report", { total: 1, done: 0, totalWeight: 1, doneWeight: 0 }, "", fmtSeconds, 4)).toBe("report ░░░░ 0/1 · ETA ?")
  })
})

describe("Reporter", () => {
  const sink = (isTTY: boolean) => {
    const out: string[] = []
    const s: Sink = { isTTY, write: (x) => void out.push(x) }
    return { s, out }
  }

  it("on a TTY: a bar per stage in flight with the run's ETA; each finished unit still gets its line", () => {
    const { s, out } = sink(true)
    const r = new Reporter(s, 60_000)
    r.beginStage("score", 3, 30)
    r.beginStage("report", 1, 1)
    const a = r.beginUnit("score", "model=m/step=1", 10)
    a.progress.start(100, "tokens")
    a.progress.advance(50)
    a.end(true, 1.5)
    const b = r.beginUnit("score", "model=m/step=2", 10)
    const drawn = out.filter((x) => x.startsWith("\r\x1b[2K") && x.length > 5).at(-1)!
    expect(drawn).toMatch(/^\r\x1b\[2Kscore █{4}░{8} 1\/3 · ETA [^·]+ · run ETA ≥ /)
    expect(out).toContain("score [1/3] model=m/step=1 done in 1.5s, 33 tokens/s\n")
    b.end(false, 0.5, "boom")
    r.clear()
  })

  it("not on a TTY: the plain lines, as before", () => {
    const { s, out } = sink(false)
    const r = new Reporter(s, 60_000)
    r.beginStage("score", 2, 20)
    const a = r.beginUnit("score", "u1", 10)
    a.end(true, 2)
    expect(out).toEqual(["score [1/2] u1 done in 2.0s\n"])
  })
})
