/**
 * The planted dataset of bench/scale.ts: a tokens table and score files of N tokens, written as
 * the tokenize and score stages write them, in bounded memory whatever N is.
 *
 * Values are a pure function of (token, checkpoint) — a counter-based hash, no RNG state — so any
 * checkpoint's file can be written alone, by any process, in any order, and is the same every time:
 *
 *   token i:  kind u₁ (55% falling, 10% rising, 35% flat; 4% of all also rise then fall),
 *             base ln p = 1 + 6·u₂ nats, slope ±(0.05 + 0.3·u₃) per unit of ln(step/step₁),
 *             noise σ = 0.05 + 0.25·u₄ nats
 *   lp[c][i] = −(base + slope·x_c + bump·max(0, 1 − |x_c − x_peak|) + σ·z(i, c))
 *             z ≈ N(0, 1): Irwin–Hall sum of the four bytes of one hash, rescaled
 *
 * (the shape of bench/regress.ts's synthetic trajectories, so the class mix is comparable).
 *
 * Why not the store's encodeParquet on the whole table: it copies the table into parquet-wasm's
 * 32-bit memory (4 GiB at most) as Arrow IPC and again as record batches, so a 50M-token tokens
 * table (≈ 2.5 GB of Arrow) fails inside the wasm (`RuntimeError: unreachable`), and a 50M-token
 * score file takes ~3.7 GB of RSS. Here each file is streamed through parquet-wasm's
 * transformParquetStream one chunk of whole row groups at a time, with the writer properties
 * store.ts builds for the same WriteOptions; `checkStreamedLikeStore` checks on a sample that the
 * bytes are exactly those encodeParquet writes, so the files are the stages' files byte for byte.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { Compression, Table as WasmTable, WriterPropertiesBuilder, transformParquetStream } from "parquet-wasm/node"
import { i32 } from "../lib/columns.ts"
import { encodeParquet, type WriteOptions } from "../pipeline/store.ts"
import { Scores, scoresWriteOptions } from "../stages/score/contract.ts"
import { Tokens } from "../stages/tokenize/contract.ts"

/** Rows per chunk handed to the writer: whole row groups (a multiple of the row-group size). */
const chunkRows = (rowGroupSize: number) => rowGroupSize * Math.max(1, Math.floor((1 << 20) / rowGroupSize))

/** A 32-bit integer hash (lowbias32); seeds the values of token i with `salt` mixed in. */
const mix = (x: number): number => {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d)
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b)
  return (x ^ (x >>> 16)) >>> 0
}
const hash = (i: number, salt: number): number => mix((i ^ Math.imul(salt, 0x9e3779b1)) >>> 0)
const unit = (i: number, salt: number): number => hash(i, salt) / 4294967296

/** What store.ts's encodeParquet builds for `o` (only the options the stages' files use). */
const writerProperties = (o: WriteOptions) => {
  if (o.metadata || o.deltaColumns || o.statisticsColumns) throw new Error("scale-plant: writerProperties covers rowGroupSize, dictionaryColumns, rawColumns only")
  let b = new WriterPropertiesBuilder().setCompression(Compression.ZSTD).setMaxRowGroupSize(o.rowGroupSize ?? 65_536)
  if (o.dictionaryColumns) {
    b = b.setDictionaryEnabled(false)
    for (const c of o.dictionaryColumns) b = b.setColumnDictionaryEnabled(c, true)
  }
  for (const c of o.rawColumns ?? []) b = b.setColumnCompression(c, Compression.UNCOMPRESSED)
  return b.build()
}

/** Parquet bytes of the tables `chunks` yields, one after another (each a multiple of the row-group size but the last). */
const streamParquet = async (chunks: Iterator<arrow.Table>, options: WriteOptions, sink: (bytes: Uint8Array) => void): Promise<void> => {
  const source = new ReadableStream({
    pull(ctrl) {
      const next = chunks.next()
      if (next.done) return ctrl.close()
      const t = WasmTable.fromIPCStream(arrow.tableToIPC(next.value, "stream"))
      for (const b of t.recordBatches()) ctrl.enqueue(b)
      t.free()
    },
  })
  const out = await transformParquetStream(source, writerProperties(options))
  for await (const bytes of out as unknown as AsyncIterable<Uint8Array>) sink(bytes)
}

