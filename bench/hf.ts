/**
 * npm run bench:hf [-- --batch 4 --seq 512 --rounds 3 --threads N --models pythia160m,gpt2small --variants all|main]
 *
 * ONNX graphs built in TypeScript from Hugging Face checkpoint folders (lib/onnx/hf/build.ts) against
 * PyTorch eager on the same weights (tools/reference/hf_reference.py --bench, float32, no_grad,
 * log-softmax + gather, best of 1 and 2 threads). Random fp32 weights, written by the fixture
 * (test/fixtures/safetensors.ts) into a temporary folder that is deleted afterwards:
 *   pythia160m  gpt_neox, hidden 768, 12 layers, 12 heads, vocab 50304, rotary_pct 0.25, parallel residual, untied
 *   gpt2small   gpt2, hidden 768, 12 layers, 12 heads, vocab 50257, tied
 *
 * Each ONNX measurement runs in a child process of its own, `batch` windows of `seq` random tokens
 * per call, best of `rounds` after a warm-up, peak RSS from process.resourceUsage().maxRSS:
 *   scorer      the shipped path: withScorer on the checkpoint folder (graph built, scoring head on
 *               the scored positions, one session) and scoreAll;
 *   logits      a bare session.run of the built graph as it is, fetching its logits (the "original
 *               export returning logits": prepared feeds, nothing read back);
 *   allhead     (--variants all) the head over all logits (head.ts planRewrite), the shipped path
 *               before the head on scored positions; noprepack: the scorer without weight prepacking.
 * Two workloads: every position scored (a document's first window, first target 1) and a later
 * window at the default stride (first target seq − ⌊seq/2⌋: the first half is context only). Tokens/s
 * counts scored tokens; a bare logits run and PyTorch's forward cost the same per call whichever
 * positions are scored, so their strided figure is their per-call time over fewer tokens.
 * Targets (issue 21), on the strided workload: scorer ≥ 1.0× the bare logits run, ≥ 1.2× PyTorch
 * eager (when python3-torch is installed); scorer peak RSS ≤ 2.5× the fp32 weight bytes. PyTorch's
 * speed is its BLAS's: Debian's python3-torch over the reference libblas3 multiplies at ~7 GFLOP/s,
 * over OpenBLAS (apt-get install libopenblas0-pthread) at ~100 a core; the JSON line says which.
 * Prints progress lines, and as its last line one JSON object of the figures.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as ort from "onnxruntime-node"
import { readModelHeader } from "../lib/onnx/file.ts"
import { OUT, findSignature, planRewrite, type Signature } from "../lib/onnx/head.ts"
import { buildHfGraph } from "../lib/onnx/hf/build.ts"
import { writeRandomCheckpoint, type CheckpointSpec } from "../test/fixtures/safetensors.ts"
import { mulberry32 } from "../lib/random.ts"
import { sessionOptions } from "../lib/onnx/session.ts"
import { withScorer } from "../lib/onnx/scorer.ts"
import { Effect } from "effect"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const say = (s: string) => console.log(`[bench:hf] ${s}`)
const BATCH = Number(arg("batch", "4"))
const SEQ = Number(arg("seq", "512"))
const ROUNDS = Number(arg("rounds", "3"))
const THREADS = Number(arg("threads", String(os.availableParallelism())))
/** scorer: the shipped withScorer path; logits: a bare run of the built graph fetching its logits; allhead: the head over all logits. */
type Mode = "scorer" | "logits" | "allhead"

const MODELS: Record<string, CheckpointSpec> = {
  pythia160m: {
    arch: "gpt_neox",
    config: {
      hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, vocab_size: 50304,
      rotary_pct: 0.25, use_parallel_residual: true, max_position_embeddings: 2048,
    },
  },
  gpt2small: { arch: "gpt2", config: { n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024 } },
}

// ---------------------------------------------------------------------------------------------
// Child: one ONNX Runtime session on the built graph + head.

