/**
 * npm run bench:generate [-- --prompts 4 --prompt-tokens 16 --new 50 --rounds 3 --threads N]
 *
 * Tokens generated per second by the sequences stage's joint decoding (stages/sequences/generate.ts)
 * on a GPT-shaped ONNX model of ~1M parameters (vocab 2048, context 128, 4 layers, dim 128; random
 * weights, test/fixtures/onnx-gpt.ts) exported with a KV cache (Optimum's past_key_values /
 * present signature), used as both the small and the large model, λ = (1, −1) (both models run
 * every step), nucleus top-p 0.9. The same file is opened twice: through its cache (the prompt
 * run once, then one position per step), and with `kvCache: false`, which feeds an empty past
 * and re-runs the whole prefix each step (O(n²) positions for n new tokens). Figures per mode:
 * one prompt at a time, and all prompts batched together (one session run per step). The two
 * modes draw the same tokens (checked here). Last line: one JSON object.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { openNextToken } from "../lib/onnx/next-token.ts"
import { generateJoint } from "../stages/sequences/generate.ts"
import { gptModel, gptParams, gptWeights, rng, saveModel } from "../test/fixtures/onnx.ts"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const threads = Number(arg("threads", String(os.availableParallelism())))
const nPrompts = Number(arg("prompts", "4"))
const promptTokens = Number(arg("prompt-tokens", "16"))
const maxNew = Number(arg("new", "50"))
const rounds = Number(arg("rounds", "3"))
const say = (s: string) => console.log(`[bench:generate] ${s}`)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "traj-bench-gen-"))
try {
  const w = gptWeights()
  const file = saveModel(gptModel(w, { kvCache: true }), dir, "gpt-kv.onnx")
  const r = rng(3)
  const prompts = Array.from({ length: nPrompts }, () => Int32Array.from({ length: promptTokens }, () => Math.floor(r() * w.vocab)))
  const opts = { lambdaS: 1, lambdaL: -1, decoding: "nucleus" as const, topP: 0.9, maxNewTokens: maxNew, contextLength: w.context }
  const figures: Record<string, number> = {}
  const drawn: Record<string, string> = {}
  for (const kvCache of [false, true]) {
    const mode = kvCache ? "kv_cache" : "no_cache"
    const m = await openNextToken(file, { threads, kvCache })
    if (m.kvCache !== kvCache) throw new Error(`${file}: expected kvCache ${kvCache}, got ${m.kvCache}`)
    const time = async (ps: Int32Array[]): Promise<number> => {
      const t0 = performance.now()
      const out = await generateJoint(m, m, ps, { ...opts, seeds: ps.map((_, i) => i) })
      if (ps.length === nPrompts) drawn[mode] = JSON.stringify(out.generated.map((g) => [...g]))
      return (performance.now() - t0) / 1000
    }
    await time(prompts.slice(0, 1)) // warm-up
    let single = 0
    let batched = 0
    for (let k = 0; k < rounds; k++) {
      for (const p of prompts) single += await time([p])
      batched += await time(prompts)
      const done = nPrompts * maxNew * (k + 1)
      say(`${mode} round ${k + 1}/${rounds}: single ${(done / single).toFixed(1)} tok/s, batched ${(done / batched).toFixed(1)} tok/s`)
    }
    await m.release()
    const tokens = rounds * nPrompts * maxNew
    figures[`${mode}_single_tokens_per_s`] = Math.round((tokens / single) * 10) / 10
    figures[`${mode}_batched_tokens_per_s`] = Math.round((tokens / batched) * 10) / 10
  }
  if (drawn.kv_cache !== drawn.no_cache) throw new Error("the cached and re-run paths drew different tokens")
  console.log(
    JSON.stringify({
      bench: "generate",
      params: gptParams(w),
      vocab: w.vocab,
      context: w.context,
      layers: w.layers,
      threads,
      prompts: nPrompts,
      prompt_tokens: promptTokens,
      max_new_tokens: maxNew,
      rounds,
      models_per_step: 2,
      same_tokens_both_modes: true,
      ...figures,
      kv_speedup_single: Math.round((figures.kv_cache_single_tokens_per_s / figures.no_cache_single_tokens_per_s) * 100) / 100,
      kv_speedup_batched: Math.round((figures.kv_cache_batched_tokens_per_s / figures.no_cache_batched_tokens_per_s) * 100) / 100,
    }),
  )
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
