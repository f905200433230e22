/**
 * npm run bench:hf [-- --batch 4 --seq 512 --rounds 3 --threads N --models pythia160m,gpt2small --variants all|scorer]
 *
 * ONNX graphs built in TypeScript from Hugging Face checkpoint folders (lib/onnx/hf/build.ts) against
 * PyTorch eager on the same weights (tools/reference/hf_reference.py --bench, float32, no_grad,
 * log-softmax + gather, best of 1 and 2 threads). Random fp32 weights, written by the fixture
 * (test/fixtures/safetensors.ts) into a temporary folder that is deleted afterwards:
 *   pythia160m  gpt_neox, hidden 768, 12 layers, 12 heads, vocab 50304, rotary_pct 0.25, parallel residual, untied
 *   gpt2small   gpt2, hidden 768, 12 layers, 12 heads, vocab 50257, tied
 *
 * Each ONNX measurement runs in a child process of its own, as the scorer would: the built graph
 * with the scoring head appended (head.ts planRewrite; the model's header is read back with
 * file.ts readModelHeader) and the scorer's session options (session.ts sessionOptions), one
 * session, `batch` × `seq` random tokens per run, fetching only the per-token log-probs; it reports
 * tokens/s (targets = batch·(seq−1)) and its peak RSS (process.resourceUsage().maxRSS). One more
 * ONNX run per model, for the record (`--variants scorer` skips it):
 *   noprepack   the same with `session.disable_prepacking` = 1 (no packed copy of the weights: a
 *               tied embedding, read by both a Gather and the head's MatMul, is then held once).
 * Targets (issue 16): ORT ≥ 1.2× PyTorch's tokens/s, peak RSS ≤ 2.5× the fp32 weight bytes.
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

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const say = (s: string) => console.log(`[bench:hf] ${s}`)
const BATCH = Number(arg("batch", "4"))
const SEQ = Number(arg("seq", "512"))
const ROUNDS = Number(arg("rounds", "3"))
const THREADS = Number(arg("threads", String(os.availableParallelism())))

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
  const t0 = performance.now()
  const built = buildHfGraph(dir)
  // The scorer reads the model's header from its file; do the same with the built bytes.
  const tmpModel = path.join(dir, "..", `${path.basename(dir)}.onnx`)
  fs.writeFileSync(tmpModel, built.model)
  const header = readModelHeader(tmpModel)
  fs.rmSync(tmpModel)
  const plan = planRewrite(header, findSignature(header) as Signature, { entropy: false })
  if (!plan.ok) throw new Error(plan.reason)
  const fetch = OUT.logprob
  const session = await ort.InferenceSession.create(Buffer.concat([built.model, plan.fragment]), {
    ...sessionOptions({ threads: THREADS }),
    extra: { session: { model_external_initializers_file_folder_path: built.externalFolder, ...(prepack ? {} : { disable_prepacking: "1" }) } },
  })
  const loadS = (performance.now() - t0) / 1000
  const rssAfterLoad = process.memoryUsage().rss / 2 ** 20
  const r = mulberry32(7)
  const vocab = header.outputs[0].dims?.[2] as number
  const ids = BigInt64Array.from({ length: BATCH * SEQ }, () => BigInt(Math.floor(r() * vocab)))
  const feeds = { input_ids: new ort.Tensor("int64", ids, [BATCH, SEQ]) }
  await session.run(feeds, [fetch]) // warm-up
  let best = Infinity
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now()
    const out = await session.run(feeds, [fetch])
    best = Math.min(best, (performance.now() - t) / 1000)
    const lp = out[fetch].data as Float32Array
    if (!lp.every(Number.isFinite)) throw new Error("non-finite log-prob")
  }
  await session.release()
  process.stdout.write(
    `${JSON.stringify({ tokens_per_s: (BATCH * (SEQ - 1)) / best, load_s: loadS, rss_after_load_mb: rssAfterLoad, peak_rss_mb: process.resourceUsage().maxRSS / 1024 })}\n`,
  )
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Parent

const lastJson = (stdout: string): Record<string, number> => JSON.parse(stdout.trim().split("\n").at(-1)!)

const runOrt = (dir: string, prepack: boolean): Record<string, number> => {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), "--ort-child", "--dir", dir, "--prepack", prepack ? "1" : "0", "--batch", String(BATCH), "--seq", String(SEQ), "--rounds", String(ROUNDS), "--threads", String(THREADS)],
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
    const ort1 = runOrt(dir, true)
    say(`${name}: ORT ${ort1.tokens_per_s.toFixed(0)} tokens/s, load ${ort1.load_s.toFixed(1)} s, RSS after load ${ort1.rss_after_load_mb.toFixed(0)} MB, peak ${ort1.peak_rss_mb.toFixed(0)} MB`)
    const pt = runTorch(dir)
    say(`${name}: PyTorch ${pt.tokens_per_s.toFixed(0)} tokens/s (best of 1, 2 threads: ${JSON.stringify(pt.tokens_per_s_by_threads)}), peak ${pt.peak_rss_mb.toFixed(0)} MB`)
    Object.assign(figures, {
      [`${name}_weights_mb`]: Math.round(weightMb),
      [`${name}_ort_tokens_per_s`]: Math.round(ort1.tokens_per_s),
      [`${name}_torch_tokens_per_s`]: Math.round(pt.tokens_per_s),
      [`${name}_ort_over_torch`]: r3(ort1.tokens_per_s / pt.tokens_per_s),
      [`${name}_ort_peak_rss_mb`]: Math.round(ort1.peak_rss_mb),
      [`${name}_ort_rss_after_load_mb`]: Math.round(ort1.rss_after_load_mb),
      [`${name}_ort_peak_rss_over_weights`]: r3(ort1.peak_rss_mb / weightMb),
      [`${name}_torch_peak_rss_mb`]: Math.round(pt.peak_rss_mb),
      [`${name}_speed_target_met`]: ort1.tokens_per_s >= 1.2 * pt.tokens_per_s ? "yes" : "no",
      [`${name}_rss_target_met`]: ort1.peak_rss_mb <= 2.5 * weightMb ? "yes" : "no",
    })
    if (variants === "all") {
      const more = [["noprepack", false]] as const
      for (const [key, prepack] of more) {
        const o = runOrt(dir, prepack)
        say(`${name}: ORT ${key} ${o.tokens_per_s.toFixed(0)} tokens/s, RSS after load ${o.rss_after_load_mb.toFixed(0)} MB, peak ${o.peak_rss_mb.toFixed(0)} MB`)
        Object.assign(figures, {
          [`${name}_ort_${key}_tokens_per_s`]: Math.round(o.tokens_per_s),
          [`${name}_ort_${key}_over_torch`]: r3(o.tokens_per_s / pt.tokens_per_s),
          [`${name}_ort_${key}_peak_rss_mb`]: Math.round(o.peak_rss_mb),
          [`${name}_ort_${key}_peak_rss_over_weights`]: r3(o.peak_rss_mb / weightMb),
        })
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  console.log(JSON.stringify(figures))
} finally {
  fs.rmSync(root, { recursive: true, force: true })
}
