/**
 * The services stage code requires (lib/onnx's Onnx, lib/tokenizer's Tokenizers) and, for now, the
 * one place they are provided: each stage that needs them wraps its `run` in `provideServices`,
 * so `Stage.run` keeps its type `Effect<void, UnitError>` (no requirements).
 *
 * The layers are built once per process (a ManagedRuntime, so the tokenizer cache is shared by
 * every unit, as the stages' own caches were). To provide them at the CLI entry instead, give
 * `Stage.run` the requirement `StageServices`, provide `StageServicesLive` where the runner's
 * effect is run, and make `provideServices` the identity (or drop it).
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { Onnx, OnnxLive } from "../lib/onnx/index.ts"
import { Tokenizers, TokenizersLive } from "../lib/tokenizer.ts"

export type StageServices = Onnx | Tokenizers

export const StageServicesLive: Layer.Layer<StageServices> = Layer.mergeAll(OnnxLive, TokenizersLive)

/** Built on first use, never released: the live layers hold no resources, only the tokenizer cache. */
const services = ManagedRuntime.make(StageServicesLive)

/** `effect` with Onnx and Tokenizers provided (the live layers, built once per process). */
export const provideServices = <A, E>(effect: Effect.Effect<A, E, StageServices>): Effect.Effect<A, E> => Effect.provide(effect, services)
