/**
 * What a checkpoint path is, as a graph ONNX Runtime can load: an ONNX file as it is, or a Hugging
 * Face folder (config.json + safetensors, or pytorch_model.bin) turned into a graph by hf/build.ts.
 *
 *   graphSource("/zoo/s/step-100.onnx")
 *   // → { file: "/zoo/s/step-100.onnx", externalFolder: "/zoo/s", built: false }
 *   graphSource("/runs/70m/checkpoint-1000", "/out/run/.cache")
 *   // → { file: "/out/run/.cache/hf-graphs/<key>.onnx", externalFolder: "/runs/70m/checkpoint-1000", built: true }
 *
 * A built graph holds no weights: its initializers reference the weight files' bytes in place, so it
 * is a few hundred kilobytes whatever the model. It is cached under `<cacheDir>/hf-graphs/`, named by
 * the sha256 of its own bytes, which hold everything that decides it (the config's shapes, each
 * tensor's dtype, file name, offset and length; the builder's code) — not by path or mtime: all the
 * checkpoints of one Trainer run share one graph, each loaded with its own folder's weights.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { writeFileAtomicSync } from "../../pipeline/atomic.ts"
import { buildHfGraph, isHfFolder } from "./hf/build.ts"
import type * as ort from "onnxruntime-node"
import { Fail, createSession, firstLine, withExternalFolder } from "./session.ts"
import { NotOnnx, readModelHeader, type ModelHeader } from "./file.ts"
import { findSignature, type Signature } from "./head.ts"

export interface GraphSource {
  /** The ONNX file to read the header of and rewrite: the checkpoint itself, or the graph built from its folder. */
  readonly file: string
  /** The folder external data resolves against (the checkpoint's folder; a built graph's: where its weight files really are). */
  readonly externalFolder: string
  /** Built from a Hugging Face folder: every weight is already external, nothing is to be externalized. */
  readonly built: boolean
}

/**
 * The graph of a checkpoint path (see the module comment); `label` names it in errors.
 * @throws Fail with a one-line message (missing path, unsupported model_type, a bad safetensors or torch.save file, …)
 */
export const graphSource = (checkpoint: string, cacheDir: string | undefined, label: string): GraphSource => {
  const abs = path.resolve(checkpoint)
  if (!fs.existsSync(abs)) throw new Fail(`${label}: checkpoint file not found: ${abs}`)
  if (!fs.statSync(abs).isDirectory()) return { file: abs, externalFolder: path.dirname(abs), built: false }
  if (!isHfFolder(abs)) throw new Fail(`${label}: ${abs} is a folder without config.json (expected an ONNX file or a Hugging Face checkpoint folder)`)
  try {
    // Cheap (config.json and the headers only), and it says first what is wrong with the folder
    // (an unsupported model_type, a missing tensor); it also gives this checkpoint's external folder.
    const built = buildHfGraph(abs)
    const dir = path.join(cacheDir ?? path.join(os.tmpdir(), "trajectories-graphs"), "hf-graphs")
    // Named by its own bytes: one graph for every checkpoint with the same config, tensors and file names.
    const file = path.join(dir, `${createHash("sha256").update(built.model).digest("hex").slice(0, 24)}.onnx`)
    if (!fs.existsSync(file)) writeFileAtomicSync(file, built.model)
    return { file, externalFolder: built.externalFolder, built: true }
  } catch (e) {
    if (e instanceof Fail) throw e
    throw new Fail(`${label}: ${firstLine(e)}`, { cause: e })
  }
}

/** A session on a graph source: an ONNX file as it is, or a built graph from bytes with its weights' folder. */
/** The graph source of a checkpoint with its header and the inputs and outputs the scorer and embedder rely on; a Fail names what is wrong. */
export const readGraph = (checkpoint: string, cacheDir: string | undefined, label: string): { src: GraphSource; header: ModelHeader; sig: Signature } => {
  const src = graphSource(checkpoint, cacheDir, label)
  const abs = src.file
  let header
  try {
    header = readModelHeader(abs)
  } catch (e) {
    throw new Fail(e instanceof NotOnnx ? `${label}: not an ONNX model: ${abs} (${e.message})` : `${label}: cannot read ${abs}: ${firstLine(e)}`, { cause: e })
  }
  const sig = findSignature(header)
  if (typeof sig === "string") throw new Fail(`${label}: ${sig}`)
  return { src, header, sig }
}

export const openSource = (src: GraphSource, options: ort.InferenceSession.SessionOptions, label: string): Promise<ort.InferenceSession> =>
  src.built ? createSession(fs.readFileSync(src.file), withExternalFolder(options, src.externalFolder), label) : createSession(src.file, options, label)
