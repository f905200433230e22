/**
 * A digest of every table of a run folder, for checking that a change keeps outputs as they were
 * across machines (test/e2e.test.ts compares the cut-down demo run with one taken before Engine v2).
 *
 * Exact where values are: row counts, non-null counts, strings with many values and token-id lists
 * (count of distinct values and a sum of hashes). Within float noise where a CPU with other SIMD
 * kernels may round differently, or float32 arithmetic reaches the same value another way (the
 * scoring head's ReduceLogSumExp against a LogSoftmax moved the demo's sum of regression slopes by
 * 1.6e-6): sums and sums of squares of numeric columns (relative 1e-5), and
 * the counts of each value of a few-valued column (class, category, booleans: within 0.1% of the
 * rows, rounded down), since a float that moves by one ulp can put a token on the other side of
 * α = 0.05. A real change (a column lost or reordered, rows missing, another dataset, other
 * values) moves these by far more.
 *
 *   npx tsx tools/run-digest.ts outputs/demo > digest.json
 */
import { DuckDBInstance } from "@duckdb/node-api"
import * as path from "node:path"
import { runTables } from "./compare-runs.ts"

export interface ColumnDigest {
  readonly type: string
  readonly nonNull: number
  /** numeric: Σx and Σx² (null when every value is null) */
  readonly sum?: number | null
  readonly sumSq?: number | null
  /** few-valued strings and booleans: count of each value */
  readonly counts?: Record<string, number>
  /** many-valued strings and lists: distinct values and Σ hash (exact) */
  readonly distinct?: number
  readonly hashSum?: string
}

export interface TableDigest {
  readonly rows: number
  readonly columns: Record<string, ColumnDigest>
}

const FEW = 16
const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`
const quote = (c: string) => `"${c.replaceAll('"', '""')}"`
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))

/** The digest of every table of `runDir` (see the file's comment). */
export const runDigest = async (runDir: string): Promise<Record<string, TableDigest>> => {
  const db = await DuckDBInstance.create(":memory:")
  const conn = await db.connect()
  const rowsOf = async (sql: string) => (await conn.runAndReadAll(sql)).getRows()
  const out: Record<string, TableDigest> = {}
  try {
    for (const table of [...runTables(runDir)].sort()) {
      const src = `read_parquet(${sqlString(path.join(runDir, table))}, hive_partitioning = ${table.includes("/") ? "true" : "false"})`
      const rows = Number((await rowsOf(`SELECT count(*) FROM ${src}`))[0][0])
      const columns: Record<string, ColumnDigest> = {}
      for (const [name, type] of (await rowsOf(`DESCRIBE SELECT * FROM ${src}`)).map((r) => [String(r[0]), String(r[1])])) {
        const c = quote(name)
        const nonNull = Number((await rowsOf(`SELECT count(${c}) FROM ${src}`))[0][0])
        if (/^(DOUBLE|FLOAT|REAL|BIGINT|INTEGER|SMALLINT|TINYINT|HUGEINT|UBIGINT|UINTEGER|USMALLINT|UTINYINT|DECIMAL\(.*\))$/.test(type)) {
          const [s, s2] = (await rowsOf(`SELECT sum(${c}::DOUBLE), sum(${c}::DOUBLE * ${c}::DOUBLE) FROM ${src}`))[0]
          columns[name] = { type, nonNull, sum: num(s), sumSq: num(s2) }
          continue
        }
        const distinct = Number((await rowsOf(`SELECT count(DISTINCT ${c}) FROM ${src}`))[0][0])
        if (type === "BOOLEAN" || (type === "VARCHAR" && distinct <= FEW)) {
          const counts = Object.fromEntries((await rowsOf(`SELECT ${c}::VARCHAR, count(*) FROM ${src} WHERE ${c} IS NOT NULL GROUP BY 1 ORDER BY 1`)).map((r) => [String(r[0]), Number(r[1])]))
          columns[name] = { type, nonNull, counts }
          continue
        }
        const [h] = (await rowsOf(`SELECT sum(hash(${c})::HUGEINT)::VARCHAR FROM ${src}`))[0]
        columns[name] = { type, nonNull, distinct, hashSum: String(h) }
      }
      out[table] = { rows, columns }
    }
  } finally {
    conn.closeSync()
  }
  return out
}

const close = (a: number | null | undefined, b: number | null | undefined) => {
  if (a === b) return true
  if (a === null || b === null || a === undefined || b === undefined) return false
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Object.is(a, b)
  return Math.abs(a - b) <= 1e-5 * Math.max(Math.abs(a), Math.abs(b)) + 1e-9
}

/** Where `got` differs from `want` beyond the tolerances above, one line each ([] when it matches). */
export const compareDigests = (want: Record<string, TableDigest>, got: Record<string, TableDigest>): string[] => {
  const diffs: string[] = []
  for (const table of new Set([...Object.keys(want), ...Object.keys(got)])) {
    const w = want[table]
    const g = got[table]
    if (!w || !g) {
      diffs.push(`${table}: only in the ${w ? "reference" : "run"}`)
      continue
    }
    if (w.rows !== g.rows) diffs.push(`${table}: ${g.rows} rows, expected ${w.rows}`)
    const wc = Object.keys(w.columns)
    const gc = Object.keys(g.columns)
    if (wc.join(",") !== gc.join(",")) diffs.push(`${table}: columns ${gc.join(", ")}, expected ${wc.join(", ")}`)
    for (const col of wc.filter((c) => g.columns[c])) {
      const a = w.columns[col]
      const b = g.columns[col]
      const at = `${table}.${col}`
      if (a.type !== b.type) diffs.push(`${at}: type ${b.type}, expected ${a.type}`)
      if (a.nonNull !== b.nonNull) diffs.push(`${at}: ${b.nonNull} non-null values, expected ${a.nonNull}`)
      if (!close(a.sum, b.sum) || !close(a.sumSq, b.sumSq)) diffs.push(`${at}: Σ ${b.sum} Σ² ${b.sumSq}, expected ${a.sum}, ${a.sumSq}`)
      if (a.distinct !== b.distinct || a.hashSum !== b.hashSum) diffs.push(`${at}: ${b.distinct} distinct values (hash ${b.hashSum}), expected ${a.distinct} (${a.hashSum})`)
      if (a.counts || b.counts) {
        const slack = Math.floor(0.001 * w.rows)
        for (const v of new Set([...Object.keys(a.counts ?? {}), ...Object.keys(b.counts ?? {})])) {
          const x = a.counts?.[v] ?? 0
          const y = b.counts?.[v] ?? 0
          if (Math.abs(x - y) > slack) diffs.push(`${at}: ${y} × "${v}", expected ${x} (± ${slack})`)
        }
      }
    }
  }
  return diffs
}

if (process.argv[1]?.endsWith("run-digest.ts")) {
  const dir = process.argv[2]
  if (!dir) {
    console.error("usage: tsx tools/run-digest.ts <run folder>")
    process.exit(2)
  }
  console.log(JSON.stringify(await runDigest(path.resolve(dir)), null, 1))
}
