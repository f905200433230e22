/**
 * The Onnx service: ONNX Runtime sessions on causal-LM checkpoints, as stages see them. This
 * module holds only the interface, its Tag and the live Layer; the implementation sits next to it:
 *
 *   session.ts     session options and creation, OnnxError
 *   feeds.ts       feeds for every export signature (plain, attention_mask, position_ids, Optimum's past)
 *   file.ts        the protobuf wire level (headers, weights kept in place); proto.ts graph pieces
 *   head.ts        the fused scoring head and its on-disk cache
 *   batching.ts    pure batch plans, padding, (log-)softmax
 *   scorer.ts      withScorer: per-token log-probs, batched longest first, order restored
 *   next-token.ts  openNextToken: next-token distributions, with the export's KV cache when it has one
 *   options.ts     scorerOptions, sessionSettings: the config's `scoring` section as ScorerOptions / SessionSettings
 *   pool.ts        makeScorerPool: sessions kept open across units (OnnxLive's withScorer)
 *   embed.ts       openEmbedder / withEmbedder: the final hidden state at each sequence's last token (MAUVE features)
 *
 * Stage code:
 *
 *   const onnx = yield* Onnx
 *   const results = yield* onnx.withScorer(path, scorerOptions(config.scoring, { cacheDir, label }), (s) => s.scoreAll(reqs))
 *   const m = yield* onnx.openNextToken(path, { threads: 1 })   // released when the scope closes
 */
import * as os from "node:os"
import { Context, Effect, Layer, type Scope } from "effect"
import { makeScorerPool } from "./pool.ts"
import { openNextToken, type NextToken, type OpenOptions } from "./next-token.ts"
import { withEmbedder, type Embedder, type EmbedderOptions } from "./embed.ts"
import { OnnxError, toOnnxError } from "./session.ts"
import type { Scorer, ScorerOptions } from "./scorer.ts"

export { OnnxError } from "./session.ts"
export { scorerOptions, sessionSettings, type ScorerContext, type ScoringSection } from "./options.ts"
export type { ScoreRequest, ScoreResult, Scorer, ScorerOptions } from "./scorer.ts"
export type { NextToken, OpenOptions, Stepper } from "./next-token.ts"
export { openEmbedder, withEmbedder, type Embedder, type EmbedderOptions } from "./embed.ts"

export interface OnnxService {
  /**
   * A scoring session on `modelPath` for `use`: opened, or the one an earlier call left open on
   * the same checkpoint and settings (pool.ts); it is given back afterwards whatever happens
   * (success, failure or interruption), and released when memory asks or the layer closes.
   */
  readonly withScorer: <A, E, R>(
    modelPath: string,
    options: ScorerOptions,
    use: (s: Scorer) => Effect.Effect<A, E, R>,
  ) => Effect.Effect<A, E | OnnxError, R>
  /** A checkpoint's original graph for next-token distributions, released when the scope closes. */
  readonly openNextToken: (modelPath: string, options?: OpenOptions) => Effect.Effect<NextToken, OnnxError, Scope.Scope>
  /** A checkpoint's graph rewritten to its final hidden state (embed.ts) for `use`, released afterwards. */
  readonly withEmbedder: <A, E, R>(modelPath: string, options: EmbedderOptions, use: (e: Embedder) => Effect.Effect<A, E, R>) => Effect.Effect<A, E | OnnxError, R>
}

export class Onnx extends Context.Tag("trajectories/Onnx")<Onnx, OnnxService>() {}

/**
 * Checkpoint bytes of the idle sessions OnnxLive keeps open between units: TRAJECTORIES_SESSION_POOL_GB
 * (0: none) or 1/8 of this machine's memory.
 */
export const sessionPoolBytes = (env: NodeJS.ProcessEnv = process.env): number => {
  const gb = Number(env.TRAJECTORIES_SESSION_POOL_GB)
  return env.TRAJECTORIES_SESSION_POOL_GB !== undefined && env.TRAJECTORIES_SESSION_POOL_GB !== "" && Number.isFinite(gb) && gb >= 0
    ? gb * 1e9
    : Math.floor(os.totalmem() / 8)
}

/** onnxruntime-node in this process; scoring sessions pooled for the layer's lifetime (a run, a runner's worker). */
export const OnnxLive: Layer.Layer<Onnx> = Layer.scoped(
  Onnx,
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => makeScorerPool({ budgetBytes: sessionPoolBytes() })),
      (pool) => Effect.promise(() => pool.releaseAll()),
    ),
    (pool): OnnxService => ({
      withScorer: pool.withScorer,
      openNextToken: (modelPath, options = {}) =>
        Effect.acquireRelease(
          Effect.tryPromise({ try: () => openNextToken(modelPath, options), catch: toOnnxError(options.label ?? modelPath) }),
          (m) => Effect.promise(() => m.release().catch(() => undefined)),
        ),
      withEmbedder,
    }),
  ),
)
