/**
 * The scorer: per-token log-probabilities of token sequences under one ONNX checkpoint. Stages
 * use it through the Onnx service (index.ts), whose `withScorer` is this module's:
 *
 *   withScorer("/zoo/s/step-100.onnx", { batchSize: 8, entropy: false, cacheDir }, (s) =>
 *     s.scoreAll([{ ids: Int32Array.of(5, 9, 2, 7), firstTarget: 2 }]))
 *   // → [{ logprob: Float32Array [2] }]: log p(2 | 5 9), log p(7 | 5 9 2), nats
 *
 * Opening a checkpoint: its header is read (readModelHeader), `input_ids` and `logits` must exist,
 * the scoring head is appended (head.ts, cached on disk) and one session is created (session.ts).
 * When the head cannot be appended the session runs the original graph and the log-softmax happens
 * in TypeScript, said once through `log`. The rewritten model keeps its weights in the checkpoint's
 * folder: it is loaded from bytes with `session.model_external_initializers_file_folder_path` set
 * to that folder (ONNX Runtime refuses absolute or symlinked external-data locations).
 *
 * Batching: each scoreAll sorts its sequences longest first, runs batches of `batchSize` rows padded
 * on the right, and returns results in request order (batching.ts).
 *
 * Inputs are fed by name from the session's metadata, with an empty past (feeds.ts): input_ids,
 * attention_mask (1 on tokens, 0 on the right padding), position_ids (0…cols−1 per row),
 * past_key_values.* (past dimension 0, element type as declared) and use_cache_branch (false).
 * Any other input is an error.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import type * as ort from "onnxruntime-node"
import { batchForBudget, firstNonFinite, halfToFloat, logSoftmaxTargets, padRight, planBatches } from "./batching.ts"
import { feedAll, feedsFor, positionFeeds, type Feeds } from "./feeds.ts"
import type { ModelHeader } from "./file.ts"
import { IN, OUT, baseBytes, cachedGraph, cachedGraphPath, planPositionsHead, planRewrite, rewriteKey, type HeadVariant, type Signature } from "./head.ts"
import { Fail, OnnxError, createSession, firstLine, sessionOptions, toOnnxError, withExternalFolder, type SessionSettings } from "./session.ts"
import { openSource, readGraph, type GraphSource } from "./source.ts"

/** Score positions firstTarget…ids.length−1 of `ids` (firstTarget ≥ 1). */
export interface ScoreRequest {
  readonly ids: Int32Array
  readonly firstTarget: number
  /** Names the sequence in error messages: a string as is ("seq_id 17"), a number as "sequence 17"; default its index. */
  readonly id?: number | string
}

/** [ids.length − firstTarget] each, nats: logprob = log p(ids[j] | ids[<j]), entropy of that distribution. */
export interface ScoreResult {
  readonly logprob: Float32Array
  readonly entropy?: Float32Array
}

export interface Scorer {
  /** Results in request order; `onTokens` gets the number of targets scored after each batch. */
  readonly scoreAll: (reqs: ReadonlyArray<ScoreRequest>, onTokens?: (n: number) => void) => Effect.Effect<ReadonlyArray<ScoreResult>, OnnxError>
  /** Width of the logits (token ids must be below it). */
  readonly vocabSize: number | undefined
  /** The batch a run of sequences of `length` tokens gets (batchSize cut to the memory budget). */
  readonly batchFor: (length: number) => number
  /** How log-probs are computed: head appended now, head read from the cache, or logits read into TypeScript. */
  readonly graph: "rewritten" | "cached" | "logits"
  /** The output layer runs on the scored positions only (head.ts planPositionsHead), not on every position. */
  readonly positionsOnly: boolean
  /** When the head runs over every position: why the output layer was not found (for one notice). */
  readonly everyPositionWhy?: string
}

/** Session settings (threads, execution provider: session.ts) and how to score. Stages build them with scorerOptions (options.ts). */
export interface ScorerOptions extends SessionSettings {
  /** Sequences per session run, at most (default 8). */
  readonly batchSize?: number
  /** What one run's logits and their temporaries may take (bytes); the batch is cut to fit (batching.ts batchForBudget). Default: no limit. */
  readonly maxMemoryBytes?: number
  /** Also compute entropies (default false). */
  readonly entropy?: boolean
  /** Folder for rewritten graphs; without it the rewrite is redone in memory at every open. */
  readonly cacheDir?: string
  /** Notices for the user (e.g. the TypeScript fallback). */
  readonly log?: (message: string) => void
  /** Names the checkpoint in messages (default: the file name). */
  readonly label?: string
  /** "logits": skip the head, read full logits (the slow path; benchmarks and tests). Default "auto". */
  readonly mode?: "auto" | "logits"
}

