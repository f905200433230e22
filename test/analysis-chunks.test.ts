/**
 * analysis/chunks.ts: the footer read in TypeScript against parquet-wasm's reading of the same
 * files (row groups, values), and the files it must hand back to parquet-wasm (plain: false).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { afterAll, describe, expect, it } from "vitest"
import { chunkPlaces, closeReaders, readLogprobGroup } from "../lib/analysis/block-tasks.ts"
import { columnChunks, readPlainFloat32 } from "../lib/analysis/chunks.ts"
import { encodeParquet, openRowGroups, type WriteOptions } from "../pipeline/store.ts"
import { scoresWriteOptions } from "../stages/score/contract.ts"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chunks-"))
afterAll(async () => {
  await closeReaders()
  fs.rmSync(dir, { recursive: true, force: true })
})

let files = 0
const write = (table: arrow.Table, options: WriteOptions): string => {
  const f = path.join(dir, `f${files++}.parquet`)
  fs.writeFileSync(f, encodeParquet(table, options))
  return f
}

/** A score table of n rows: logprob −(i mod 97)/7 with a NaN and −Infinity in it. */
const scores = (n: number) => {
  const lp = Float32Array.from({ length: n }, (_, i) => -(i % 97) / 7)
  lp[3] = Number.NaN
  lp[n - 2] = Number.NEGATIVE_INFINITY
  return arrow.tableFromArrays({
    token_index: Int32Array.from({ length: n }, (_, i) => i),
    token_id: Int32Array.from({ length: n }, (_, i) => i % 50),
    logprob: lp,
  })
}

describe("columnChunks", () => {
  it("gives the row groups parquet-wasm gives, and chunks whose values are parquet-wasm's, bit for bit", async () => {
    for (const rowGroupSize of [7, 3, 1000]) {
      const f = write(scores(40), scoresWriteOptions(rowGroupSize))
      const c = columnChunks(f, "logprob")
      const r = await openRowGroups(f)
      try {
        expect(c.rowGroupRows).toEqual(r.rowGroupRows)
        expect(c.numRows).toBe(40)
        expect(c.plain).toBe(true)
        for (let g = 0; g < c.rowGroupRows.length; g++) {
          const want = (await r.read(g, ["logprob"])).getChild("logprob")!.toArray() as Float32Array
          const got = readPlainFloat32(f, c.offset[g], c.size[g], c.rowGroupRows[g])
          expect(got && Buffer.from(got.buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true)
          // through the block reader, into a reused array, as the workers read
          const into = [new Float32Array(c.rowGroupRows[g])]
          const [v] = await readLogprobGroup([f], g, into, chunkPlaces([c], g))
          expect(v).toBe(into[0])
          expect([...v]).toEqual([...want])
        }
      } finally {
        r.close()
      }
    }
  })

  it("says plain: false for a compressed, a nullable or a double column, which are read through parquet-wasm", async () => {
    const t = scores(20)
    const compressed = write(t, { rowGroupSize: 8 })
    expect(columnChunks(compressed, "logprob").plain).toBe(false)
    expect(columnChunks(compressed, "logprob").rowGroupRows).toEqual([8, 8, 4])
    const nullable = write(
      new arrow.Table({ logprob: arrow.vectorFromArray([-1, null, -2], new arrow.Float32()) }),
      { rawColumns: ["logprob"] },
    )
    expect(columnChunks(nullable, "logprob").plain).toBe(false)
    const double = write(arrow.tableFromArrays({ logprob: Float64Array.from([-1, -2]) }), { rawColumns: ["logprob"] })
    expect(columnChunks(double, "logprob").plain).toBe(false)
    // and the block reader still gives their values
    const c = columnChunks(compressed, "logprob")
    const [v] = await readLogprobGroup([compressed], 1, [], chunkPlaces([c], 1))
    expect([...v]).toEqual([...(t.getChild("logprob")!.toArray() as Float32Array).subarray(8, 16)])
  })

  it("throws on a file without the column, a truncated file and a file that is not Parquet", () => {
    const f = write(scores(10), scoresWriteOptions(4))
    expect(() => columnChunks(f, "entropy")).toThrow(/entropy/)
    const bytes = fs.readFileSync(f)
    const cut = path.join(dir, "cut.parquet")
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 20))
    expect(() => columnChunks(cut, "logprob")).toThrow(/malformed Parquet footer/)
    const text = path.join(dir, "text.parquet")
    fs.writeFileSync(text, "not a parquet file at all")
    expect(() => columnChunks(text, "logprob")).toThrow(/malformed Parquet footer/)
  })

  it("readPlainFloat32 answers undefined for a chunk that is not plain pages", () => {
    const f = write(scores(10), { rowGroupSize: 10 })
    const c = columnChunks(f, "logprob")
    expect(readPlainFloat32(f, c.offset[0], c.size[0], 10)).toBeUndefined()
  })
})
