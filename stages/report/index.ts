/**
 * The report stage: one whole-run unit (`report`) that reads the run's summary tables straight from
 * the run folder — whichever exist — and writes `report/index.html`: the paper's figures rendered
 * to SVG (render.ts), each with a caption and a link to its Parquet file, and a note for each figure
 * whose tables the run did not produce.
 *
 * The unit lists no upstream inputs on purpose: upstream units that failed or are stale must not
 * block the report (a figure without its table is left out, not an error). So a plain `run` rebuilds
 * the report only when its own key changes; `trajectories report` always rebuilds it (--force).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import { modelsBySize, type Config } from "../../pipeline/config.ts"
import { type Stage, type UnitContext, type UnitPlan, UnitError } from "../../pipeline/stage.ts"
import { readParquetFile } from "../../pipeline/store.ts"
import {
  groupedTable,
  isGrouped,
  sameFraction,
  sortLambdaGroups,
  tableFiles,
  tableSources,
  type ReportOptions,
  type ReportTables,
  type TableName,
} from "./data.ts"
import { buildReportHtml } from "./render.ts"

export const REPORT_PATH = "report/index.html"

/** The report's choices from the config, with the documented defaults. */
export const reportOptions = (config: Config): ReportOptions => {
  const bySize = modelsBySize(config)
  const thresholds = config.analysis.thresholds
  return {
    run: config.run,
    models: bySize.map((m) => ({ name: m.name, params: m.params })),
    validDataset: config.analysis.valid_dataset ?? config.datasets[0].name,
    // Default: the second-smallest size (the smallest when there is one).
    referenceModel: config.analysis.reference_model ?? (bySize[1] ?? bySize[0]).name,
    // Default: 0.1 when configured, else the smallest configured threshold.
    referenceThreshold: config.analysis.reference_threshold ?? (thresholds.some((t) => sameFraction(t, 0.1)) ? 0.1 : Math.min(...thresholds)),
    excludeFlagged: config.analysis.exclude_flagged,
  }
}

/** The `lambda=*` folders that hold `file` (a grouped table's path), in the stage's order. */
const groupFolders = (runDir: string, file: string): string[] => {
  const [parent, rest] = file.split("/lambda=*/")
  const dir = path.join(runDir, parent)
  if (!fs.existsSync(dir)) return []
  const folders = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name)
  return sortLambdaGroups(folders).filter((g) => fs.existsSync(path.join(dir, g, rest)))
}

/**
 * Read every table the report knows that exists under `runDir`; a grouped table (one file per λ
 * folder) is read from every folder into one table. A file that cannot be read is left out like a
 * missing one, and named in `problems`.
 */
export const readReportTables = (runDir: string): { tables: ReportTables; problems: string[] } => {
  const tables: { [K in TableName]?: arrow.Table } = {}
  const problems: string[] = []
  const cannot = (file: string, e: unknown) =>
    problems.push(`report: cannot read ${file} (${(e as Error).message.split("\n")[0]}); its figures are left out`)
  for (const [name, file] of Object.entries(tableFiles) as Array<[TableName, string]>) {
    if (isGrouped(file)) {
      const parts: Array<{ group: string; table: arrow.Table }> = []
      for (const group of groupFolders(runDir, file)) {
        const rel = file.replace("lambda=*", group)
        try {
          parts.push({ group, table: readParquetFile(path.join(runDir, rel)) })
        } catch (e) {
          cannot(rel, e)
        }
      }
      try {
        const t = groupedTable(parts)
        if (t) tables[name] = t
      } catch (e) {
        cannot(file, e)
      }
      continue
    }
    const abs = path.join(runDir, file)
    if (!fs.existsSync(abs)) continue
    try {
      tables[name] = readParquetFile(abs)
    } catch (e) {
      cannot(file, e)
    }
  }
  return { tables, problems }
}

const run = Effect.fn("stage.report")(function* (_unit: UnitPlan, ctx: UnitContext) {
  const options = reportOptions(ctx.config)
  const { tables, problems } = readReportTables(ctx.runDir)
  for (const p of problems) yield* ctx.log(p)
  const existing = new Set((Object.keys(tableFiles) as TableName[]).flatMap((k) => tableSources(tables, k).map((s) => s.file)))
  const built = yield* Effect.tryPromise({
    try: () => buildReportHtml(tables, options, existing),
    catch: (e) => new UnitError({ message: `report: ${(e as Error).message.split("\n")[0]}` }),
  })
  for (const f of built.figures.filter((f) => !f.svg)) yield* ctx.log(`report: figure "${f.title}" left out: ${f.notes.join("; ") || "its tables are missing"}`)
  yield* ctx.writeFile(REPORT_PATH, built.html)
})

export const reportStage: Stage = {
  name: "report",
  version: 1,
  // Every analysis stage that may write a table the report reads (the runner ignores absent names).
  after: ["aggregate", "classify", "correlate", "downstream", "checks", "sequences"],
  softAfter: true,
  describe: "the paper's figures as one self-contained HTML page (SVG, no scripts), built from the run's Parquet tables",
  plan: (config) => [
    {
      id: "report",
      params: { ...reportOptions(config), tables: Object.values(tableFiles), reads: "run folder, whatever tables exist" },
      inputs: [],
      files: [],
    },
  ],
  run: (unit, ctx) => run(unit, ctx),
}
