/**
 * Arrow ⇄ Parquet through parquet-wasm. The only module that touches parquet-wasm.
 *
 * Files are zstd-compressed; writers may fix the row-group size so that readers can fetch the
 * same block of rows from many aligned files (score tables) without loading whole files.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as arrow from "apache-arrow"
import {
  Compression,
  EnabledStatistics,
  Encoding,
  ParquetFile,
  RecordBatch as WasmRecordBatch,
  Table as WasmTable,
  WriterPropertiesBuilder,
  readParquet,
  transformParquetStream,
  wasmMemory,
  writeParquet,
} from "parquet-wasm/node"
import { writeFileAtomicSync } from "./atomic.ts"
import { plainChunkValues } from "./plain-pages.ts"

export interface WriteOptions {
  /** Rows per row group (default: 65,536). */
  readonly rowGroupSize?: number
  /**
   * Columns that get dictionary encoding; every other column is written plain. Default: all
   * columns try it. Float columns of distinct values (slopes, p-values) gain nothing from a
   * dictionary and cost ~70 ns a value to try one, so wide numeric tables list their few
   * repetitive columns here.
   */
  readonly dictionaryColumns?: ReadonlyArray<string>
  /** Key/value metadata stored in the file footer. */
  readonly metadata?: Record<string, string>
  /**
   * Columns written without compression (default: none; every column is zstd-compressed). Float
   * columns of distinct values (slopes, p-values) shrink by ~5% under zstd at about half the
   * encoder's time, so wide numeric tables list them here. The values read back are the same.
   */
  readonly rawColumns?: ReadonlyArray<string>
  /**
   * Columns that get min/max statistics in the footer; every other column gets none. Default:
   * all columns. Computing them costs ~a quarter of the encoder's time on wide per-token tables,
   * where only an index column (token_index) is worth them.
   */
  readonly statisticsColumns?: ReadonlyArray<string>
  /**
   * Integer columns written with DELTA_BINARY_PACKED instead of PLAIN (no dictionary): runs of
   * consecutive values (token_index) take a few bits a value and encode faster than zstd shrinks
   * them. Part of the core Parquet format; every reader reads it.
   */
  readonly deltaColumns?: ReadonlyArray<string>
}

/** Rows per row group when the writer does not say (WriteOptions.rowGroupSize). */
export const DEFAULT_ROW_GROUP_SIZE = 65_536

const writerProperties = (options: WriteOptions) => {
  let builder = new WriterPropertiesBuilder()
    .setCompression(Compression.ZSTD)
    .setMaxRowGroupSize(options.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE)
  if (options.dictionaryColumns) {
    builder = builder.setDictionaryEnabled(false)
    for (const c of options.dictionaryColumns) builder = builder.setColumnDictionaryEnabled(c, true)
  }
  for (const c of options.rawColumns ?? []) builder = builder.setColumnCompression(c, Compression.UNCOMPRESSED)
  for (const c of options.deltaColumns ?? []) {
    builder = builder.setColumnDictionaryEnabled(c, false).setColumnEncoding(c, Encoding.DELTA_BINARY_PACKED)
  }
  if (options.statisticsColumns) {
    builder = builder.setStatisticsEnabled(EnabledStatistics.None)
    for (const c of options.statisticsColumns) builder = builder.setColumnStatisticsEnabled(c, EnabledStatistics.Page)
  }
  if (options.metadata) builder = builder.setKeyValueMetadata(new Map(Object.entries(options.metadata)))
  return builder.build()
}

/** Encode an Arrow table as Parquet bytes (zstd). */
export const encodeParquet = (table: arrow.Table, options: WriteOptions = {}): Uint8Array => {
  const ipc = arrow.tableToIPC(table, "stream")
  const wasmTable = WasmTable.fromIPCStream(ipc)
  return writeParquet(wasmTable, writerProperties(options))
}

