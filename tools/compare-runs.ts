/**
 * Are two run folders' tables value-identical? Every table of either run (a root Parquet file, or
 * the files of one name under a partitioned folder, read as one Hive-partitioned table) is
 * compared in DuckDB with EXCEPT ALL both ways: rows of A missing from B and rows of B missing from
 * A, duplicates counted. Row order and file layout (row groups, encodings) do not matter; values
 * do, exactly (floats bit for bit, NaN equal to NaN as DuckDB's set operations treat it).
 *
 *   npx tsx tools/compare-runs.ts outputs/demo /tmp/before/outputs/demo
 *   → one line per table, and last a JSON object {"tables":…,"identical":…,"differing":[…]}
 * Exit code 0 when every table is identical, 1 otherwise.
 *
 * Not needed to run the pipeline: a tool for checking that a change keeps outputs as they were.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { DuckDBInstance } from "@duckdb/node-api"

export interface TableComparison {
  /** The table: a root file name, or `folder/**\/name.parquet` (`part-*.parquet` for parts). */
  readonly table: string
  readonly rowsA: number
  readonly rowsB: number
  /** Rows of A that B lacks (EXCEPT ALL), and of B that A lacks. */
  readonly onlyInA: number
  readonly onlyInB: number
  /** When the tables cannot be compared row by row (a column missing on one side, other types). */
  readonly problem?: string
}

/** The tables of a run folder: glob relative to it → table name. Caches and the report are not tables. */
export const runTables = (runDir: string): Set<string> => {
  const out = new Set<string>()
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(runDir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) {
        if (rel === "" && (e.name === ".cache" || e.name === "report")) continue
        walk(r)
      } else if (e.name.endsWith(".parquet") && !e.name.startsWith(".")) {
        const top = r.split("/")[0]
        out.add(rel === "" ? e.name : `${top}/**/${e.name.replace(/^part-\d+\.parquet$/, "part-*.parquet")}`)
      }
    }
  }
  walk("")
  return out
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`

/** Compare every table of two run folders (see the file's comment). */
export const compareRuns = async (runA: string, runB: string): Promise<TableComparison[]> => {
  const tables = [...new Set([...runTables(runA), ...runTables(runB)])].sort()
  const db = await DuckDBInstance.create(":memory:")
  const conn = await db.connect()
  const count = async (sql: string) => Number((await conn.runAndReadAll(sql)).getRows()[0][0])
  const out: TableComparison[] = []
  try {
    for (const table of tables) {
      const source = (dir: string) =>
        fs.existsSync(dir) && runTables(dir).has(table)
          ? `read_parquet(${sqlString(path.join(dir, table))}, hive_partitioning = ${table.includes("/") ? "true" : "false"})`
          : undefined
      const a = source(runA)
      const b = source(runB)
      const rowsA = a ? await count(`SELECT count(*) FROM ${a}`) : 0
      const rowsB = b ? await count(`SELECT count(*) FROM ${b}`) : 0
      if (!a || !b) {
        out.push({ table, rowsA, rowsB, onlyInA: rowsA, onlyInB: rowsB, problem: `only in ${a ? "A" : "B"}` })
        continue
      }
      try {
        const onlyInA = await count(`SELECT count(*) FROM (SELECT * FROM ${a} EXCEPT ALL SELECT * FROM ${b})`)
        const onlyInB = await count(`SELECT count(*) FROM (SELECT * FROM ${b} EXCEPT ALL SELECT * FROM ${a})`)
        out.push({ table, rowsA, rowsB, onlyInA, onlyInB })
      } catch (e) {
        out.push({ table, rowsA, rowsB, onlyInA: rowsA, onlyInB: rowsB, problem: String((e as Error).message).split("\n")[0] })
      }
    }
  } finally {
    conn.closeSync()
  }
  return out
}

export const identical = (c: TableComparison): boolean => c.problem === undefined && c.onlyInA === 0 && c.onlyInB === 0 && c.rowsA === c.rowsB

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("compare-runs.ts")) {
  const [a, b] = process.argv.slice(2)
  if (!a || !b) {
    console.error("usage: tsx tools/compare-runs.ts <run folder A> <run folder B>")
    process.exit(2)
  }
  const result = await compareRuns(path.resolve(a), path.resolve(b))
  for (const c of result) {
    console.log(
      `${identical(c) ? "same" : "DIFF"}  ${c.table}  rows ${c.rowsA} / ${c.rowsB}` +
        (identical(c) ? "" : `  only in A ${c.onlyInA}, only in B ${c.onlyInB}${c.problem ? ` (${c.problem})` : ""}`),
    )
  }
  const differing = result.filter((c) => !identical(c)).map((c) => c.table)
  console.log(JSON.stringify({ tables: result.length, identical: result.length - differing.length, rows: result.reduce((n, c) => n + c.rowsA, 0), differing }))
  process.exit(differing.length ? 1 : 0)
}
