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
 * The footer (the Thrift FileMetaData) is decoded by hyparquet's parquetMetadata, a dependency-free
 * Parquet reader in JavaScript, from the file's last bytes alone; of it only the schema, the row
 * groups' row counts and each chunk's codec, offsets and size are kept.
 */
import * as fs from "node:fs"
import { parquetMetadata, parquetSchema, type FileMetaData } from "hyparquet"
import { plainChunkValues } from "../../pipeline/plain-pages.ts"

class Malformed extends Error {
  constructor(what: string) {
    super(`malformed Parquet footer (${what})`)
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

/** The footer's bytes (FileMetaData, its length as int32 LE, "PAR1"), found from the file's last 8 bytes. */
const footerBytes = (path: string): { bytes: Uint8Array; size: number } => {
  const fd = fs.openSync(path, "r")
  try {
    const size = fs.fstatSync(fd).size
    const tail = Buffer.alloc(8)
    if (size < 12 || fs.readSync(fd, tail, 0, 8, size - 8) !== 8 || tail.toString("latin1", 4) !== "PAR1") throw new Malformed("no PAR1 tail")
    const n = tail.readUInt32LE(0)
    if (n > size - 12) throw new Malformed("footer length")
    // The footer with its length and "PAR1", as hyparquet's parquetMetadata reads it (from the end).
    const bytes = new Uint8Array(n + 8)
    if (fs.readSync(fd, bytes, 0, n + 8, size - 8 - n) !== n + 8) throw new Malformed("ends early")
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
  let meta: FileMetaData
  try {
    meta = parquetMetadata(bytes, { geoparquet: false })
  } catch (e) {
    throw new Malformed(e instanceof Error ? e.message : String(e))
  }
  // schema: the root, then every element depth-first; `column` must be a leaf child of the root
  const root = parquetSchema(meta)
  const leaf = root.children.find((c) => c.element.name === column && c.children.length === 0)
  if (leaf === undefined) throw new Malformed(`no column ${column}`)
  let plain = leaf.element.type === "FLOAT" && leaf.element.repetition_type === "REQUIRED"
  const rowGroupRows: number[] = []
  const offsets: number[] = []
  const sizes: number[] = []
  for (const rg of meta.row_groups) {
    const chunk = rg.columns.find((c) => c.meta_data?.path_in_schema.length === 1 && c.meta_data.path_in_schema[0] === column)
    const m = chunk?.meta_data
    if (m === undefined) throw new Malformed(`row group ${rowGroupRows.length} has no chunk of ${column}`)
    if (chunk!.file_path !== undefined) plain = false // data in another file
    if (m.codec !== "UNCOMPRESSED") plain = false
    const data = Number(m.data_page_offset)
    const dict = m.dictionary_page_offset !== undefined ? Number(m.dictionary_page_offset) : -1
    const offset = dict >= 0 && dict < data ? dict : data
    const size = Number(m.total_compressed_size)
    if (offset < 0 || size < 0 || offset + size > fileSize) throw new Malformed(`row group ${rowGroupRows.length} has no chunk of ${column}`)
    rowGroupRows.push(Number(rg.num_rows))
    offsets.push(offset)
    sizes.push(size)
  }
  const numRows = Number(meta.num_rows)
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
