/**
 * The values of an uncompressed, PLAIN-encoded column chunk of 4-byte values without levels
 * (a REQUIRED float32 column, as the score stage writes `logprob`), copied straight out of the
 * chunk's bytes: parquet-wasm spends ~1.5 ms a call on a 65,536-row chunk that is one pread and
 * a copy (~0.1 ms), and regress and classify read 30 such chunks a block.
 *
 * Only that layout is taken: any other page (dictionary, index, compressed, levels, another
 * encoding) makes `plainChunkValues` answer false and the caller decodes with parquet-wasm.
 * Page headers are Thrift compact structs (parquet.thrift PageHeader); fields not needed are
 * skipped by type, so headers with statistics or a CRC are read too.
 *
 *   plainChunkValues(chunkBytes, 65_536, new Uint8Array(out.buffer))  // true: out holds the values
 */

/** Thrift compact types (the low nibble of a field header). */
const T = { TRUE: 1, FALSE: 2, BYTE: 3, I16: 4, I32: 5, I64: 6, DOUBLE: 7, BINARY: 8, LIST: 9, SET: 10, MAP: 11, STRUCT: 12 } as const

/** parquet.thrift PageType and Encoding values used here. */
const DATA_PAGE = 0
const DATA_PAGE_V2 = 3
const PLAIN = 0

class Malformed extends Error {}

/** A cursor over Thrift compact bytes; reading past the end throws Malformed. */
class Cursor {
  constructor(
    readonly b: Uint8Array,
    public at: number,
  ) {}

  byte(): number {
    if (this.at >= this.b.length) throw new Malformed()
    return this.b[this.at++]
  }

  varint(): number {
    let v = 0
    let scale = 1
    for (let k = 0; k < 10; k++) {
      const x = this.byte()
      v += (x & 0x7f) * scale
      if (x < 0x80) return v
      scale *= 128
    }
    throw new Malformed()
  }

  /** A zigzag varint (i16, i32; i64 values beyond 2^53 lose precision, never used here). */
  int(): number {
    const v = this.varint()
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2
  }

  skip(type: number): void {
    switch (type) {
      case T.TRUE:
      case T.FALSE:
        return
      case T.BYTE:
        this.byte()
        return
      case T.I16:
      case T.I32:
      case T.I64:
        this.varint()
        return
      case T.DOUBLE:
        this.advance(8)
        return
      case T.BINARY:
        this.advance(this.varint())
        return
      case T.LIST:
      case T.SET: {
        const h = this.byte()
        const n = h >> 4 === 15 ? this.varint() : h >> 4
        const elem = h & 15
        // booleans in a list are one byte each
        for (let k = 0; k < n; k++) elem === T.TRUE || elem === T.FALSE ? this.byte() : this.skip(elem)
        return
      }
      case T.MAP: {
        const n = this.varint()
        if (n === 0) return
        const kv = this.byte()
        for (let k = 0; k < n; k++) {
          this.skip(kv >> 4)
          this.skip(kv & 15)
        }
        return
      }
      case T.STRUCT:
        this.struct(() => false)
        return
      default:
        throw new Malformed()
    }
  }

  advance(n: number): void {
    if (n < 0 || this.at + n > this.b.length) throw new Malformed()
    this.at += n
  }

  /**
   * Read a struct's fields up to its stop byte: `field(id, type)` reads the value and returns
   * true, or returns false to have it skipped.
   */
  struct(field: (id: number, type: number) => boolean): void {
    let id = 0
    for (;;) {
      const h = this.byte()
      if (h === 0) return
      const type = h & 15
      id = h >> 4 === 0 ? this.int() : id + (h >> 4)
      if (!field(id, type)) this.skip(type)
    }
  }
}

/** What a page header says about the page that follows it. */
export interface PageHeader {
  readonly type: number
  readonly uncompressedSize: number
  readonly compressedSize: number
  readonly numValues: number
  readonly encoding: number
  /** Data page v2 only: nulls and level byte lengths (0 for v1 pages, whose levels are in the data). */
  readonly numNulls: number
  readonly levelBytes: number
  /** Offset of the page's data (just past the header). */
  readonly dataAt: number
}

/**
 * The page header at `at` (PageHeader: 1 type, 2 uncompressed_page_size, 3 compressed_page_size,
 * 5 data_page_header {1 num_values, 2 encoding}, 8 data_page_header_v2 {1 num_values, 2 num_nulls,
 * 4 encoding, 5/6 definition/repetition levels byte length}). undefined when malformed.
 */
export const readPageHeader = (bytes: Uint8Array, at: number): PageHeader | undefined => {
  const c = new Cursor(bytes, at)
  let type = -1
  let uncompressedSize = -1
  let compressedSize = -1
  let numValues = -1
  let encoding = -1
  let numNulls = 0
  let levelBytes = 0
  try {
    c.struct((id, t) => {
      if (t === T.I32 && id <= 3) {
        const v = c.int()
        if (id === 1) type = v
        else if (id === 2) uncompressedSize = v
        else compressedSize = v
        return true
      }
      if (t === T.STRUCT && (id === 5 || id === 8)) {
        c.struct((sub, st) => {
          if (st !== T.I32) return false
          const v = c.int()
          if (sub === 1) numValues = v
          else if (id === 5 && sub === 2) encoding = v
          else if (id === 8 && sub === 2) numNulls = v
          else if (id === 8 && sub === 4) encoding = v
          else if (id === 8 && (sub === 5 || sub === 6)) levelBytes += v
          return true
        })
        return true
      }
      return false
    })
  } catch (e) {
    if (e instanceof Malformed) return undefined
    throw e
  }
  if (type < 0 || uncompressedSize < 0 || compressedSize < 0) return undefined
  return { type, uncompressedSize, compressedSize, numValues, encoding, numNulls, levelBytes, dataAt: c.at }
}

/**
 * Copy the `rows` 4-byte values of an uncompressed column chunk into `out` (byte view, at least
 * 4·rows long) when every page of the chunk is a PLAIN data page (v1 or v2) of exactly
 * 4·num_values bytes of values, with no levels and no nulls, and the pages fill the chunk
 * exactly. false otherwise (`out` may then hold part of the values).
 * @param chunk the column chunk's bytes, from its first page header to its end
 */
export const plainChunkValues = (chunk: Uint8Array, rows: number, out: Uint8Array): boolean => {
  if (out.length < 4 * rows) return false
  let at = 0
  let filled = 0
  while (at < chunk.length) {
    const h = readPageHeader(chunk, at)
    if (h === undefined) return false
    if (h.type !== DATA_PAGE && h.type !== DATA_PAGE_V2) return false
    const n = h.numValues
    const size = 4 * n
    if (h.encoding !== PLAIN || h.numNulls !== 0 || h.levelBytes !== 0) return false
    if (n < 0 || h.compressedSize !== size || h.uncompressedSize !== size) return false
    if (filled + n > rows || h.dataAt + size > chunk.length) return false
    out.set(chunk.subarray(h.dataAt, h.dataAt + size), 4 * filled)
    filled += n
    at = h.dataAt + size
  }
  return filled === rows && at === chunk.length
}
