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
 * is a few hundred kilobytes whatever the model. It is cached under `<cacheDir>/hf-graphs/`, keyed
 * by the content that decides it — config.json's bytes, each safetensors header (names, dtypes,
 * shapes, offsets) or each torch.save file's data.pkl and tensor offsets, the weight files' names,
 * and the builder's version — not by path or mtime: all
 * the checkpoints of one Trainer run share one graph, each loaded with its own folder's weights.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { writeFileAtomicSync } from "../../pipeline/atomic.ts"
import { buildHfGraph, isHfFolder } from "./hf/build.ts"
import { checkpointWeights, weightSource } from "./safetensors.ts"
import { readTorchBin } from "./torch-zip.ts"
import { Fail, firstLine } from "./session.ts"

/** Bump when the builders' graphs change: cached graphs of older versions are not reused. */
export const BUILDER_VERSION = 1

export interface GraphSource {
  /** The ONNX file to read the header of and rewrite: the checkpoint itself, or the graph built from its folder. */
  readonly file: string
  /** The folder external data resolves against (the checkpoint's folder; a built graph's: where its weight files really are). */
  readonly externalFolder: string
  /** Built from a Hugging Face folder: every weight is already external, nothing is to be externalized. */
  readonly built: boolean
}

/**
 * The bytes that decide a built graph: config.json, each weight file's name and header — for a
 * torch.save file its data.pkl and the tensors' offsets (which also depend on the ZIP's layout).
 */
const graphKey = (folder: string): string => {
  const h = createHash("sha256").update(`v${BUILDER_VERSION}\0`)
  h.update(fs.readFileSync(path.join(folder, "config.json")))
  const files = [...new Set(Object.values(checkpointWeights(folder)).map((w) => w.file))].sort()
  if (weightSource(folder)?.format === "torch") {
    for (const f of files) {
      const bin = readTorchBin(f)
      const places = Object.entries(bin.tensors).map(([n, t]) => `${n} ${t.offset} ${t.length}`)
      h.update(`\0${path.basename(f)}\0`).update(bin.pickle).update(`\0${places.join("\n")}`)
    }
    return h.digest("hex").slice(0, 24)
  }
  for (const f of files) {
    const fd = fs.openSync(f, "r")
    try {
      const len = Buffer.alloc(8)
      fs.readSync(fd, len, 0, 8, 0)
      const n = Number(len.readBigUInt64LE(0))
      const header = Buffer.alloc(n)
      fs.readSync(fd, header, 0, n, 8)
      h.update(`\0${path.basename(f)}\0`).update(header)
    } finally {
      fs.closeSync(fd)
    }
  }
  return h.digest("hex").slice(0, 24)
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
    const file = path.join(dir, `${graphKey(abs)}.onnx`) // one graph for every checkpoint with this config and these headers
    if (!fs.existsSync(file)) writeFileAtomicSync(file, built.model)
    return { file, externalFolder: built.externalFolder, built: true }
  } catch (e) {
    if (e instanceof Fail) throw e
    throw new Fail(`${label}: ${firstLine(e)}`, { cause: e })
  }
}
