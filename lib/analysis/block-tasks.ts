/**
 * One block of regress or classify, start to finish: read row group g of every score file,
 * compute (blocks.ts), and encode the block's part as Parquet bytes. Plain async functions over
 * structured-cloneable inputs and outputs, so the same code runs on the stage's own thread or on
 * a worker thread (parallel.ts); the stage writes the bytes with ctx.writeFile and merges the
 * counts in block order, so the output does not depend on where a block ran.
 *
 * Readers are cached per file for the life of the thread (footers are read once);
 * `closeReaders` frees them.
 */
import * as arrow from "apache-arrow"
import { encodeParquet, openRowGroups, type RowGroupReader } from "../../pipeline/store.ts"
import type { XAxis } from "../../schemas/config.ts"
import { type ClassColumns, type RegressColumns, classifyBlock, forSlices, regressBlock, regressColumns, regressColumnsView } from "./blocks.ts"
import { classesTable, regressionsTable } from "./parts.ts"
import { CLASSES, type ClassRules } from "./classes.ts"
import { type ColumnChunks, readPlainFloat32 } from "./chunks.ts"
import type { DocumentRuns } from "./doc-shares.ts"
import type { GroupSums } from "./tallies.ts"
import { SignificanceTest } from "./tdist.ts"
import { firstLine } from "../messages.ts"

/**
 * Encoding of the per-token parts (store.ts WriteOptions): the float columns of distinct values
 * uncompressed, token_index delta-encoded with statistics (the only column worth them), every
 * other column plain under zstd, except `class`, whose dictionary pages are 40x smaller than its
 * plain strings. parquet-wasm hashes every value it dictionary-encodes (~60 ns a value); x_axis
 * (one or a few long runs a part) is as small plain under zstd (+0.005%) and encodes 20 ms a
 * 458,752-row part faster; threshold (7 values) likewise.
 */
const REGRESSION_PART = {
  dictionaryColumns: [],
  rawColumns: ["slope", "intercept", "r2", "p_value"],
  statisticsColumns: ["token_index"],
  deltaColumns: ["token_index"],
} as const
const CLASS_PART = { dictionaryColumns: ["class"], statisticsColumns: ["token_index"], deltaColumns: ["token_index"] } as const

const readers = new Map<string, Promise<RowGroupReader>>()

const reader = (file: string): Promise<RowGroupReader> => {
  let r = readers.get(file)
  if (r === undefined) {
    r = openRowGroups(file)
    readers.set(file, r)
    r.catch(() => readers.delete(file))
  }
  return r
}

/** Close every cached reader of this thread. */
export const closeReaders = async (): Promise<void> => {
  const all = [...readers.values()]
  readers.clear()
  for (const r of all) {
    try {
      ;(await r).close()
    } catch {
      // failed to open: nothing to close
    }
  }
}

/**
 * Where row group g's logprob chunk lies in a score file (chunks.ts), for a direct read; null:
 * read it through parquet-wasm (a file whose footer or column chunks.ts does not take).
 */
export type ChunkPlace = { readonly offset: number; readonly size: number; readonly rows: number } | null

/** The places of row group g in each file: [files]. */
export const chunkPlaces = (chunks: ReadonlyArray<ColumnChunks>, g: number): ChunkPlace[] =>
  chunks.map((c) => (c.plain ? { offset: c.offset[g], size: c.size[g], rows: c.rowGroupRows[g] } : null))

/**
 * The logprob column of row group g of each file: [files] arrays of [rows], nats.
 * @param into optional arrays to read into, by file (from `spareArrays`); the result may be them
 * @param places optional, by file: where the chunk lies (chunkPlaces), read with one positioned
 *        read and no parquet-wasm reader (whose footer would stay in this thread's wasm memory)
 */
export const readLogprobGroup = async (
  files: ReadonlyArray<string>,
  g: number,
  into: ReadonlyArray<Float32Array> = [],
  places: ReadonlyArray<ChunkPlace> = [],
): Promise<Float32Array[]> => {
  const out: Float32Array[] = []
  for (const [j, f] of files.entries()) {
    let v: unknown
    try {
      const p = places[j]
      v = p ? readPlainFloat32(f, p.offset, p.size, p.rows, into[j]) : undefined
      if (v === undefined) {
        const r = await reader(f)
        // Straight from the decoder; the Arrow table is the fallback (nulls, other types).
        v = (await r.readFloat32(g, "logprob", into[j])) ?? (await r.read(g, ["logprob"])).getChild("logprob")?.toArray()
      }
    } catch (e) {
      throw new Error(`cannot read row group ${g} of ${f}: ${firstLine(e)}`)
    }
    if (!(v instanceof Float32Array)) throw new Error(`${f}: logprob is not a float32 column`)
    out.push(v)
  }
  return out
}

