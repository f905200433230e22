/**
 * The external-data files of an ONNX checkpoint (Optimum's `model.onnx_data`, say): the files its
 * weights live in. They are part of the checkpoint: the stages that read a checkpoint list them
 * among their units' `files`, so their content is in the key, and the checks stage hashes them.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { NotOnnx, decodeModel, readModelHeader, type IGraphProto, type ITensorProto } from "./proto.ts"

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


/** The checkpoint file and its external-data files: what a unit that reads it depends on (absolute paths). */
export const checkpointFiles = (onnxFile: string): string[] => {
  try {
    return [onnxFile, ...externalDataFiles(onnxFile).map((e) => e.file)]
  } catch {
    return [onnxFile] // unreadable: the unit reading it fails and says why
  }
}
