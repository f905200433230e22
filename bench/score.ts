/**
 * npm run bench:score [-- --windows 1000 --rounds 4 --rss 750,3000 --threads N]
 *
 * A GPT-shaped ONNX model of ~1M parameters (vocab 2048, context 128, 4 layers, dim 128; random
 * weights, test/fixtures/onnx-gpt.ts) scores windows of 128 random tokens three ways, interleaved
 * over `rounds` in one process so that machine noise hits all three alike:
 *   bare   session.run over prepared feeds on the rewritten graph (the ceiling),
 *   full   the score stage's run(): windows Parquet in, engine, scores Parquet out,
 *   naive  full logits into JavaScript and the log-softmax there (the engine's "logits" mode).
 * Then bare runs compare onnxruntime's thread settings (1 thread; all cores with idle threads
 * spinning or sleeping) on the machine as it is and beside one busy process per core, and the full
 * stage runs alone in child processes at two window counts to show its peak RSS.
 * Prints progress lines, and as its last line one JSON object of the figures.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Either } from "effect"
import * as ort from "onnxruntime-node"
import { parseConfig, type Config } from "../pipeline/config.ts"
import { writeParquetFile } from "../pipeline/store.ts"
import { tokenizeUnit, windowsFile } from "../stages/tokenize/contract.ts"
import { StageServicesLive } from "../stages/services.ts"
import { plantedRun } from "../test/fixtures/planted.ts"
import { withScorer } from "../lib/onnx/scorer.ts"
import { scoreStage } from "../stages/score/index.ts"
import { readModelHeader } from "../lib/onnx/file.ts"
import { OUT, findSignature, planRewrite, rewrittenBytes, type Signature } from "../lib/onnx/head.ts"
import { sessionOptions, withExternalFolder } from "../lib/onnx/session.ts"
import { gptModel, gptParams, gptWeights, rng, saveModel } from "../test/fixtures/onnx.ts"
import { windowsTable, type WindowRow } from "../test/fixtures/windows.ts"

const CONTEXT = 128
const VOCAB = 2048
const BATCH = 8

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const threads = Number(arg("threads", String(os.availableParallelism())))
const say = (s: string) => console.log(`[bench:score] ${s}`)

/** `n` windows of CONTEXT random tokens, each its own document (127 targets each). */
const makeWindows = (n: number, seed: number): WindowRow[] => {
  const r = rng(seed)
  return Array.from({ length: n }, (_, i) => ({
    seqId: i,
    docId: `d${i}`,
    ids: Array.from({ length: CONTEXT }, () => Math.floor(r() * VOCAB)),
    firstTarget: 1,
    firstTokenIndex: i * (CONTEXT - 1),
  }))
}

/** A project folder: model, dummy tokenizer and dataset, config with one model and one dataset. */
const setup = (dir: string, copyModelFrom?: string): { config: Config; model: string } => {
  fs.mkdirSync(dir, { recursive: true })
  const model = path.join(dir, "gpt.onnx")
  if (copyModelFrom) fs.copyFileSync(copyModelFrom, model)
  else if (!fs.existsSync(model)) saveModel(gptModel(gptWeights({ vocab: VOCAB, context: CONTEXT, layers: 4, dim: 128, heads: 4 })), dir, "gpt.onnx")
  fs.writeFileSync(path.join(dir, "tok.json"), "{}")
  fs.writeFileSync(path.join(dir, "data.txt"), "x")
  const yaml = `run: bench
output: out
tokenizer: tok.json
context_length: ${CONTEXT}
models: [{ name: gpt, params: 1000000, tokens_per_step: 4096, checkpoints: [{ step: 1, path: gpt.onnx }] }]
datasets: [{ name: rand, format: text, path: data.txt }]
scoring: { batch_size: ${BATCH}, threads: ${threads}, entropy: false }
`
  const c = parseConfig(path.join(dir, "config.yaml"), yaml)
  if (Either.isLeft(c)) throw new Error(c.left.message)
  return { config: c.right, model }
}

const writeWindows = (config: Config, rows: ReadonlyArray<WindowRow>) =>
  writeParquetFile(path.join(config.runDir, windowsFile("rand").path), windowsTable(rows))