/**
 * codes[at + i] = add(string i) for rows lo…hi−1 of a Utf8 chunk without nulls, decoding each
 * distinct string once: rows are matched by their bytes against the strings seen so far (a
 * dataset has a handful of categories), instead of a TextDecoder call per row.
 */
const utf8Codes = (
  data: arrow.Data<arrow.Utf8>,
  lo: number,
  hi: number,
  add: (name: string) => number,
  codes: Uint8Array,
  at: number,
): void => {
  // (a sliced Data's buffers are sliced already: row i is offsets[i], not offsets[offset + i])
  const offsets = data.valueOffsets
  const bytes = data.values
  const seen: Array<{ bytes: Uint8Array; code: number }> = []
  const decoder = new TextDecoder()
  for (let i = lo; i < hi; i++) {
    const a = offsets[i]
    const b = offsets[i + 1]
    let code = -1
    for (const s of seen) {
      if (s.bytes.length !== b - a) continue
      let same = true
      for (let j = 0; j < s.bytes.length; j++) {
        if (s.bytes[j] !== bytes[a + j]) {
          same = false
          break
        }
      }
      if (same) {
        code = s.code
        break
      }
    }
    if (code < 0) {
      const own = bytes.slice(a, b)
      code = add(decoder.decode(own))
      seen.push({ bytes: own, code })
    }
    codes[at + i] = code
  }
}

/**
 * Calls `each` with the `columns` of every row group of a tokens.parquet that holds tokens
 * start…start+count−1, and the rows lo…hi−1 of that row group among them, whose row 0 is token
 * start + at.
 */
const forTokenRows = async (
  file: string,
  start: number,
  count: number,
  columns: ReadonlyArray<string>,
  each: (cols: ReadonlyArray<arrow.Vector>, lo: number, hi: number, at: number) => void,
): Promise<void> => {
  const r = await reader(file)
  for (const name of columns) if (r.schema.fields.every((f) => f.name !== name)) throw new Error(`${file}: no ${name} column`)
  let groupStart = 0
  for (let g = 0; g < r.rowGroupRows.length && groupStart < start + count; g++) {
    const rows = r.rowGroupRows[g]
    const from = Math.max(start, groupStart)
    const to = Math.min(start + count, groupStart + rows)
    if (from < to) {
      const table = await r.read(g, [...columns])
      const cols = columns.map((name) => {
        const col = table.getChild(name)
        if (col === null) throw new Error(`${file}: no ${name} column`)
        return col
      })
      each(cols, from - groupStart, to - groupStart, groupStart - start)
    }
    groupStart += rows
  }
  if (groupStart < start + count) throw new Error(`${file} has ${r.numRows} tokens, fewer than the score files' ${start + count}`)
}

/**
 * Categories of tokens start…start+count−1 of a tokens.parquet, as codes into `names` (the
 * names in order of first appearance in this range).
 */
export const readCategories = async (file: string, start: number, count: number): Promise<{ codes: Uint8Array; names: string[] }> => {
  const out = new CategoryCodes(file, count)
  await forTokenRows(file, start, count, ["category"], ([col], lo, hi, at) => out.add(col, lo, hi, at))
  return { codes: out.codes, names: out.names }
}

/** readCategories' answer for tokens start…start+count−1, and their documents (one read of each row group). */
export const readBlockTokens = async (
  file: string,
  start: number,
  count: number,
): Promise<{ codes: Uint8Array; names: string[]; docs: DocumentRuns }> => {
  const cats = new CategoryCodes(file, count)
  const docs = new DocumentRunsBuilder()
  await forTokenRows(file, start, count, ["category", "doc_id"], ([category, docId], lo, hi, at) => {
    cats.add(category, lo, hi, at)
    docs.add(docId, lo, hi, at)
  })
  return { codes: cats.codes, names: cats.names, docs: docs.finish() }
}

/**
 * Rows lo…hi−1 of a column, Arrow chunk by chunk: fn(chunk, a, b, row) for each chunk they reach,
 * a…b−1 its rows among them (chunk-relative) and `row` the column row where the chunk starts.
 */
const forChunks = (col: arrow.Vector, lo: number, hi: number, fn: (data: arrow.Data, a: number, b: number, row: number) => void): void => {
  let row = 0
  for (const data of col.data) {
    const a = Math.max(lo, row)
    const b = Math.min(hi, row + data.length)
    if (a < b) fn(data, a - row, b - row, row)
    row += data.length
  }
}

