/**
 * The tools that check a change keeps a run's outputs: compareRuns (DuckDB EXCEPT ALL both ways,
 * exact) and runDigest/compareDigests (exact counts and hashes, sums within float noise).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { col, defineTable } from "../lib/tables.ts"
import { writeParquetFile } from "../pipeline/store.ts"
import { compareRuns, identical } from "../tools/compare-runs.ts"
import { compareDigests, runDigest } from "../tools/run-digest.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-compare-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const T = defineTable("t", { model: col.utf8(), x: col.float64(), class: col.utf8(), ids: col.int32List() })
type Row = ReturnType<typeof T.toRows>[number]
const rows = (n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ model: `m${i % 2}`, x: i / 7, class: ["up", "down"][i % 2], ids: Int32Array.from([i, i + 1]) }))

/** A run folder: a root table and a partitioned one (two parts per model folder). */
const writeRun = (name: string, edit: (r: Row[]) => Row[] = (r) => r, n = 40): string => {
  const dir = path.join(tmp, name)
  const all = edit(rows(n))
  writeParquetFile(path.join(dir, "summary.parquet"), T.fromRows(all.slice(0, 10)))
  for (const m of ["a", "b"]) {
    writeParquetFile(path.join(dir, `parts/model=${m}/part-00000.parquet`), T.fromRows(all.slice(10, 25)))
    writeParquetFile(path.join(dir, `parts/model=${m}/part-00001.parquet`), T.fromRows(all.slice(25)))
  }
  fs.mkdirSync(path.join(dir, ".cache"), { recursive: true })
  fs.writeFileSync(path.join(dir, ".cache/ignored.parquet"), "not a table")
  return dir
}

describe("compareRuns", () => {
  it("same values in another layout are identical; one changed value is one row each way", async () => {
    const a = writeRun("a")
    const b = writeRun("b", (r) => [...r.slice(0, 10), ...r.slice(10).reverse()]) // other order and parts
    const same = await compareRuns(a, b)
    expect(same.map((c) => [c.table, c.rowsA, identical(c)])).toEqual([
      ["parts/**/part-*.parquet", 60, true],
      ["summary.parquet", 10, true],
    ])
    const c = writeRun("c", (r) => r.map((x, i) => (i === 3 ? { ...x, x: x.x + 1e-12 } : x)))
    const diff = await compareRuns(a, c)
    expect(diff.find((t) => t.table === "summary.parquet")).toMatchObject({ onlyInA: 1, onlyInB: 1 })
    expect(identical(diff.find((t) => t.table === "parts/**/part-*.parquet")!)).toBe(true)
    fs.rmSync(path.join(c, "summary.parquet"))
    expect((await compareRuns(a, c)).find((t) => t.table === "summary.parquet")?.problem).toBe("only in A")
  })
})

describe("runDigest", () => {
  it("tolerates float noise and a rare flipped class, not a real change", async () => {
    const a = await runDigest(writeRun("da"))
    expect(compareDigests(a, await runDigest(writeRun("db", (r) => [...r.slice(0, 10).reverse(), ...r.slice(10).reverse()])))).toEqual([])
    const noise = await runDigest(writeRun("dn", (r) => r.map((x) => ({ ...x, x: x.x * (1 + 1e-9) }))))
    expect(compareDigests(a, noise)).toEqual([])
    // A class flipped on 2 of 5,980 partitioned rows is within 0.1% (5); 10 are not.
    const big = await runDigest(writeRun("dbig", (r) => r, 3000))
    const flip = (k: number) => (r: Row[]) => r.map((x, i) => (i >= 10 && i < 10 + 2 * k && i % 2 === 1 ? { ...x, class: "up" } : x))
    expect(compareDigests(big, await runDigest(writeRun("df", flip(1), 3000)))).toEqual([])
    expect(compareDigests(big, await runDigest(writeRun("df10", flip(10), 3000)))).toEqual([
      // 10 odd rows of each model folder's parts: 20 rows from "down" to "up"
      'parts/**/part-*.parquet.class: 2970 × "down", expected 2990 (± 5)',
      'parts/**/part-*.parquet.class: 3010 × "up", expected 2990 (± 5)',
    ])
    const moved = await runDigest(writeRun("dm", (r) => r.map((x, i) => (i === 5 ? { ...x, x: x.x + 0.01 } : x))))
    expect(compareDigests(a, moved)).toEqual([expect.stringMatching(/^summary\.parquet\.x: Σ /)])
    const renamed = await runDigest(writeRun("dr", (r) => r.map((x, i) => (i === 5 ? { ...x, model: "m9" } : x))))
    expect(compareDigests(a, renamed)).toEqual(['summary.parquet.model: 4 × "m1", expected 5 (± 0)', 'summary.parquet.model: 1 × "m9", expected 0 (± 0)'])
    const ids = await runDigest(writeRun("di", (r) => r.map((x, i) => (i === 30 ? { ...x, ids: Int32Array.from([0, 0]) } : x))))
    expect(compareDigests(a, ids)).toEqual([expect.stringMatching(/^parts\/\*\*\/part-\*\.parquet\.ids: \d+ distinct values/)])
  })
})
