/**
 * The external-data files of an ONNX checkpoint (Optimum's `model.onnx_data`, say): the files its
 * weights live in. They are part of the checkpoint: the stages that read a checkpoint list them
 * among their units' `files`, so their content is in the key, and the checks stage hashes them.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { NotOnnx, decodeModel, readModelHeader, type IGraphProto, type ITensorProto } from "./proto.ts"
import { weightSource } from "./safetensors.ts"

/** Locations of every external-data tensor in a graph and its subgraphs (If/Loop bodies), sorted, unique. */
export const externalLocations = (graph: IGraphProto | null | undefined): string[] => {
  const out = new Set<string>()
  const tensor = (t: ITensorProto | null | undefined) => {
    for (const e of t?.externalData ?? []) if (e.key === "location" && e.value) out.add(e.value)
  }
  const walk = (g: IGraphProto | null | undefined) => {
    if (!g) return
    g.initializer?.forEach(tensor)
    for (const s of g.sparseInitializer ?? []) {
      tensor(s.values)
      tensor(s.indices)
    }
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        tensor(a.t)
        a.tensors?.forEach(tensor)
        walk(a.g)
        a.graphs?.forEach(walk)
      }
    }
  }
  walk(graph)
  return [...out].sort()
}

/** External-data files of an ONNX model (absolute paths, with their locations); none when it keeps its weights inside. */
export const externalDataFiles = (onnxFile: string): Array<{ location: string; file: string }> => {
  let external: boolean
  try {
    external = readModelHeader(onnxFile).externalData
  } catch (e) {
    if (e instanceof NotOnnx) return [] // not ONNX: its bytes are all there is (the score stage says what is wrong)
    throw e
  }
  if (!external) return []
  const model = decodeModel(new Uint8Array(fs.readFileSync(onnxFile)))
  const dir = path.dirname(path.resolve(onnxFile))
  return externalLocations(model.graph).map((location) => ({ location, file: path.resolve(dir, location) }))
}


/**
 * The files of a Hugging Face checkpoint folder that the graph is built from: config.json, and
 * model.safetensors or the index with every shard it names — without safetensors, pytorch_model.bin
 * or its index and shards (safetensors.ts weightSource; absolute paths; those missing are left out:
 * the unit reading the folder says what is missing).
 */
export const hfFolderFiles = (folder: string): string[] => {
  const at = (f: string) => path.join(folder, f)
  const out = [at("config.json")]
  const source = weightSource(folder)
  if (source?.sharded === true) {
    out.push(source.file)
    try {
      const map = (JSON.parse(fs.readFileSync(source.file, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {}
      out.push(...[...new Set(Object.values(map))].sort().map(at))
    } catch {
      // unreadable index: its own fingerprint covers it, and the unit says what is wrong
    }
  } else if (source !== undefined) out.push(source.file)
  return out.filter((f) => fs.existsSync(f))
}

/** The checkpoint's files: an ONNX file and its external-data files, or a Hugging Face folder's (absolute paths). */
export const checkpointFiles = (checkpoint: string): string[] => {
  try {
    if (fs.statSync(checkpoint).isDirectory()) return hfFolderFiles(checkpoint)
    return [checkpoint, ...externalDataFiles(checkpoint).map((e) => e.file)]
  } catch {
    return [checkpoint] // unreadable: the unit reading it fails and says why
  }
}
