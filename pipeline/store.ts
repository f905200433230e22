/**
 * Arrow ⇄ Parquet through parquet-wasm. The only module that touches parquet-wasm.
 *
 * Files are zstd-compressed; writers may fix the row-group size so that readers can fetch the
 * same block of rows from many aligned files (score tables) without loading whole files.
 */
import * as fs from "node:fs"
import * as arrow from "apache-arrow"
import {
  Compression,
  ParquetFile,
  Table as WasmTable,
  WriterPropertiesBuilder,
  readParquet,
  writeParquet,
} from "parquet-wasm/node"
import { writeFileAtomicSync } from "./atomic.ts"

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
}

/** Encode an Arrow table as Parquet bytes (zstd). */
export const encodeParquet = (table: arrow.Table, options: WriteOptions = {}): Uint8Array => {
  const ipc = arrow.tableToIPC(table, "stream")
  const wasmTable = WasmTable.fromIPCStream(ipc)
  let builder = new WriterPropertiesBuilder()
    .setCompression(Compression.ZSTD)
    .setMaxRowGroupSize(options.rowGroupSize ?? 65_536)
  if (options.dictionaryColumns) {
    builder = builder.setDictionaryEnabled(false)
    for (const c of options.dictionaryColumns) builder = builder.setColumnDictionaryEnabled(c, true)
  }
  if (options.metadata) builder = builder.setKeyValueMetadata(new Map(Object.entries(options.metadata)))
  return writeParquet(wasmTable, builder.build())
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
 * row groups' byte ranges are read from disk (the file is a lazily-read Blob), so memory is
 * bounded by the row group, not the file.
 */
export interface RowGroupReader {
  readonly path: string
  readonly numRows: number
  /** Row counts of each row group, in file order. */
  readonly rowGroupRows: ReadonlyArray<number>
  read(rowGroup: number, columns?: string[]): Promise<arrow.Table>
  close(): void
}

export const openRowGroups = async (path: string): Promise<RowGroupReader> => {
  const blob = await fs.openAsBlob(path)
  const file = await ParquetFile.fromFile(blob)
  const meta = file.metadata()
  const groups = meta.rowGroups()
  const rowGroupRows = groups.map((g) => Number(g.numRows()))
  return {
    path,
    numRows: rowGroupRows.reduce((a, b) => a + b, 0),
    rowGroupRows,
    read: async (rowGroup, columns) => {
      const t = await file.read({ rowGroups: [rowGroup], columns })
      return arrow.tableFromIPC(t.intoIPCStream())
    },
    close: () => file.free(),
  }
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
