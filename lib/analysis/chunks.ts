/**
 * Where one column's chunks lie in a Parquet file, read from its footer in TypeScript, and the
 * values of such a chunk read straight from the file (no parquet-wasm).
 *
 * Why not the store's RowGroupReader for the score files: each open ParquetFile keeps its decoded
 * footer in parquet-wasm's memory, ~6 KiB per row group (~1.8 MiB for a 20M-token score file of
 * 306 row groups), and that memory never goes back (wasm memory only grows; even files opened and
 * closed one by one left 38 MiB behind for 30 such files). Regress and classify held every score
 * file of a model open on each worker thread, so their peak RSS grew with the number of tokens.
 * Here a file's footer is parsed once into a few numbers per row group, and a block's chunk is
 * one positioned read and a copy (pipeline/plain-pages.ts checks its pages).
 *
 *   const c = columnChunks("scores/…/scores.parquet", "logprob")
 *   // c.rowGroupRows [65536, 65536, …], c.offset[g] / c.size[g]: bytes of row group g's chunk
 *   readPlainFloat32(c.path, c.offset[g], c.size[g], c.rowGroupRows[g])  // Float32Array, or undefined
 *
 * The footer is the Thrift compact FileMetaData of parquet.thrift; only these fields are read:
 *   FileMetaData   2 schema list<SchemaElement>, 3 num_rows, 4 row_groups list<RowGroup>
 *   SchemaElement  1 type, 3 repetition_type, 4 name, 5 num_children
 *   RowGroup       1 columns list<ColumnChunk>, 3 num_rows
 *   ColumnChunk    1 file_path, 3 meta_data ColumnMetaData
 *   ColumnMetaData 3 path_in_schema list<string>, 4 codec, 7 total_compressed_size,
 *                  9 data_page_offset, 11 dictionary_page_offset
 */
import * as fs from "node:fs"
import { plainChunkValues } from "../../pipeline/plain-pages.ts"

/** Thrift compact types (the low nibble of a field header). */
const T = { TRUE: 1, FALSE: 2, BYTE: 3, I16: 4, I32: 5, I64: 6, DOUBLE: 7, BINARY: 8, LIST: 9, SET: 10, MAP: 11, STRUCT: 12 } as const
/** parquet.thrift values used here. */
const FLOAT = 4
const REQUIRED = 0
const UNCOMPRESSED = 0

class Malformed extends Error {
  constructor(what: string) {
    super(`malformed Parquet footer (${what})`)
  }
}

/** A cursor over Thrift compact bytes; reading past the end throws Malformed. */
class Cursor {
  at = 0
  constructor(readonly b: Uint8Array) {}

  byte(): number {
    if (this.at >= this.b.length) throw new Malformed("ends early")
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
    throw new Malformed("varint")
  }

  /** A zigzag varint (offsets and sizes beyond 2^53 lose precision: no file is that large). */
  int(): number {
    const v = this.varint()
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2
  }

  string(): string {
    const n = this.varint()
    if (this.at + n > this.b.length) throw new Malformed("string")
    const s = Buffer.from(this.b.buffer, this.b.byteOffset + this.at, n).toString("utf8")
    this.at += n
    return s
  }

  /** Read a list's header; `each(type)` reads every element. */
  list(each: (type: number) => void): void {
    const h = this.byte()
    const n = h >> 4 === 15 ? this.varint() : h >> 4
    for (let k = 0; k < n; k++) each(h & 15)
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
        this.at += 8
        return
      case T.BINARY: {
        // (not `this.at += this.varint()`: that adds to the position before the length was read)
        const n = this.varint()
        this.at += n
        return
      }
      case T.LIST:
      case T.SET:
        // booleans in a list are one byte each
        this.list((elem) => (elem === T.TRUE || elem === T.FALSE ? this.byte() : this.skip(elem)))
        return
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
        throw new Malformed(`type ${type}`)
    }
  }

  /** Read a struct's fields up to its stop byte: `field(id, type)` reads the value and returns true, or false to skip it. */
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

/** One column's chunks in a Parquet file: [rowGroups] each. */
export interface ColumnChunks {
  readonly path: string
  readonly numRows: number
  /** Rows of each row group, in file order. */
  readonly rowGroupRows: ReadonlyArray<number>
  /** Byte offset of the column's chunk in each row group (its first page header). */
  readonly offset: Float64Array
  /** Bytes of each chunk (total_compressed_size). */
  readonly size: Float64Array
  /**
   * The column is a top-level FLOAT (float32) REQUIRED column and every chunk is uncompressed in
   * this file: readPlainFloat32 may read its chunks (it still checks their pages).
   */
  readonly plain: boolean
}

