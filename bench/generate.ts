/**
 * npm run bench:generate [-- --prompts 4 --prompt-tokens 16 --new 50 --rounds 3 --threads N]
 *
 * Tokens generated per second by the sequences stage's joint decoding (stages/sequences/generate.ts)
 * on a GPT-shaped ONNX model of ~1M parameters (vocab 2048, context 128, 4 layers, dim 128; random
 * weights, test/fixtures/onnx-gpt.ts), used as both the small and the large model, λ = (1, −1)
 * (both models run every step), nucleus top-p 0.9. The fixture has no KV cache, so every step
 * re-runs the whole prefix: the cost grows with the prefix (O(n²) positions for n new tokens).
 * Figures: one prompt at a time, and all prompts batched together (one session run per step).
 * "kv_cache": false — the KV-cache path is not implemented. Last line: one JSON object.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { generateJoint, openNextToken } from "../stages/sequences/generate.ts"
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
  const file = saveModel(gptModel(w), dir, "gpt.onnx")
  const r = rng(3)
  const prompts = Array.from({ length: nPrompts }, () => Int32Array.from({ length: promptTokens }, () => Math.floor(r() * w.vocab)))
  const m = await openNextToken(file, { threads })
  const opts = { lambdaS: 1, lambdaL: -1, decoding: "nucleus" as const, topP: 0.9, maxNewTokens: maxNew, contextLength: w.context }
  const time = async (ps: Int32Array[]): Promise<number> => {
    const t0 = performance.now()
    await generateJoint(m, m, ps, { ...opts, seeds: ps.map((_, i) => i) })
    return (performance.now() - t0) / 1000
  }
  await time(prompts.slice(0, 1)) // warm-up
  let single = 0
  let batched = 0
  for (let k = 0; k < rounds; k++) {
    for (const p of prompts) single += await time([p])
    batched += await time(prompts)
    say(`round ${k + 1}/${rounds}: single ${((nPrompts * maxNew * (k + 1)) / single).toFixed(1)} tok/s, batched ${((nPrompts * maxNew * (k + 1)) / batched).toFixed(1)} tok/s`)
  }
  await m.release()
  const tokens = rounds * nPrompts * maxNew
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
      kv_cache: false,
      no_cache_single_tokens_per_s: Math.round((tokens / single) * 10) / 10,
      no_cache_batched_tokens_per_s: Math.round((tokens / batched) * 10) / 10,
      kv_cache_tokens_per_s: null,
    }),
  )
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