if (process.argv.includes("--ort-child")) {
  const dir = arg("dir", "")
  const prepack = arg("prepack", "1") === "1"
  const mode = arg("mode", "scorer") as Mode
  const first = Number(arg("first", "1"))
  const t0 = performance.now()
  const r = mulberry32(7)
  const vocab = (JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as { vocab_size: number }).vocab_size
  const rows = Array.from({ length: BATCH }, () => Int32Array.from({ length: SEQ }, () => Math.floor(r() * vocab)))
  /** Load time and RSS after load, a warm-up, then the best of ROUNDS timed calls. */
  const measure = async (timed: () => Promise<void>) => {
    const loadS = (performance.now() - t0) / 1000
    const rssAfterLoad = process.memoryUsage().rss / 2 ** 20
    await timed()
    let best = Infinity
    for (let i = 0; i < ROUNDS; i++) {
      const t = performance.now()
      await timed()
      best = Math.min(best, (performance.now() - t) / 1000)
    }
    return { tokens_per_s: (BATCH * (SEQ - first)) / best, call_s: best, load_s: loadS, rss_after_load_mb: rssAfterLoad }
  }
  let figures: Record<string, number>
  if (mode === "scorer") {
    // The shipped path: withScorer on the checkpoint folder (graph built, head appended, one session), scoreAll.
    const cacheDir = path.join(dir, "..", `${path.basename(dir)}-cache`)
    const reqs = rows.map((ids) => ({ ids, firstTarget: first }))
    figures = await Effect.runPromise(
      withScorer(dir, { threads: THREADS, batchSize: BATCH, entropy: false, cacheDir }, (scorer) =>
        Effect.promise(() => {
          if (!scorer.positionsOnly) throw new Error(`the scorer runs the head over every position: ${scorer.everyPositionWhy}`)
          return measure(async () => {
            const out = await Effect.runPromise(scorer.scoreAll(reqs))
            if (!out.every((x) => x.logprob.every(Number.isFinite))) throw new Error("non-finite log-prob")
          })
        }),
      ),
    )
  } else {
    const built = buildHfGraph(dir)
    const extra = { session: { model_external_initializers_file_folder_path: built.externalFolder, ...(prepack ? {} : { disable_prepacking: "1" }) } }
    let bytes = built.model
    let fetch = "logits"
    if (mode === "allhead") {
      // The head over all logits (planRewrite): the shipped path before the head on scored positions.
      const tmpModel = path.join(dir, "..", `${path.basename(dir)}.onnx`)
      fs.writeFileSync(tmpModel, built.model)
      const header = readModelHeader(tmpModel)
      fs.rmSync(tmpModel)
      const plan = planRewrite(header, findSignature(header) as Signature, { entropy: false })
      if (!plan.ok) throw new Error(plan.reason)
      bytes = Buffer.concat([built.model, plan.fragment])
      fetch = OUT.logprob
    }
    const session = await ort.InferenceSession.create(bytes, { ...sessionOptions({ threads: THREADS }), extra })
    const ids = new BigInt64Array(BATCH * SEQ)
    rows.forEach((row, i) => row.forEach((x, k) => (ids[i * SEQ + k] = BigInt(x))))
    const feeds = { input_ids: new ort.Tensor("int64", ids, [BATCH, SEQ]) }
    // The bare run: prepared feeds, one fetch, nothing read back.
    figures = await measure(async () => void (await session.run(feeds, [fetch])))
    await session.release()
  }
  process.stdout.write(`${JSON.stringify({ ...figures, peak_rss_mb: process.resourceUsage().maxRSS / 1024 })}\n`)
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Parent

const lastJson = (stdout: string): Record<string, number> => JSON.parse(stdout.trim().split("\n").at(-1)!)

const runOrt = (dir: string, mode: Mode, first: number, prepack = true): Record<string, number> => {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), "--ort-child", "--dir", dir, "--mode", mode, "--first", String(first), "--prepack", prepack ? "1" : "0", "--batch", String(BATCH), "--seq", String(SEQ), "--rounds", String(ROUNDS), "--threads", String(THREADS)],
    { encoding: "utf8" },
  )
  if (child.status !== 0) throw new Error(`ORT child failed: ${child.stderr}`)
  return lastJson(child.stdout)
}

const runTorch = (dir: string): Record<string, number> => {
  const script = fileURLToPath(new URL("../tools/reference/hf_reference.py", import.meta.url))
  const py = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
  const child = spawnSync(py, [script, "--bench", dir, "--batch", String(BATCH), "--seq", String(SEQ), "--threads", "1,2", "--rounds", String(Math.max(1, ROUNDS - 1))], { encoding: "utf8" })
  if (child.status !== 0) throw new Error(`PyTorch child failed: ${child.stderr}`)
  return lastJson(child.stdout)
}