/** The footer's bytes (FileMetaData), from the file's last 8 bytes: length (int32 LE), "PAR1". */
const footerBytes = (path: string): { bytes: Uint8Array; size: number } => {
  const fd = fs.openSync(path, "r")
  try {
    const size = fs.fstatSync(fd).size
    const tail = Buffer.alloc(8)
    if (size < 12 || fs.readSync(fd, tail, 0, 8, size - 8) !== 8 || tail.toString("latin1", 4) !== "PAR1") throw new Malformed("no PAR1 tail")
    const n = tail.readUInt32LE(0)
    if (n > size - 12) throw new Malformed("footer length")
    const bytes = new Uint8Array(n)
    if (fs.readSync(fd, bytes, 0, n, size - 8 - n) !== n) throw new Malformed("ends early")
    return { bytes, size }
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The chunks of top-level column `column` in every row group of the Parquet file at `path`.
 * Throws when the file cannot be read, its footer is malformed, or a row group lacks the column.
 */
export const columnChunks = (path: string, column: string): ColumnChunks => {
  const { bytes, size: fileSize } = footerBytes(path)
  const c = new Cursor(bytes)
  let numRows = -1
  let plain = true
  let found = false
  const rowGroupRows: number[] = []
  const offsets: number[] = []
  const sizes: number[] = []
  c.struct((id, type) => {
    if (id === 2 && type === T.LIST) {
      // schema: the root, then every element depth-first; `column` must be a leaf child of the root
      const remaining: number[] = [] // children still to come of each open group
      c.list(() => {
        let t = -1
        let rep = -1
        let name = ""
        let children = 0
        c.struct((f, ft) => {
          if (f === 1 && ft === T.I32) t = c.int()
          else if (f === 3 && ft === T.I32) rep = c.int()
          else if (f === 4 && ft === T.BINARY) name = c.string()
          else if (f === 5 && ft === T.I32) children = c.int()
          else return false
          return true
        })
        if (remaining.length === 1 && name === column && children === 0) {
          found = true
          if (t !== FLOAT || rep !== REQUIRED) plain = false
        }
        if (remaining.length > 0) remaining[remaining.length - 1]--
        if (children > 0) remaining.push(children)
        while (remaining.length > 0 && remaining[remaining.length - 1] === 0) remaining.pop()
      })
      return true
    }
    if (id === 3 && type === T.I64) {
      numRows = c.int()
      return true
    }
    if (id === 4 && type === T.LIST) {
      c.list(() => {
        let rows = -1
        let offset = -1
        let size = -1
        c.struct((f, ft) => {
          if (f === 3 && ft === T.I64) rows = c.int()
          else if (f === 1 && ft === T.LIST) {
            c.list(() =>
              c.struct((cf, cft) => {
                if (cf === 1 && cft === T.BINARY) {
                  c.string()
                  plain = false // data in another file
                  return true
                }
                if (cf !== 3 || cft !== T.STRUCT) return false
                let names: string[] = [] // path_in_schema
                let codec = -1
                let total = -1
                let data = -1
                let dict = -1
                c.struct((m, mt) => {
                  if (m === 3 && mt === T.LIST) {
                    names = []
                    c.list(() => names.push(c.string()))
                  } else if (m === 4 && mt === T.I32) codec = c.int()
                  else if (m === 7 && mt === T.I64) total = c.int()
                  else if (m === 9 && mt === T.I64) data = c.int()
                  else if (m === 11 && mt === T.I64) dict = c.int()
                  else return false
                  return true
                })
                if (names.length === 1 && names[0] === column) {
                  offset = dict >= 0 && dict < data ? dict : data
                  size = total
                  if (codec !== UNCOMPRESSED) plain = false
                }
                return true
              }),
            )
          } else return false
          return true
        })
        if (rows < 0 || offset < 0 || size < 0 || offset + size > fileSize) throw new Malformed(`row group ${rowGroupRows.length} has no chunk of ${column}`)
        rowGroupRows.push(rows)
        offsets.push(offset)
        sizes.push(size)
      })
      return true
    }
    return false
  })
  if (!found) throw new Malformed(`no column ${column}`)
  if (numRows !== rowGroupRows.reduce((a, b) => a + b, 0)) throw new Malformed("num_rows is not the sum of the row groups' rows")
  return { path, numRows, rowGroupRows, offset: Float64Array.from(offsets), size: Float64Array.from(sizes), plain }
}

let scratch = new Uint8Array(0)

/**
 * The `rows` float32 values of the uncompressed PLAIN chunk of `size` bytes at `offset` of the
 * file (one positioned read; plainChunkValues checks the pages): into `into` when it has exactly
 * `rows` values, else a new array. undefined when the chunk's pages are laid out otherwise.
 */
export const readPlainFloat32 = (path: string, offset: number, size: number, rows: number, into?: Float32Array): Float32Array | undefined => {
  if (scratch.length < size) scratch = new Uint8Array(size)
  const bytes = scratch.subarray(0, size)
  const fd = fs.openSync(path, "r")
  try {
    let done = 0
    while (done < size) {
      const n = fs.readSync(fd, bytes, done, size - done, offset + done)
      if (n === 0) return undefined
      done += n
    }
  } finally {
    fs.closeSync(fd)
  }
  const out = into !== undefined && into.length === rows ? into : new Float32Array(rows)
  return plainChunkValues(bytes, rows, new Uint8Array(out.buffer, out.byteOffset, out.byteLength)) ? out : undefined
}
