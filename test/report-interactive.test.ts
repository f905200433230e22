/**
 * interactive.ts on every figure of the fixture run: what it adds (one legend selection, a zoom per
 * quantitative x–y view, tooltips on row marks) and that the plain spec is left as it was.
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { parseConfig } from "../pipeline/config.ts"
import { buildFigures } from "../stages/report/figures.ts"
import { reportOptions } from "../stages/report/index.ts"
import { interactiveSpec, paramNames, SIZE_PARAM } from "../stages/report/interactive.ts"
import { fixtureConfigYaml, fixtureTables } from "./fixtures/report-run.ts"

const c = parseConfig("/tmp/fx.yaml", fixtureConfigYaml("fx"), { checkPaths: false })
if (Either.isLeft(c)) throw new Error(c.left.message)
const figures = buildFigures(fixtureTables(), reportOptions(c.right))

describe("interactiveSpec", () => {
  it("adds one size legend selection where sizes are coloured, zoom only on quantitative x–y views, and leaves the input alone", () => {
    for (const f of figures) {
      const before = JSON.stringify(f.spec)
      const s = interactiveSpec(f.spec!)
      expect(JSON.stringify(f.spec), f.id).toBe(before)
      const names = paramNames(s)
      const colouredBySize = before.includes('"title":"size"')
      expect(names.filter((n) => n === SIZE_PARAM).length, f.id).toBe(colouredBySize ? 1 : 0)
      if (["fig-categories", "fig-transitions", "fig-correlations"].includes(f.id)) expect(names.filter((n) => n.startsWith("zoom_")), f.id).toEqual([])
    }
    const fig1 = interactiveSpec(figures.find((f) => f.id === "fig-validation-ppl")!.spec!)
    // One zoom per panel of figure 1 (steps, tokens, FLOPs), none on the flagged rings layered over each.
    expect(paramNames(fig1)).toEqual([SIZE_PARAM, "zoom_1", "zoom_2", "zoom_3"])
    // Each line's dots carry the tooltip (the fixture's lines are short enough to be dotted already).
    const lines = [...JSON.stringify(fig1).matchAll(/"type":"line","point":(\{[^}]*\}+)/g)].map((m) => m[1])
    expect(lines).toHaveLength(3)
    for (const p of lines) expect(p).toContain('"tooltip":{"content":"data"}')
  })
})
