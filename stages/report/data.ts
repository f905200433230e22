/**
 * Plain rows out of the run's Arrow tables, and the small helpers every figure shares: sizes in
 * order, labels, thinning long series. No I/O, no Effect. Which file each table is, and which
 * stage writes it, comes from that stage's contract.
 */
import * as arrow from "apache-arrow"
import { AGGREGATE, checkpointsFile } from "../aggregate/contract.ts"
import { CHECKS, checksFile } from "../checks/contract.ts"
import { CLASSIFY, classCategoriesFile, classSummaryFile, classTransitionsFile, groupTrajectoriesFile } from "../classify/contract.ts"
import { agreementFile, CORRELATE, correlationsFile, r2DifferencesFile, taskMarginsFile, taskMetricsFile } from "../correlate/contract.ts"
import { generationsPattern, mauveCurvesFile, mauveFile, noiseFile, SEQUENCES, trajectoriesPattern } from "../sequences/contract.ts"

export type Cell = string | number | boolean | null
export type Row = Record<string, Cell>

/** The tables the report reads, by file name under the run folder; absent when a run did not write one. */
export interface ReportTables {
  readonly checkpoints?: arrow.Table
  readonly class_summary?: arrow.Table
  readonly class_transitions?: arrow.Table
  readonly class_categories?: arrow.Table
  readonly group_trajectories?: arrow.Table
  readonly task_metrics?: arrow.Table
  readonly task_margins?: arrow.Table
  readonly correlations?: arrow.Table
  readonly r2_differences?: arrow.Table
  readonly agreement?: arrow.Table
  readonly checkpoint_checks?: arrow.Table
  /**
   * The sequences stage's per-λ-group tables, every group's file in one table (groupedTable) with
   * `group` ("lambda=1_-1", the folder) and `lambda_s`, `lambda_l` columns.
   */
  readonly sequence_generations?: arrow.Table
  readonly sequence_trajectories?: arrow.Table
  readonly noise?: arrow.Table
  readonly mauve?: arrow.Table
  readonly mauve_curves?: arrow.Table
}
export type TableName = keyof ReportTables

/** Each table's file under the run folder (a `lambda=*` pattern for the grouped ones) and the stage that writes it. */
export const tableSpecs: Readonly<Record<TableName, { readonly file: string; readonly stage: string }>> = {
  checkpoints: { file: checkpointsFile.path, stage: AGGREGATE },
  class_summary: { file: classSummaryFile.path, stage: CLASSIFY },
  class_transitions: { file: classTransitionsFile.path, stage: CLASSIFY },
  class_categories: { file: classCategoriesFile.path, stage: CLASSIFY },
  group_trajectories: { file: groupTrajectoriesFile.path, stage: CLASSIFY },
  task_metrics: { file: taskMetricsFile.path, stage: CORRELATE },
  task_margins: { file: taskMarginsFile.path, stage: CORRELATE },
  correlations: { file: correlationsFile.path, stage: CORRELATE },
  r2_differences: { file: r2DifferencesFile.path, stage: CORRELATE },
  agreement: { file: agreementFile.path, stage: CORRELATE },
  checkpoint_checks: { file: checksFile.path, stage: CHECKS },
  sequence_generations: { file: generationsPattern, stage: SEQUENCES },
  sequence_trajectories: { file: trajectoriesPattern, stage: SEQUENCES },
  noise: { file: noiseFile.path, stage: SEQUENCES },
  mauve: { file: mauveFile.path, stage: SEQUENCES },
  mauve_curves: { file: mauveCurvesFile.path, stage: SEQUENCES },
}

/** Relative path of each table under the run folder. */
export const tableFiles: Readonly<Record<TableName, string>> = Object.fromEntries(
  Object.entries(tableSpecs).map(([k, v]) => [k, v.file]),
) as Record<TableName, string>

/** Tables spread over Hive partitions (`lambda=*` folders): the path has one `*` in a folder name. */
export const isGrouped = (file: string): boolean => file.includes("*")

/** The column naming each row's partition folder in a grouped table. */
export const GROUP_COLUMN = "group"

/** "lambda=1_-1" → [1, −1]; undefined for any other folder name. */
export const parseLambdaGroup = (folder: string): readonly [number, number] | undefined => {
  const m = /^lambda=([^_]+)_([^_]+)$/.exec(folder)
  if (!m) return undefined
  const s = Number(m[1])
  const l = Number(m[2])
  return Number.isFinite(s) && Number.isFinite(l) ? [s, l] : undefined
}

/** λ folders in the stage's default order: λs descending, then λl ascending ((1,−1), (1,0), (0,1), (−1,1)). */
export const sortLambdaGroups = (folders: ReadonlyArray<string>): string[] =>
  folders
    .flatMap((f) => {
      const l = parseLambdaGroup(f)
      return l ? [{ f, l }] : []
    })
    .sort((a, b) => b.l[0] - a.l[0] || a.l[1] - b.l[1])
    .map((x) => x.f)

/**
 * One table out of the per-group files of a grouped table (same schema each, as the stage writes
 * them), with `group` and, where a file lacks them, `lambda_s` and `lambda_l` from the folder name.
 */
export const groupedTable = (parts: ReadonlyArray<{ readonly group: string; readonly table: arrow.Table }>): arrow.Table | undefined => {
  const tagged = parts.map(({ group, table }) => {
    const n = table.numRows
    const [s, l] = parseLambdaGroup(group) ?? [Number.NaN, Number.NaN]
    const extra: Record<string, arrow.Vector> = { [GROUP_COLUMN]: arrow.vectorFromArray(Array.from({ length: n }, () => group), new arrow.Utf8()) }
    const has = (c: string) => table.schema.fields.some((f) => f.name === c)
    if (!has("lambda_s")) extra.lambda_s = arrow.vectorFromArray(Array.from({ length: n }, () => s), new arrow.Float64())
    if (!has("lambda_l")) extra.lambda_l = arrow.vectorFromArray(Array.from({ length: n }, () => l), new arrow.Float64())
    return table.assign(new arrow.Table(extra))
  })
  if (tagged.length === 0) return undefined
  return tagged[0].concat(...tagged.slice(1))
}

