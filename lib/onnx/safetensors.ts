/**
 * safetensors files, read at the header level only: the weights are never loaded into JavaScript.
 * The ONNX graphs built from Hugging Face checkpoints (hf/build.ts) point at these bytes in place.
 *
 * Layout of a file: 8 bytes little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { string: string } }`,
 * then the tensor bytes; `data_offsets` are relative to the data section, which starts at 8 + N.
 *
 * Worked example: `model.safetensors` with N = 120 and the entry
 * `"wte.weight": { "dtype": "F16", "shape": [100, 32], "data_offsets": [0, 6400] }`
 * gives readSafetensorsHeader(...).tensors["wte.weight"] = { dtype: "F16", shape: [100, 32],
 * begin: 0, end: 6400 } with dataStart 128, and checkpointWeights(folder)["wte.weight"] =
 * { file: "/realpath/of/model.safetensors", dtype: "F16", shape: [100, 32], offset: 128, length: 6400 }.
 *
 * A sharded checkpoint has `model.safetensors.index.json` whose `weight_map` names the shard of
 * every tensor (`"gpt_neox.embed_in.weight": "model-00001-of-00002.safetensors"`). A folder with
 * only PyTorch weights (`pytorch_model.bin`, or `pytorch_model.bin.index.json` and its shards) gives
 * the same WeightRefs through torch-zip.ts: offsets into the storage entries of the ZIP, in place.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { readTorchBin } from "./torch-zip.ts"

/** Bytes per element of the safetensors dtypes. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
}

/** One tensor of a header: `begin`/`end` are byte offsets relative to the data section. */
export interface SafetensorsEntry {
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly begin: number
  readonly end: number
}

export interface SafetensorsHeader {
  /** N, the JSON header's byte length. */
  readonly headerLength: number
  /** 8 + N: where tensor bytes start in the file. */
  readonly dataStart: number
  readonly metadata: Readonly<Record<string, string>>
  readonly tensors: Readonly<Record<string, SafetensorsEntry>>
}

/** The safetensors reference caps headers at 100 MB. */
const MAX_HEADER = 100_000_000

/**
 * Read and validate the header of a safetensors file (reads 8 + N bytes, nothing more).
 * Throws an Error with a one-line message naming the file when the header is not sane: too short,
 * a length beyond the file, bad JSON, an entry without dtype/shape/data_offsets, offsets outside the
 * file, or a byte range that does not match shape × dtype size.
 */
export const readSafetensorsHeader = (file: string): SafetensorsHeader => {
  const fd = fs.openSync(file, "r")
  try {
    const size = fs.fstatSync(fd).size
    const bad = (why: string) => new Error(`${file}: not a valid safetensors file: ${why}`)
    if (size < 8) throw bad(`${size} bytes, shorter than the 8-byte header length`)
    const lenBuf = Buffer.alloc(8)
    fs.readSync(fd, lenBuf, 0, 8, 0)
    const n = Number(lenBuf.readBigUInt64LE(0))
    if (n < 2 || n > MAX_HEADER || 8 + n > size) throw bad(`header length ${n} does not fit the file of ${size} bytes`)
    const json = Buffer.alloc(n)
    if (fs.readSync(fd, json, 0, n, 8) !== n) throw bad("truncated header")
    let parsed: unknown
    try {
      parsed = JSON.parse(json.toString("utf8"))
    } catch (e) {
      throw bad(`header is not JSON (${e instanceof Error ? e.message : String(e)})`)
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw bad("header is not a JSON object")
    const dataStart = 8 + n
    const dataSize = size - dataStart
    const tensors: Record<string, SafetensorsEntry> = {}
    let metadata: Record<string, string> = {}
    for (const [name, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (v !== null && typeof v === "object") metadata = v as Record<string, string>
        continue
      }
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
      if (e === null || typeof e !== "object" || typeof e.dtype !== "string" || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
        throw bad(`tensor "${name}" lacks dtype, shape or data_offsets`)
      }
      const shape = e.shape as unknown[]
      const offs = e.data_offsets as unknown[]
      if (!shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) throw bad(`tensor "${name}" has shape ${JSON.stringify(shape)}`)
      if (offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && (d as number) >= 0) || (offs[0] as number) > (offs[1] as number)) {
        throw bad(`tensor "${name}" has data_offsets ${JSON.stringify(offs)}`)
      }
      const [begin, end] = offs as [number, number]
      if (end > dataSize) throw bad(`tensor "${name}" ends at byte ${dataStart + end}, beyond the file's ${size} bytes (truncated?)`)
      const elem = DTYPE_BYTES[e.dtype]
      const count = (shape as number[]).reduce((a, d) => a * d, 1)
      if (elem !== undefined && count * elem !== end - begin) {
        throw bad(`tensor "${name}" (${e.dtype} ${JSON.stringify(shape)}) needs ${count * elem} bytes, its data_offsets give ${end - begin}`)
      }
      tensors[name] = { dtype: e.dtype, shape: shape as number[], begin, end }
    }
    return { headerLength: n, dataStart, metadata, tensors }
  } finally {
    fs.closeSync(fd)
  }
}

