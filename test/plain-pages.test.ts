/**
 * Direct reads of uncompressed PLAIN float columns (pipeline/plain-pages.ts, and the path through
 * RowGroupReader.readFloat32): page headers written byte by byte from parquet.thrift's compact
 * encoding, and files written by parquet-wasm read back against parquet-wasm's own decoding.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { afterAll, describe, expect, it } from "vitest"
import { plainChunkValues, readPageHeader } from "../pipeline/plain-pages.ts"
import { encodeParquet, openRowGroups } from "../pipeline/store.ts"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plain-pages-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** Thrift compact varint of a zigzag-encoded i32 (written here, independently of the reader). */
const i32 = (v: number): number[] => {
  let z = v >= 0 ? 2 * v : -2 * v - 1
  const out: number[] = []
  while (z >= 0x80) {
    out.push((z & 0x7f) | 0x80)
    z = Math.floor(z / 128)
  }
  out.push(z)
  return out
}
/** Field header: id delta in the high nibble, type in the low (5 = i32, 12 = struct, 8 = binary, 1/2 = bool). */
const field = (delta: number, type: number) => [(delta << 4) | type]

/** A v1 data page header (PageHeader 1, 2, 3, 5 {1 num_values, 2 encoding, 3, 4 RLE}). */
const v1Header = (values: number, size = 4 * values, encoding = 0, extra: number[] = []) => [
  ...field(1, 5), ...i32(0),
  ...field(1, 5), ...i32(size),
  ...field(1, 5), ...i32(size),
  ...extra,
  ...field(extra.length > 0 ? 1 : 2, 12),
  ...field(1, 5), ...i32(values),
  ...field(1, 5), ...i32(encoding),
  ...field(1, 5), ...i32(3),
  ...field(1, 5), ...i32(3),
  0,
  0,
]

const floats = (xs: number[]) => [...new Uint8Array(Float32Array.from(xs).buffer)]

describe("readPageHeader", () => {
  it("reads the header arrow-rs writes for a page of 20,480 floats", () => {
    // the bytes of such a header as they appear in a score file (checked by hand against the
    // compact protocol: 0x15 = delta 1, i32; 80 80 0a = zigzag 163,840 = 2 × 81,920)
    const bytes = Uint8Array.from([0x15, 0x00, 0x15, 0x80, 0x80, 0x0a, 0x15, 0x80, 0x80, 0x0a, 0x2c, 0x15, 0x80, 0xc0, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15, 0x06, 0x00, 0x00])
    expect(readPageHeader(bytes, 0)).toEqual({
      type: 0, uncompressedSize: 81_920, compressedSize: 81_920, numValues: 20_480, encoding: 0, numNulls: 0, levelBytes: 0, dataAt: 23,
    })
    expect(Uint8Array.from(v1Header(20_480))).toEqual(bytes)
  })

  it("skips fields it does not use: a CRC, statistics with binary min/max, a field id given in full", () => {
    const stats = [...field(3, 8), 2, 7, 8, ...field(1, 8), 1, 9, 0] // {3: max = bytes 7 8, 4: min = byte 9}
    const bytes = Uint8Array.from([
      ...field(1, 5), ...i32(0),
      ...field(1, 5), ...i32(40),
      ...field(1, 5), ...i32(40),
      ...field(1, 5), ...i32(-12345), // 4: crc
      ...field(1, 12),
      ...field(1, 5), ...i32(10),
      ...field(1, 5), ...i32(0),
      ...field(3, 12), ...stats, // 5: statistics
      0,
      0x06, ...i32(9), ...i32(7), // field id 9 written in full (delta 0), i64 7: unknown, skipped
      0,
    ])
    const h = readPageHeader(bytes, 0)
    expect(h).toMatchObject({ type: 0, compressedSize: 40, numValues: 10, encoding: 0, dataAt: bytes.length })
  })

  it("reads a v2 data page header's nulls and level lengths", () => {
    const bytes = Uint8Array.from([
      ...field(1, 5), ...i32(3),
      ...field(1, 5), ...i32(44),
      ...field(1, 5), ...i32(44),
      ...field(5, 12), // 8: data_page_header_v2
      ...field(1, 5), ...i32(10),
      ...field(1, 5), ...i32(1), // num_nulls
      ...field(1, 5), ...i32(10),
      ...field(1, 5), ...i32(0),
      ...field(1, 5), ...i32(4), // definition levels byte length
      ...field(1, 5), ...i32(0),
      ...field(1, 2), // is_compressed = false
      0,
      0,
    ])
    expect(readPageHeader(bytes, 0)).toMatchObject({ type: 3, numValues: 10, numNulls: 1, levelBytes: 4, encoding: 0 })
  })

  it("is undefined for truncated or garbage bytes", () => {
    const whole = Uint8Array.from(v1Header(100))
    expect(readPageHeader(whole.subarray(0, 12), 0)).toBeUndefined()
    expect(readPageHeader(Uint8Array.from([0xff, 0xff, 0xff]), 0)).toBeUndefined()
    expect(readPageHeader(new Uint8Array(0), 0)).toBeUndefined()
  })
})