/** Write the chunks as one Parquet file, atomically (temporary name, fsync, rename); returns its size. */
const writeStreamed = async (file: string, chunks: Iterator<arrow.Table>, options: WriteOptions): Promise<number> => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.tmp-${process.pid}`
  const fd = fs.openSync(tmp, "w")
  let size = 0
  try {
    await streamParquet(chunks, options, (b) => {
      fs.writeSync(fd, b)
      size += b.length
    })
    // flushed now, so the kernel's write-back does not run during the stages timed later
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  return size
}

/** Tables of rows lo…hi−1, `rows` at a time. */
function* ranges(lo: number, hi: number, rows: number, table: (a: number, b: number) => arrow.Table): Generator<arrow.Table> {
  for (let a = lo; a < hi; a += rows) yield table(a, Math.min(hi, a + rows))
}

// ── score files ──────────────────────────────────────────────────────────────────────────────

/** token_id of token i: Zipf-like over a 50,257-word vocabulary (common ids often, rare ones seldom). */
const tokenId = (i: number): number => {
  const u = unit(i, 7)
  return Math.floor(50_257 * u * u * u)
}

/** A score file's rows lo…hi−1 at checkpoint c (x = ln(step/step₁) of every checkpoint). */
const scoresChunk = (x: Float64Array, c: number, lo: number, hi: number): arrow.Table => {
  const n = hi - lo
  const index = new Int32Array(n)
  const ids = new Int32Array(n)
  const lp = new Float32Array(n)
  const xc = x[c]
  const xPeak = x[Math.floor(x.length * 0.6)]
  const hump = Math.max(0, 1 - Math.abs(xc - xPeak))
  for (let k = 0; k < n; k++) {
    const i = lo + k
    const kind = unit(i, 1)
    const base = 1 + 6 * unit(i, 2)
    const s = 0.05 + 0.3 * unit(i, 3)
    const slope = kind < 0.55 ? -s : kind < 0.65 ? s : 0
    const bump = kind > 0.96 ? 1 + unit(i, 5) : 0
    const sigma = 0.05 + 0.25 * unit(i, 4)
    const h = hash(i, 1000 + c)
    // Irwin–Hall(4) of the hash's bytes: mean 510, sd 255·√(4/12); rescaled to ≈ N(0, 1)
    const z = ((h & 255) + ((h >>> 8) & 255) + ((h >>> 16) & 255) + (h >>> 24) - 510) / 147.22
    index[k] = i
    ids[k] = tokenId(i)
    lp[k] = -(base + slope * xc + bump * hump + sigma * z)
  }
  return Scores.fromColumns({
    token_index: i32(index),
    token_id: i32(ids),
    logprob: (type) => arrow.makeData({ type: type as arrow.Float32, length: n, data: lp, nullCount: 0 }),
  })
}

/** Regressor x_c = ln(step_c / step_1) of the synthetic trends. */
const trendAxis = (steps: ReadonlyArray<number>) => Float64Array.from(steps, (s) => Math.log(s / steps[0]))

/**
 * Write the score file of checkpoint c (steps in order) for `tokens` tokens, with the score
 * stage's encoding (scoresWriteOptions) and row groups of `rowGroupSize`. Returns its size.
 */
export const writeScores = (file: string, tokens: number, steps: ReadonlyArray<number>, c: number, rowGroupSize: number): Promise<number> => {
  const x = trendAxis(steps)
  return writeStreamed(file, ranges(0, tokens, chunkRows(rowGroupSize), (a, b) => scoresChunk(x, c, a, b)), scoresWriteOptions(rowGroupSize))
}

// ── tokens table ─────────────────────────────────────────────────────────────────────────────

const CATEGORY_NAMES = ["content", "function", "punctuation", "piece", "number"]
/** Cumulative shares of CATEGORY_NAMES (≈ English BPE text: 45% content, 25% function, …). */
const CATEGORY_CUT = [0.45, 0.7, 0.82, 0.97, 1]
const CONTEXT = 128
const STRIDE = 64

/** A string column from row → string (any strings; encoded once each through `encode`). */
const strings = (n: number, at: (k: number) => Uint8Array) => {
  const parts: Uint8Array[] = new Array(n)
  const offsets = new Int32Array(n + 1)
  for (let k = 0; k < n; k++) {
    parts[k] = at(k)
    offsets[k + 1] = offsets[k] + parts[k].length
  }
  const data = new Uint8Array(offsets[n])
  for (let k = 0; k < n; k++) data.set(parts[k], offsets[k])
  return (type: arrow.DataType) => arrow.makeData({ type: type as arrow.Utf8, length: n, valueOffsets: offsets, data, nullCount: 0 })
}

/**
 * Where each token sits, document by document: documents of 200…3,999 predicted tokens (from
 * the hash of their number), windows of CONTEXT tokens with STRIDE new ones each (the windows
 * rule of stages/tokenize/windows.ts, no prepend: document token p ≥ 1 is predicted by window
 * k = 0 for p < 128, else ⌊(p − 128)/64⌋ + 1, at position p − start_k). Walked in token order,
 * a chunk at a time.
 */
class DocumentWalk {
  private doc = 0
  private docTokens = 0 // document tokens n (predicted: n − 1)
  private p = 0 // position in the document of the last token
  private firstSeq = 0 // seq_id of the document's window 0
  private docId = new Uint8Array(0)
  private readonly encoder = new TextEncoder()

  constructor() {
    this.startDoc(0, 0)
  }

  private startDoc(d: number, firstSeq: number) {
    this.doc = d
    this.docTokens = 201 + (hash(d, 11) % 3800)
    this.p = 0
    this.firstSeq = firstSeq
    this.docId = this.encoder.encode(`doc-${String(d).padStart(6, "0")}`)
  }

  private windows(n: number) {
    return n <= CONTEXT ? 1 : 1 + Math.ceil((n - CONTEXT) / STRIDE)
  }

  /** The next token's row. */
  next(row: { seq: number; position: number; docId: Uint8Array; charStart: number }) {
    if (this.p + 1 >= this.docTokens) this.startDoc(this.doc + 1, this.firstSeq + this.windows(this.docTokens))
    const p = ++this.p
    const k = p < CONTEXT ? 0 : Math.floor((p - CONTEXT) / STRIDE) + 1
    const end = Math.min(this.docTokens, CONTEXT + k * STRIDE)
    row.seq = this.firstSeq + k
    row.position = p - Math.max(0, end - CONTEXT)
    row.docId = this.docId
    row.charStart = 5 * p
  }
}

const tokensChunk = (walk: DocumentWalk, lo: number, hi: number): arrow.Table => {
  const n = hi - lo
  const cols = { index: new Int32Array(n), seq: new Int32Array(n), position: new Int32Array(n), id: new Int32Array(n), start: new Int32Array(n), end: new Int32Array(n) }
  const docs: Uint8Array[] = new Array(n)
  const cats = new Uint8Array(n)
  const row = { seq: 0, position: 0, docId: new Uint8Array(0), charStart: 0 }
  for (let k = 0; k < n; k++) {
    const i = lo + k
    walk.next(row)
    cols.index[k] = i
    cols.seq[k] = row.seq
    cols.position[k] = row.position
    cols.id[k] = tokenId(i)
    cols.start[k] = row.charStart
    cols.end[k] = row.charStart + 1 + (hash(i, 12) % 7)
    docs[k] = row.docId
    const u = unit(i, 13)
    let q = 0
    while (u >= CATEGORY_CUT[q]) q++
    cats[k] = q
  }
  const names = CATEGORY_NAMES.map((s) => new TextEncoder().encode(s))
  // token texts: a few hundred distinct words, as a real vocabulary repeats them
  const words = Array.from({ length: 512 }, (_, w) => new TextEncoder().encode(` w${w}`))
  return Tokens.fromColumns({
    token_index: i32(cols.index),
    seq_id: i32(cols.seq),
    position: i32(cols.position),
    token_id: i32(cols.id),
    doc_id: strings(n, (k) => docs[k]),
    char_start: i32(cols.start),
    char_end: i32(cols.end),
    token_text: strings(n, (k) => words[cols.id[k] % words.length]),
    // an untagged text dataset: tag all null, as the tokenize stage writes it
    tag: (type) => arrow.makeData({ type: type as arrow.Utf8, length: n, valueOffsets: new Int32Array(n + 1), data: new Uint8Array(0), nullBitmap: new Uint8Array((n + 7) >> 3), nullCount: n }),
    category: strings(n, (k) => names[cats[k]]),
  })
}

/** Write tokens/dataset=D/tokens.parquet for `tokens` tokens with the tokenize stage's encoding (the store's defaults). */
export const writeTokens = (file: string, tokens: number): Promise<number> => {
  const walk = new DocumentWalk()
  return writeStreamed(file, ranges(0, tokens, chunkRows(65_536), (a, b) => tokensChunk(walk, a, b)), {})
}

/**
 * Throws unless streaming writes, on a sample of 2.5 row groups, exactly the bytes the store's
 * encodeParquet writes for the whole table (the score stage's options for scores, the defaults
 * for tokens), so that the planted files are what the stages would have written.
 */
export const checkStreamedLikeStore = async (rowGroupSize: number): Promise<void> => {
  const n = Math.floor(rowGroupSize * 2.5)
  const streamed = async (chunks: Iterator<arrow.Table>, o: WriteOptions) => {
    const parts: Uint8Array[] = []
    await streamParquet(chunks, o, (b) => parts.push(b.slice()))
    return Buffer.concat(parts)
  }
  const x = trendAxis([1000, 2000, 3000])
  const cases = [
    { what: "score file", whole: scoresChunk(x, 1, 0, n), chunks: ranges(0, n, rowGroupSize, (a, b) => scoresChunk(x, 1, a, b)), o: scoresWriteOptions(rowGroupSize) },
    { what: "tokens table", whole: tokensChunk(new DocumentWalk(), 0, n), chunks: ((w) => ranges(0, n, 65_536, (a, b) => tokensChunk(w, a, b)))(new DocumentWalk()), o: {} },
  ]
  for (const c of cases) {
    const a = Buffer.from(encodeParquet(c.whole, c.o))
    const b = await streamed(c.chunks, c.o)
    if (!a.equals(b)) throw new Error(`scale-plant: a streamed ${c.what} differs from the store's encodeParquet bytes (${b.length} vs ${a.length} bytes)`)
  }
}