/**
 * A Parquet file encoded as its rows arrive, for files too large to hold as one table: tables in,
 * the file's bytes out a row group at a time (the page indexes and footer last), through
 * parquet-wasm's transformParquetStream (arrow-rs's AsyncArrowWriter). Row groups are cut every
 * `rowGroupSize` rows across the tables written, as encodeParquet cuts one table; tables of
 * exactly `rowGroupSize` rows (the last one shorter) give the very bytes encodeParquet gives for
 * their concatenation. Memory: the table being handed over (its IPC copy, in wasm memory), the
 * row group being encoded (its pages, compressed as they fill), up to 8 KiB of output the writer
 * buffers, and the bytes not yet taken — not the file.
 *
 *   const enc = parquetStreamEncoder({ schema: Tokens.schema })
 *   for (const t of tables) { await enc.write(t); sink(enc.take()) }
 *   await enc.finish(); sink(enc.take())
 *
 * arrow-rs's write errors do not reach JavaScript through transformParquetStream (it drops them),
 * so every table is checked against the first one's schema before it is handed over, and
 * `finish` checks that the footer counts every row written.
 */
export interface ParquetStreamEncoder {
  /** Encode the rows of `table` (the columns of options.schema, else of the first table); resolves once the encoder has taken them. */
  write(table: arrow.Table): Promise<void>
  /** The file's bytes encoded since the last take, in file order (possibly none). */
  take(): Uint8Array[]
  /** End the file: resolves once its last bytes are ready to take. */
  finish(): Promise<void>
  /** Give up (a failure elsewhere): the encoder stops, and what it holds is dropped. */
  abort(): void
  /** Rows written so far. */
  readonly rows: number
}

const sameFields = (a: arrow.Schema, b: arrow.Schema): boolean =>
  a.fields.length === b.fields.length &&
  a.fields.every((f, i) => f.name === b.fields[i].name && f.nullable === b.fields[i].nullable && String(f.type) === String(b.fields[i].type))

export const parquetStreamEncoder = (options: WriteOptions & { readonly schema?: arrow.Schema } = {}): ParquetStreamEncoder => {
  let schema = options.schema
  let rows = 0
  let ready: Uint8Array[] = []
  /** The bytes that came after `finish` began: they hold the page indexes and the footer. */
  const tail: Uint8Array[] = []
  let size = 0
  let finishing = false
  let aborted = false
  let failure: unknown
  /** The encoder's pending read of its input: give it a batch, or null to end the file. */
  let give: ((batch: WasmRecordBatch | null) => void) | undefined
  /** write/finish waiting for the encoder to read again. */
  let waiting: { resolve: () => void; reject: (e: unknown) => void } | undefined
  let output: Promise<void> | undefined
  const fail = (e: unknown) => {
    failure ??= e
    waiting?.reject(failure)
    waiting = undefined
  }
  const input = new ReadableStream<WasmRecordBatch>(
    {
      pull: (controller) =>
        new Promise<void>((resolve) => {
          give = (batch) => {
            give = undefined
            if (batch === null) controller.close()
            else controller.enqueue(batch)
            resolve()
          }
          if (aborted) give(null)
          waiting?.resolve()
          waiting = undefined
        }),
    },
    { highWaterMark: 0 },
  )
  /** The encoder's next read (it has finished with everything given before). */
  const read = (): Promise<(batch: WasmRecordBatch | null) => void> => {
    if (failure !== undefined) return Promise.reject(failure)
    if (give !== undefined) return Promise.resolve(give)
    return new Promise<void>((resolve, reject) => (waiting = { resolve, reject })).then(() => give!)
  }
  /** Starts the encoder on its first batch (transformParquetStream resolves only once it has one). */
  const start = async (first: WasmRecordBatch) => {
    const stream = transformParquetStream(input, writerProperties(options))
    ;(await read())(first)
    const bytes = (await stream) as ReadableStream<Uint8Array>
    output = (async () => {
      for await (const chunk of bytes) {
        if (aborted) continue
        ready.push(chunk)
        size += chunk.length
        if (finishing) tail.push(chunk)
      }
    })()
    output.catch(fail)
  }
  return {
    get rows() {
      return rows
    },
    write: async (table) => {
      if (failure !== undefined) throw failure
      if (finishing || aborted) throw new Error("parquet stream: write after finish")
      schema ??= table.schema
      if (!sameFields(schema, table.schema)) {
        throw new Error(`parquet stream: a table of other columns (${table.schema.fields.join(", ")}) than the file's (${schema.fields.join(", ")})`)
      }
      if (table.numRows === 0) return
      const wasm = WasmTable.fromIPCStream(arrow.tableToIPC(table, "stream"))
      const batches = wasm.recordBatches()
      wasm.free()
      let given = 0
      try {
        for (const b of batches) {
          if (output === undefined) await start(b)
          else (await read())(b)
          given++
        }
        await read() // the encoder has encoded them and asks for more
      } finally {
        for (const b of batches.slice(given)) b.free()
      }
      rows += table.numRows
    },
    take: () => {
      const out = ready
      ready = []
      return out
    },
    finish: async () => {
      if (failure !== undefined) throw failure
      if (output === undefined) {
        // Nothing written: the file of no rows, as encodeParquet writes it.
        if (schema === undefined) throw new Error("parquet stream: no rows and no schema")
        finishing = true
        ready.push(encodeParquet(new arrow.Table(schema), options))
        return
      }
      finishing = true
      ;(await read())(null)
      await output
      const counted = await footerRows(tail, size)
      if (counted !== undefined && counted !== rows) {
        throw new Error(`parquet stream: the encoder wrote ${counted} rows of the ${rows} given (an encoding error inside parquet-wasm)`)
      }
    },
    abort: () => {
      aborted = true
      ready = []
      give?.(null)
      fail(new Error("parquet stream: aborted"))
    },
  }
}