/** How a request is named in messages: its string id as given, else "sequence <id or index>". */
const nameOf = (r: ScoreRequest, index: number): string => (typeof r.id === "string" ? r.id : `sequence ${r.id ?? index}`)

// ---------------------------------------------------------------------------------------------
// Opening

/** An open scoring session on one checkpoint (what a pool keeps between units). */
export interface Opened {
  readonly session: ort.InferenceSession
  readonly graph: Scorer["graph"]
  /** The head runs the output layer on the scored positions only (fed IN.positions and IN.targets). */
  readonly positions: boolean
  readonly everyPositionWhy?: string
  readonly feeds: Feeds
  readonly vocab: number
  /** The graph computes entropies too (a caller may still fetch log-probs alone). */
  readonly entropy: boolean
}

type Rewritten = {
  readonly session: ort.InferenceSession
  readonly graph: Scorer["graph"]
  readonly positions: boolean
  readonly everyPositionWhy?: string
  /** The logits width the positions head's probe read (0: not probed). */
  readonly probed: number
}

/**
 * A session on the graph with a scoring head (cached on disk when a cacheDir is given): the head on
 * the scored positions when the graph's output layer can be found, else the head over all logits;
 * or why there is none.
 */
const openRewritten = async (
  src: GraphSource,
  header: ModelHeader,
  sig: Signature,
  options: ort.InferenceSession.SessionOptions,
  o: ScorerOptions,
  label: string,
): Promise<Rewritten | { readonly fallback: string }> => {
  const entropy = o.entropy ?? false
  const abs = src.file
  const externalize = !src.built
  let base: Uint8Array | undefined
  const baseOnce = () => (base ??= baseBytes(abs, externalize))
  const make: Record<HeadVariant, () => Uint8Array | string> = {
    positions: () => {
      const p = planPositionsHead(baseOnce(), header, sig, { entropy })
      return p.ok ? p.bytes : p.reason
    },
    all: () => {
      const p = planRewrite(header, sig, { entropy })
      return p.ok ? Buffer.concat([baseOnce(), p.fragment]) : p.reason
    },
  }
  // The weights stay where they are (the checkpoint's folder, or a built graph's safetensors folder): external data resolves against it.
  const fromBytes = withExternalFolder(options, src.externalFolder)
  let reason = ""
  for (const variant of ["positions", "all"] as const) {
    const target = o.cacheDir !== undefined ? cachedGraphPath(o.cacheDir, abs, rewriteKey(abs, { entropy, variant })) : undefined
    const got = cachedGraph(target, make[variant])
    if (typeof got === "string") {
      reason = got
      continue
    }
    let session: ort.InferenceSession
    try {
      session = await createSession(got.bytes, fromBytes, label)
    } catch (e) {
      if (e instanceof Fail) throw e
      reason = `the rewritten graph does not load: ${firstLine(e)}`
      continue
    }
    if (variant === "positions") {
      // A graph the head was wrongly planned for fails here, on two tokens, not on the data.
      const probe = await probeVocab({ session, graph: "rewritten", positions: true, feeds: inputFeeds(session), vocab: 0, entropy }).then(
        (vocab) => ({ vocab }),
        (e: unknown) => ({ failed: firstLine(e) }),
      )
      if ("failed" in probe) {
        await session.release().catch(() => undefined)
        if (target !== undefined) fs.rmSync(target, { force: true })
        reason = `the head on scored positions does not run: ${probe.failed}`
        continue
      }
      return { session, graph: got.reused ? "cached" : "rewritten", positions: true, probed: probe.vocab }
    }
    return { session, graph: got.reused ? "cached" : "rewritten", positions: false, everyPositionWhy: reason, probed: 0 }
  }
  return { fallback: reason }
}