/**
 * The DocumentRuns of a block, filled one row group's doc_id column at a time, in token order
 * (no I/O). A UTF-8 column is decoded only where a row's bytes differ from the row before it (a
 * document's tokens are contiguous: one decode per document); others row by row, nulls as "null".
 */
export class DocumentRunsBuilder {
  private readonly ids: string[] = []
  private readonly ends: number[] = []

  /** Rows lo…hi−1 of a row group's doc_id column, whose row 0 is token `at` of the block. */
  add(col: arrow.Vector, lo: number, hi: number, at: number): void {
    forChunks(col, lo, hi, (data, a, b, row) => {
      if (data.typeId === arrow.Type.Utf8 && data.nullCount === 0) this.addUtf8(data as arrow.Data<arrow.Utf8>, a, b, at + row)
      else for (let i = row + a; i < row + b; i++) this.token(String(col.get(i)), at + i)
    })
  }

  /** The runs so far. */
  finish(): DocumentRuns {
    return { ids: [...this.ids], ends: Int32Array.from(this.ends) }
  }

  /** Token `t` of the block belongs to document `id`. */
  private token(id: string, t: number): void {
    const r = this.ids.length - 1
    if (r >= 0 && this.ids[r] === id) this.ends[r] = t + 1
    else {
      this.ids.push(id)
      this.ends.push(t + 1)
    }
  }

  /** Rows lo…hi−1 of a Utf8 chunk without nulls (its buffers already sliced), row 0 = token at. */
  private addUtf8(data: arrow.Data<arrow.Utf8>, lo: number, hi: number, at: number): void {
    const offsets = data.valueOffsets
    const bytes = data.values
    const decoder = new TextDecoder()
    this.token(decoder.decode(bytes.subarray(offsets[lo], offsets[lo + 1])), at + lo)
    for (let i = lo + 1; i < hi; i++) {
      const a = offsets[i]
      const n = offsets[i + 1] - a
      const p = offsets[i - 1]
      let same = n === a - p
      for (let j = 0; same && j < n; j++) same = bytes[a + j] === bytes[p + j]
      if (same) continue
      this.ends[this.ends.length - 1] = at + i
      this.token(decoder.decode(bytes.subarray(a, a + n)), at + i)
    }
    this.ends[this.ends.length - 1] = at + hi
  }
}

/** readCategories' codes and names, filled one row group's column at a time (no I/O). */
export class CategoryCodes {
  readonly codes: Uint8Array
  readonly names: string[] = []
  private readonly codeOf = new Map<string, number>()
  private readonly code = (name: string): number => {
    let k = this.codeOf.get(name)
    if (k === undefined) {
      k = this.names.length
      if (k > 255) throw new Error(`${this.file}: more than 256 token categories`)
      this.names.push(name)
      this.codeOf.set(name, k)
    }
    return k
  }

  constructor(
    private readonly file: string,
    count: number,
  ) {
    this.codes = new Uint8Array(count)
  }

  /** Rows lo…hi−1 of a row group's category column, whose row 0 is codes[at]. */
  add(col: arrow.Vector, lo: number, hi: number, at: number): void {
    forChunks(col, lo, hi, (data, a, b, row) => {
      if (data.typeId === arrow.Type.Utf8 && data.nullCount === 0) {
        // in slices, like the kernels (blocks.ts SLICE)
        forSlices(a, b, (x, y) => utf8Codes(data as arrow.Data<arrow.Utf8>, x, y, this.code, this.codes, at + row))
      } else if (arrow.DataType.isDictionary(data.type) && data.type.indices.bitWidth <= 32 && data.nullCount === 0 && data.dictionary !== undefined) {
        // (tokens tables written by other tools, e.g. pandas categoricals): each dictionary
        // entry is coded when first met, so names keep their order of first appearance
        const dictionary = data.dictionary
        const keys = data.values as ArrayLike<number>
        const coded = new Int16Array(dictionary.length).fill(-1)
        for (let i = a; i < b; i++) {
          const k = keys[i]
          let c = coded[k]
          if (c < 0) c = coded[k] = this.code(String(dictionary.get(k)))
          this.codes[at + row + i] = c
        }
      } else for (let i = row + a; i < row + b; i++) this.codes[at + i] = this.code(String(col.get(i)))
    })
  }
}

