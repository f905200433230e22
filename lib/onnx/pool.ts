/**
 * Scoring sessions kept open across units: the score units of a checkpoint's datasets and the
 * downstream units of its tasks open it once per run instead of once each, where memory allows.
 *
 *   const pool = makeScorerPool({ budgetBytes: 2e9 })
 *   pool.withScorer("/zoo/s/step-100.onnx", options, (s) => s.scoreAll(reqs))   // opens
 *   pool.withScorer("/zoo/s/step-100.onnx", other, (s) => s.scoreAll(more))     // the same session
 *   await pool.releaseAll()                                                    // at the end of the run
 *
 * A session is shared by calls that agree on what decides it: the checkpoint (its resolved path and
 * the size and mtime of its file, or of every file in its folder), the session settings (threads,
 * spin, execution provider, CUDA device), the graph cache folder and the mode. Entropy: a call that
 * asks for log-probs alone may use a session whose head also computes entropies (it fetches the
 * log-probs only; with the head on scored positions the entropies cost n × vocabulary, little
 * beside the model), not the other way round. Batch size, memory budget and label are the call's
 * own (makeScorer). Nothing of this is in any unit's key: a unit's outputs are the same whichever
 * session scored them.
 *
 * Memory: idle sessions are kept, most recently used last, while the checkpoint bytes of all open
 * sessions (a stand-in for what onnxruntime holds: the weights, prepacked once) stay within
 * `budgetBytes`; past it the least recently used idle ones are released. Sessions in use are never
 * released; a checkpoint larger than the budget is released as soon as its call ends, as without a
 * pool. A budget of 0 keeps nothing.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { makeScorer, openScorer, type Opened, type Scorer, type ScorerOptions } from "./scorer.ts"
import { toOnnxError, type OnnxError } from "./session.ts"

export interface ScorerPool {
  readonly withScorer: <A, E, R>(modelPath: string, options: ScorerOptions, use: (s: Scorer) => Effect.Effect<A, E, R>) => Effect.Effect<A, E | OnnxError, R>
  /** Release every idle session (those in use are released when their call ends). */
  readonly releaseAll: () => Promise<void>
  /** Sessions opened and calls served from an open one, since the pool was made. */
  readonly stats: () => { readonly opened: number; readonly reused: number; readonly open: number }
}

interface Entry {
  readonly key: string
  readonly stamp: string
  readonly bytes: number
  readonly entropy: boolean
  readonly opened: Opened
  users: number
  lastUsed: number
}

/** What decides a session besides the checkpoint and entropy. */
const sessionKey = (modelPath: string, o: ScorerOptions): string =>
  JSON.stringify([path.resolve(modelPath), o.threads ?? null, o.spin ?? false, o.executionProvider ?? "cpu", o.cudaDevice ?? 0, o.cacheDir ?? null, o.mode ?? "auto"])

/** Size and mtime of the checkpoint file, or of every file in its folder (an ONNX file's external data is not stamped). */
const stampOf = (modelPath: string): { readonly stamp: string; readonly bytes: number } => {
  const abs = path.resolve(modelPath)
  try {
    const st = fs.statSync(abs)
    const files = st.isDirectory() ? fs.readdirSync(abs).map((f) => path.join(abs, f)) : [abs]
    const stats = files.map((f) => [f, fs.statSync(f)] as const).filter(([, s]) => s.isFile())
    return { stamp: stats.map(([f, s]) => `${f}:${s.size}:${s.mtimeMs}`).join("|"), bytes: stats.reduce((a, [, s]) => a + s.size, 0) }
  } catch {
    return { stamp: "missing", bytes: 0 } // openScorer says what is wrong
  }
}

export const makeScorerPool = (o: { readonly budgetBytes: number }): ScorerPool => {
  const entries: Entry[] = []
  let opened = 0
  let reused = 0
  let clock = 0
  const drop = (e: Entry) => {
    entries.splice(entries.indexOf(e), 1)
    return e.opened.session.release().catch(() => undefined)
  }
  /** Release idle sessions, least recently used first, until the open ones fit the budget. */
  const evict = async () => {
    const idle = entries.filter((e) => e.users === 0).sort((a, b) => a.lastUsed - b.lastUsed)
    let total = entries.reduce((a, e) => a + e.bytes, 0)
    for (const e of idle) {
      if (total <= o.budgetBytes) break
      total -= e.bytes
      await drop(e)
    }
  }
  const acquire = async (modelPath: string, options: ScorerOptions, label: string): Promise<Entry> => {
    const key = sessionKey(modelPath, options)
    const { stamp, bytes } = stampOf(modelPath)
    const entropy = options.entropy ?? false
    // A changed checkpoint: its idle sessions go.
    for (const e of entries.filter((x) => x.key === key && x.stamp !== stamp && x.users === 0)) await drop(e)
    const found = entries.find((e) => e.key === key && e.stamp === stamp && (e.entropy || !entropy))
    if (found !== undefined) {
      found.users++
      reused++
      return found
    }
    const e: Entry = { key, stamp, bytes, entropy, opened: await openScorer(modelPath, options, label), users: 1, lastUsed: 0 }
    opened++
    entries.push(e)
    return e
  }
  const done = async (e: Entry) => {
    e.users--
    e.lastUsed = ++clock
    await evict()
  }
  return {
    withScorer: (modelPath, options, use) => {
      const label = options.label ?? path.basename(modelPath)
      return Effect.acquireUseRelease(
        Effect.tryPromise({ try: () => acquire(modelPath, options, label), catch: toOnnxError(label) }),
        (e) => use(makeScorer(e.opened, options, label)),
        (e) => Effect.promise(() => done(e)),
      )
    },
    releaseAll: async () => {
      for (const e of entries.filter((x) => x.users === 0)) await drop(e)
    },
    stats: () => ({ opened, reused, open: entries.length }),
  }
}