/**
 * The files a present table was read from, relative to the run folder: the table's file, or one
 * per group of a grouped table (with its row count).
 */
export const tableSources = (tables: ReportTables, name: TableName): Array<{ file: string; rows: number }> => {
  const t = tables[name]
  if (!t) return []
  const file = tableFiles[name]
  if (!isGrouped(file)) return [{ file, rows: t.numRows }]
  const counts = new Map<string, number>()
  const groups = t.getChild(GROUP_COLUMN)
  for (let i = 0; i < t.numRows; i++) {
    const g = String(groups?.get(i))
    counts.set(g, (counts.get(g) ?? 0) + 1)
  }
  return [...counts].map(([g, rows]) => ({ file: file.replace("*", g.replace(/^lambda=/, "")), rows }))
}

/** What the report knows from the config: the sizes in order and the analysis choices. */
export interface ReportOptions {
  readonly run: string
  /** Smallest first; `params` in parameters. */
  readonly models: ReadonlyArray<{ readonly name: string; readonly params: number }>
  readonly validDataset: string
  readonly referenceModel: string
  readonly referenceThreshold: number
  /** `analysis.exclude_flagged`: later stages dropped the checkpoints the checks stage flagged. */
  readonly excludeFlagged: boolean
}

const toCell = (v: unknown): Cell => {
  if (v === null || v === undefined) return null
  if (typeof v === "bigint") return Number(v)
  if (typeof v === "number") return Number.isNaN(v) ? null : v
  if (typeof v === "string" || typeof v === "boolean") return v
  return String(v)
}

/** Columns of `columns` the table lacks (extra columns are fine). */
export const missingColumns = (table: arrow.Table, columns: ReadonlyArray<string>): string[] =>
  columns.filter((c) => table.schema.fields.every((f) => f.name !== c))

/**
 * The rows of `table` restricted to `columns` (which must exist), as plain objects: Int64 → number,
 * NaN → null. `keep` filters rows before the other columns are read; it may read any column (one
 * the table lacks reads null).
 */
export const rowsOf = (table: arrow.Table, columns: ReadonlyArray<string>, keep?: (get: (c: string) => Cell) => boolean): Row[] => {
  const vectors = new Map(columns.map((c) => [c, table.getChild(c)]))
  const vector = (c: string) => {
    if (!vectors.has(c)) vectors.set(c, table.getChild(c))
    return vectors.get(c)
  }
  const out: Row[] = []
  for (let i = 0; i < table.numRows; i++) {
    const get = (c: string): Cell => toCell(vector(c)?.get(i))
    if (keep && !keep(get)) continue
    const row: Row = {}
    for (const c of columns) row[c] = get(c)
    out.push(row)
  }
  return out
}

/**
 * task_metrics rows of the tasks scored, each once: not a BIG-bench parent's aggregate rows (the
 * mean of its subtasks', which are rows of their own; correlate contract). Tables written before
 * the column existed have none.
 */
export const scoredTaskRows = (get: (c: string) => Cell): boolean => get("aggregate") !== true

export const num = (v: Cell): number => (typeof v === "number" ? v : Number.NaN)
export const str = (v: Cell): string => (v === null ? "" : String(v))
export const sameFraction = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9

/** "95k", "1.3M", "6.9B" */
export const fmtCount = (n: number): string => {
  if (!Number.isFinite(n)) return "?"
  const units: Array<[number, string]> = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]]
  for (const [u, s] of units) if (Math.abs(n) >= u) return `${+(n / u).toPrecision(n / u >= 100 ? 3 : 2)}${s}`
  return String(n)
}

/** Size label used as the colour legend of every figure: "s (95k)". */
export const sizeLabel = (name: string, params: number | undefined): string =>
  params === undefined ? name : `${name} (${fmtCount(params)})`

/**
 * The sizes present in `names`, smallest first: config order by params, then any model a table
 * names that the config does not (an older run), in the order first seen.
 */
export const sizeOrder = (options: ReportOptions, names: Iterable<string>): Array<{ name: string; label: string }> => {
  const present = new Set(names)
  const known = options.models.filter((m) => present.has(m.name)).map((m) => ({ name: m.name, label: sizeLabel(m.name, m.params) }))
  const extra = [...present].filter((n) => !options.models.some((m) => m.name === n)).map((n) => ({ name: n, label: n }))
  return [...known, ...extra]
}

/**
 * Keep at most `max` of `rows` (already sorted along the series), evenly spaced by index, always
 * keeping the first and last and any row `pin` selects. Figures stay small on suites with
 * hundreds of checkpoints per size.
 */
export const thin = <T>(rows: ReadonlyArray<T>, max: number, pin: (r: T) => boolean = () => false): T[] => {
  if (rows.length <= max) return [...rows]
  const stride = (rows.length - 1) / (max - 1)
  const keep = new Set<number>()
  for (let k = 0; k < max; k++) keep.add(Math.round(k * stride))
  return rows.filter((r, i) => keep.has(i) || pin(r))
}

/** Group rows by a key, keeping first-seen order. */
export const groupBy = <T>(rows: ReadonlyArray<T>, key: (r: T) => string): Map<string, T[]> => {
  const m = new Map<string, T[]>()
  for (const r of rows) {
    const k = key(r)
    const g = m.get(k)
    if (g) g.push(r)
    else m.set(k, [r])
  }
  return m
}
