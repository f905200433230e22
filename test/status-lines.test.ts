/** `trajectories status`'s lines (pipeline/status-lines.ts): the per-stage summary and `--units`. */
import { describe, expect, it } from "vitest"
import type { UnitStatus } from "../pipeline/runner.ts"
import { stageLine, statusLines } from "../pipeline/status-lines.ts"

const u = (stage: string, id: string, state: UnitStatus["state"], detail?: string): UnitStatus => ({ stage, id, state, ...(detail ? { detail } : {}) })
const units: UnitStatus[] = [
  u("tokenize", "dataset=a", "done"),
  u("tokenize", "dataset=b", "done"),
  u("score", "model=m/step=1", "done"),
  u("score", "model=m/step=2", "failed", "cannot open step-2.onnx\n  at somewhere"),
  u("score", "model=m/step=3", "stale", "key changed: file step-3.onnx (size)"),
  u("score", "model=m/step=4", "pending"),
  u("report", "all", "pending"),
]

describe("status lines", () => {
  it("by default: one line per stage with its counts, the failed units with their first line, and what is left", () => {
    expect(statusLines(units)).toEqual([
      "tokenize (2 units: 2 done)",
      "score (4 units: 1 done, 1 failed, 1 stale, 1 pending)",
      "  failed  model=m/step=2: cannot open step-2.onnx",
      "report (1 units: 1 pending)",
      "1 failed, 1 stale, 2 pending: `trajectories run` runs them; `status --units` lists every unit (a stale unit with what changed)",
    ])
  })

  it("--units: every unit with its state and detail", () => {
    const lines = statusLines(units, { units: true })
    expect(lines).toContain("  done    dataset=a")
    expect(lines).toContain("  stale   model=m/step=3  — key changed: file step-3.onnx (size)")
    expect(lines).toContain("  pending all")
    expect(lines.at(-1)).toBe("1 failed, 1 stale, 2 pending: `trajectories run` runs them")
  })

  it("a finished run ends with its stage lines; many failures are capped with a pointer to --units", () => {
    expect(statusLines(units.slice(0, 2))).toEqual(["tokenize (2 units: 2 done)"])
    const many = Array.from({ length: 30 }, (_, i) => u("score", `step=${i}`, "failed", `boom ${i}`))
    const lines = statusLines(many, { maxFailed: 5 })
    expect(lines.filter((l) => l.startsWith("  failed  "))).toHaveLength(5)
    expect(lines).toContain("  … and 25 more failed (status --units lists them)")
    expect(lines.at(-1)).toBe("30 failed: `trajectories run` runs them; `status --units` lists every unit (a stale unit with what changed)")
    expect(stageLine("x", [u("x", "a", "pending")])).toBe("x (1 units: 1 pending)")
  })
})
