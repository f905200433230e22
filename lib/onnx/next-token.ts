/**
 * Next-token distributions of one checkpoint, for decoding (stages/sequences/generate.ts).
 *
 * Full next-token distributions are needed, so the checkpoint is opened as it is (no scoring
 * head): onnxruntime runs the original graph, its `logits` are read and the last real position of
 * each row goes through a softmax in TypeScript. Sessions and their options come from session.ts,
 * the feeds from feeds.ts (the same ones the scorer uses, with the same type checks).
 *
 *   const m = await openNextToken("/zoo/s/step-100.onnx", { threads: 1 })
 *   const [p] = await m.next([Int32Array.of(5, 9, 2)])   // p: Float64Array [vocab], p[v] = p(v | 5 9 2)
 *   await m.release()
 *
 * KV cache: when the export has one (Optimum's signature: past_key_values.{l}.key/.value inputs
 * and present.{l}.key/.value outputs), `begin` runs the prompt once and each further step feeds
 * only the new token with the previous step's `present.*` as the past (use_cache_branch true):
 * O(m + n) positions per model for n tokens after a prompt of m. Rows decoded together with the
 * cache must share one length (no padding inside a cache), so the prompts are grouped by length,
 * one session run per group and step. When a sequence reaches `contextLength` the cache cannot
 * grow: that group re-runs its last `contextLength` tokens from an empty past (and keeps doing so
 * each step).
 *
 * `next` decodes the prefixes of one call together: one session run, rows padded on the right
 * (attention_mask 0 there), each row's logits read at its own last token.
 */
import * as ort from "onnxruntime-node"
import { halfToFloat, softmax } from "./batching.ts"
import { feedAll, feedsFor, isPastInput, type Feeds } from "./feeds.ts"
import { Fail, sessionOptions, type SessionSettings } from "./session.ts"
import { graphSource, openSource } from "./source.ts"

export interface NextToken {
  /** Next-token probabilities [vocab] after each prefix (float64, sum 1), in order. */
  readonly next: (prefixes: ReadonlyArray<Int32Array>) => Promise<Float64Array[]>
  /**
   * Start decoding after `prompts` (each non-empty), keeping whatever state makes the next steps
   * cheap (the KV cache). Absent: the caller re-runs `next` on the whole prefixes.
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

export interface OpenOptions extends SessionSettings {
  /** Names the checkpoint in messages (default: its path). */
  readonly label?: string
  /** Use the export's KV cache when it has one (default true); false re-runs the prefix each step. */
  readonly kvCache?: boolean
  /** Where a graph built from a Hugging Face folder is cached (default: the system's temporary folder). */
  readonly cacheDir?: string
}

/** Last `n` tokens of a sequence. */
const tail = (s: ReadonlyArray<number>, n: number): Int32Array => Int32Array.from(s.length > n ? s.slice(s.length - n) : s)

/** The past input each present output feeds (present.X ← past_key_values.X or past.X). */
const cachePairs = (session: ort.InferenceSession): Array<readonly [past: string, present: string]> | undefined => {
  const pasts = session.inputNames.filter(isPastInput)
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
  feeds: Feeds,
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
    const feed = feedAll(feeds, { ids, mask: new Int32Array(rows * (past + cols)).fill(1), rows, cols, past })
    // the past inputs get the last run's present.* instead of the feeds' empty past
    if (g.past) for (const [pastName, present] of pairs) feed[pastName] = g.past[present]
    const out = await session.run(feed, outputs)
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
      if (p.length === 0) throw new Fail(`${label}: an empty prefix has no next token`)
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

/** Each row's next-token distribution: softmax of the logits ([rows, cols, vocab]) at position lengths[r] − 1. */
const lastDistributions = (t: ort.Tensor, cols: number, lengths: ReadonlyArray<number>): Float64Array[] => {
  const data = t.type === "float16" ? halfToFloat(t.data as ArrayBufferView) : (t.data as Float32Array)
  const vocab = t.dims[2]
  return lengths.map((len, r) => softmax(data.subarray((r * cols + len - 1) * vocab, (r * cols + len) * vocab)))
}

/**
 * Open a checkpoint's original graph for next-token distributions.
 * @throws Error with a one-line reason that names the checkpoint (Fail for our own checks)
 */
export const openNextToken = async (modelPath: string, o: OpenOptions = {}): Promise<NextToken> => {
  const label = o.label ?? modelPath
  const src = graphSource(modelPath, o.cacheDir, label)
  const session = await openSource(src, sessionOptions(o), label)
  try {
    if (!session.outputNames.includes("logits")) throw new Fail(`${label}: the model has no output "logits"`)
    const feeds = feedsFor(session.inputMetadata)
    if (typeof feeds === "string") throw new Fail(`${label}: ${feeds}`)
    const next = async (prefixes: ReadonlyArray<Int32Array>): Promise<Float64Array[]> => {
      const rows = prefixes.length
      if (rows === 0) return []
      const cols = Math.max(...prefixes.map((p) => p.length))
      if (cols === 0) throw new Fail(`${label}: an empty prefix has no next token`)
      const ids = new Int32Array(rows * cols)
      const mask = new Int32Array(rows * cols)
      prefixes.forEach((p, r) => {
        ids.set(p, r * cols)
        mask.fill(1, r * cols, r * cols + p.length)
      })
      const out = await session.run(feedAll(feeds, { ids, mask, rows, cols, past: 0 }), ["logits"])
      return lastDistributions(out.logits, cols, prefixes.map((p) => p.length))
    }
    const pairs = o.kvCache === false ? undefined : cachePairs(session)
    if (pairs === undefined) return { next, release: () => session.release(), label, kvCache: false }
    return { next, begin: cachedBegin(session, feeds, pairs, label), kvCache: true, release: () => session.release(), label }
  } catch (e) {
    await session.release().catch(() => undefined)
    throw e
  }
}