/**
 * The row count in the footer of a Parquet file of `size` bytes whose last bytes are `tail`;
 * undefined when the footer does not lie inside them (nothing to check against).
 */
const footerRows = async (tail: ReadonlyArray<Uint8Array>, size: number): Promise<number | undefined> => {
  const length = tail.reduce((n, c) => n + c.length, 0)
  const bytes = new Uint8Array(length)
  let o = 0
  for (const c of tail) {
    bytes.set(c, o)
    o += c.length
  }
  const start = size - length
  const outside = new Error("outside the tail")
  try {
    const file = await ParquetFile.fromFile(
      fileRanges("footer", {
        size,
        readAt: (into, offset) => {
          if (offset < start) throw outside
          return memorySource(bytes).readAt(into, offset - start)
        },
      }),
    )
    try {
      return Number(file.metadata().fileMetadata().numRows())
    } finally {
      file.free()
    }
  } catch (e) {
    if (e === outside || (e instanceof Error && e.message.includes("outside the tail"))) return undefined
    throw e
  }
}

/** Decode Parquet bytes into an Arrow table (optionally some columns / row groups only). */
export const decodeParquet = (
  bytes: Uint8Array,
  options: { readonly columns?: string[]; readonly rowGroups?: number[] } = {},
): arrow.Table => {
  const wasmTable = readParquet(bytes, { columns: options.columns, rowGroups: options.rowGroups })
  return arrow.tableFromIPC(wasmTable.intoIPCStream())
}

/** Write an Arrow table to `path` atomically as Parquet; returns the file's size in bytes. */
export const writeParquetFile = (path: string, table: arrow.Table, options: WriteOptions = {}): number =>
  writeFileAtomicSync(path, encodeParquet(table, options))

/** Read a whole Parquet file into an Arrow table. */
export const readParquetFile = (
  path: string,
  options: { readonly columns?: string[]; readonly rowGroups?: number[] } = {},
): arrow.Table => decodeParquet(new Uint8Array(fs.readFileSync(path)), options)

/**
 * A Parquet file opened for reading row groups one at a time. Only the footer and the requested
 * row groups' byte ranges are read from disk (positioned reads; no descriptor is held between
 * reads), so memory is bounded by the row group, not the file.
 */
export interface RowGroupReader {
  readonly path: string
  /** The file's columns (from its footer). */
  readonly schema: arrow.Schema
  readonly numRows: number
  /** Row counts of each row group, in file order. */
  readonly rowGroupRows: ReadonlyArray<number>
  read(rowGroup: number, columns?: string[]): Promise<arrow.Table>
  /**
   * The values of one float32 column of a row group, as `read(rowGroup, [column])` then
   * `getChild(column).toArray()` would give them. undefined when the column is not float32 or
   * has nulls. A non-nullable float32 column stored uncompressed in PLAIN pages (the score
   * files' logprob) is copied from the file's pages directly (plain-pages.ts); any other is
   * decoded by parquet-wasm and copied out of its memory.
   * @param into optional: copied into this array when it has exactly the row group's length
   *        (returned), instead of a new one
   */
  readFloat32(rowGroup: number, column: string, into?: Float32Array): Promise<Float32Array | undefined>
  /** Columns readFloat32 has tried to read directly, and whether it now does. */
  readonly direct: ReadonlyMap<string, boolean>
  close(): void
}

