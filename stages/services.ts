/**
 * What the stages' runs need from the environment (lib/onnx's Onnx, lib/tokenizer's Tokenizers),
 * and the live layer the CLI provides once, at its entry (pipeline/main.ts). Tests provide the
 * same layer, or their own.
 */
import { Layer } from "effect"
import { Onnx, OnnxLive } from "../lib/onnx/index.ts"
import { Tokenizers, TokenizersLive } from "../lib/tokenizer.ts"
import { Hub, HubLive } from "../lib/hub/index.ts"

export type StageServices = Onnx | Tokenizers | Hub

/**
 * onnxruntime-node sessions, one tokenizer cache (keyed by path, size and mtime) and the Hugging
 * Face Hub client (settings from HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HF_HOME) for the whole process.
 */
export const StageServicesLive: Layer.Layer<StageServices> = Layer.mergeAll(OnnxLive, TokenizersLive, HubLive)
