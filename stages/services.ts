/**
 * What the stages' runs need from the environment (lib/onnx's Onnx, lib/tokenizer's Tokenizers),
 * and the live layer the CLI provides once, at its entry (pipeline/main.ts). Tests provide the
 * same layer, or their own.
 */
import { Layer } from "effect"
import { Onnx, OnnxLive } from "../lib/onnx/index.ts"
import { Tokenizers, TokenizersLive } from "../lib/tokenizer.ts"

export type StageServices = Onnx | Tokenizers

/** onnxruntime-node sessions and one tokenizer cache (keyed by path, size and mtime) for the whole process. */
export const StageServicesLive: Layer.Layer<StageServices> = Layer.mergeAll(OnnxLive, TokenizersLive)
