/**
 * The report stage: one whole-run unit (`report`) that reads the run's summary tables — whichever
 * its upstream units wrote — and writes `report/index.html`: the paper's figures rendered to SVG
 * (render.ts), each with a caption and a link to its Parquet file, and a note for each figure
 * whose tables the run did not produce; next to it, each drawn figure's SVG (`report/figures/<id>.svg`)
 * and the CSV of the data it draws (`report/data/<id>.csv`), linked from the page (downloads.ts).
 *
 * Its stage is `softAfter`: every unit of the stages it reads is a soft input (its key enters the
 * report's key and its re-running re-runs the report), but a failed or missing one never blocks
 * it (a figure without its table is left out, not an error). Which unit writes which table is in
 * the writers' contracts (`reportSources`); the report reads them through `ctx.input`.
 */
import type * as arrow from "apache-arrow"
import { Effect, Option } from "effect"
import { modelsBySize, type Config } from "../../pipeline/config.ts"
import { firstLine } from "../../pipeline/errors.ts"
import { unitName } from "../../pipeline/manifest.ts"
import { defineStage, UnitError, type TableFile, type UnitContext, type UnitPlan, type UnitRef } from "../../pipeline/stage.ts"
import { AGGREGATE, aggregateUnit, checkpointsFile } from "../aggregate/contract.ts"
import { CHECKS, checksFile, checksUnit } from "../checks/contract.ts"
import { CLASSIFY, classCategoriesFile, classifyUnit, classSummaryFile, classTransitionsFile, groupTrajectoriesFile } from "../classify/contract.ts"
import { agreementFile, CORRELATE, correlateUnit, correlationsFile, r2DifferencesFile, taskMarginsFile, taskMetricsFile } from "../correlate/contract.ts"
import { DOWNSTREAM } from "../downstream/contract.ts"
import { generationsFile, lambdaGroups, lambdaId, mauveCurvesFile, mauveFile, mauveUnit, noiseFile, noiseUnit, SEQUENCES, trajectoriesFile } from "../sequences/contract.ts"
import { groupedTable, tableFiles, tableSources, type ReportOptions, type ReportTables, type TableName } from "./data.ts"
import { REPORT, REPORT_PATH, reportUnit } from "./contract.ts"
import { collectProvenance, provenanceHtml } from "./provenance.ts"
import { buildReportHtml } from "./render.ts"

export { REPORT, REPORT_PATH, reportUnit } from "./contract.ts"

/** The report's choices from the resolved config. */
export const reportOptions = (config: Config): ReportOptions => ({
  run: config.run,
  models: modelsBySize(config).map((m) => ({ name: m.name, params: m.params })),
  validDataset: config.analysis.valid_dataset,
  referenceModel: config.analysis.reference_model,
  referenceThreshold: config.analysis.reference_threshold,
  excludeFlagged: config.analysis.exclude_flagged,
})

/** One file the report may read: the unit that writes it, and for a λ table its group folder. */
export interface ReportSource {
  readonly ref: UnitRef
  readonly file: TableFile
  readonly group?: string
}

/** Where every table of the report comes from, for this config (λ groups in the stage's order). */
export const reportSources = (config: Config): Record<TableName, ReadonlyArray<ReportSource>> => {
  const groups = lambdaGroups(config)
  return {
    checkpoints: [{ ref: aggregateUnit, file: checkpointsFile }],
    class_summary: [{ ref: classifyUnit, file: classSummaryFile }],
    class_transitions: [{ ref: classifyUnit, file: classTransitionsFile }],
    class_categories: [{ ref: classifyUnit, file: classCategoriesFile }],
    group_trajectories: [{ ref: classifyUnit, file: groupTrajectoriesFile }],
    task_metrics: [{ ref: correlateUnit, file: taskMetricsFile }],
    task_margins: [{ ref: correlateUnit, file: taskMarginsFile }],
    correlations: [{ ref: correlateUnit, file: correlationsFile }],
    r2_differences: [{ ref: correlateUnit, file: r2DifferencesFile }],
    agreement: [{ ref: correlateUnit, file: agreementFile }],
    checkpoint_checks: [{ ref: checksUnit, file: checksFile }],
    sequence_generations: groups.map((g) => ({ ref: g.ref, file: generationsFile(g.s, g.l), group: lambdaId(g.s, g.l) })),
    sequence_trajectories: groups.map((g) => ({ ref: g.ref, file: trajectoriesFile(g.s, g.l), group: lambdaId(g.s, g.l) })),
    noise: [{ ref: noiseUnit, file: noiseFile }],
    mauve: [{ ref: mauveUnit, file: mauveFile }],
    mauve_curves: [{ ref: mauveUnit, file: mauveCurvesFile }],
  }
}

/** Read one source: None when its unit did not write it (missing, failed, not in this run); a failure says why it cannot be read. */
export type SourceReader = (source: ReportSource) => Effect.Effect<Option.Option<arrow.Table>, string>