/** Bytes of a Parquet file by range: a file on disk (positioned reads) or a buffer in memory. */
interface ByteSource {
  readonly size: number
  /** Fill `into` with the bytes at `offset`…; false when the source ends first. */
  readAt(into: Uint8Array, offset: number): boolean
}

const diskSource = (path: string): ByteSource => ({
  size: fs.statSync(path).size,
  readAt: (into, offset) => {
    const fd = fs.openSync(path, "r")
    try {
      let done = 0
      while (done < into.length) {
        const n = fs.readSync(fd, into, done, into.length - done, offset + done)
        if (n === 0) return false
        done += n
      }
      return true
    } finally {
      fs.closeSync(fd)
    }
  },
})

const memorySource = (bytes: Uint8Array): ByteSource => ({
  size: bytes.length,
  readAt: (into, offset) => {
    if (offset + into.length > bytes.length) return false
    into.set(bytes.subarray(offset, offset + into.length))
    return true
  },
})

/** Open a Parquet file on disk for row-group reads. */
export const openRowGroups = (path: string): Promise<RowGroupReader> => openSource(path, diskSource(path))

/** The same over a file's bytes in memory (`name` is for messages). */
export const openRowGroupsFromBytes = (name: string, bytes: Uint8Array): Promise<RowGroupReader> => openSource(name, memorySource(bytes))

const openSource = async (path: string, source: ByteSource): Promise<RowGroupReader> => {
  const file = await ParquetFile.fromFile(fileRanges(path, source))
  const meta = file.metadata()
  const groups = meta.rowGroups()
  const rowGroupRows = groups.map((g) => Number(g.numRows()))
  const chunks = chunkLayout(groups)
  /** Per column: whether its chunks are read directly (plain-pages.ts); undefined until tried. */
  const direct = new Map<string, boolean>()
  const viaWasm = async (rowGroup: number, column: string, into: Float32Array | undefined) => {
    const t = await file.read({ rowGroups: [rowGroup], columns: [column] })
    try {
      return float32Column(t, into)
    } finally {
      t.free()
    }
  }
  return {
    path,
    get schema() {
      return arrow.tableFromIPC(file.schema().intoIPCStream()).schema
    },
    numRows: rowGroupRows.reduce((a, b) => a + b, 0),
    rowGroupRows,
    read: async (rowGroup, columns) => {
      const t = await file.read({ rowGroups: [rowGroup], columns })
      return arrow.tableFromIPC(t.intoIPCStream())
    },
    direct,
    readFloat32: async (rowGroup, column, into) => {
      const rows = rowGroupRows[rowGroup]
      const target = into !== undefined && into.length === rows ? into : undefined
      const chunk = chunks[rowGroup]?.get(column)
      if (chunk !== undefined && direct.get(column) !== false) {
        if (!direct.has(column)) direct.set(column, requiredFloat32(file, column))
        if (direct.get(column)) {
          const out = target ?? new Float32Array(rows)
          if (readPlainChunk(source, chunk, rows, out)) return out
          direct.set(column, false)
        }
      }
      return viaWasm(rowGroup, column, target)
    },
    close: () => file.free(),
  }
}

/** The file's column is float32 without nulls (Parquet FLOAT, REQUIRED). */
const requiredFloat32 = (file: ParquetFile, column: string): boolean => {
  const schema = file.schema()
  const field = arrow.tableFromIPC(schema.intoIPCStream()).schema.fields.find((f) => f.name === column)
  return field !== undefined && arrow.DataType.isFloat(field.type) && field.type.precision === arrow.Precision.SINGLE && !field.nullable
}

/** Where an uncompressed column chunk's bytes are in its file. */
interface ChunkPlace {
  readonly offset: number
  readonly size: number
}

/**
 * Byte ranges of the uncompressed column chunks of each row group, by column name. parquet-wasm
 * does not expose a chunk's data page offset, so the chunks are taken to be laid out as
 * arrow-rs writes them: one after another from byte 4, in row-group and column order. A file laid
 * out otherwise fails the page checks of plain-pages.ts (page headers at the chunk's start whose
 * values add up to the row group's rows and whose pages end exactly at the chunk's end) and is
 * read through parquet-wasm. Empty on big-endian machines.
 */
