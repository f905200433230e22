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
  pairs: ReadonlyArray<readonly [string, string]>,
  label: string,
): ((prompts: ReadonlyArray<Int32Array>, contextLength: number) => Promise<Stepper>) => {
  const meta = new Map(session.inputMetadata.map((m) => [m.name, m]))
  const typeOf = (name: string) => {
    const m = meta.get(name)
    return m?.isTensor ? m.type : "int64"
  }
  const emptyPast = (name: string, rows: number): ort.Tensor => {
    const m = meta.get(name)
    if (!m?.isTensor) throw new Error(`${label}: input "${name}" is not a tensor`)
    const data = emptyOf(m.type)
    if (!data || m.shape.length === 0) throw new Error(`${label}: input "${name}" cannot be fed an empty past`)
    return new ort.Tensor(m.type as "float32", data, m.shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? rows : 0)))
  }
  const outputs = ["logits", ...pairs.map(([, present]) => present)]
  for (const name of session.inputNames) {
    if (!["input_ids", "attention_mask", "position_ids", "use_cache_branch"].includes(name) && !pairs.some(([past]) => past === name)) {
      throw new Error(`${label}: input "${name}" cannot be fed (input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)`)
    }
  }

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
    const feeds: Record<string, ort.Tensor> = {}
    for (const name of session.inputNames) {
      if (name === "input_ids") feeds[name] = intTensor(typeOf(name), ids, [rows, cols])
      else if (name === "attention_mask") feeds[name] = intTensor(typeOf(name), new Int32Array(rows * (past + cols)).fill(1), [rows, past + cols])
      else if (name === "position_ids") {
        const pos = new Int32Array(rows * cols)
        for (let k = 0; k < pos.length; k++) pos[k] = past + (k % cols)
        feeds[name] = intTensor(typeOf(name), pos, [rows, cols])
      } else if (name === "use_cache_branch") {
        const m = meta.get(name)
        const dims = m?.isTensor ? m.shape.map((d) => (typeof d === "number" && d >= 0 ? d : 1)) : [1]
        feeds[name] = new ort.Tensor("bool", new Uint8Array(dims.reduce((a, d) => a * d, 1)).fill(past > 0 ? 1 : 0), dims)
      }
    }
    for (const [pastName, present] of pairs) feeds[pastName] = g.past?.[present] ?? emptyPast(pastName, rows)
    const out = await session.run(feeds, outputs)
    g.past = Object.fromEntries(pairs.map(([, present]) => [present, out[present]]))
    g.cached = past + cols
    const t = out.logits
    const data = t.type === "float16" ? halfToFloat(t.data as Uint16Array) : (t.data as Float32Array)
    const vocab = t.dims[2]
    return g.rows.map((_, r) => softmax(data.subarray((r * cols + cols - 1) * vocab, (r * cols + cols) * vocab)))
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
    const pairs = o.kvCache === false ? undefined : cachePairs(session)
    if (pairs === undefined) return { next, release: () => session.release(), label, kvCache: false }
    return { next, begin: cachedBegin(session, pairs, label), kvCache: true, release: () => session.release(), label }
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
