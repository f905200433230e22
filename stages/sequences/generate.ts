/**
 * Generation with two checkpoints: the next-token distributions of a small and a large model
 * (lib/onnx/next-token.ts, opened through the Onnx service), combined (decode.ts) and decoded
 * greedily or by nucleus sampling.
 *
 * With the export's KV cache (NextToken.begin) the prompt is run once and each step feeds only the
 * new token: O(m + n) positions per model for n tokens after a prompt of m.
 *
 * Without a cache (or with `kvCache: false`) every step re-runs the whole prefix: generating n
 * tokens after a prompt of m costs Σ_{k<n} (m + k) positions per model, O(n·m + n²), and each
 * position attends to all before it, so the attention work is O((m + n)³) in total — at 50 new
 * tokens after 16, about 25x the positions of the cached path (measured: npm run bench:generate).
 * The prefix is cut to the last `contextLength` tokens when it grows longer.
 */
import type { NextToken, Stepper } from "../../lib/onnx/next-token.ts"
import { combine, makeSampler, type Decoding } from "./decode.ts"

/** Last `n` tokens of a sequence. */
const tail = (s: ReadonlyArray<number>, n: number): Int32Array => Int32Array.from(s.length > n ? s.slice(s.length - n) : s)

/** A stepper that re-runs the whole (context-cut) prefix of every row at each step. */
const rerunStepper = async (m: NextToken, prompts: ReadonlyArray<Int32Array>, contextLength: number): Promise<Stepper> => {
  const seqs = prompts.map((p) => Array.from(p))
  const run = () => m.next(seqs.map((s) => tail(s, contextLength)))
  return {
    first: await run(),
    append: (ids) => {
      seqs.forEach((s, r) => s.push(ids[r]))
      return run()
    },
  }
}

export interface JointOptions {
  readonly lambdaS: number
  readonly lambdaL: number
  readonly decoding: Decoding
  readonly topP: number
  readonly maxNewTokens: number
  /** One sampler seed per prompt (nucleus); ignored by greedy. */
  readonly seeds: ReadonlyArray<number>
  /** Longest prefix fed to the models; longer prefixes keep their last `contextLength` tokens. */
  readonly contextLength: number
  /** Called after each step with the number of new tokens (one per prompt). */
  readonly onStep?: (n: number) => void
}

export interface JointResult {
  /** [prompts] generated ids only (maxNewTokens each). */
  readonly generated: Int32Array[]
  /** How many (prompt, step) distributions took the fallback (all mass removed → large model's p). */
  readonly fallbacks: number
}

/**
 * Decode `maxNewTokens` tokens after each prompt with q = max(λs·ps + λl·pl, 0) renormalised.
 * @param prompts [prompts] token ids (prepended tokens included), each non-empty
 */
export const generateJoint = async (
  small: NextToken,
  large: NextToken,
  prompts: ReadonlyArray<Int32Array>,
  o: JointOptions,
): Promise<JointResult> => {
  const samplers = prompts.map((_, i) => makeSampler(o.decoding, o.topP, o.seeds[i] ?? 0))
  const generated = prompts.map(() => new Int32Array(o.maxNewTokens))
  let fallbacks = 0
  if (o.maxNewTokens <= 0 || prompts.length === 0) return { generated, fallbacks }
  // pl is always needed (it is also the fallback); ps only when λs ≠ 0.
  const needS = o.lambdaS !== 0
  const begin = (m: NextToken) => (m.begin ? m.begin(prompts, o.contextLength) : rerunStepper(m, prompts, o.contextLength))
  const sl = await begin(large)
  const ss = needS ? await begin(small) : undefined
  let pl = sl.first
  let ps = ss?.first ?? pl.map((p) => new Float64Array(p.length))
  for (let k = 0; ; k++) {
    if (needS && ps[0].length !== pl[0].length) {
      throw new Error(`${small.label} and ${large.label} have logits of widths ${ps[0].length} and ${pl[0].length}: not one tokenizer`)
    }
    const ids = new Int32Array(prompts.length)
    prompts.forEach((_, i) => {
      const { q, fallback } = combine(ps[i], pl[i], o.lambdaS, o.lambdaL)
      if (fallback) fallbacks++
      ids[i] = samplers[i].next(q)
      generated[i][k] = ids[i]
    })
    o.onStep?.(prompts.length)
    if (k + 1 === o.maxNewTokens) break
    pl = await sl.append(ids)
    if (ss) ps = await ss.append(ids)
  }
  return { generated, fallbacks }
}