export const openScorer = async (modelPath: string, o: ScorerOptions, label: string): Promise<Opened> => {
  const { src, header, sig } = readGraph(modelPath, o.cacheDir, label)
  const abs = src.file
  const options = sessionOptions(o)
  let session: ort.InferenceSession | undefined
  let graph: Scorer["graph"] = "logits"
  let positions = false
  let everyPositionWhy: string | undefined
  let probed = 0
  let fallback: string | undefined
  if (o.mode !== "logits") {
    const r = await openRewritten(src, header, sig, options, o, label)
    if ("fallback" in r) fallback = r.fallback
    else ({ session, graph, positions, everyPositionWhy, probed } = r)
  }
  if (session === undefined) {
    try {
      session = await openSource(src, options, label)
    } catch (e) {
      if (e instanceof Fail) throw e
      throw new Fail(`${label}: not an ONNX model onnxruntime can load: ${abs} (${firstLine(e)})`, { cause: e })
    }
    if (fallback !== undefined) {
      o.log?.(`${label}: cannot append the scoring head (${fallback}); reading full logits and computing log-softmax in TypeScript (slower)`)
    }
  }
  try {
    const feeds = feedsFor(modelInputs(session))
    if (typeof feeds === "string") throw new Fail(`${label}: ${feeds}`)
    const logitsMeta = session.outputMetadata.find((m) => m.name === "logits")
    const logitsType = logitsMeta?.isTensor ? logitsMeta.type : "float32"
    if (graph === "logits" && logitsType !== "float32" && logitsType !== "float16") {
      throw new Fail(`${label}: logits of type ${logitsType} cannot be read into TypeScript`)
    }
    const declared = sig.logits.dims?.[2]
    const known = typeof declared === "number" && declared > 0 ? declared : probed
    const opened = { session, graph, positions, entropy: o.entropy ?? false, ...(everyPositionWhy !== undefined ? { everyPositionWhy } : {}), feeds, vocab: known }
    return opened.vocab > 0 ? opened : { ...opened, vocab: await probeVocab(opened) }
  } catch (e) {
    await session.release().catch(() => undefined)
    throw e
  }
}

/** The logits width of a model that does not declare it: run two tokens and read the shape. */
const probeVocab = async (s: Opened): Promise<number> => {
  const b = padRight([Int32Array.of(0, 0)])
  const fetch = s.graph === "logits" ? "logits" : OUT.logitsShape
  const r = await s.session.run({ ...feedAll(s.feeds, b), ...(s.positions ? positionFeeds(BigInt64Array.of(0n), BigInt64Array.of(0n), IN) : {}) }, [fetch])
  if (s.graph === "logits") return r.logits.dims[2]
  const shape = r[OUT.logitsShape].data as BigInt64Array
  return Number(shape[shape.length - 1])
}

// ---------------------------------------------------------------------------------------------
// Scoring

const checkRequests = (reqs: ReadonlyArray<ScoreRequest>, vocab: number, label: string): void => {
  let max = -1
  let maxAt = 0
  reqs.forEach((r, i) => {
    if (!Number.isInteger(r.firstTarget) || r.firstTarget < 1 || r.firstTarget > r.ids.length) {
      throw new Fail(`${label}: ${nameOf(r, i)}: firstTarget ${r.firstTarget} is outside 1…${r.ids.length}`)
    }
    for (const t of r.ids) {
      if (t < 0) throw new Fail(`${label}: ${nameOf(r, i)}: negative token id ${t}`)
      if (t > max) [max, maxAt] = [t, i]
    }
  })
  if (max >= vocab) {
    throw new Fail(
      `${label}: token id ${max} (${nameOf(reqs[maxAt], maxAt)}) is outside the model's logits of width ${vocab}: tokenizer/model mismatch`,
    )
  }
}

const runBatch = async (
  s: Opened,
  reqs: ReadonlyArray<ScoreRequest>,
  batch: ReadonlyArray<number>,
  entropy: boolean,
  label: string,
  results: ScoreResult[],
): Promise<number> => {
  const b = padRight(batch.map((i) => reqs[i].ids))
  const feeds = feedAll(s.feeds, b)
  // The positions head: the hidden state at r·cols + j − 1 predicts ids[j], for the scored j of each row.
  let offsets: Int32Array | undefined
  if (s.positions) {
    offsets = new Int32Array(batch.length + 1)
    batch.forEach((k, r) => (offsets![r + 1] = offsets![r] + reqs[k].ids.length - reqs[k].firstTarget))
    const positions = new BigInt64Array(offsets[batch.length])
    const targets = new BigInt64Array(positions.length)
    batch.forEach((k, r) => {
      const { ids, firstTarget } = reqs[k]
      for (let j = firstTarget, at = offsets![r]; j < ids.length; j++, at++) {
        positions[at] = BigInt(r * b.cols + j - 1)
        targets[at] = BigInt(ids[j])
      }
    })
    Object.assign(feeds, positionFeeds(positions, targets, IN))
  }
  const fetches = s.graph === "logits" ? ["logits"] : entropy ? [OUT.logprob, OUT.entropy] : [OUT.logprob]
  let out: ort.InferenceSession.ReturnType
  try {
    out = await s.session.run(feeds, fetches)
  } catch (e) {
    throw new Fail(`${label}: onnxruntime failed on a batch of ${b.rows} × ${b.cols} tokens: ${firstLine(e)}`, { cause: e })
  }
  const t = out.logits
  const logits = s.graph !== "logits" ? undefined : t.type === "float16" ? halfToFloat(t.data as ArrayBufferView) : (t.data as Float32Array)
  let tokens = 0
  batch.forEach((k, r) => {
    const { ids, firstTarget } = reqs[k]
    const n = ids.length - firstTarget
    let res: ScoreResult
    if (logits) {
      const lp = new Float32Array(n)
      const ent = entropy ? new Float32Array(n) : undefined
      logSoftmaxTargets(logits, b.cols, t.dims[2], r, ids, firstTarget, lp, ent)
      res = ent ? { logprob: lp, entropy: ent } : { logprob: lp }
    } else {
      const at = offsets !== undefined ? offsets[r] : r * (b.cols - 1) + firstTarget - 1
      const lp = (out[OUT.logprob].data as Float32Array).slice(at, at + n)
      res = entropy ? { logprob: lp, entropy: (out[OUT.entropy].data as Float32Array).slice(at, at + n) } : { logprob: lp }
    }
    for (const [what, xs] of [["log-prob", res.logprob], ["entropy", res.entropy]] as const) {
      const bad = xs ? firstNonFinite(xs) : -1
      if (bad >= 0) {
        throw new Fail(`${label}: ${what} is ${xs![bad]} at ${nameOf(reqs[k], k)}, position ${firstTarget + bad}`)
      }
    }
    results[k] = res
    tokens += n
  })
  return tokens
}