export interface RegressTask {
  /** [checkpoints] score files of one model and dataset, step order */
  readonly files: ReadonlyArray<string>
  /** [checkpoints] where the block's chunk lies in each file (chunkPlaces) */
  readonly places: ReadonlyArray<ChunkPlace>
  readonly group: number
  /** token_index of the block's first token */
  readonly firstToken: number
  readonly thresholds: ReadonlyArray<number>
  /** [thresholds] window starts */
  readonly starts: ReadonlyArray<number>
  readonly axisNames: ReadonlyArray<XAxis>
  /** [x-axes] arrays of [checkpoints] regressor values */
  readonly axes: ReadonlyArray<Float64Array>
}

export interface RegressResult {
  /** The block's part of regressions/, Parquet (one row group). */
  readonly bytes: Uint8Array
  readonly tokens: number
}

/**
 * Log-prob arrays of finished blocks, for the next block to read into (a block's 30 × 256 KiB
 * would otherwise be allocated and collected again each time). A task takes a set and gives it
 * back when its arrays are no longer used; tasks that run at once on one thread get their own.
 */
const spares: Float32Array[][] = []
const spareArrays = (): Float32Array[] => spares.pop() ?? []
const giveBack = (arrays: Float32Array[]): void => {
  if (spares.length < 2) spares.push(arrays)
}

/** This thread's regression columns, reused from block to block. */
let regressScratch: RegressColumns | undefined

export const regressTask = async (task: RegressTask): Promise<RegressResult> => {
  const lp = await readLogprobGroup(task.files, task.group, spareArrays(), task.places)
  const tokens = lp[0].length
  warmRegress(lp.length, task.starts, task.axes)
  const rows = task.starts.length * task.axes.length * tokens
  if (regressScratch === undefined || regressScratch.n.length < rows) regressScratch = regressColumns(rows)
  // the columns are encoded below, before any other task of this thread can run
  const cols = regressColumnsView(regressScratch, rows)
  const block = { lp, tokens }
  const spec = { starts: task.starts, axes: task.axes }
  forSlices(0, tokens, (a, b) => regressBlock(block, spec, cols, a, b))
  const table = regressionsTable(cols, task.thresholds, task.axisNames, tokens, task.firstToken)
  const bytes = encodeParquet(table, { rowGroupSize: Math.max(1, table.numRows), ...REGRESSION_PART })
  giveBack(lp)
  return { bytes, tokens }
}

export interface ClassifyTaskModel {
  /** [checkpoints] score files, step order */
  readonly files: ReadonlyArray<string>
  /** [checkpoints] where the block's chunk lies in each file (chunkPlaces) */
  readonly places: ReadonlyArray<ChunkPlace>
  readonly steps: ReadonlyArray<number>
  /** [thresholds] window starts */
  readonly starts: ReadonlyArray<number>
}

export interface ClassifyTask {
  readonly models: ReadonlyArray<ClassifyTaskModel>
  /** Index of the reference model in `models`. */
  readonly ref: number
  readonly group: number
  readonly firstToken: number
  readonly tokens: number
  readonly thresholds: ReadonlyArray<number>
  readonly alpha: number
  readonly delta: number
  readonly ddRise: number
  readonly tokensFile: string
}

export interface ClassifyResult {
  /** [models] the block's part of classes/, Parquet (one row group) */
  readonly parts: Uint8Array[]
  /** [models] [thresholds × tokens] class codes */
  readonly cls: Uint8Array[]
  /** [tokens] category codes into `categoryNames` */
  readonly categories: Uint8Array
  readonly categoryNames: string[]
  /** [models] group sums over the reference model's classes */
  readonly groups: GroupSums[]
  /** The block's documents (for the document bootstrap of class shares) */
  readonly docs: DocumentRuns
}

const tests = new Map<number, SignificanceTest>()