/** Where one tensor of a checkpoint lives: `offset` is absolute in `file` (a realpath). */
export interface WeightRef {
  readonly file: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly offset: number
  readonly length: number
}

export const SINGLE_FILE = "model.safetensors"
export const INDEX_FILE = "model.safetensors.index.json"
/** PyTorch's torch.save weights (torch-zip.ts), used only when a folder has no safetensors. */
export const TORCH_SINGLE_FILE = "pytorch_model.bin"
export const TORCH_INDEX_FILE = "pytorch_model.bin.index.json"

/** A weight file of a checkpoint folder (a shard or the single file), by name. */
export const isWeightFile = (file: string): boolean => file.endsWith(".safetensors") || file.endsWith(".bin")

export interface WeightSource {
  readonly format: "safetensors" | "torch"
  /** The index or the single file (absolute): what errors about the checkpoint name. */
  readonly file: string
  readonly sharded: boolean
}

/**
 * Where a folder's weights are, in this order of preference: model.safetensors.index.json,
 * model.safetensors, pytorch_model.bin.index.json, pytorch_model.bin; undefined when none exists.
 */
export const weightSource = (folder: string): WeightSource | undefined => {
  const candidates: ReadonlyArray<[string, WeightSource["format"], boolean]> = [
    [INDEX_FILE, "safetensors", true],
    [SINGLE_FILE, "safetensors", false],
    [TORCH_INDEX_FILE, "torch", true],
    [TORCH_SINGLE_FILE, "torch", false],
  ]
  for (const [name, format, sharded] of candidates) {
    const file = path.join(folder, name)
    if (fs.existsSync(file)) return { format, file, sharded }
  }
  return undefined
}

/** The tensors of one weight file, offsets absolute. */
const fileTensors = (file: string, format: WeightSource["format"]): Record<string, Omit<WeightRef, "file">> => {
  if (format === "torch") return readTorchBin(file).tensors
  const h = readSafetensorsHeader(file)
  return Object.fromEntries(Object.entries(h.tensors).map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, offset: h.dataStart + t.begin, length: t.end - t.begin }]))
}

/**
 * Every tensor of a Hugging Face checkpoint folder (see weightSource): `model.safetensors`, or the
 * shards named by `model.safetensors.index.json`; without safetensors, `pytorch_model.bin` or the
 * shards of `pytorch_model.bin.index.json` (torch.save files, read without running their pickle).
 * Files are resolved with realpath (the Hub cache's snapshot files are symlinks into blobs/). A
 * tensor the index maps to a shard that lacks it is an error naming both.
 */
export const checkpointWeights = (folder: string): Record<string, WeightRef> => {
  const source = weightSource(folder)
  if (source === undefined) {
    throw new Error(`${folder}: no ${SINGLE_FILE} and no ${INDEX_FILE} (nor ${TORCH_SINGLE_FILE} or ${TORCH_INDEX_FILE})`)
  }
  const out: Record<string, WeightRef> = {}
  const add = (file: string, only?: ReadonlySet<string>) => {
    const real = fs.realpathSync(file)
    for (const [name, t] of Object.entries(fileTensors(file, source.format))) {
      if (only !== undefined && !only.has(name)) continue
      out[name] = { file: real, ...t }
    }
  }
  if (!source.sharded) {
    add(source.file)
    return out
  }
  const index = source.file
  let map: Record<string, unknown>
  try {
    const j = JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map?: unknown }
    if (j === null || typeof j.weight_map !== "object" || j.weight_map === null) throw new Error("it has no weight_map object")
    map = j.weight_map as Record<string, unknown>
  } catch (e) {
    throw new Error(`${index}: cannot read the shard index: ${e instanceof Error ? e.message : String(e)}`)
  }
  const byShard = new Map<string, Set<string>>()
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) throw new Error(`${index}: weight_map["${name}"] is not a file name in the folder`)
    if (!byShard.has(shard)) byShard.set(shard, new Set())
    byShard.get(shard)!.add(name)
  }
  for (const [shard, names] of [...byShard.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const file = path.join(folder, shard)
    if (!fs.existsSync(file)) throw new Error(`${index}: shard ${shard} is missing from ${folder}`)
    add(file, names)
    for (const name of names) if (!(name in out)) throw new Error(`${file}: tensor "${name}" (listed in ${path.basename(index)}) is not in the shard`)
  }
  return out
}
