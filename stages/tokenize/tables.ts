/**
 * Building the `tokens` and `windows` tables of one dataset (pure: arrays in, Arrow tables out).
 * Columns and their meaning: ./contract.ts.
 *
 * Documents are added in order; each one's tokens are cut into windows (windows.ts) and every
 * predicted token gets the next token_index, so token_index follows document order and, within a
 * document, window order. The tables come out in chunks of a fixed number of rows, so a dataset
 * of any size is written a row group at a time (index.ts).
 */
import * as arrow from "apache-arrow"
import { Tokens, Windows } from "./contract.ts"
import type { Category } from "./categories.ts"
import { documentWindows } from "./windows.ts"

/** A document ready for the tables. */
export interface TokenizedDocument {
  readonly id: string
  /** [n] token ids: the `nPrepend` prepended ids, then the document's. */
  readonly ids: Int32Array
  readonly nPrepend: number
  /** [n − nPrepend] span of each document token in the document text (UTF-16 code units, end exclusive). */
  readonly charStarts: Int32Array
  readonly charEnds: Int32Array
  /** The document text the spans index (token_text is its slice). */
  readonly text: string
  /** [n − nPrepend] tag of each document token's word, or null. */
  readonly tags: ReadonlyArray<string | null>
  /** [n − nPrepend] category of each document token. */
  readonly categories: ReadonlyArray<Category>
}

class Int32Column {
  private buf = new Int32Array(1024)
  length = 0
  push(v: number) {
    if (this.length === this.buf.length) {
      const b = new Int32Array(this.buf.length * 2)
      b.set(this.buf)
      this.buf = b
    }
    this.buf[this.length++] = v
  }
  pushAll(vs: Int32Array) {
    while (this.length + vs.length > this.buf.length) {
      const b = new Int32Array(this.buf.length * 2)
      b.set(this.buf)
      this.buf = b
    }
    this.buf.set(vs, this.length)
    this.length += vs.length
  }
  values(): Int32Array {
    return this.buf.subarray(0, this.length)
  }
  data(): arrow.Data<arrow.Int32> {
    return arrow.makeData({ type: new arrow.Int32(), length: this.length, data: this.values() })
  }
}

/** A Utf8 column whose strings repeat (doc ids, tags, categories): each distinct string is encoded once. */
class Utf8Column {
  private readonly encoded = new Map<string, Uint8Array>()
  private readonly encoder = new TextEncoder()
  private bytes = new Uint8Array(4096)
  private byteLength = 0
  private readonly offsets = new Int32Column()
  private validity: Uint8Array | undefined
  private nulls = 0
  length = 0
  constructor() {
    this.offsets.push(0)
  }
  push(s: string | null) {
    if (s === null) {
      if (!this.validity) this.validity = new Uint8Array(1024).fill(0xff)
      this.nulls++
    } else {
      let b = this.encoded.get(s)
      if (b === undefined) {
        b = this.encoder.encode(s)
        if (this.encoded.size < 100_000) this.encoded.set(s, b)
      }
      while (this.byteLength + b.length > this.bytes.length) {
        const nb = new Uint8Array(this.bytes.length * 2)
        nb.set(this.bytes.subarray(0, this.byteLength))
        this.bytes = nb
      }
      this.bytes.set(b, this.byteLength)
      this.byteLength += b.length
    }
    if (this.validity) {
      const byte = this.length >> 3
      if (byte >= this.validity.length) {
        const nv = new Uint8Array(Math.max(this.validity.length * 2, byte + 1)).fill(0xff)
        nv.set(this.validity)
        this.validity = nv
      }
      if (s === null) this.validity[byte] &= ~(1 << (this.length & 7))
    }
    this.offsets.push(this.byteLength)
    this.length++
  }
  data(): arrow.Data<arrow.Utf8> {
    return arrow.makeData({
      type: new arrow.Utf8(),
      length: this.length,
      valueOffsets: this.offsets.values(),
      data: this.bytes.subarray(0, this.byteLength),
      nullCount: this.nulls,
      nullBitmap: this.nulls > 0 ? this.validity!.subarray(0, (this.length + 7) >> 3) : undefined,
    })
  }
}

const toTable = (schema: arrow.Schema, length: number, children: arrow.Data[]): arrow.Table => {
  const struct = arrow.makeData({ type: new arrow.Struct(schema.fields), length, nullCount: 0, children })
  return new arrow.Table(schema, new arrow.RecordBatch(schema, struct))
}

/** The columns of the tokens table but token_index (its values follow from the row). */
const tokenColumns = () => ({
  seq: new Int32Column(),
  position: new Int32Column(),
  tokenId: new Int32Column(),
  doc: new Utf8Column(),
  charStart: new Int32Column(),
  charEnd: new Int32Column(),
  tokenText: new Utf8Column(),
  tag: new Utf8Column(),
  category: new Utf8Column(),
})
const windowColumns = () => {
  const w = {
    doc: new Utf8Column(),
    inputOffsets: new Int32Column(),
    inputIds: new Int32Column(),
    firstTarget: new Int32Column(),
    firstTokenIndex: new Int32Column(),
  }
  w.inputOffsets.push(0)
  return w
}

/**
 * Builds the tokens and windows tables of one dataset, in chunks of `chunkRows.tokens` and
 * `chunkRows.windows` rows (the files' row-group sizes; Infinity: one chunk of each). Documents are added in order; a chunk
 * is sealed the moment it is full (a document's tokens may fill several, or end one and start the
 * next), and `take` hands out the sealed chunks, so only the rows of unsealed chunks and of chunks
 * not yet taken are held. Chunks of a table, concatenated, are the table a single chunk would be.
 *
 * Example, chunkRows.tokens = 4, documents of 6 and 3 predicted tokens: the tokens chunks hold
 * token_index 0–3 (sealed while the first document is added), 4–7 (while the second is), then 8
 * (sealed by `take(true)` at the end).
 */
