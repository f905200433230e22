/**
 * Sequence embeddings: for each token sequence, the causal LM's final hidden state (the output
 * layer's input, after the final norm) at its last token — the feature MAUVE's reference takes
 * from GPT-2. The checkpoint's graph is rewritten to output that state instead of the logits
 * (head.ts planHiddenOutput, cached on disk like the score graphs), so the vocabulary-sized output
 * layer never runs.
 *
 *   const e = await openEmbedder("/zoo/s/step-100.onnx", { contextLength: 128, batchSize: 8, threads: 2, cacheDir }, "s step 100")
 *   const v = await e.embed([Int32Array.of(5, 9, 2), Int32Array.of(7)])
 *   // → [Float32Array [e.dim] = hidden state after "5 9 2", Float32Array [e.dim] = after "7"]
 *   await e.close()
 *
 * Rows are at most `contextLength` tokens: the caller truncates (keeping, say, the first or the
 * last contextLength tokens is its choice); a longer row is an error naming it, not cut here.
 *
 * Batching: each embed call sorts its rows longest first, runs batches of `batchSize` rows padded
 * on the right (attention_mask 0 on the padding) and returns the vectors in row order. The model is
 * causal, so a row's vector does not depend on the rows batched with it. Inputs are fed as the
 * scorer feeds them (feeds.ts: input_ids, attention_mask, position_ids, an empty past,
 * use_cache_branch false), plus trajectories/last = each row's length − 1.
 *
 * Failures are OnnxErrors of one line naming the checkpoint: the promises of openEmbedder and
 * embed reject with them (withEmbedder fails with them), e.g. for a graph whose output layer
 * cannot be found.
 */
import * as path from "node:path"
import * as fs from "node:fs"
import { Effect } from "effect"
import * as ort from "onnxruntime-node"
import { firstNonFinite, padRight, planBatches } from "./batching.ts"
import { feedAll, feedsFor, type Feeds } from "./feeds.ts"
import { HIDDEN, baseBytes, cachedGraph, hiddenGraphPath, planHiddenOutput } from "./head.ts"
import { Fail, OnnxError, createSession, firstLine, sessionOptions, toOnnxError, withExternalFolder, type SessionSettings } from "./session.ts"
import { readGraph } from "./source.ts"

/** Session settings (threads, execution provider: session.ts, as for the scorer) and how to embed. */
export interface EmbedderOptions extends SessionSettings {
  /** Most tokens of a row: the model's context length (the config's context_length). */
  readonly contextLength: number
  /** Rows per session run, at most (default 8). */
  readonly batchSize?: number
  /** Folder for the rewritten graph (`<cacheDir>/embed-graphs/`); without it the rewrite is redone in memory at every open. */
  readonly cacheDir?: string
  /** Names the checkpoint in messages (withEmbedder; default: the file name). */
  readonly label?: string
}

export interface Embedder {
  /** Width of a vector: the model's hidden size. */
  readonly dim: number
  /** The hidden-state graph was made at this open, or read from the cache. */
  readonly graph: "rewritten" | "cached"
  /**
   * One vector per row, in row order: float32 [dim], the final hidden state at the row's last token.
   * rows: token ids, 1…contextLength each. Rejects with an OnnxError (a row out of bounds, a run that fails).
   */
  readonly embed: (rows: ReadonlyArray<Int32Array>) => Promise<Float32Array[]>
  /** Release the session. */
  readonly close: () => Promise<void>
}

/** The Promise's failure as the module's OnnxError (one line, naming the checkpoint). */
const asOnnxError = <A>(label: string, f: () => Promise<A>): Promise<A> =>
  f().catch((e: unknown) => {
    throw e instanceof OnnxError ? e : toOnnxError(label)(e)
  })

/** Throws (naming the row) unless every row has 1…contextLength non-negative ids. */
const checkRows = (rows: ReadonlyArray<Int32Array>, contextLength: number, label: string): void =>
  rows.forEach((r, i) => {
    if (r.length === 0) throw new Fail(`${label}: row ${i} has no tokens (an embedding is the hidden state at a row's last token)`)
    if (r.length > contextLength) {
      throw new Fail(`${label}: row ${i} has ${r.length} tokens, more than the context length ${contextLength} (the caller truncates rows before embedding them)`)
    }
    const bad = r.findIndex((t) => t < 0)
    if (bad >= 0) throw new Fail(`${label}: row ${i}: negative token id ${r[bad]} at position ${bad}`)
  })

