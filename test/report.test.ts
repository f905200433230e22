/**
 * The report's pure parts: options from the config, figure specs from fixture tables (all present,
 * some missing, odd ones), SVG rendering of a spec, id prefixing, escaping and text widths.
 * The page in a real browser is tested in report-browser.test.ts.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { Effect, Either, Option } from "effect"
import { describe, expect, it } from "vitest"
import { parseConfig } from "../pipeline/config.ts"
import { parseLambdaGroup, type ReportOptions, type ReportTables, sizeOrder, sortLambdaGroups, tableSources, thin } from "../stages/report/data.ts"
import { buildFigures, MAX_POINTS_PER_SERIES } from "../stages/report/figures.ts"
import { readParquetFile } from "../pipeline/store.ts"
import { readReportTables, reportOptions, reportSources, type SourceReader } from "../stages/report/index.ts"
import { SAMPLE_CHARS, SAMPLES_PER_PANEL, sampleTable } from "../stages/report/figures-sequences.ts"
import { figureCsv, PNG_SCRIPT } from "../stages/report/downloads.ts"
import { LIVE_SCRIPT } from "../stages/report/live.ts"
import { collectProvenance, gitCommit, PROVENANCE_DEPENDENCIES, provenanceHtml } from "../stages/report/provenance.ts"
import { spawnSync } from "node:child_process"
import { buildReportHtml, escapeHtml, MAX_CHART_WIDTH, prefixIds, renderSvg, runLink } from "../stages/report/render.ts"
import { CLASS_COLORS, LABEL_SEPARATION, PANEL_WIDTH, sizeRange, type Figure } from "../stages/report/spec.ts"
import { helveticaWidth } from "../stages/report/text-width.ts"
import { FIXTURE_MODELS, fixtureConfigYaml, fixtureMargin, fixtureTables, largeShape, makeTable, ODD_TASK, pplAt, writeFixtureRun } from "./fixtures/report-run.ts"
import { wilson } from "../stages/correlate/stats.ts"
import { R2Differences, TaskMetrics } from "../stages/correlate/contract.ts"
import { sizeSummary } from "../stages/report/summary.ts"

const configFrom = (yaml: string) => {
  const c = parseConfig("/tmp/report-test/run.yaml", yaml, { checkPaths: false })
  if (Either.isLeft(c)) throw new Error(c.left.message)
  return c.right
}
const options: ReportOptions = reportOptions(configFrom(fixtureConfigYaml("fx")))
const all = fixtureTables()

/** Every value of `key` anywhere inside a JSON-like value. */
const findAll = (v: unknown, key: string): unknown[] => {
  if (v === null || typeof v !== "object") return []
  if (Array.isArray(v)) return v.flatMap((x) => findAll(x, key))
  return Object.entries(v).flatMap(([k, x]) => [...(k === key ? [x] : []), ...findAll(x, key)])
}
/** The page's figures, in order (numbered 1, 2, … by position). */
const FIGURE_IDS = [
  "fig-validation-ppl", "fig-class-shares", "fig-group-trajectories", "fig-categories", "fig-transitions", "fig-downstream",
  "fig-task-accuracy", "fig-margins", "fig-correlations", "fig-agreement", "fig-generated", "fig-noise", "fig-mauve",
]
const byId = (figs: Figure[], id: string) => figs.find((f) => f.id === id)!