export class TokenTablesBuilder {
  private t = tokenColumns()
  private w = windowColumns()
  /** token_index of the first row of `t`, seq_id of the first row of `w`. */
  private tokenBase = 0
  private windowBase = 0
  private readonly sealedTokens: arrow.Table[] = []
  private readonly sealedWindows: arrow.Table[] = []
  constructor(
    readonly contextLength: number,
    readonly stride: number,
    readonly chunkRows: { readonly tokens: number; readonly windows: number } = { tokens: Infinity, windows: Infinity },
  ) {
    if (!(chunkRows.tokens >= 1 && chunkRows.windows >= 1)) throw new Error(`tables: chunk rows must be ≥ 1 (got ${JSON.stringify(chunkRows)})`)
  }

  /** Tokens predicted so far (= the next token_index). */
  get tokenCount(): number {
    return this.tokenBase + this.t.tokenId.length
  }
  /** Windows so far (= the next seq_id). */
  get windowCount(): number {
    return this.windowBase + this.w.firstTarget.length
  }

  /**
   * Add a document: cut it into windows and append its predicted tokens.
   * @param maxPredicted predict at most this many of its tokens (the document is cut after them)
   * @returns the number of tokens it predicts
   */
  add(doc: TokenizedDocument, maxPredicted = Infinity): number {
    const first = Math.max(1, doc.nPrepend)
    const n = Math.min(doc.ids.length, first + Math.max(0, maxPredicted))
    const before = this.tokenCount
    for (const win of documentWindows(n, doc.nPrepend, this.contextLength, this.stride)) {
      const seq = this.windowCount
      const w = this.w
      w.doc.push(doc.id)
      w.inputIds.pushAll(doc.ids.subarray(win.start, win.end))
      w.inputOffsets.push(w.inputIds.length)
      w.firstTarget.push(win.firstTarget)
      w.firstTokenIndex.push(this.tokenCount)
      if (w.firstTarget.length >= this.chunkRows.windows) this.sealWindows()
      for (let pos = win.firstTarget; pos < win.end - win.start; pos++) {
        const k = win.start + pos // index in doc.ids
        const j = k - doc.nPrepend // index among document tokens
        const t = this.t
        t.seq.push(seq)
        t.position.push(pos)
        t.tokenId.push(doc.ids[k])
        t.doc.push(doc.id)
        t.charStart.push(doc.charStarts[j])
        t.charEnd.push(doc.charEnds[j])
        t.tokenText.push(doc.text.slice(doc.charStarts[j], doc.charEnds[j]))
        t.tag.push(doc.tags[j])
        t.category.push(doc.categories[j])
        if (t.tokenId.length >= this.chunkRows.tokens) this.sealTokens()
      }
    }
    return this.tokenCount - before
  }

  /**
   * The sealed chunks since the last take, tokens and windows each in order; with `all`, the
   * rows of the unsealed chunks too (the dataset's last chunks: call it once, at the end).
   */
  take(all = false): { readonly tokens: arrow.Table[]; readonly windows: arrow.Table[] } {
    return { tokens: this.takeTokens(all), windows: this.takeWindows(all) }
  }

  /** The `tokens` table (./contract.ts Tokens), token_index order: every row not yet taken, as one table. */
  tokens(): arrow.Table {
    const chunks = this.takeTokens(true)
    return chunks.length === 1 ? chunks[0] : new arrow.Table(Tokens.schema, chunks.flatMap((t) => t.batches))
  }

  /** The `windows` table (./contract.ts Windows), seq_id order: every row not yet taken, as one table. */
  windows(): arrow.Table {
    const chunks = this.takeWindows(true)
    return chunks.length === 1 ? chunks[0] : new arrow.Table(Windows.schema, chunks.flatMap((t) => t.batches))
  }

  private takeTokens(all: boolean): arrow.Table[] {
    if (all && this.t.tokenId.length > 0) this.sealTokens()
    return this.sealedTokens.splice(0)
  }

  private takeWindows(all: boolean): arrow.Table[] {
    if (all && this.w.firstTarget.length > 0) this.sealWindows()
    return this.sealedWindows.splice(0)
  }

  private sealTokens() {
    const t = this.t
    const n = t.tokenId.length
    const index = new Int32Array(n)
    for (let i = 0; i < n; i++) index[i] = this.tokenBase + i
    this.sealedTokens.push(
      toTable(Tokens.schema, n, [
        arrow.makeData({ type: new arrow.Int32(), length: n, data: index }),
        t.seq.data(),
        t.position.data(),
        t.tokenId.data(),
        t.doc.data(),
        t.charStart.data(),
        t.charEnd.data(),
        t.tokenText.data(),
        t.tag.data(),
        t.category.data(),
      ]),
    )
    this.tokenBase += n
    this.t = tokenColumns()
  }

  private sealWindows() {
    const w = this.w
    const n = w.firstTarget.length
    const seq = new Int32Array(n)
    for (let i = 0; i < n; i++) seq[i] = this.windowBase + i
    const schema = Windows.schema
    const listType = schema.fields[2].type as arrow.List<arrow.Int32>
    const inputIds = arrow.makeData({
      type: listType,
      length: n,
      nullCount: 0,
      valueOffsets: w.inputOffsets.values(),
      child: w.inputIds.data(),
    })
    this.sealedWindows.push(
      toTable(schema, n, [
        arrow.makeData({ type: new arrow.Int32(), length: n, data: seq }),
        w.doc.data(),
        inputIds,
        w.firstTarget.data(),
        w.firstTokenIndex.data(),
      ]),
    )
    this.windowBase += n
    this.w = windowColumns()
  }
}