/** The vectors of one batch of rows ([rows.length] × float32 [dim]). */
const runBatch = async (session: ort.InferenceSession, feeds: Feeds, rows: ReadonlyArray<Int32Array>, label: string): Promise<Float32Array[]> => {
  const b = padRight(rows)
  const last = BigInt64Array.from(rows, (r) => BigInt(r.length - 1))
  let out: ort.InferenceSession.ReturnType
  try {
    out = await session.run({ ...feedAll(feeds, b), [HIDDEN.last]: new ort.Tensor("int64", last, [b.rows]) }, [HIDDEN.hidden])
  } catch (e) {
    throw new Fail(`${label}: onnxruntime failed on a batch of ${b.rows} × ${b.cols} tokens: ${firstLine(e)}`, { cause: e })
  }
  const t = out[HIDDEN.hidden]
  const data = t.data as Float32Array
  const dim = t.dims[1]
  return rows.map((_, r) => data.slice(r * dim, (r + 1) * dim))
}

/**
 * Open a session on `modelPath` (an ONNX file or a Hugging Face folder, as for the scorer) whose
 * graph outputs the final hidden state at each row's last token. Rejects with an OnnxError when
 * the checkpoint cannot be read or its output layer cannot be found.
 */
export const openEmbedder = (modelPath: string, o: EmbedderOptions, label: string): Promise<Embedder> =>
  asOnnxError(label, async () => {
    if (!Number.isInteger(o.contextLength) || o.contextLength < 1) throw new Fail(`${label}: contextLength ${o.contextLength} is not a positive integer`)
    const { src, header, sig } = readGraph(modelPath, o.cacheDir, label)
    const abs = src.file
    const target = o.cacheDir !== undefined ? hiddenGraphPath(o.cacheDir, abs) : undefined
    const got = cachedGraph(target, () => {
      const p = planHiddenOutput(baseBytes(abs, !src.built), header, sig)
      return p.ok ? p.bytes : p.reason
    })
    if (typeof got === "string") throw new Fail(`${label}: cannot output the hidden state the output layer reads: ${got}`)
    const forget = () => target !== undefined && fs.rmSync(target, { force: true })
    let session: ort.InferenceSession
    try {
      session = await createSession(got.bytes, withExternalFolder(sessionOptions(o), src.externalFolder), label)
    } catch (e) {
      forget()
      if (e instanceof Fail) throw e
      throw new Fail(`${label}: the graph with the hidden-state output does not load: ${firstLine(e)}`, { cause: e })
    }
    let dim: number
    let feeds: Feeds
    try {
      const f = feedsFor(session.inputMetadata.filter((m) => m.name !== HIDDEN.last))
      if (typeof f === "string") throw new Fail(`${label}: ${f}`)
      feeds = f
      // A graph wrongly planned fails here, on one token, not on the data; the probe also gives the width.
      const probe = await runBatch(session, feeds, [Int32Array.of(0)], label).catch((e: unknown) => {
        forget()
        throw new Fail(`${label}: the graph with the hidden-state output does not run: ${firstLine(e)}`, { cause: e })
      })
      dim = probe[0].length
    } catch (e) {
      await session.release().catch(() => undefined)
      throw e
    }
    const most = Math.max(1, o.batchSize ?? 8)
    return {
      dim,
      graph: got.reused ? "cached" : "rewritten",
      embed: (rows) =>
        asOnnxError(label, async () => {
          checkRows(rows, o.contextLength, label)
          const out: Float32Array[] = new Array(rows.length)
          for (const batch of planBatches(rows.map((r) => r.length), most)) {
            const vs = await runBatch(session, feeds, batch.map((i) => rows[i]), label)
            batch.forEach((i, k) => {
              const bad = firstNonFinite(vs[k])
              if (bad >= 0) throw new Fail(`${label}: row ${i}: the hidden state is ${vs[k][bad]} at component ${bad}`)
              out[i] = vs[k]
            })
          }
          return out
        }),
      close: () => session.release().catch(() => undefined),
    }
  })

/**
 * Open an Embedder on `modelPath`, give it to `use`, and release the session afterwards whatever
 * happens (success, failure or interruption). Inside `use`, run embed with
 * `Effect.tryPromise({ try: () => e.embed(rows), catch: (x) => x as OnnxError })`.
 */
export const withEmbedder = <A, E, R>(
  modelPath: string,
  options: EmbedderOptions,
  use: (e: Embedder) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E | OnnxError, R> => {
  const label = options.label ?? path.basename(modelPath)
  return Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => openEmbedder(modelPath, options, label), catch: (e) => (e instanceof OnnxError ? e : toOnnxError(label)(e)) }),
    use,
    (e) => Effect.promise(() => e.close()),
  )
}