/** A session's model inputs: all but the positions head's own (fed by runBatch). */
const modelInputs = (session: ort.InferenceSession) => session.inputMetadata.filter((m) => m.name !== IN.positions && m.name !== IN.targets)

/** The feeds of a session's model inputs; throws why not. */
const inputFeeds = (session: ort.InferenceSession): Feeds => {
  const feeds = feedsFor(modelInputs(session))
  if (typeof feeds === "string") throw new Error(feeds)
  return feeds
}

/** A Scorer over an open session, with this call's batch size, memory budget, entropy and label. */
export const makeScorer = (s: Opened, o: ScorerOptions, label: string): Scorer => {
  // The logits, the log-sum-exp's temporary, the entropy's one more; read into TypeScript, a copy more.
  // The head on scored positions holds the logits of one chunk of positions at a time (head.ts
  // chunkFor: 64 MiB), whatever the batch: the budget does not cut it.
  const copies = 2 + (s.entropy ? 1 : 0) + (s.graph === "logits" ? 1 : 0)
  const most = Math.max(1, o.batchSize ?? 8)
  const batchFor = (length: number) => (s.positions ? most : batchForBudget(most, length, s.vocab, o.maxMemoryBytes ?? Infinity, copies))
  return {
    vocabSize: s.vocab,
    graph: s.graph,
    positionsOnly: s.positions,
    ...(s.everyPositionWhy !== undefined ? { everyPositionWhy: s.everyPositionWhy } : {}),
    batchFor,
    scoreAll: (reqs, onTokens) =>
      Effect.gen(function* () {
        yield* Effect.try({ try: () => checkRequests(reqs, s.vocab, label), catch: toOnnxError(label) })
        const entropy = (o.entropy ?? false) && s.entropy
        const results: ScoreResult[] = reqs.map(() =>
          entropy ? { logprob: new Float32Array(0), entropy: new Float32Array(0) } : { logprob: new Float32Array(0) },
        )
        // Sequences without targets stay empty and never reach the session.
        const scored = reqs.flatMap((r, i) => (r.ids.length > r.firstTarget ? [i] : []))
        const longest = scored.reduce((m, i) => Math.max(m, reqs[i].ids.length), 1)
        for (const batch of planBatches(scored.map((i) => reqs[i].ids.length), batchFor(longest))) {
          const n = yield* Effect.tryPromise({
            try: () => runBatch(s, reqs, batch.map((j) => scored[j]), entropy, label, results),
            catch: toOnnxError(label),
          })
          onTokens?.(n)
        }
        return results
      }),
  }
}

/**
 * Open one session on `modelPath`, give `use` a Scorer, and release the session afterwards
 * whatever happens (success, failure or interruption).
 */
export const withScorer = <A, E, R>(
  modelPath: string,
  options: ScorerOptions,
  use: (s: Scorer) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E | OnnxError, R> => {
  const label = options.label ?? path.basename(modelPath)
  return Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => openScorer(modelPath, options, label), catch: toOnnxError(label) }),
    (s) => use(makeScorer(s, options, label)),
    (s) => Effect.promise(() => s.session.release().catch(() => undefined)),
  )
}
