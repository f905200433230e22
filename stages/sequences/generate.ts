/**
 * Generation with two checkpoints: the next-token distributions of a small and a large model,
 * combined (decode.ts) and decoded greedily or by nucleus sampling.
 *
 * Full next-token distributions are needed, so each checkpoint is opened as it is (no scoring
 * head): onnxruntime-node runs the original graph, its `logits` are read and the last real
 * position of each row goes through a softmax in TypeScript.
 *
 * KV cache: when the export has one (Optimum's signature: past_key_values.{l}.key/.value inputs
 * and present.{l}.key/.value outputs), the prompt is run once and each further step feeds only
 * the new token with the previous step's `present.*` as the past: O(m + n) positions per model for
 * n tokens after a prompt of m. Rows decoded together with the cache must share one length (no
 * padding inside a cache), so the prompts are grouped by length, one session run per group and
 * step. When a sequence reaches `contextLength` the cache cannot grow: that group re-runs its last
 * `contextLength` tokens from an empty past (and keeps doing so each step).
 *
 * Without a cache (or with `kvCache: false`) every step re-runs the whole prefix: generating n
 * tokens after a prompt of m costs Σ_{k<n} (m + k) positions per model, O(n·m + n²), and each
 * position attends to all before it, so the attention work is O((m + n)³) in total — at 50 new
 * tokens after 16, about 25x the positions of the cached path (measured: npm run bench:generate).
 * The prefix is cut to the last `contextLength` tokens when it grows longer.
 *
 * Without a cache the prompts of one call are decoded together: one session run per step and
 * model, rows padded on the right (attention_mask 0 there), each row's logits read at its own last
 * token.
 */
import * as os from "node:os"
import * as ort from "onnxruntime-node"
import { halfToFloat } from "../score/batching.ts"
import { combine, makeSampler, softmax, type Decoding } from "./decode.ts"

export interface NextToken {
  /** Next-token probabilities [vocab] after each prefix (float64, sum 1), in order. */
  readonly next: (prefixes: ReadonlyArray<Int32Array>) => Promise<Float64Array[]>
  /**
   * Start decoding after `prompts` (each non-empty), keeping whatever state makes the next steps
   * cheap (the KV cache). Absent: generateJoint re-runs `next` on the whole prefixes.
   */
  readonly begin?: (prompts: ReadonlyArray<Int32Array>, contextLength: number) => Promise<Stepper>
  /** true when `begin` uses the export's KV cache. */
  readonly kvCache?: boolean
  readonly release: () => Promise<void>
  readonly label: string
}

/** Decoding state of a set of rows. */
export interface Stepper {
  /** Next-token probabilities after the prompts, one per row. */
  readonly first: Float64Array[]
  /** Append one token to every row (ids[r] to row r); the probabilities after each row. */
  readonly append: (ids: ArrayLike<number>) => Promise<Float64Array[]>
}

export interface OpenOptions {
  readonly threads?: number
  readonly executionProvider?: "cpu" | "cuda"
  readonly label?: string
  /** Use the export's KV cache when it has one (default true); false re-runs the prefix each step. */
  readonly kvCache?: boolean
}

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

/** The past input each present output feeds (present.X ← past_key_values.X or past.X). */
const cachePairs = (session: ort.InferenceSession): Array<readonly [past: string, present: string]> | undefined => {
  const pasts = session.inputNames.filter((n) => n.startsWith("past_key_values.") || n.startsWith("past."))
  if (pasts.length === 0) return undefined
  const pairs = pasts.map((n) => [n, `present.${n.slice(n.indexOf(".") + 1)}`] as const)
  return pairs.every(([, out]) => session.outputNames.includes(out)) ? pairs : undefined
}

/**
 * `begin` over the export's KV cache. Rows are grouped by prompt length; each group keeps its
 * sequences, the length the cache covers, and the last `present.*` tensors.
 */