/** A later window's first target at the default stride (half the context). */
const STRIDED_FIRST = SEQ - Math.floor(SEQ / 2)
const hasTorch = spawnSync(fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3", ["-c", "import torch"]).status === 0
const names = arg("models", "pythia160m,gpt2small").split(",")
const variants = arg("variants", "all")
const root = fs.mkdtempSync(path.join(os.tmpdir(), "trajectories-bench-hf-"))
const figures: Record<string, number | string> = { bench: "hf", batch: BATCH, seq: SEQ, threads: THREADS }
const r3 = (x: number) => Math.round(x * 1000) / 1000
try {
  for (const name of names) {
    const dir = path.join(root, name)
    const t0 = performance.now()
    const w = writeRandomCheckpoint(dir, MODELS[name])
    const weightMb = w.bytes / 2 ** 20
    say(`${name}: ${(w.bytes / 4 / 1e6).toFixed(1)}M parameters, ${weightMb.toFixed(0)} MB fp32 written in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    // Two workloads of BATCH windows of SEQ tokens: every position scored (a document's first window)
    // and the last SEQ − STRIDED_FIRST (a later window at the default stride, half the context).
    // Tokens/s counts scored tokens; a bare run or PyTorch costs the same whichever are scored.
    const perCall = (o: Record<string, number>, first: number) => (BATCH * (SEQ - first)) / o.call_s
    const scorerAll = runOrt(dir, "scorer", 1)
    const scorerStrided = runOrt(dir, "scorer", STRIDED_FIRST)
    const logits = runOrt(dir, "logits", 1)
    say(`${name}: scorer ${scorerAll.tokens_per_s.toFixed(0)} tokens/s (all positions), ${scorerStrided.tokens_per_s.toFixed(0)} (strided); bare logits run ${perCall(logits, 1).toFixed(0)} / ${perCall(logits, STRIDED_FIRST).toFixed(0)}; scorer peak RSS ${scorerStrided.peak_rss_mb.toFixed(0)} MB, after load ${scorerStrided.rss_after_load_mb.toFixed(0)} MB`)
    const pt = hasTorch ? runTorch(dir) : undefined
    if (pt) say(`${name}: PyTorch ${pt.tokens_per_s.toFixed(0)} tokens/s all positions (best of 1, 2 threads: ${JSON.stringify(pt.tokens_per_s_by_threads)}), peak ${pt.peak_rss_mb.toFixed(0)} MB, its BLAS ${pt.matmul_gflops.toFixed(0)} GFLOP/s on a 2048×768×3072 matmul${pt.matmul_gflops < 30 ? " (a reference BLAS: install libopenblas0-pthread for a fair comparison)" : ""}`)
    else say(`${name}: PyTorch not installed (python3-torch): no PyTorch figures`)
    // PyTorch's forward computes every position's logits: its time per call is the same for both workloads.
    const torchStrided = pt ? (pt.tokens_per_s * (SEQ - STRIDED_FIRST)) / (SEQ - 1) : undefined
    const overLogits = scorerStrided.tokens_per_s / perCall(logits, STRIDED_FIRST)
    const overTorch = torchStrided !== undefined ? scorerStrided.tokens_per_s / torchStrided : undefined
    Object.assign(figures, {
      [`${name}_weights_mb`]: Math.round(weightMb),
      [`${name}_scorer_tokens_per_s_all`]: Math.round(scorerAll.tokens_per_s),
      [`${name}_scorer_tokens_per_s_strided`]: Math.round(scorerStrided.tokens_per_s),
      [`${name}_bare_logits_tokens_per_s_all`]: Math.round(perCall(logits, 1)),
      [`${name}_bare_logits_tokens_per_s_strided`]: Math.round(perCall(logits, STRIDED_FIRST)),
      [`${name}_scorer_over_bare_logits_all`]: r3(scorerAll.tokens_per_s / perCall(logits, 1)),
      [`${name}_scorer_over_bare_logits_strided`]: r3(overLogits),
      ...(pt && torchStrided !== undefined && overTorch !== undefined
        ? {
            [`${name}_torch_tokens_per_s_all`]: Math.round(pt.tokens_per_s),
            [`${name}_scorer_over_torch_all`]: r3(scorerAll.tokens_per_s / pt.tokens_per_s),
            [`${name}_scorer_over_torch_strided`]: r3(overTorch),
            [`${name}_torch_peak_rss_mb`]: Math.round(pt.peak_rss_mb),
            [`${name}_torch_matmul_gflops`]: Math.round(pt.matmul_gflops),
            [`${name}_torch_target_met`]: overTorch >= 1.2 ? "yes" : "no",
          }
        : {}),
      [`${name}_scorer_peak_rss_mb`]: Math.round(Math.max(scorerAll.peak_rss_mb, scorerStrided.peak_rss_mb)),
      [`${name}_scorer_rss_after_load_mb`]: Math.round(scorerStrided.rss_after_load_mb),
      [`${name}_scorer_peak_rss_over_weights`]: r3(Math.max(scorerAll.peak_rss_mb, scorerStrided.peak_rss_mb) / weightMb),
      [`${name}_bare_logits_target_met`]: overLogits >= 1.0 ? "yes" : "no",
      [`${name}_rss_target_met`]: Math.max(scorerAll.peak_rss_mb, scorerStrided.peak_rss_mb) <= 2.5 * weightMb ? "yes" : "no",
    })
    if (variants === "all") {
      // For the record: the head over all logits (the shipped path before), and no weight prepacking.
      for (const [key, mode, prepack] of [["allhead", "allhead", true], ["noprepack", "scorer", false]] as const) {
        const o = runOrt(dir, mode, key === "allhead" ? 1 : STRIDED_FIRST, prepack)
        const tps = key === "allhead" ? perCall(o, STRIDED_FIRST) : o.tokens_per_s
        say(`${name}: ${key} ${tps.toFixed(0)} tokens/s (strided), peak ${o.peak_rss_mb.toFixed(0)} MB`)
        Object.assign(figures, {
          [`${name}_${key}_tokens_per_s_strided`]: Math.round(tps),
          [`${name}_${key}_peak_rss_mb`]: Math.round(o.peak_rss_mb),
        })
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  console.log(JSON.stringify(figures))
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