export const classifyTask = async (task: ClassifyTask): Promise<ClassifyResult> => {
  let test = tests.get(task.alpha)
  if (test === undefined) {
    test = new SignificanceTest(task.alpha)
    tests.set(task.alpha, test)
  }
  const rules = { test, delta: task.delta, ddRise: task.ddRise }
  const { codes, names, docs } = await readBlockTokens(task.tokensFile, task.firstToken, task.tokens)
  const M = task.models.length
  const parts: Uint8Array[] = new Array(M)
  const cls: Uint8Array[] = new Array(M)
  const groups: GroupSums[] = new Array(M)
  // The reference model first: every model's group sums need its classes.
  const order = [task.ref, ...task.models.keys()].filter((mi, k, all) => all.indexOf(mi) === k)
  let arrays = spareArrays()
  for (const mi of order) {
    const m = task.models[mi]
    // one model at a time: the previous model's log-probs are done with when the next is read
    const lp = await readLogprobGroup(m.files, task.group, arrays, m.places)
    arrays = lp
    if (lp[0].length !== task.tokens) throw new Error(`${m.files[0]}: row group ${task.group} has ${lp[0].length} rows, expected ${task.tokens}`)
    const lnStep = Float64Array.from(m.steps, Math.log)
    warmClassify(m.files.length, m.starts, lnStep, rules)
    // Group sums over the reference model's classes, accumulated by the kernel (the reference
    // model runs first, so its classes are known for the others).
    const size = task.thresholds.length * CLASSES.length * m.steps.length
    const g: GroupSums = { sum: new Float64Array(size), missing: new Float64Array(size) }
    const target = mi === task.ref ? g : { ...g, refCls: cls[task.ref] }
    const cols: ClassColumns = { cls: new Uint8Array(m.starts.length * task.tokens), peak: new Int16Array(m.starts.length * task.tokens) }
    forSlices(0, task.tokens, (a, b) => classifyBlock({ lp, tokens: task.tokens }, { starts: m.starts, lnStep, rules }, target, cols, a, b))
    const table = classesTable(cols, task.thresholds, m.steps, task.tokens, task.firstToken)
    parts[mi] = encodeParquet(table, { rowGroupSize: Math.max(1, table.numRows), ...CLASS_PART })
    cls[mi] = cols.cls
    groups[mi] = g
  }
  giveBack(arrays)
  return { parts, cls, categories: codes, categoryNames: names, groups, docs }
}

/**
 * Trajectories that take every branch of the kernels: rising, falling, constant, a NaN, an
 * infinite perplexity, a near-perfect line, a spread of 1e-7 around p = 1, and a rise then fall.
 * @returns [C] arrays of [48] log-probs
 */
const warmupBlock = (C: number): Float32Array[] => {
  const B = 48
  const lp = Array.from({ length: C }, () => new Float32Array(B))
  for (let i = 0; i < B; i++) {
    const kind = i % 8
    for (let c = 0; c < C; c++) {
      const x = Math.log(c + 1)
      const noise = 0.05 * Math.sin(7 * i + 3 * c)
      const L =
        kind === 0 ? 2 + 0.3 * x + noise :
        kind === 1 ? 4 - 0.3 * x + noise :
        kind === 2 ? 3 :
        kind === 3 ? (c === C >> 1 ? Number.NaN : 3 + noise) :
        kind === 4 ? (c === C - 2 ? Number.POSITIVE_INFINITY : 3 + noise) :
        kind === 5 ? Math.log(2 + 0.5 * x + 1e-9 * c) :
        kind === 6 ? 1e-7 * Math.sin(c) :
        2 + 2 * Math.max(0, 1 - Math.abs(c - C / 2) / (C / 4)) + noise
      lp[c][i] = -L
    }
  }
  return lp
}

const warmed = new Set<string>()

/**
 * Run a kernel once on warmupBlock before its first real block, so that V8 has type feedback
 * for every branch when it optimizes the kernel. Without it, the first real blocks optimize the
 * kernel on the common path only, and each rare branch met later deoptimizes it and sends the
 * (large, inlined) function back to the optimizing compiler: measured ~2–3 s of compiler threads
 * per 1M-token bench run, on a 2-core machine where they take CPU from the workers.
 */
const warm = (key: string, run: () => void): void => {
  if (warmed.has(key)) return
  warmed.add(key)
  run()
}

const warmRegress = (C: number, starts: ReadonlyArray<number>, axes: ReadonlyArray<Float64Array>): void =>
  warm(`regress ${C} ${starts.join(",")} ${axes.length}`, () => {
    const lp = warmupBlock(C)
    regressBlock({ lp, tokens: lp[0].length }, { starts, axes })
  })

const warmClassify = (C: number, starts: ReadonlyArray<number>, lnStep: Float64Array, rules: ClassRules): void =>
  warm(`classify ${C} ${starts.join(",")}`, () => {
    const lp = warmupBlock(C)
    const T = starts.length
    const size = T * CLASSES.length * C
    const ref = classifyBlock({ lp, tokens: lp[0].length }, { starts, lnStep, rules }, { sum: new Float64Array(size), missing: new Float64Array(size) })
    classifyBlock({ lp, tokens: lp[0].length }, { starts, lnStep, rules }, { refCls: ref.cls, sum: new Float64Array(size), missing: new Float64Array(size) })
  })

/** The tasks a worker thread runs (parallel.ts), by name. */
export const tasks = {
  regress: regressTask,
  classify: classifyTask,
  closeReaders: (_: undefined) => closeReaders(),
} as const

export type TaskName = keyof typeof tasks
