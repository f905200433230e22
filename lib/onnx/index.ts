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
 *
 * Stage code:
 *
 *   const onnx = yield* Onnx
 *   const results = yield* onnx.withScorer(path, scorerOptions(config.scoring, { cacheDir, label }), (s) => s.scoreAll(reqs))
 *   const m = yield* onnx.openNextToken(path, { threads: 1 })   // released when the scope closes
 */
import { Context, Effect, Layer, type Scope } from "effect"
import { openNextToken, type NextToken, type OpenOptions } from "./next-token.ts"
import { OnnxError, toOnnxError } from "./session.ts"
import { withScorer, type Scorer, type ScorerOptions } from "./scorer.ts"

export { OnnxError } from "./session.ts"
export { scorerOptions, sessionSettings, type ScorerContext, type ScoringSection } from "./options.ts"
export type { ScoreRequest, ScoreResult, Scorer, ScorerOptions } from "./scorer.ts"
export type { NextToken, OpenOptions, Stepper } from "./next-token.ts"

export interface OnnxService {
  /**
   * Open one scoring session on `modelPath`, give `use` a Scorer, and release the session
   * afterwards whatever happens (success, failure or interruption).
   */
  readonly withScorer: <A, E, R>(
    modelPath: string,
    options: ScorerOptions,
    use: (s: Scorer) => Effect.Effect<A, E, R>,
  ) => Effect.Effect<A, E | OnnxError, R>
  /** A checkpoint's original graph for next-token distributions, released when the scope closes. */
  readonly openNextToken: (modelPath: string, options?: OpenOptions) => Effect.Effect<NextToken, OnnxError, Scope.Scope>
}

export class Onnx extends Context.Tag("trajectories/Onnx")<Onnx, OnnxService>() {}

/** onnxruntime-node in this process. */
export const OnnxLive: Layer.Layer<Onnx> = Layer.succeed(Onnx, {
  withScorer,
  openNextToken: (modelPath, options = {}) =>
    Effect.acquireRelease(
      Effect.tryPromise({ try: () => openNextToken(modelPath, options), catch: toOnnxError(options.label ?? modelPath) }),
      (m) => Effect.promise(() => m.release().catch(() => undefined)),
    ),
})