const chunkLayout = (groups: ReturnType<ReturnType<ParquetFile["metadata"]>["rowGroups"]>): Array<Map<string, ChunkPlace>> => {
  if (os.endianness() !== "LE") return []
  let offset = 4
  return groups.map((g) => {
    const places = new Map<string, ChunkPlace>()
    for (const c of g.columns()) {
      const size = Number(c.compressedSize())
      if (c.compression() === Compression.UNCOMPRESSED) places.set(c.columnPath().join("."), { offset, size })
      offset += size
    }
    return places
  })
}

let chunkScratch = new Uint8Array(0)

/** Read the chunk and copy its values into `out` when plainChunkValues takes its layout. */
const readPlainChunk = (source: ByteSource, chunk: ChunkPlace, rows: number, out: Float32Array): boolean => {
  if (chunkScratch.length < chunk.size) chunkScratch = new Uint8Array(chunk.size)
  const bytes = chunkScratch.subarray(0, chunk.size)
  if (!source.readAt(bytes, chunk.offset)) return false
  return plainChunkValues(bytes, rows, new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
}

/**
 * The only column of a parquet-wasm table as one Float32Array, read through the Arrow C data
 * interface (wasm32 layout: ArrowArray = length, null_count, offset, n_buffers, n_children as
 * int64 at 0…32, then pointers buffers @40, children @44; ArrowSchema = format @0, n_children
 * int64 @24, children @32). undefined when it is not one float32 column without nulls.
 */
const float32Column = (t: WasmTable, into?: Float32Array): Float32Array | undefined => {
  const parts: Float32Array[] = []
  let filled = 0 // values copied into `into`
  for (let b = 0; b < t.numBatches; b++) {
    const ffi = t.recordBatch(b)?.intoFFI()
    if (ffi === undefined) return undefined
    try {
      const mem = new DataView(wasmMemory().buffer)
      const i64 = (at: number) => Number(mem.getBigInt64(at, true))
      const ptr = (at: number) => mem.getUint32(at, true)
      const top = ffi.arrayAddr()
      const schema = ffi.schemaAddr()
      if (i64(top + 32) !== 1 || i64(top + 16) !== 0 || i64(schema + 24) !== 1) return undefined
      const fmt = ptr(ptr(ptr(schema + 32)))
      if (mem.getUint8(fmt) !== 0x66 /* "f" */ || mem.getUint8(fmt + 1) !== 0) return undefined
      const child = ptr(ptr(top + 44))
      const length = i64(child)
      if (i64(child + 8) !== 0 || i64(child + 24) !== 2) return undefined
      const data = ptr(ptr(child + 40) + 4) + i64(child + 16) * 4
      if (into !== undefined && filled + length <= into.length) {
        new Uint8Array(into.buffer, into.byteOffset + filled * 4, length * 4).set(new Uint8Array(mem.buffer, data, length * 4))
        parts.push(into.subarray(filled, filled + length))
        filled += length
      } else {
        const bytes = new Uint8Array(mem.buffer, data, length * 4).slice()
        parts.push(new Float32Array(bytes.buffer))
      }
    } finally {
      ffi.free()
    }
  }
  if (into !== undefined && filled === into.length) return into
  if (parts.length === 1) return parts[0]
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/**
 * The part of the Blob interface that ParquetFile.fromFile uses (size, slice(a, b).arrayBuffer()),
 * over a byte source: each range is one positioned read into a buffer of exactly its size (no
 * descriptor is held between reads, as with Node's file-backed Blob, which streams a range in
 * 64 KiB chunks and joins them at several times the cost).
 */
const fileRanges = (path: string, source: ByteSource): Blob => {
  const size = source.size
  const slice = (start = 0, end = size) => {
    const from = Math.max(0, Math.min(size, start < 0 ? size + start : start))
    const to = Math.max(from, Math.min(size, end < 0 ? size + end : end))
    return {
      size: to - from,
      arrayBuffer: async (): Promise<ArrayBuffer> => {
        const buf = new Uint8Array(to - from)
        if (!source.readAt(buf, from)) throw new Error(`${path}: unexpected end of file`)
        return buf.buffer
      },
    }
  }
  return { size, slice } as unknown as Blob
}

/** Footer metadata of a Parquet file: number of rows and row-group sizes, without reading data. */
export const parquetRowGroups = async (path: string): Promise<number[]> => {
  const r = await openRowGroups(path)
  try {
    return [...r.rowGroupRows]
  } finally {
    r.close()
  }
}
