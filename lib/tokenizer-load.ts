/**
 * Loading a tokenizer (a tokenizer.json, or a Hugging Face folder: tokenizer-folder.ts) with Hugging
 * Face `tokenizers` and encoding documents into token ids with UTF-16 character spans: the
 * implementation of the Tokenizers service (tokenizer.ts) and the only module that touches `tokenizers`.
 *
 * Offsets: the Node binding reports offsets in Unicode code points (Python's "char" offsets), not in
 * the UTF-16 code units JavaScript strings index by, and other builds report bytes. The unit is
 * detected once per tokenizer on a probe string and converted here. Byte-level BPE may split one
 * character into several tokens; each of them gets the whole character's span ("é" → "Ã" [0,1),
 * "©" [0,1)).
 */
import { Tokenizer } from "tokenizers"
import { firstLine } from "./messages.ts"
import { byteLevelBpeJson, resolveTokenizer, TokenizerLoadError, type TokenizerSource } from "./tokenizer-folder.ts"

export { TokenizerLoadError, tokenizerFiles } from "./tokenizer-folder.ts"

export type OffsetUnit = "codepoint" | "utf16" | "byte"

/** One encoded document. */
export interface Encoded {
  /** [tokens] token ids. */
  readonly ids: Int32Array
  /** [tokens] start offsets in the document text, UTF-16 code units. */
  readonly charStarts: Int32Array
  /** [tokens] end offsets, exclusive, UTF-16 code units. */
  readonly charEnds: Int32Array
}

export interface LoadedTokenizer {
  readonly tokenizer: Tokenizer
  readonly offsetUnit: OffsetUnit
  readonly vocabSize: number
  /** Encode texts (no special tokens added) into ids with UTF-16 spans; order kept. */
  readonly encodeBatch: (texts: ReadonlyArray<string>) => Promise<Encoded[]>
}

const PROBE = "é😀 x" // 4 code points, 5 UTF-16 units, 8 bytes

/**
 * Load a tokenizer (a tokenizer.json file, or a folder with tokenizer.json or vocab.json +
 * merges.txt) and detect its offset unit.
 * @throws TokenizerLoadError with a one-line reason (file missing, not a tokenizer, folder without
 *   tokenizer files, …)
 */
export const loadTokenizer = async (p: string): Promise<LoadedTokenizer> => {
  const tokenizer = build(resolveTokenizer(p))
  const probe = await tokenizer.encode(PROBE, null, { addSpecialTokens: false })
  const maxEnd = Math.max(0, ...probe.getOffsets().map((o) => o[1]))
  const offsetUnit: OffsetUnit = maxEnd === 8 ? "byte" : maxEnd === 5 ? "utf16" : "codepoint"
  const encodeBatch = async (texts: ReadonlyArray<string>): Promise<Encoded[]> => {
    const encs = texts.length === 0 ? [] : await tokenizer.encodeBatch(texts as string[], { addSpecialTokens: false })
    return encs.map((enc, i) => {
      const ids = Int32Array.from(enc.getIds())
      const { starts, ends } = toUtf16Offsets(texts[i], enc.getOffsets(), offsetUnit)
      return { ids, charStarts: starts, charEnds: ends }
    })
  }
  return { tokenizer, offsetUnit, vocabSize: tokenizer.getVocabSize(true), encodeBatch }
}

const build = (source: TokenizerSource): Tokenizer => {
  if (source.kind === "tokenizer.json") {
    try {
      return Tokenizer.fromFile(source.file)
    } catch (e) {
      throw new TokenizerLoadError(`cannot load (${firstLine(e)})`)
    }
  }
  // The binding has no ByteLevel decoder and its ByteLevel post-processor always adds a prefix
  // space (which shifts trimmed offsets), so the tokenizer is built from its tokenizer.json text.
  const { json, added } = byteLevelBpeJson(source)
  let tokenizer: Tokenizer
  try {
    tokenizer = Tokenizer.fromString(json)
  } catch (e) {
    throw new TokenizerLoadError(`cannot build a tokenizer from vocab.json + merges.txt (${firstLine(e)})`)
  }
  // `tokenizers` numbers added tokens itself (vocab id, else the next free one): check the configs' ids.
  for (const t of added) {
    const id = tokenizer.tokenToId(t.content)
    if (id !== t.id) throw new TokenizerLoadError(`added token ${JSON.stringify(t.content)} should have id ${t.id} but gets ${id}`)
  }
  return tokenizer
}

/** Token ids of `text` without special tokens added by the post-processor (used for `prepend`). */
export const encodeIds = async (t: LoadedTokenizer, text: string): Promise<Int32Array> =>
  Int32Array.from((await t.tokenizer.encode(text, null, { addSpecialTokens: false })).getIds())


const SURROGATE = /[\uD800-\uDFFF]/
const NON_ASCII = /[^\x00-\x7f]/

/**
 * Convert token offsets to UTF-16 code units of `text`.
 * @param offsets [tokens][2] start, end in `unit`
 * @returns starts, ends [tokens]; an end inside a character (bytes) rounds up to the character's end
 */
export const toUtf16Offsets = (
  text: string,
  offsets: ReadonlyArray<ReadonlyArray<number>>,
  unit: OffsetUnit,
): { starts: Int32Array; ends: Int32Array } => {
  const n = offsets.length
  const starts = new Int32Array(n)
  const ends = new Int32Array(n)
  const identity = unit === "utf16" || (unit === "codepoint" ? !SURROGATE.test(text) : !NON_ASCII.test(text))
  if (identity) {
    for (let i = 0; i < n; i++) {
      starts[i] = offsets[i][0]
      ends[i] = offsets[i][1]
    }
    return { starts, ends }
  }
  // down[x]: UTF-16 index of the character holding unit x; up[x]: UTF-16 index of the first character boundary ≥ x.
  const { down, up } = unit === "codepoint" ? codepointMap(text) : byteMap(text)
  const last = down.length - 1
  for (let i = 0; i < n; i++) {
    starts[i] = down[Math.min(offsets[i][0], last)]
    ends[i] = up[Math.min(offsets[i][1], last)]
  }
  return { starts, ends }
}

const codepointMap = (text: string) => {
  const down: number[] = []
  for (let u = 0; u < text.length; ) {
    down.push(u)
    const c = text.charCodeAt(u)
    u += c >= 0xd800 && c <= 0xdbff && u + 1 < text.length ? 2 : 1
  }
  down.push(text.length)
  const map = Int32Array.from(down)
  return { down: map, up: map }
}

const byteMap = (text: string) => {
  const down: number[] = []
  const up: number[] = []
  for (let u = 0; u < text.length; ) {
    const c = text.codePointAt(u)!
    const width = c > 0xffff ? 2 : 1
    const bytes = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4
    for (let k = 0; k < bytes; k++) {
      down.push(u)
      up.push(k === 0 ? u : u + width)
    }
    u += width
  }
  down.push(text.length)
  up.push(text.length)
  return { down: Int32Array.from(down), up: Int32Array.from(up) }
}
