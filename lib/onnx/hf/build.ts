/**
 * ONNX graphs from Hugging Face checkpoint folders (`config.json` + `model.safetensors`, or shards
 * named by `model.safetensors.index.json`; without safetensors, `pytorch_model.bin` or the shards of
 * `pytorch_model.bin.index.json`), built in TypeScript for gpt_neox, gpt2, opt and llama.
 * The weights are never copied: every initializer is external data pointing into the safetensors
 * files (or the torch.save ZIPs' stored storage entries) in place (their own dtype, Cast to float32
 * in the graph when F16 / BF16).
 *
 *   const built = buildHfGraph("/hf/pythia-160m/step1000")
 *   // built.model: ModelProto bytes, input input_ids int64 [batch, seq] → logits float32 [batch, seq, vocab]
 *   // built.externalFolder: "/hf/hub/models--EleutherAI--pythia-160m/blobs" (realpath dir of the weights)
 *   await ort.InferenceSession.create(built.model,
 *     { extra: { session: { model_external_initializers_file_folder_path: built.externalFolder } } })
 *
 * ONNX Runtime refuses absolute, symlinked or out-of-folder external-data locations, so each
 * safetensors file is resolved with realpath (the Hub cache's snapshots/<commit>/model.safetensors
 * links into ../../blobs/<sha256>); the locations are the realpaths' basenames and all files must
 * resolve into one folder. Sequences are padded on the right: the graph is causal and takes no
 * attention_mask; positions are 0…seq−1.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { checkpointWeights, weightSource } from "../safetensors.ts"
import { readHfConfig } from "./config.ts"
import { buildGpt2 } from "./gpt2.ts"
import { buildGptNeox } from "./gpt-neox.ts"
import { HfGraph } from "./layers.ts"
import { buildLlama } from "./llama.ts"
import { buildOpt } from "./opt.ts"

export { SUPPORTED_MODEL_TYPES } from "./config.ts"

export interface BuiltGraph {
  /** A complete ModelProto: input `input_ids` int64 [batch, seq], output `logits` float32 [batch, seq, vocab]. */
  readonly model: Uint8Array
  /** The folder ONNX Runtime must be given as external-data folder (realpath dir of the weight files). */
  readonly externalFolder: string
  /** Realpaths of the weight files referenced (safetensors, or torch.save .bin). */
  readonly weightFiles: ReadonlyArray<string>
  readonly modelType: string
}

/** A folder holding config.json (a Hugging Face checkpoint folder, as opposed to an .onnx file). */
export const isHfFolder = (p: string): boolean => {
  try {
    return fs.statSync(p).isDirectory() && fs.existsSync(path.join(p, "config.json"))
  } catch {
    return false
  }
}

/** Build the graph of the checkpoint in `folder`. Errors are one-line Errors naming the file and the field or tensor. */
export const buildHfGraph = (folder: string): BuiltGraph => {
  const config = readHfConfig(path.join(folder, "config.json"))
  const weights = checkpointWeights(folder)
  const source = weightSource(folder)!.file // checkpointWeights has thrown when there is none
  const m = new HfGraph(config, weights, source)
  switch (config.modelType) {
    case "gpt_neox":
      buildGptNeox(m, config)
      break
    case "gpt2":
      buildGpt2(m, config)
      break
    case "opt":
      buildOpt(m, config)
      break
    case "llama":
      buildLlama(m, config)
      break
  }
  const weightFiles = m.weightFiles()
  const dirs = [...new Set(weightFiles.map((f) => path.dirname(f)))]
  if (dirs.length !== 1) {
    throw new Error(`${folder}: the weight files resolve into ${dirs.length} folders (${dirs.join(", ")}); ONNX Runtime needs them in one`)
  }
  return { model: m.finish(), externalFolder: dirs[0], weightFiles, modelType: config.modelType }
}
