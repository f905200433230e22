/**
 * The report's text tables: a summary of the sizes, the tables the run has, and the checkpoint
 * checks. Pure.
 */
import { fmtCount, groupBy, num, scoredTaskRows, sizeOrder, str, tableFiles, tableSources, type ReportOptions, type ReportTables, type TableName } from "./data.ts"
import { chooseDataset } from "./figures.ts"
import { fmt, need, type TextTable } from "./spec.ts"

/** At most this many check rows are listed. */
export const MAX_CHECK_ROWS = 200

/**
 * One row per size: parameters, checkpoints, last step, final validation perplexity, mean accuracy
 * at the last scored step; the cells a run lacks are "–".
 */
export const sizeSummary = (tables: ReportTables, options: ReportOptions): TextTable => {
  const ck = need(tables, "checkpoints", ["model", "step", "dataset", "ppl"])
  const ckRows = "rows" in ck ? ck.rows : []
  const dataset = chooseDataset(ckRows, options.validDataset, "checkpoints.parquet").dataset
  const byModel = groupBy(ckRows.filter((r) => str(r.dataset) === dataset), (r) => str(r.model))
  const tm = need(tables, "task_metrics", ["model", "step", "task", "accuracy"], scoredTaskRows)
  const tmByModel = groupBy("rows" in tm ? tm.rows : [], (r) => str(r.model))
  const names = new Set([...options.models.map((m) => m.name), ...byModel.keys(), ...tmByModel.keys()])
  const rows = sizeOrder(options, names).map(({ name }) => {
    const params = options.models.find((m) => m.name === name)?.params
    const cps = [...(byModel.get(name) ?? [])].sort((a, b) => num(a.step) - num(b.step))
    const last = cps[cps.length - 1]
    const tms = tmByModel.get(name) ?? []
    const lastStep = Math.max(...tms.map((r) => num(r.step)))
    const finalAcc = tms.filter((r) => num(r.step) === lastStep).map((r) => num(r.accuracy)).filter(Number.isFinite)
    return [
      name,
      params === undefined ? "–" : fmtCount(params),
      cps.length ? String(cps.length) : "–",
      last ? String(num(last.step)) : "–",
      last ? fmt(num(last.ppl)) : "–",
      finalAcc.length ? `${(100 * finalAcc.reduce((a, b) => a + b, 0) / finalAcc.length).toFixed(1)}%` : "–",
    ]
  })
  return {
    columns: ["size", "parameters", "checkpoints", "last step", `final validation ppl (${dataset})`, "final mean accuracy"],
    rows,
  }
}

/**
 * The tables the report reads: file name, and row count when present; a grouped table present in
 * the run is listed once per λ folder.
 */
export const tableInventory = (tables: ReportTables): Array<{ file: string; rows: number | undefined }> =>
  (Object.keys(tableFiles) as TableName[]).flatMap((k): Array<{ file: string; rows: number | undefined }> => {
    const found = tableSources(tables, k)
    return found.length ? found : [{ file: tableFiles[k], rows: undefined }]
  })

/** The checks stage's findings, errors first; undefined when the run has no checks table. */
export const checksTable = (tables: ReportTables): { table: TextTable; total: number } | undefined => {
  const got = need(tables, "checkpoint_checks", ["model", "step", "check"])
  if ("why" in got) return undefined
  const t = tables.checkpoint_checks!
  const extra = ["severity", "detail", "related_step"].filter((c) => t.schema.fields.some((f) => f.name === c))
  const full = need(tables, "checkpoint_checks", ["model", "step", "check", ...extra])
  const rows = "rows" in full ? full.rows : got.rows
  const sevRank = (s: string) => (s === "error" ? 0 : s === "warning" ? 1 : 2)
  rows.sort((a, b) => sevRank(str(a.severity ?? null)) - sevRank(str(b.severity ?? null)) || str(a.model).localeCompare(str(b.model)) || num(a.step) - num(b.step))
  return {
    total: rows.length,
    table: {
      columns: ["model", "step", "check", ...extra.map((c) => c.replace("_", " "))],
      rows: rows.slice(0, MAX_CHECK_ROWS).map((r) => [str(r.model), String(num(r.step)), str(r.check), ...extra.map((c) => (r[c] === null ? "–" : str(r[c])))]),
    },
  }
}