describe("report options", () => {
  it("defaults: second-smallest size, threshold 0.1, first dataset; sizes ordered by params", () => {
    expect(options.referenceModel).toBe("m")
    expect(options.referenceThreshold).toBe(0.1)
    expect(options.validDataset).toBe("brown")
    expect(options.models.map((m) => m.name)).toEqual(["s", "m", "l"])
  })

  it("follows the config: reference size, threshold, dataset; smallest threshold when 0.1 is not configured", () => {
    const base = fixtureConfigYaml("fx")
    const o = reportOptions(configFrom(`${base}analysis: { reference_model: l, reference_threshold: 0.3, valid_dataset: press }\n`))
    expect([o.referenceModel, o.referenceThreshold, o.validDataset]).toEqual(["l", 0.3, "press"])
    expect(reportOptions(configFrom(`${base}analysis: { thresholds: [0.4, 0.2] }\n`)).referenceThreshold).toBe(0.2)
    // One size: it is its own reference.
    const one = base.replace(/\n {2}- \{ name: m,.*\n {2}- \{ name: l,.*\n/, "\n")
    expect(reportOptions(configFrom(one)).referenceModel).toBe("s")
  })
})

describe("figures", () => {
  const figs = buildFigures(all, options)

  it("draws every figure from a complete run, in order, each with a caption and its Parquet sources", () => {
    expect(figs.map((f) => f.id)).toEqual(FIGURE_IDS)
    for (const f of figs) {
      expect(f.spec, f.id).toBeDefined()
      expect(f.caption.length, f.id).toBeGreaterThan(30)
      expect(f.caption, f.id).not.toContain("\n")
      expect(f.sources.length).toBeGreaterThan(0)
      for (const s of f.sources) expect(s).toMatch(/^(sequences\/(lambda=-?[\d.]+_-?[\d.]+\/)?)?[a-z0-9_]+\.parquet$/)
    }
    expect(figs.map((f) => f.title.match(/^(\d+)\./)?.[1])).toEqual(FIGURE_IDS.map((_, i) => String(i + 1)))
  })

  it("fig-generated: one panel per λ group, mean perplexity per size and checkpoint, x reversed on log scales, each group's files as sources", () => {
    const f = byId(figs, "fig-generated")
    expect(f.caption).toContain("q = max(λs·ps + λl·pl, 0)")
    expect(f.caption).toContain("Decoding: nucleus.")
    const x = (findAll(f.spec, "x") as Array<{ field?: string; scale?: { reverse?: boolean; type?: string } }>).find((e) => e.field === "valid_ppl")!
    expect(x.scale).toMatchObject({ type: "log", reverse: true })
    const y = (findAll(f.spec, "y") as Array<{ field?: string; scale?: { type?: string } }>).find((e) => e.field === "ppl")!
    expect(y.scale).toMatchObject({ type: "log" })
    const sort = (findAll(f.spec, "facet")[0] as { sort: string[] }).sort
    expect(sort).toEqual(["λ = (1, −1): small − large", "λ = (1, 0): small alone", "λ = (0, 1): large alone", "λ = (−1, 1): large − small"])
    const values = findAll(f.spec, "values")[0] as Array<{ lambda: string; size: string; step: number; ppl: number; valid_ppl: number }>
    expect(new Set(values.map((v) => v.size))).toEqual(new Set(["s (95k)", "m (290k)", "l (1.1M)"]))
    // The mean over the group's 5 sequences (factors 0.35 … 0.51, mean 0.43) at step 0, where the tilt is 0.
    const first = values.find((v) => v.lambda.startsWith("λ = (1, 0)") && v.size === "l (1.1M)" && v.step === 0)!
    expect(first.ppl / first.valid_ppl).toBeCloseTo(0.43, 10)
    // s@8 has no validation perplexity in any group: not drawn, said in a note.
    expect(values.some((v) => v.size === "s (95k)" && v.step === 8)).toBe(false)
    expect(f.notes).toEqual(["4 checkpoint(s) without a validation perplexity (checkpoints.parquet) are not drawn"])
    expect(f.sources.slice(0, 2)).toEqual(["sequences/lambda=1_-1/trajectories.parquet", "sequences/lambda=1_-1/generations.parquet"])
    expect(f.sources).toContain("sequences/lambda=-1_1/generations.parquet")
    expect(f.sources).toHaveLength(8)
    expect(f.table?.rows.map((r) => r[1])).toEqual(["5", "5", "5", "5"])
  })

  it("figure 2: shares per class against the threshold, with the documents' bootstrap intervals as bands", () => {
    const f = byId(figs, "fig-class-shares")
    expect(f.caption).toContain("Bands: 95% bootstrap intervals resampling the dataset's documents")
    const layers = findAll(f.spec, "layer")[0] as Array<{ mark: { type: string }; encoding: { y: { field: string }; y2?: { field: string } } }>
    expect(layers.map((l) => [l.mark.type, l.encoding.y.field, l.encoding.y2?.field])).toEqual([["area", "share_lo", "share_hi"], ["line", "share", undefined]])
    const values = findAll(f.spec, "values")[0] as Array<{ share: number; share_lo: number; share_hi: number }>
    // The fixture's intervals: share ± 0.02 within [0, 1].
    for (const v of values) {
      expect(v.share_lo).toBeCloseTo(Math.max(0, v.share - 0.02), 12)
      expect(v.share_hi).toBeCloseTo(Math.min(1, v.share + 0.02), 12)
    }
    // Without the interval columns (a run before classify v2): lines only.
    const old = all.class_summary!.select(["model", "dataset", "threshold", "class", "n_tokens", "share"])
    const plain = byId(buildFigures({ ...all, class_summary: old }, options), "fig-class-shares")
    expect(findAll(plain.spec, "layer")).toEqual([])
    expect(plain.caption).not.toContain("Bands")
  })

  it("fig-mauve: MAUVE per λ group and decoding, with the divergence curves and a table", () => {
    const f = byId(figs, "fig-mauve")
    expect(f.sources).toEqual(["sequences/mauve.parquet", "sequences/mauve_curves.parquet"])
    const dots = findAll(f.spec, "values")[0] as Array<{ lambda: string; decoding: string; mauve: number }>
    expect(dots).toHaveLength(8)
    expect(dots.find((d) => d.lambda.startsWith("λ = (0, 1)") && d.decoding === "nucleus")!.mauve).toBeCloseTo(0.7, 12)
    expect(f.table?.columns).toEqual(["λ group", "greedy", "nucleus"])
    expect(f.table?.rows).toEqual([
      ["λ = (1, −1): small − large", "0.450", "0.900"],
      ["λ = (1, 0): small alone", "0.400", "0.800"],
      ["λ = (0, 1): large alone", "0.350", "0.700"],
      ["λ = (−1, 1): large − small", "0.300", "0.600"],
    ])
    const curves = findAll(f.spec, "values")[1] as Array<{ setting: string; x: number; y: number }>
    expect(curves).toHaveLength(8 * 27)
    expect(f.notes[0]).toMatch(/^features: l@\d+; 100 human continuations; clusters: 10$/)
    const none = byId(buildFigures({}, options), "fig-mauve")
    expect(none.spec).toBeUndefined()
    expect(none.notes).toEqual(["sequences/mauve.parquet is missing (written by the sequences stage, which runs only when the config has a sequences section)"])
  })

  it("fig-generated: a table of example generations per λ group and decoding, prompt and text clipped, escaped on the page", async () => {
    const f = byId(figs, "fig-generated")
    expect(f.samples?.title).toBe(`Example generations (${SAMPLES_PER_PANEL} per λ group and decoding)`)
    const t = f.samples!.table
    expect(t.columns).toEqual(["λ group", "decoding", "sequence", "prompt", "generated text"])
    // The fixture: 5 prompts per group, text " <prompt lowercased> went to the <s,l> place i."; the 3 lowest ids, groups in the stage's order.
    expect(t.rows).toHaveLength(4 * SAMPLES_PER_PANEL)
    expect(t.rows[0]).toEqual(["λ = (1, −1): small − large", "nucleus", "0", "The old man", " the old man went to the <1,-1> place 0."])
    expect(t.rows.map((r) => r[2])).toEqual(["0", "1", "2", "0", "1", "2", "0", "1", "2", "0", "1", "2"])
    expect(t.rows[SAMPLES_PER_PANEL * 3 + 2]).toEqual(["λ = (−1, 1): large − small", "nucleus", "2", "She said that", " she said that went to the <-1,1> place 2."])
    // A long generation is clipped.
    const gen = all.sequence_generations!
    const long = gen.toArray().map((r) => ({ ...r.toJSON(), text: "x".repeat(SAMPLE_CHARS + 50) }))
    const longTable = makeTable({
      group: { type: "str", values: long.map((r) => r.group as string) },
      sequence_id: { type: "i32", values: long.map((r) => r.sequence_id as number) },
      prompt: { type: "str", values: long.map((r) => r.prompt as string) },
      text: { type: "str", values: long.map((r) => r.text as string) },
    })
    expect(sampleTable({ sequence_generations: longTable })!.rows[0]).toEqual(["λ = (1, −1): small − large", "", "0", "The old man", `${"x".repeat(SAMPLE_CHARS)}…`])
    const page = await buildReportHtml(all, options, new Set())
    expect(page.html).toContain("<h3>Example generations (3 per λ group and decoding)</h3>")
    expect(page.html).toContain("<td> the old man went to the &lt;1,-1&gt; place 0.</td>")
  })

  it("fig-generated with two decodings: one panel per λ group and decoding", () => {
    const t = all.sequence_trajectories!
    const rowsOf2 = t.toArray().map((r) => r.toJSON() as Record<string, unknown>)
    const both: Array<Record<string, unknown>> = [...rowsOf2.map((r) => ({ ...r, decoding: "greedy" })), ...rowsOf2.map((r) => ({ ...r, decoding: "nucleus", ppl: 2 * (r.ppl as number) }))]
    const two = arrow.tableFromArrays({
      group: both.map((r) => r.group as string),
      sequence_id: Int32Array.from(both.map((r) => r.sequence_id as number)),
      decoding: both.map((r) => r.decoding),
      model: both.map((r) => r.model as string),
      step: Int32Array.from(both.map((r) => r.step as number)),
      valid_ppl: both.map((r) => r.valid_ppl as number | null),
      ppl: Float64Array.from(both.map((r) => r.ppl as number)),
    })
    const f = byId(buildFigures({ ...all, sequence_trajectories: two }, options), "fig-generated")
    const sort = (findAll(f.spec, "facet")[0] as { sort: string[] }).sort
    expect(sort.slice(0, 2)).toEqual(["λ = (1, −1): small − large, greedy", "λ = (1, −1): small − large, nucleus"])
    expect(sort).toHaveLength(8)
    expect(f.table?.columns[0]).toBe("λ group, decoding")
    const values = findAll(f.spec, "values")[0] as Array<{ lambda: string; size: string; step: number; ppl: number }>
    const at = (d: string) => values.find((v) => v.lambda === `λ = (1, 0): small alone, ${d}` && v.size === "l (1.1M)" && v.step === 0)!.ppl
    expect(at("nucleus") / at("greedy")).toBeCloseTo(2, 10)
  })

  it("fig-noise: one panel per perturbation, in order, against validation perplexity; steps when checkpoints are missing", () => {
    const f = byId(figs, "fig-noise")
    const sorts = (findAll(f.spec, "facet") as Array<{ sort: string[] }>).map((x) => x.sort)
    expect(sorts).toEqual([["original windows", "10% of tokens substituted", "30% of tokens substituted"], ["words in order (re-encoded)", "words shuffled"]])
    expect(f.sources).toEqual(["sequences/noise.parquet", "checkpoints.parquet"])
    const x = (findAll(f.spec, "x") as Array<{ field?: string; title?: string; scale?: { reverse?: boolean; type?: string } }>).find((e) => e.field === "x")!
    expect(x.title).toBe("validation perplexity (reversed)")
    expect(x.scale).toMatchObject({ type: "log", reverse: true })
    expect(f.table?.rows).toHaveLength(5)
    const noCk = byId(buildFigures({ noise: all.noise }, options), "fig-noise")
    expect(noCk.spec).toBeDefined()
    expect(noCk.notes[0]).toBe("checkpoints.parquet is missing (written by the aggregate stage): perplexity is drawn against training steps instead")
    expect(noCk.caption).toContain("against training steps")
  })

  it("figure 1: log axes, sizes in order, flagged checkpoints ringed, step 0 left out with a note", () => {
    const f = byId(figs, "fig-validation-ppl")
    const scales = findAll(f.spec, "scale") as Array<{ type?: string }>
    expect(scales.filter((s) => s.type === "log").length).toBeGreaterThanOrEqual(6) // x and y of 3 panels (× 2 layers)
    const domain = (findAll(f.spec, "domain") as string[][])[0]
    expect(domain).toEqual(["s (95k)", "m (290k)", "l (1.1M)"])
    const values = (findAll(f.spec, "values")[0] as Array<{ flagged: boolean; size: string; step: number }>)
    // Ringed on every dataset's row.
    expect(values.filter((v) => v.flagged).map((v) => `${(v as unknown as { dataset: string }).dataset}:${v.size}@${v.step}`).sort()).toEqual(["brown:m (290k)@200", "brown:s (95k)@8", "press:m (290k)@200", "press:s (95k)@8"])
    expect(f.caption).toContain("Red rings")
    expect(f.notes.join(" ")).toContain("step 0")
    // Every dataset, a row each, the validation dataset first: final ppl of s 190 on brown, 190 · 1.3 = 247 on press.
    const rows = findAll(f.spec, "row") as Array<{ field: string; sort: string[] }>
    expect(rows).toHaveLength(3)
    for (const r of rows) expect(r).toMatchObject({ field: "dataset", sort: ["brown", "press"] })
    const final = (d: string) => (values as unknown as Array<{ dataset: string; size: string; step: number; ppl: number }>).find((v) => v.dataset === d && v.size === "s (95k)" && v.step === 800)!.ppl
    expect(final("brown")).toBeCloseTo(pplAt(FIXTURE_MODELS[0], 800, "brown"), 9)
    expect(final("press")).toBeCloseTo(pplAt(FIXTURE_MODELS[0], 800, "press"), 9)
    expect(values).toHaveLength(2 * 3 * 13)
    // Step 0 of each size (on both datasets) once in the note.
    expect(f.notes).toEqual(["3 checkpoint(s) at step 0 are not drawn on the log axes"])
    // The configured dataset's row first.
    const press = byId(buildFigures(all, { ...options, validDataset: "press" }), "fig-validation-ppl")
    expect((findAll(press.spec, "row")[0] as { sort: string[] }).sort).toEqual(["press", "brown"])
  })

  it("figure 3: the configured reference size and threshold, x reversed on a log scale", () => {
    const f = byId(figs, "fig-group-trajectories")
    expect(f.caption).toContain("tokens that m puts in each class at threshold 10%")
    const x = (findAll(f.spec, "x") as Array<{ field?: string; scale?: { reverse?: boolean; type?: string } }>).find((e) => e.field === "valid_ppl")!
    expect(x.scale).toMatchObject({ type: "log", reverse: true })
    const values = findAll(f.spec, "values")[0] as Array<{ class: string }>
    expect(new Set(values.map((v) => v.class))).toEqual(new Set(["stagnated", "upward", "downward"]))
  })

  it("figure 5: each size against the next larger one, and the smallest against the largest; rows sum to 1", () => {
    const f = byId(figs, "fig-transitions")
    const values = findAll(f.spec, "values")[0] as Array<{ pair: string; class_from: string; share: number }>
    expect([...new Set(values.map((v) => v.pair))]).toEqual(["s (95k) → m (290k)", "m (290k) → l (1.1M)", "s (95k) → l (1.1M)"])
    const sum = values.filter((v) => v.pair.startsWith("s (95k) → m") && v.class_from === "upward").reduce((a, v) => a + v.share, 0)
    expect(sum).toBeCloseTo(1, 12)
  })

  it("accuracy per task: a panel per task, a line per size with its Wilson band, the task's random baseline, no parent aggregates", () => {
    const f = byId(figs, "fig-task-accuracy")
    expect(f.title).toBe("7. Accuracy per task")
    expect(f.sources).toEqual(["task_metrics.parquet", "checkpoints.parquet"])
    expect(findAll(f.spec, "facet")[0]).toMatchObject({ field: "task", sort: ["arith", ODD_TASK] })
    expect((f.spec as { columns?: number }).columns).toBe(2)
    const values = findAll(f.spec, "values")[0] as Array<{ task: string; size: string; step: number; x: number; accuracy: number; acc_lo: number; acc_hi: number; baseline: number }>
    // Every (task, size, step) of the fixture: 2 tasks × 3 sizes × 13 steps.
    expect(values).toHaveLength(2 * 3 * 13)
    // The fixture's construction: accuracy = base + (1 − base)·0.8·skill, skill from the brown perplexity; base 0.25 (arith), 0.5 (ODD_TASK).
    for (const [task, base] of [["arith", 0.25], [ODD_TASK, 0.5]] as const) {
      const m = FIXTURE_MODELS[2]
      const ppl = pplAt(m, 400)
      const skill = (Math.log(2000) - Math.log(ppl)) / (Math.log(2000) - Math.log(20))
      const acc = base + (1 - base) * 0.8 * skill
      const v = values.find((d) => d.task === task && d.size === "l (1.1M)" && d.step === 400)!
      expect(v.x).toBeCloseTo(ppl, 9)
      expect(v.accuracy).toBeCloseTo(acc, 12)
      const [lo, hi] = wilson(Math.round(acc * 100), 100)
      expect([v.acc_lo, v.acc_hi]).toEqual([lo, hi])
      expect(values.filter((d) => d.task === task).every((d) => d.baseline === base)).toBe(true)
    }
    const layers = findAll(f.spec, "layer")[0] as Array<{ mark: { type: string } | string; encoding: { y: { field: string; aggregate?: string }; y2?: { field: string } } }>
    expect(layers.map((l) => [typeof l.mark === "string" ? l.mark : l.mark.type, l.encoding.y.field, l.encoding.y2?.field ?? l.encoding.y.aggregate])).toEqual([
      ["area", "acc_lo", "acc_hi"],
      ["line", "accuracy", undefined],
      ["rule", "baseline", "mean"],
    ])
    // A parent's aggregate rows get no panel; a note says so.
    const row = (task: string, aggregate: boolean) => ({
      model: "s", step: 10, task, parent: aggregate ? null : "p", aggregate, n_examples: 10, accuracy: 0.3, acc_lo: aggregate ? null : 0.1, acc_hi: aggregate ? null : 0.6, grade: 0.3,
      accuracy_norm: 0.3, acc_norm_lo: null, acc_norm_hi: null, random_baseline: 0.25, correct_ppl: 2, incorrect_ppl: 3,
    })
    const parent = byId(buildFigures({ checkpoints: all.checkpoints, task_metrics: TaskMetrics.fromRows([row("p.a", false), row("p", true)]) }, options), "fig-task-accuracy")
    expect((findAll(parent.spec, "facet")[0] as { sort: string[] }).sort).toEqual(["p.a"])
    expect(parent.notes).toEqual(["BIG-bench parent tasks (their subtasks' mean) have no panel: each subtask has its own"])
    // Without checkpoints: against steps, step 0 not drawn.
    const steps = byId(buildFigures({ task_metrics: all.task_metrics }, options), "fig-task-accuracy")
    expect(steps.notes).toEqual(["checkpoints.parquet is missing: accuracy is shown against steps"])
    expect((findAll(steps.spec, "values")[0] as Array<{ x: number; step: number }>).every((d) => d.x === d.step && d.step > 0)).toBe(true)
  })

  it("margins: a panel per task, a line per size with its interval as a band, 0 as a rule; steps without checkpoints", () => {
    const f = byId(figs, "fig-margins")
    expect(f.title).toBe("8. Margin of the correct options")
    expect(f.sources).toEqual(["task_margins.parquet", "checkpoints.parquet"])
    expect(findAll(f.spec, "facet")[0]).toMatchObject({ field: "task", sort: ["arith", ODD_TASK] })
    expect((f.spec as { columns?: number }).columns).toBe(2)
    const values = findAll(f.spec, "values")[0] as Array<{ task: string; size: string; step: number; x: number; margin: number; margin_lo: number; margin_hi: number }>
    expect(values).toHaveLength(2 * 3 * 13)
    // The fixture's construction: 0.05 + 0.5·skill on arith, half of it on ODD_TASK, ± 0.04.
    for (const m of FIXTURE_MODELS)
      for (const [task, k] of [["arith", 1], [ODD_TASK, 0.5]] as const) {
        const v = values.find((d) => d.task === task && d.size.startsWith(`${m.name} (`) && d.step === 200)!
        expect(v.x).toBeCloseTo(pplAt(m, 200), 9)
        expect(v.margin).toBeCloseTo(fixtureMargin(pplAt(m, 200)) * k, 12)
        expect(v.margin_hi - v.margin).toBeCloseTo(0.04, 12)
        expect(v.margin - v.margin_lo).toBeCloseTo(0.04, 12)
      }
    const layers = findAll(f.spec, "layer")[0] as Array<{ mark: { type: string }; encoding: { y: { field: string }; y2?: { field: string } }; data?: { values: unknown[] } }>
    expect(layers.map((l) => [l.mark.type, l.encoding.y.field, l.encoding.y2?.field])).toEqual([["area", "margin_lo", "margin_hi"], ["line", "margin", undefined], ["rule", "zero", undefined]])
    expect(layers[2].data?.values).toEqual([{ zero: 0 }])
    const steps = byId(buildFigures({ task_margins: all.task_margins }, options), "fig-margins")
    expect(steps.notes).toEqual(["checkpoints.parquet is missing: the margin is shown against steps"])
    expect((findAll(steps.spec, "values")[0] as Array<{ x: number; step: number }>).every((d) => d.x === d.step && d.step > 0)).toBe(true)
    expect(byId(buildFigures({}, options), "fig-margins").notes).toEqual(["task_margins.parquet is missing (written by the correlate stage)"])
  })

  it("classes in hues the sizes never take; figure 3 names its reference size; ρ of perplexity shown negated; panels at least PANEL_WIDTH wide (figure 1: three in a row, heatmaps: by cell)", () => {
    /** Hue in degrees of "#rrggbb"; undefined for a grey. */
    const hue = (c: string): number | undefined => {
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16) / 255)
      const [max, min] = [Math.max(r, g, b), Math.min(r, g, b)]
      if (max - min < 0.05) return undefined
      const h = max === r ? ((g - b) / (max - min)) % 6 : max === g ? (b - r) / (max - min) + 2 : (r - g) / (max - min) + 4
      return (h * 60 + 360) % 360
    }
    // viridis' hues: from yellow-green (~75°) through green and blue to purple (~290°).
    const sizeHues = sizeRange(9).map((c) => hue(c)!)
    const [lo, hi] = [Math.min(...sizeHues), Math.max(...sizeHues)]
    for (const c of CLASS_COLORS) {
      const h = hue(c)
      if (h !== undefined) expect(h < lo - 15 || h > hi + 15, `${c} (hue ${h.toFixed(0)}°) among the sizes' ${lo.toFixed(0)}°…${hi.toFixed(0)}°`).toBe(true)
    }
    expect(byId(figs, "fig-group-trajectories").title).toBe("3. Token classes of size m (290k) in every size (double descent)")
    const corr = findAll(byId(figs, "fig-correlations").spec, "values")[0] as Array<{ task: string; x_axis: string; spearman: number }>
    // The fixture's ρ: −0.97 for ln valid ppl, 0.9 for ln FLOPs.
    expect(corr.find((d) => d.task === "mean over tasks" && d.x_axis === "−ln valid ppl")!.spearman).toBeCloseTo(0.97, 12)
    expect(corr.find((d) => d.task === "mean over tasks" && d.x_axis === "ln FLOPs")!.spearman).toBeCloseTo(0.9, 12)
    expect(byId(figs, "fig-correlations").table!.rows[0][0]).toBe("ln valid ppl")
    expect(byId(figs, "fig-correlations").table!.rows[0][1]).toMatch(/^-0\.97\b/)
    for (const id of ["fig-class-shares", "fig-group-trajectories", "fig-categories", "fig-downstream", "fig-agreement", "fig-task-accuracy", "fig-margins", "fig-generated", "fig-noise", "fig-mauve"]) {
      const widths = findAll(byId(figs, id).spec, "width").filter((w) => typeof w === "number") as number[]
      expect(widths.length, id).toBeGreaterThan(0)
      expect(Math.min(...widths), id).toBeGreaterThanOrEqual(PANEL_WIDTH)
    }
  })

  it("fig-correlations: the mean over tasks first, the best pooled R² marked in the table", () => {
    const f = byId(figs, "fig-correlations")
    expect(f.table?.rows.map((r) => r[0])).toEqual(["ln valid ppl", "ln FLOPs", "ln tokens", "ln step"])
    expect([...(f.table?.strong ?? [])]).toEqual([0])
    expect(f.notes).toEqual(["ln valid ppl predicts mean accuracy better than ln tokens: R² difference 0.23 [0.13, 0.33] (95% bootstrap interval)."])
    // Where the interval of the difference with the runner-up covers 0, nothing is marked, and the note says so.
    const wide = all.r2_differences!.toArray().map((r) => ({ ...r.toJSON(), diff_lo: -0.05 }))
    const f2 = byId(buildFigures({ ...all, r2_differences: R2Differences.fromRows(wide as never) }, options), "fig-correlations")
    expect([...(f2.table?.strong ?? [])]).toEqual([])
    expect(f2.notes[0]).toMatch(/^No x axis predicts mean accuracy significantly better: .* covers 0\.$/)
    const sort = (findAll(f.spec, "y") as Array<{ field?: string; sort?: string[] }>).find((y) => y.field === "task")!.sort!
    expect(sort[0]).toBe("mean over tasks")
    expect(sort).toContain(ODD_TASK)
  })

  it("a BIG-bench parent's aggregate rows are not a task more in the mean accuracy (summary, figure 6)", () => {
    // Subtasks p.a and p.b (accuracy 0.2 and 0.4) and their parent's aggregate row (0.3), at one point.
    const row = (task: string, accuracy: number, parent: string | null, aggregate: boolean) => ({
      model: "s", step: 10, task, parent, aggregate, n_examples: 10, accuracy, acc_lo: aggregate ? null : 0, acc_hi: aggregate ? null : 1, grade: accuracy,
      accuracy_norm: accuracy, acc_norm_lo: aggregate ? null : 0, acc_norm_hi: aggregate ? null : 1, random_baseline: 0.25, correct_ppl: 2, incorrect_ppl: 3,
    })
    const tm = TaskMetrics.fromRows([row("p.a", 0.2, "p", false), row("p.b", 0.5, "p", false), row("p", 0.35, null, true), row("q", 0.8, null, false)])
    const s = sizeSummary({ task_metrics: tm }, options)
    expect(s.rows.find((r) => r[0] === "s")?.at(-1)).toBe("50.0%") // (0.2 + 0.5 + 0.8) / 3, not 46.3% with the aggregate
    const f = byId(buildFigures({ task_metrics: tm }, options), "fig-downstream")
    expect(findAll(f.spec, "values").flat().filter((v) => (v as { step?: number }).step === 10).map((v) => (v as { accuracy?: number }).accuracy)).toContain(0.5)
    expect(f.caption).toMatch(/^Mean accuracy over 3 tasks /)
  })

  it("leaves out figures whose tables are missing, with a note naming the file and the stage", () => {
    const some: ReportTables = { checkpoints: all.checkpoints, task_metrics: all.task_metrics }
    const figs2 = buildFigures(some, options)
    const drawn = figs2.filter((f) => f.spec).map((f) => f.id)
    expect(drawn).toEqual(["fig-validation-ppl", "fig-downstream", "fig-task-accuracy"])
    expect(byId(figs2, "fig-class-shares").notes).toEqual(["class_summary.parquet is missing (written by the classify stage)"])
    expect(byId(figs2, "fig-agreement").notes[0]).toContain("agreement.parquet is missing")
    // Without checkpoints, figure 6 falls back to steps only.
    const onlyTasks = buildFigures({ task_metrics: all.task_metrics }, options)
    const f6 = byId(onlyTasks, "fig-downstream")
    expect(f6.spec).toBeDefined()
    expect(f6.notes.join(" ")).toContain("against steps only")
    expect(buildFigures({}, options).every((f) => !f.spec && f.notes.length === 1)).toBe(true)
    // The normal case: no sequences section, no sequences tables.
    expect(byId(figs2, "fig-generated").notes).toEqual([
      "sequences/lambda=*/trajectories.parquet is missing (written by the sequences stage, which runs only when the config has a sequences section)",
    ])
    expect(byId(figs2, "fig-noise").notes).toEqual([
      "sequences/noise.parquet is missing (written by the sequences stage, which runs only when the config has a sequences section)",
    ])
  })

  it("a table lacking a column, an empty table, another dataset: notes, not errors", () => {
    const noPpl = makeTable({ model: { type: "str", values: ["s"] }, step: { type: "i32", values: [1] } })
    expect(byId(buildFigures({ checkpoints: noPpl }, options), "fig-validation-ppl").notes[0]).toMatch(/^checkpoints\.parquet lacks columns tokens_seen, flops, dataset, ppl$/)
    const empty = all.checkpoints.slice(0, 0)
    expect(byId(buildFigures({ checkpoints: empty }, options), "fig-validation-ppl").notes[0]).toContain("no rows")
    const other = byId(buildFigures(all, { ...options, validDataset: "wiki" }), "fig-class-shares")
    expect(other.spec).toBeDefined()
    expect(other.notes[0]).toBe('class_summary.parquet has no rows for dataset "wiki"; showing "brown"')
    const ref = byId(buildFigures(all, { ...options, referenceModel: "l", referenceThreshold: 0.5 }), "fig-group-trajectories")
    expect(ref.notes).toEqual(['no group trajectories for reference size "l"; showing "s"', "group_trajectories.parquet has no rows at threshold 0.5; showing 0.1"])
  })

  it("thins long series to a bounded number of points, keeping the ends and pinned rows", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => i)
    const t = thin(xs, 50, (x) => x === 333)
    expect(t.length).toBeLessThanOrEqual(51)
    expect(t[0]).toBe(0)
    expect(t[t.length - 1]).toBe(999)
    expect(t).toContain(333)
    expect(thin(xs.slice(0, 10), 50)).toHaveLength(10)
    // A suite with 1,000 checkpoints per size still draws at most MAX_POINTS_PER_SERIES per size.
    const big = makeTable({
      model: { type: "str", values: xs.map(() => "s") },
      step: { type: "i32", values: xs.map((x) => x + 1) },
      tokens_seen: { type: "f64", values: xs.map((x) => (x + 1) * 10) },
      flops: { type: "f64", values: xs.map((x) => (x + 1) * 1e6) },
      dataset: { type: "str", values: xs.map(() => "brown") },
      ppl: { type: "f64", values: xs.map((x) => 1000 / (x + 1)) },
    }) as arrow.Table
    const f = byId(buildFigures({ checkpoints: big }, options), "fig-validation-ppl")
    expect((findAll(f.spec, "values")[0] as unknown[]).length).toBeLessThanOrEqual(MAX_POINTS_PER_SERIES)
  })

  it("reads the sequences tables from every λ folder into one table, in the stage's order", () => {
    expect(parseLambdaGroup("lambda=1_-1")).toEqual([1, -1])
    expect(parseLambdaGroup("lambda=0.5_0")).toEqual([0.5, 0])
    expect(parseLambdaGroup("noise.parquet")).toBeUndefined()
    expect(sortLambdaGroups(["lambda=-1_1", "lambda=0_1", "x", "lambda=1_0", "lambda=1_-1"])).toEqual(["lambda=1_-1", "lambda=1_0", "lambda=0_1", "lambda=-1_1"])
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "report-read-"))
    try {
      writeFixtureRun(dir, ["sequence_trajectories", "sequence_generations", "noise"])
      // A λ folder the config does not plan (left by an earlier config) is not read.
      fs.mkdirSync(path.join(dir, "sequences", "lambda=2_2"))
      fs.copyFileSync(path.join(dir, "sequences/lambda=1_0/trajectories.parquet"), path.join(dir, "sequences/lambda=2_2/trajectories.parquet"))
      const fromDisk: SourceReader = (src) => {
        const file = path.join(dir, src.file.path)
        return Effect.sync(() => (fs.existsSync(file) ? Option.some(readParquetFile(file)) : Option.none()))
      }
      const { tables, problems } = Effect.runSync(readReportTables(reportSources(configFrom(fixtureConfigYaml("fx"))), fromDisk))
      expect(problems).toEqual([])
      expect(Object.keys(tables).sort()).toEqual(["noise", "sequence_generations", "sequence_trajectories"])
      expect(tables.sequence_trajectories!.numRows).toBe(all.sequence_trajectories!.numRows)
      expect(tableSources(tables, "sequence_trajectories").map((t) => t.file)).toEqual([
        "sequences/lambda=1_-1/trajectories.parquet",
        "sequences/lambda=1_0/trajectories.parquet",
        "sequences/lambda=0_1/trajectories.parquet",
        "sequences/lambda=-1_1/trajectories.parquet",
      ])
      const lambdas = tables.sequence_trajectories!.getChild("lambda_l")!
      expect(lambdas.get(0)).toBe(-1)
      expect(tableSources(tables, "noise")).toEqual([{ file: "sequences/noise.parquet", rows: all.noise!.numRows }])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("orders sizes by the config's params, then sizes only the tables know", () => {
    expect(sizeOrder(options, ["l", "zz", "s"]).map((s) => s.label)).toEqual(["s (95k)", "l (1.1M)", "zz"])
  })
})