const cachedBegin = (
  session: ort.InferenceSession,
  feeders: ReadonlyArray<readonly [string, Feeder]>,
  pairs: ReadonlyArray<readonly [string, string]>,
  label: string,
): ((prompts: ReadonlyArray<Int32Array>, contextLength: number) => Promise<Stepper>) => {
  const outputs = ["logits", ...pairs.map(([, present]) => present)]

  interface Group {
    readonly rows: number[]
    readonly seqs: number[][]
    /** positions the cache holds */
    cached: number
    past: Record<string, ort.Tensor> | undefined
  }

  /** Run `ids` ([rows × cols]) after the group's cache; returns each row's distribution after its last id. */
  const run = async (g: Group, ids: Int32Array, cols: number): Promise<Float64Array[]> => {
    const rows = g.rows.length
    const past = g.past === undefined ? 0 : g.cached
    const feed = { ids, mask: new Int32Array(rows * (past + cols)).fill(1), rows, cols, past }
    const feeds: Record<string, ort.Tensor> = Object.fromEntries(feeders.map(([n, f]) => [n, f(feed)]))
    // the past inputs get the last run's present.* instead of the feeders' empty past
    if (g.past) for (const [pastName, present] of pairs) feeds[pastName] = g.past[present]
    const out = await session.run(feeds, outputs)
    g.past = Object.fromEntries(pairs.map(([, present]) => [present, out[present]]))
    g.cached = past + cols
    return lastDistributions(out.logits, cols, new Array<number>(rows).fill(cols))
  }

  /** Run the group's last `contextLength` tokens from an empty past. */
  const prefill = (g: Group, contextLength: number): Promise<Float64Array[]> => {
    const cols = Math.min(contextLength, g.seqs[0].length)
    const ids = new Int32Array(g.rows.length * cols)
    g.seqs.forEach((s, r) => ids.set(tail(s, cols), r * cols))
    g.past = undefined
    return run(g, ids, cols)
  }

  return async (prompts, contextLength) => {
    const byLength = new Map<number, Group>()
    prompts.forEach((p, r) => {
      if (p.length === 0) throw new Error(`${label}: an empty prefix has no next token`)
      let g = byLength.get(p.length)
      if (g === undefined) byLength.set(p.length, (g = { rows: [], seqs: [], cached: 0, past: undefined }))
      g.rows.push(r)
      g.seqs.push(Array.from(p))
    })
    const groups = [...byLength.values()]
    const scatter = async (step: (g: Group) => Promise<Float64Array[]>): Promise<Float64Array[]> => {
      const all: Float64Array[] = new Array(prompts.length)
      for (const g of groups) (await step(g)).forEach((q, k) => (all[g.rows[k]] = q))
      return all
    }
    return {
      first: await scatter((g) => prefill(g, contextLength)),
      append: (ids) =>
        scatter((g) => {
          g.rows.forEach((r, k) => g.seqs[k].push(ids[r]))
          if (g.cached + 1 > contextLength) return prefill(g, contextLength)
          return run(g, Int32Array.from(g.rows, (r) => ids[r]), 1)
        }),
    }
  }
}

/** One session run: ids [rows × cols] after a cache of `past` positions (0: none), mask [rows × (past + cols)]. */
interface Feed {
  readonly ids: Int32Array
  readonly mask: Int32Array
  readonly rows: number
  readonly cols: number
  readonly past: number
}
type Feeder = (f: Feed) => ort.Tensor

/** Each row's next-token distribution: softmax of the logits ([rows, cols, vocab]) at position lengths[r] − 1. */
const lastDistributions = (t: ort.Tensor, cols: number, lengths: ReadonlyArray<number>): Float64Array[] => {
  const data = t.type === "float16" ? halfToFloat(t.data as ArrayBufferView) : (t.data as Float32Array)
  const vocab = t.dims[2]
  return lengths.map((len, r) => softmax(data.subarray((r * cols + len - 1) * vocab, (r * cols + len) * vocab)))
}

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
  if (name === "input_ids") return (f) => intTensor(type, f.ids, [f.rows, f.cols])
  if (name === "attention_mask") return (f) => intTensor(type, f.mask, [f.rows, f.past + f.cols])
  if (name === "position_ids") {
    return (f) => {
      const pos = new Int32Array(f.rows * f.cols)
      for (let k = 0; k < pos.length; k++) pos[k] = f.past + (k % f.cols)
      return intTensor(type, pos, [f.rows, f.cols])
    }
  }
  if (name.startsWith("past_key_values") || name.startsWith("past.")) {
    const data = emptyOf(type)
    if (!data || shape.length === 0) throw new Error(`${label}: input "${name}" cannot be fed an empty past`)
    return (f) => new ort.Tensor(type as "float32", data, shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? f.rows : 0)))
  }
  if (name === "use_cache_branch") {
    // false with an empty past, true when the past is the cache of earlier runs
    const dims = shape.map((d) => (typeof d === "number" && d >= 0 ? d : 1))
    return (f) => new ort.Tensor("bool", new Uint8Array(dims.reduce((a, d) => a * d, 1)).fill(f.past > 0 ? 1 : 0), dims)
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
      const feed = { ids, mask, rows, cols, past: 0 }
      const out = await session.run(Object.fromEntries(feeders.map(([n, f]) => [n, f(feed)])), ["logits"])
      return lastDistributions(out.logits, cols, prefixes.map((p) => p.length))
    }
    const pairs = o.kvCache === false ? undefined : cachePairs(session)
    if (pairs === undefined) return { next, release: () => session.release(), label, kvCache: false }
    return { next, begin: cachedBegin(session, feeders, pairs, label), kvCache: true, release: () => session.release(), label }
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