describe("plainChunkValues", () => {
  const a = [1.5, -2.25, 3e-5]
  const b = [-7, 0.125]
  const chunk = (...pages: number[][]) => Uint8Array.from(pages.flat())
  const read = (bytes: Uint8Array, rows: number) => {
    const out = new Float32Array(rows)
    return plainChunkValues(bytes, rows, new Uint8Array(out.buffer)) ? [...out] : false
  }

  it("copies the values of consecutive PLAIN pages", () => {
    expect(read(chunk(v1Header(3), floats(a), v1Header(2), floats(b)), 5)).toEqual([...Float32Array.from([...a, ...b])])
  })

  it("refuses every other layout", () => {
    const two = [v1Header(3), floats(a), v1Header(2), floats(b)]
    expect(read(chunk(...two), 6)).toBe(false) // fewer values than rows
    expect(read(chunk(...two), 4)).toBe(false) // more values than rows
    expect(read(chunk(...two, [0]), 5)).toBe(false) // bytes after the last page
    expect(read(chunk(v1Header(3), floats(a).slice(0, 8)), 3)).toBe(false) // page cut short
    expect(read(chunk(v1Header(3, 12, 2), floats(a)), 3)).toBe(false) // PLAIN_DICTIONARY
    expect(read(chunk(v1Header(3, 16), [2, 0, 0, 0], floats(a)), 3)).toBe(false) // levels before the values
    const dictionaryPage = [...field(1, 5), ...i32(2), ...field(1, 5), ...i32(12), ...field(1, 5), ...i32(12), 0]
    expect(read(chunk(dictionaryPage, floats(a)), 3)).toBe(false)
  })
})

describe("RowGroupReader.readFloat32, direct", () => {
  const lcg = (seed: number) => () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32)
  const n = 50_000
  const next = lcg(11)
  const logprob = Float32Array.from({ length: n }, () => -12 * next())
  const write = (name: string, table: arrow.Table, raw: string[]) => {
    const f = path.join(dir, name)
    fs.writeFileSync(f, encodeParquet(table, { rowGroupSize: 30_000, dictionaryColumns: [], rawColumns: raw }))
    return f
  }
  const check = async (f: string, column: string) => {
    const r = await openRowGroups(f)
    try {
      const got: Array<Float32Array | undefined> = []
      for (let g = 0; g < r.rowGroupRows.length; g++) {
        const slow = (await r.read(g, [column])).getChild(column)?.toArray()
        // twice: into a new array and into one given
        for (const into of [undefined, new Float32Array(r.rowGroupRows[g])]) {
          const fast = await r.readFloat32(g, column, into)
          if (slow instanceof Float32Array) expect(fast).toEqual(slow)
          got.push(fast)
        }
      }
      return { got, direct: r.direct.get(column) }
    } finally {
      r.close()
    }
  }

  it("reads an uncompressed float32 column from its pages (row groups of several pages)", async () => {
    const t = arrow.tableFromArrays({ token_index: Int32Array.from({ length: n }, (_, i) => i), logprob })
    const { got, direct } = await check(write("raw.parquet", t, ["logprob"]), "logprob")
    expect(direct).toBe(true)
    expect(got[0]?.[0]).toBe(logprob[0])
    expect(got[3]?.[1]).toBe(logprob[30_001])
  })

  it("falls back to parquet-wasm for compressed, nullable and non-float columns", async () => {
    const t = arrow.tableFromArrays({ token_index: Int32Array.from({ length: n }, (_, i) => i), logprob })
    const zstd = await check(write("zstd.parquet", t, []), "logprob")
    expect(zstd.direct).toBeUndefined() // never tried: not an uncompressed chunk
    expect(zstd.got.every((v) => v instanceof Float32Array)).toBe(true)
    const ints = await check(write("ints.parquet", t, ["token_index"]), "token_index")
    expect(ints.direct).toBe(false) // pages of 4-byte values, but not float32
    expect(ints.got.every((v) => v === undefined)).toBe(true)
    const nullable = new arrow.Table({ logprob: arrow.makeVector({ type: new arrow.Float32(), data: logprob, nullCount: 0, length: n } as never) })
    const schema = new arrow.Schema([new arrow.Field("logprob", new arrow.Float32(), true)])
    const opt = await check(write("nullable.parquet", new arrow.Table(schema, nullable.batches.map((b) => new arrow.RecordBatch(schema, b.data))), ["logprob"]), "logprob")
    expect(opt.direct).toBe(false) // definition levels before the values
    expect(opt.got.every((v) => v instanceof Float32Array)).toBe(true)
  })
})