/** The stage's one unit through the real UnitContext, over the windows writeWindows left in the run folder. */
const runStage = async (config: Config): Promise<void> => {
  const run = plantedRun(config, undefined, StageServicesLive)
  await run.record(tokenizeUnit("rand"), [windowsFile("rand").path])
  const r = await run.run(scoreStage, scoreStage.plan(config)[0])
  for (const m of r.logs) say(m)
  if (Either.isLeft(r.result)) throw new Error(r.result.left.message)
}

// ---------------------------------------------------------------------------------------------
// Child: the full stage alone, reporting its peak RSS.

if (process.argv.includes("--rss-child")) {
  // The parent wrote the model and the windows: this process only runs the stage.
  const n = Number(arg("rss-child", "0"))
  const { config } = setup(arg("dir", ""))
  await runStage(config)
  process.stdout.write(`${JSON.stringify({ windows: n, peak_rss_mb: process.resourceUsage().maxRSS / 1024 })}\n`)
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Parent

const windowsPerRound = Number(arg("windows", "1000"))
const rounds = Number(arg("rounds", "4"))
const rssCounts = arg("rss", "750,3000").split(",").map(Number)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "trajectories-bench-score-"))
try {
  const { config, model } = setup(dir)
  const params = gptParams(gptWeights({ vocab: VOCAB, context: CONTEXT, layers: 4, dim: 128, heads: 4 }))
  say(`GPT fixture: ${(params / 1e6).toFixed(2)}M parameters, vocab ${VOCAB}, context ${CONTEXT}, ${threads} threads, batch ${BATCH}`)
  const rows = makeWindows(windowsPerRound, 7)
  const tokens = rows.length * (CONTEXT - 1)
  writeWindows(config, rows)

  // Bare: the rewritten graph (as the engine caches it), feeds built before the clock starts.
  const header = readModelHeader(model)
  const plan = planRewrite(header, findSignature(header) as Signature, { entropy: false })
  if (!plan.ok) throw new Error(plan.reason)
  const session = await ort.InferenceSession.create(rewrittenBytes(model, plan.fragment), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    extra: { session: { model_external_initializers_file_folder_path: path.dirname(model) } },
  })
  const feeds: Array<Record<string, ort.Tensor>> = []
  for (let i = 0; i < rows.length; i += BATCH) {
    const batch = rows.slice(i, i + BATCH)
    const ids = BigInt64Array.from(batch.flatMap((w) => w.ids.map(BigInt)))
    const dims = [batch.length, CONTEXT]
    feeds.push({ input_ids: new ort.Tensor("int64", ids, dims), attention_mask: new ort.Tensor("int64", new BigInt64Array(ids.length).fill(1n), dims) })
  }
  const bare = async () => {
    for (const f of feeds) await session.run(f, [OUT.logprob])
  }
  const full = () => runStage(config)
  // Naive on a third of the windows: it is the slow one.
  const naiveReqs = rows.slice(0, Math.max(BATCH, Math.floor(rows.length / 3))).map((w) => ({ ids: Int32Array.from(w.ids), firstTarget: 1 }))
  const naive = () =>
    Effect.runPromise(withScorer(model, { threads, batchSize: BATCH, mode: "logits", label: "naive" }, (s) => s.scoreAll(naiveReqs)))

  const ways = { bare: { run: bare, tokens }, full: { run: full, tokens }, naive: { run: naive, tokens: naiveReqs.length * (CONTEXT - 1) } }
  const seconds = { bare: 0, full: 0, naive: 0 }
  await bare() // warm-up: arena, thread pool, cache of the rewritten graph for the stage
  await full()
  for (let r = 1; r <= rounds; r++) {
    const line: string[] = []
    const order = Object.entries(ways) as Array<[keyof typeof ways, (typeof ways)["bare"]]>
    // Alternate the order so that a drift in machine load favours no way.
    for (const [name, w] of r % 2 === 1 ? order : order.reverse()) {
      const t0 = performance.now()
      await w.run()
      const s = (performance.now() - t0) / 1000
      seconds[name] += s
      line.push(`${name} ${(w.tokens / s / 1000).toFixed(1)}k tokens/s`)
    }
    say(`round ${r}/${rounds}: ${line.join(", ")}`)
  }
  await session.release()
  const rate = (k: keyof typeof ways) => (ways[k].tokens * rounds) / seconds[k]

  // Threads: bare runs with 1 thread, and with the machine's threads spinning or sleeping when
  // idle, on this machine as it is and again with one busy process per core beside it (a loaded
  // machine, a runner sharing its node): which default is robust.
  const many = Math.max(2, os.availableParallelism())
  const settings = { one: { threads: 1 }, spin: { threads: many, spin: true }, sleep: { threads: many, spin: false } } as const
  const sessions = Object.fromEntries(
    await Promise.all(
      Object.entries(settings).map(async ([k, st]) => [k, await ort.InferenceSession.create(rewrittenBytes(model, plan.fragment), withExternalFolder(sessionOptions(st), path.dirname(model)))] as const),
    ),
  ) as Record<keyof typeof settings, ort.InferenceSession>
  const few = feeds.slice(0, Math.max(4, Math.floor(feeds.length / 4)))
  const threadRates = async (label: string) => {
    const secs = { one: 0, spin: 0, sleep: 0 }
    for (const k of Object.keys(sessions) as Array<keyof typeof settings>) for (const f of few.slice(0, 2)) await sessions[k].run(f, [OUT.logprob]) // warm-up
    for (let r = 0; r < rounds; r++) {
      const keys = Object.keys(sessions) as Array<keyof typeof settings>
      for (const k of r % 2 === 0 ? keys : keys.reverse()) {
        const t0 = performance.now()
        for (const f of few) await sessions[k].run(f, [OUT.logprob])
        secs[k] += (performance.now() - t0) / 1000
      }
    }
    const tps = (k: keyof typeof settings) => (few.length * BATCH * (CONTEXT - 1) * rounds) / secs[k]
    say(`${label}: 1 thread ${(tps("one") / 1000).toFixed(1)}k tokens/s, ${many} spinning ${(tps("spin") / 1000).toFixed(1)}k, ${many} sleeping ${(tps("sleep") / 1000).toFixed(1)}k`)
    return { spin_over_one: tps("spin") / tps("one"), sleep_over_one: tps("sleep") / tps("one") }
  }
  const quiet = await threadRates("threads, machine as it is")
  const hogs = Array.from({ length: os.availableParallelism() }, () => spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }))
  let busy: Awaited<ReturnType<typeof threadRates>>
  try {
    await new Promise((r) => setTimeout(r, 300))
    busy = await threadRates(`threads, beside ${hogs.length} busy process(es)`)
  } finally {
    for (const h of hogs) h.kill("SIGKILL")
  }
  for (const s of Object.values(sessions)) await s.release()

  const rss: Record<string, number> = {}
  for (const n of rssCounts) {
    const { config: childConfig } = setup(path.join(dir, `rss-${n}`), model)
    writeWindows(childConfig, makeWindows(n, 11))
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--rss-child", String(n), "--dir", path.join(dir, `rss-${n}`), "--threads", String(threads)], {
      encoding: "utf8",
    })
    if (child.status !== 0) throw new Error(`child for ${n} windows failed: ${child.stderr}`)
    const res = JSON.parse(child.stdout.trim().split("\n").at(-1)!) as { peak_rss_mb: number }
    rss[`peak_rss_mb_${n}_windows`] = Math.round(res.peak_rss_mb)
    say(`full stage alone on ${n} windows (${n * (CONTEXT - 1)} tokens): peak RSS ${res.peak_rss_mb.toFixed(0)} MB`)
  }

  const r3 = (x: number) => Math.round(x * 1000) / 1000
  console.log(
    JSON.stringify({
      bench: "score",
      params,
      vocab: VOCAB,
      context: CONTEXT,
      layers: 4,
      batch_size: BATCH,
      threads,
      windows: windowsPerRound,
      rounds,
      bare_tokens_per_s: Math.round(rate("bare")),
      full_tokens_per_s: Math.round(rate("full")),
      naive_tokens_per_s: Math.round(rate("naive")),
      full_over_bare: r3(rate("full") / rate("bare")),
      full_over_naive: r3(rate("full") / rate("naive")),
      threads_many: many,
      quiet_spin_over_one_thread: r3(quiet.spin_over_one),
      quiet_sleep_over_one_thread: r3(quiet.sleep_over_one),
      busy_spin_over_one_thread: r3(busy.spin_over_one),
      busy_sleep_over_one_thread: r3(busy.sleep_over_one),
      ...rss,
    }),
  )
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
