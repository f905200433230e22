/**
 * Generation with two checkpoints: the next-token distributions of a small and a large model,
 * combined (decode.ts) and decoded greedily or by nucleus sampling.
 *
 * Full next-token distributions are needed, so each checkpoint is opened as it is (no scoring
 * head): onnxruntime-node runs the original graph, its `logits` are read and the last real
 * position of each row goes through a softmax in TypeScript.
 *
 * No KV cache: the exports take no past_key_values (or are fed an empty past), so every step
 * re-runs the whole prefix. Generating n tokens after a prompt of m costs Σ_{k<n} (m + k) token
 * positions per model, O(n·m + n²) — and each position attends to all before it, so the attention
 * work is O((m + n)³) in total. At the paper's 50–100 tokens on small models this is fine; the
 * prefix is cut to the last `contextLength` tokens when it grows longer.
 *
 * The prompts of one call are decoded together: one session run per step and model, rows padded
 * on the right (attention_mask 0 there), each row's logits read at its own last token.
 */
import * as os from "node:os"
import * as ort from "onnxruntime-node"
import { halfToFloat } from "../score/batching.ts"
import { combine, makeSampler, softmax, type Decoding } from "./decode.ts"

export interface NextToken {
  /** Next-token probabilities [vocab] after each prefix (float64, sum 1), in order. */
  readonly next: (prefixes: ReadonlyArray<Int32Array>) => Promise<Float64Array[]>
  readonly release: () => Promise<void>
  readonly label: string
}

export interface OpenOptions {
  readonly threads?: number
  readonly executionProvider?: "cpu" | "cuda"
  readonly label?: string
}

type Feeder = (ids: Int32Array, mask: Int32Array, rows: number, cols: number) => ort.Tensor

const intTensor = (type: string, data: Int32Array, dims: number[]): ort.Tensor =>
  type === "int64"
    ? new ort.Tensor("int64", BigInt64Array.from(data, (x) => BigInt(x)), dims)
    : type === "int32"
      ? new ort.Tensor("int32", data, dims)
      : new ort.Tensor("float32", Float32Array.from(data), dims)

const emptyOf = (type: string): ort.Tensor.DataType | undefined =>
  ({ float32: new Float32Array(0), float16: new Uint16Array(0), int64: new BigInt64Array(0), int32: new Int32Array(0) })[type]

const feederFor = (m: ort.InferenceSession.ValueMetadata, label: string): Feeder => {
  if (!m.isTensor) throw new Error(`${label}: input "${m.name}" is not a tensor`)
  const { name, type, shape } = m
  if (name === "input_ids") return (ids, _m, r, c) => intTensor(type, ids, [r, c])
  if (name === "attention_mask") return (_i, mask, r, c) => intTensor(type, mask, [r, c])
  if (name === "position_ids") {
    return (_i, _m, r, c) => {
      const pos = new Int32Array(r * c)
      for (let k = 0; k < pos.length; k++) pos[k] = k % c
      return intTensor(type, pos, [r, c])
    }
  }
  if (name.startsWith("past_key_values") || name.startsWith("past.")) {
    const data = emptyOf(type)
    if (!data || shape.length === 0) throw new Error(`${label}: input "${name}" cannot be fed an empty past`)
    return (_i, _m, r) => new ort.Tensor(type as "float32", data, shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? r : 0)))
  }
  if (name === "use_cache_branch") {
    const dims = shape.map((d) => (typeof d === "number" && d >= 0 ? d : 1))
    return () => new ort.Tensor("bool", new Uint8Array(dims.reduce((a, d) => a * d, 1)), dims)
  }
  throw new Error(`${label}: input "${name}" cannot be fed (input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)`)
}

/** Open a checkpoint's original graph for next-token distributions. @throws Error with a one-line reason */
export const openNextToken = async (modelPath: string, o: OpenOptions = {}): Promise<NextToken> => {
  const label = o.label ?? modelPath
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: [o.executionProvider ?? "cpu"],
    intraOpNumThreads: o.threads ?? Math.max(1, os.availableParallelism()),
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  })
  try {
    if (!session.outputNames.includes("logits")) throw new Error(`${label}: the model has no output "logits"`)
    const feeders = session.inputMetadata.map((m) => [m.name, feederFor(m, label)] as const)
    const next = async (prefixes: ReadonlyArray<Int32Array>): Promise<Float64Array[]> => {
      const rows = prefixes.length
      if (rows === 0) return []
      const cols = Math.max(...prefixes.map((p) => p.length))
      if (cols === 0) throw new Error(`${label}: an empty prefix has no next token`)
      const ids = new Int32Array(rows * cols)
      const mask = new Int32Array(rows * cols)
      prefixes.forEach((p, r) => {
        ids.set(p, r * cols)
        mask.fill(1, r * cols, r * cols + p.length)
      })
      const out = await session.run(Object.fromEntries(feeders.map(([n, f]) => [n, f(ids, mask, rows, cols)])), ["logits"])
      const t = out.logits
      const data = t.type === "float16" ? halfToFloat(t.data as Uint16Array) : (t.data as Float32Array)
      const vocab = t.dims[2]
      return prefixes.map((p, r) => softmax(data.subarray((r * cols + p.length - 1) * vocab, (r * cols + p.length) * vocab)))
    }
    return { next, release: () => session.release(), label }
  } catch (e) {
    await session.release().catch(() => undefined)
    throw e
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
  const seqs = prompts.map((p) => Array.from(p))
  const generated = prompts.map(() => new Int32Array(o.maxNewTokens))
  let fallbacks = 0
  // pl is always needed (it is also the fallback); ps only when λs ≠ 0.
  const needS = o.lambdaS !== 0
  for (let k = 0; k < o.maxNewTokens; k++) {
    const prefixes = seqs.map((s) => Int32Array.from(s.length > o.contextLength ? s.slice(s.length - o.contextLength) : s))
    const pl = await large.next(prefixes)
    const ps = needS ? await small.next(prefixes) : pl.map((p) => new Float64Array(p.length))
    if (needS && ps.length > 0 && ps[0].length !== pl[0].length) {
      throw new Error(`${small.label} and ${large.label} have logits of widths ${ps[0].length} and ${pl[0].length}: not one tokenizer`)
    }
    prefixes.forEach((_, i) => {
      const { q, fallback } = combine(ps[i], pl[i], o.lambdaS, o.lambdaL)
      if (fallback) fallbacks++
      const id = samplers[i].next(q)
      generated[i][k] = id
      seqs[i].push(id)
    })
    o.onStep?.(prompts.length)
  }
  return { generated, fallbacks }
}