describe("rendering", () => {
  it("renders a figure to SVG with axes and no Vega warnings", async () => {
    const f = buildFigures(all, options)[0]
    const r = await renderSvg(f.spec!, f.id)
    expect(r.warnings).toEqual([])
    expect(r.svg.startsWith("<svg")).toBe(true)
    expect(r.svg).toContain("role-axis")
    expect(r.svg).toContain("training step")
    expect(r.svg).toContain(">press<")
  })

  it("builds the page: every figure drawn, no warnings, text escaped, a few hundred KB", async () => {
    const r = await buildReportHtml(all, options, new Set(["checkpoints.parquet", "correlations.parquet"]))
    expect(r.warnings).toEqual([])
    expect(r.figures.filter((f) => f.svg)).toHaveLength(FIGURE_IDS.length)
    expect(r.html).not.toContain("<hard>")
    expect(r.html).toContain("q&amp;a &lt;hard&gt;")
    // Two scripts that run: the PNG links (downloads.ts) and the live figures (live.ts); the other
    // script elements are data the browser does not run: the packed runtime and one spec per figure.
    const scripts = [...r.html.matchAll(/<script([^>]*)>/gi)].map((m) => m[1])
    expect(scripts.filter((a) => a === "")).toHaveLength(2)
    expect(r.html).toContain(`<script>${PNG_SCRIPT}</script>`)
    expect(r.html).toContain(`<script>${LIVE_SCRIPT}</script>`)
    expect(scripts.filter((a) => a.includes('class="vega-spec"'))).toHaveLength(FIGURE_IDS.length)
    expect(scripts.filter((a) => a === ' type="application/gzip+base64" id="vega-runtime"')).toHaveLength(1)
    for (const a of scripts.filter((x) => x !== "")) expect(a).toMatch(/^ type="application\/gzip\+base64"/)
    expect(r.html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/)/) // no external resources (SVG namespaces aside)
    expect(r.html).toContain('<a href="../checkpoints.parquet">')
    expect(r.html).toContain("class_summary.parquet (missing)") // not linked when it does not exist
    expect(r.html).toContain("<code>analysis.exclude_flagged</code> is off")
    expect(r.html.length).toBeLessThan(3_000_000)
    const ids = [...r.html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1])
    expect(new Set(ids).size).toBe(ids.length)
  })

  it("a suite-sized run (8 sizes × 154 checkpoints, 74 tasks) still gives a page of a few MB at most (under 4 MB)", async () => {
    const shape = largeShape()
    const big = fixtureTables(shape)
    const o = reportOptions(configFrom(fixtureConfigYaml("big", shape)))
    const t0 = performance.now()
    const r = await buildReportHtml(big, o, new Set())
    const seconds = (performance.now() - t0) / 1000
    console.log(`suite-sized report: ${(r.html.length / 1024).toFixed(0)} KB in ${seconds.toFixed(1)} s`)
    expect(r.warnings).toEqual([])
    expect(r.figures.filter((f) => f.svg)).toHaveLength(FIGURE_IDS.length)
    // Measured at 2.93 MB: the static SVGs 2.03 MB (the two per-task figures, a panel per task, about
    // 0.5 MB each: figures-tasks.ts TASK_FIGURE_POINTS), the packed live specs 0.63 MB, the packed
    // Vega runtime 0.24 MB (live.ts).
    expect(r.html.length).toBeLessThan(4_000_000)
  })

  it("no two labels of an axis overlap or touch (at least LABEL_SEPARATION − 1 px apart), no text under 12 px, no chart wider than the page, in every figure", async () => {
    const figs = buildFigures(all, options)
    let axes = 0
    for (const f of figs) {
      const { svg } = await renderSvg(f.spec!, f.id)
      const sizes = [...svg.matchAll(/font-size="([\d.]+)px"/g)].map((m) => Number(m[1]))
      expect(Math.min(...sizes), f.id).toBeGreaterThanOrEqual(12)
      // Not scaled down on the page (which would shrink its text).
      expect(Number(/width="(\d+(\.\d+)?)"/.exec(svg)![1]), f.id).toBeLessThanOrEqual(MAX_CHART_WIDTH)
      for (const group of svg.matchAll(/<g class="mark-text role-axis-label"[^>]*>(.*?)<\/g>/g)) {
        const labels = [...group[1].matchAll(/<text([^>]*)>([^<]*)<\/text>/g)]
          .map(([, attrs, text]) => {
            const get = (a: string) => new RegExp(`${a}="([^"]*)"`).exec(attrs)?.[1]
            const [x, y] = /translate\(([-\d.]+),([-\d.]+)\)/.exec(get("transform") ?? "")!.slice(1).map(Number)
            const w = helveticaWidth(text.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">"), Number(get("font-size")?.replace("px", "")))
            const anchor = get("text-anchor") ?? "start"
            const lo = anchor === "middle" ? x - w / 2 : anchor === "end" ? x - w : x
            return { text, y, lo, hi: lo + w, shown: get("opacity") !== "0", rotated: (get("transform") ?? "").includes("rotate") }
          })
          .filter((l) => l.shown && !l.rotated)
        // A horizontal axis: its labels share one y.
        if (labels.length < 2 || new Set(labels.map((l) => l.y)).size > 1) continue
        axes++
        labels.sort((a, b) => a.lo - b.lo)
        for (let i = 1; i < labels.length; i++) {
          const gap = labels[i].lo - labels[i - 1].hi
          expect(gap, `${f.id}: "${labels[i - 1].text}" and "${labels[i].text}"`).toBeGreaterThanOrEqual(LABEL_SEPARATION - 1)
        }
      }
    }
    expect(axes).toBeGreaterThan(20)
  })

  it("each drawn figure gets its SVG and the CSV of exactly the data it draws, linked from the page", async () => {
    const r = await buildReportHtml(all, options, new Set())
    const drawn = r.figures.filter((f) => f.svg)
    expect(r.files.map((f) => f.path)).toEqual(drawn.flatMap((f) => [`report/figures/${f.id}.svg`, `report/data/${f.id}.csv`]))
    for (const f of drawn) {
      expect(r.files.find((x) => x.path === `report/figures/${f.id}.svg`)!.data).toBe(f.svg)
      expect(r.html).toContain(`<p class="downloads" data-figure="${f.id}">Download: <a class="svg" href="figures/${f.id}.svg" download>SVG</a> · <a class="csv" href="data/${f.id}.csv" download>CSV</a>`)
    }
    // Figure 7's CSV: one line per point drawn (2 tasks × 3 sizes × 13 steps), the values of task_metrics.
    const csv = r.files.find((x) => x.path === "report/data/fig-task-accuracy.csv")!.data
    const [head, ...lines] = csv.trimEnd().split("\n")
    expect(head).toBe("task,size,step,x,accuracy,acc_lo,acc_hi,baseline")
    expect(lines).toHaveLength(2 * 3 * 13)
    const tm = all.task_metrics!.toArray().map((x) => x.toJSON() as { model: string; step: number; task: string; accuracy: number; acc_lo: number })
    const want = tm.find((x) => x.model === "l" && x.step === 400 && x.task === ODD_TASK)!
    const line = lines.find((l) => l.startsWith(`${ODD_TASK},l (1.1M),400,`))!.split(",")
    expect(Number(line[4])).toBe(want.accuracy)
    expect(Number(line[5])).toBe(want.acc_lo)
    expect(Number(line[3])).toBeCloseTo(pplAt(FIXTURE_MODELS[2], 400), 9)
    // Several data sets (the margins and their 0 rule): numbered in a first column; quotes and commas escaped; missing values empty.
    const margins = r.files.find((x) => x.path === "report/data/fig-margins.csv")!.data.trimEnd().split("\n")
    expect(margins[0]).toBe("data,task,size,step,x,margin,margin_lo,margin_hi,zero")
    expect(margins.at(-1)).toBe("2,,,,,,,,0")
    expect(figureCsv({ data: { values: [{ a: 'say "hi", bye', b: null }, { a: 1, b: 2.5 }] } })).toBe('a,b\n"say ""hi"", bye",\n1,2.5\n')
  })

  it("provenance: tool and dependency versions from their package.json, the commit read from .git (worktree, packed refs), the machine; escaped on the page", () => {
    const root = path.resolve(import.meta.dirname, "..")
    const p = collectProvenance({ run: "x<y>" }, [{ stage: "score", units: 3, seconds: 75 }], root, new Date("2026-01-02T03:04:05Z"))
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { name: string; version: string }
    expect(p.tool).toEqual({ name: pkg.name, version: pkg.version })
    expect(p.dependencies.map((d) => d.name)).toEqual([...PROVENANCE_DEPENDENCIES])
    for (const d of p.dependencies) expect(d.version).toBe((JSON.parse(fs.readFileSync(path.join(root, "node_modules", d.name, "package.json"), "utf8")) as { version: string }).version)
    const git = spawnSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" })
    if (git.status === 0) expect(p.commit).toBe(git.stdout.trim())
    expect(p.date).toBe("2026-01-02T03:04:05.000Z")
    expect(p.machine.cpus).toBe(os.cpus().length)
    // A repository whose branch is only in packed-refs; a worktree's .git file pointing at its git folder; no .git at all.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "prov-"))
    const sha = "0123456789abcdef0123456789abcdef01234567"
    fs.mkdirSync(path.join(dir, "main/.git/worktrees/w"), { recursive: true })
    fs.writeFileSync(path.join(dir, "main/.git/HEAD"), "ref: refs/heads/main\n")
    fs.writeFileSync(path.join(dir, "main/.git/packed-refs"), `# pack-refs with: peeled\n${sha} refs/heads/main\n`)
    expect(gitCommit(path.join(dir, "main"))).toBe(sha)
    fs.mkdirSync(path.join(dir, "w"))
    fs.writeFileSync(path.join(dir, "w/.git"), `gitdir: ${path.join(dir, "main/.git/worktrees/w")}\n`)
    fs.writeFileSync(path.join(dir, "main/.git/worktrees/w/HEAD"), "ref: refs/heads/main\n")
    fs.writeFileSync(path.join(dir, "main/.git/worktrees/w/commondir"), "../..\n")
    expect(gitCommit(path.join(dir, "w"))).toBe(sha)
    expect(gitCommit(dir)).toBeUndefined()
    const html = provenanceHtml(p)
    expect(html).toContain(`<tr><th>tool</th><td>${pkg.name} ${pkg.version}</td></tr>`)
    expect(html).toContain("<tr><td>score</td><td>3</td><td>1.3 min</td></tr>")
    expect(html).toContain("<details><summary>Configuration (resolved)</summary><pre>{\n  &quot;run&quot;: &quot;x&lt;y&gt;&quot;\n}</pre></details>")
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("prefixes SVG ids and their references", () => {
    const svg = '<svg><clipPath id="clip1"><rect/></clipPath><g clip-path="url(#clip1)" fill="url(#other)"></g><use href="#clip1"/></svg>'
    expect(prefixIds(svg, "f")).toBe('<svg><clipPath id="f-clip1"><rect/></clipPath><g clip-path="url(#f-clip1)" fill="url(#other)"></g><use href="#f-clip1"/></svg>')
  })

  it("escapes text and links files relative to report/", () => {
    expect(escapeHtml(`a<b>&"c'`)).toBe("a&lt;b&gt;&amp;&quot;c&#39;")
    expect(runLink("checkpoints.parquet")).toBe("../checkpoints.parquet")
    expect(runLink("sequences/noise.parquet")).toBe("../sequences/noise.parquet")
  })

  it("measures Helvetica text from its glyph widths (the browser test compares with a real canvas)", () => {
    // v a l i d a t i o n = 4224, space 278, p e r p l e x i t y = 4279 → 8781/1000 em × 12 px
    expect(helveticaWidth("validation perplexity", 12)).toBeCloseTo(105.372, 9)
    expect(helveticaWidth("", 12)).toBe(0)
  })
})