/**
 * Read every table of `sources` that exists; a grouped table (one file per λ folder) is read from
 * every folder into one table. A file that cannot be read is left out like a missing one, and
 * named in `problems`.
 */
export const readReportTables = (
  sources: Record<TableName, ReadonlyArray<ReportSource>>,
  read: SourceReader,
): Effect.Effect<{ tables: ReportTables; problems: string[] }> =>
  Effect.gen(function* () {
    const tables: { [K in TableName]?: arrow.Table } = {}
    const problems: string[] = []
    const cannot = (file: string, why: string) => problems.push(`report: cannot read ${file} (${why}); its figures are left out`)
    for (const [name, list] of Object.entries(sources) as Array<[TableName, ReadonlyArray<ReportSource>]>) {
      const parts: Array<{ group: string; table: arrow.Table }> = []
      for (const src of list) {
        const got = yield* Effect.either(read(src))
        if (got._tag === "Left") cannot(src.file.path, got.left)
        else if (Option.isSome(got.right)) parts.push({ group: src.group ?? "", table: got.right.value })
      }
      if (list.some((s) => s.group !== undefined)) {
        try {
          const t = groupedTable(parts)
          if (t) tables[name] = t
        } catch (e) {
          cannot(tableFiles[name], firstLine(e))
        }
      } else if (parts.length) tables[name] = parts[0].table
    }
    return { tables, problems }
  })

/** Sources read through the unit's inputs: those its key covers, as their units recorded them. */
const unitReader = (ctx: UnitContext): SourceReader => {
  const declared = new Set(ctx.inputs.map((r) => unitName(r.stage, r.id)))
  return (src) => {
    if (!declared.has(unitName(src.ref.stage, src.ref.id))) return Effect.succeed(Option.none())
    const input = ctx.input(src.ref)
    if (!input.files.includes(src.file.path)) return Effect.succeed(Option.none())
    return input.read(src.file).pipe(
      Effect.map(Option.some),
      Effect.mapError((e) => e.message),
    )
  }
}

/**
 * Units and recorded wall time of each stage the report reads, in the order of the report's inputs
 * (units never run, or not in the run, are left out).
 */
export const stageTimes = (ctx: Pick<UnitContext, "inputs" | "input">): Array<{ stage: string; units: number; seconds: number }> => {
  const out: Array<{ stage: string; units: number; seconds: number }> = []
  for (const ref of ctx.inputs) {
    const input = ctx.input(ref)
    if (input.status !== "done" || input.seconds === undefined) continue
    const s = out.find((x) => x.stage === ref.stage) ?? (out.push({ stage: ref.stage, units: 0, seconds: 0 }), out[out.length - 1])
    s.units++
    s.seconds += input.seconds
  }
  return out
}

const run = Effect.fn("stage.report")(function* (_unit: UnitPlan<ReportParams>, ctx: UnitContext) {
  const options = reportOptions(ctx.config)
  const { tables, problems } = yield* readReportTables(reportSources(ctx.config), unitReader(ctx))
  for (const p of problems) yield* ctx.log(p)
  const existing = new Set((Object.keys(tableFiles) as TableName[]).flatMap((k) => tableSources(tables, k).map((s) => s.file)))
  const provenance = provenanceHtml(collectProvenance(ctx.config, stageTimes(ctx)))
  const built = yield* Effect.tryPromise({
    try: () => buildReportHtml(tables, options, existing, provenance),
    catch: (e) => new UnitError({ message: `report: ${firstLine(e)}`, cause: e }),
  })
  for (const w of built.warnings) yield* ctx.log(`report: ${w}`)
  for (const f of built.figures.filter((f) => !f.svg)) yield* ctx.log(`report: figure "${f.title}" left out: ${f.notes.join("; ") || "its tables are missing"}`)
  for (const f of built.files) yield* ctx.writeFile(f.path, f.data)
  yield* ctx.writeFile(REPORT_PATH, built.html)
})

type ReportParams = ReportOptions & { readonly tables: ReadonlyArray<string> }

export const reportStage = defineStage<ReportParams>({
  name: REPORT,
  version: 3, // 2: per-figure SVG and CSV files, PNG links, per-task figures; 3: live figures (inline Vega runtime)
  // Every stage that may write a table the report reads (the runner ignores names not registered).
  after: [AGGREGATE, CLASSIFY, CORRELATE, DOWNSTREAM, CHECKS, SEQUENCES],
  softAfter: true,
  describe: "the paper's figures as one self-contained HTML page (inline SVG; each figure's SVG and CSV beside it), built from the run's Parquet tables",
  plan: (config) => [{ id: reportUnit.id, params: { ...reportOptions(config), tables: Object.values(tableFiles) }, inputs: [], files: [] }],
  run,
})
