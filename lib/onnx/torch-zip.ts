/**
 * PyTorch `torch.save` files (`pytorch_model.bin`, PyTorch ≥ 1.6), read at the index level only:
 * the weights are never loaded into JavaScript and no pickle code runs. The ONNX graphs built from
 * Hugging Face checkpoints point at the storage bytes in place, as they do for safetensors.
 *
 * Layout: a ZIP archive whose entries are stored (method 0), each entry's data 64-byte aligned by
 * padding in the local header's extra field (an "FB" field of "Z"s):
 *
 *   <root>/data.pkl      the state dict, pickled (protocol 2; see pickle.ts)
 *   <root>/data/<key>    the raw little-endian bytes of storage <key>
 *   <root>/version       "3\n"; newer writers add <root>/byteorder ("little"), <root>/.data/…
 *
 * `<root>` is the file name without extension for torch 1.x (`pytorch_model`), `archive` for newer
 * writers. torch 1.13 always ends with a ZIP64 end record, and uses ZIP64 extra fields for sizes
 * and offsets ≥ 4 GiB; local headers carry no sizes (flag bit 3, data descriptors follow the data),
 * so the sizes come from the central directory and the data offset from the local header's lengths.
 *
 * In data.pkl every tensor is
 *
 *   torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)
 *
 * with `storage` the persistent id ("storage", torch.FloatStorage, "<key>", "cpu", numel), inside
 * `collections.OrderedDict()` filled by SETITEMS (then a BUILD of its `_metadata`).
 *
 * Worked example: `torch.save({"w": torch.arange(10.)[2:6]}, "pytorch_model.bin")` with entry
 * pytorch_model/data/0 (40 bytes) at data offset 832 gives readTorchBin(file).tensors.w =
 * { dtype: "F32", shape: [4], offset: 832 + 2 × 4 = 840, length: 16 }.
 */
import * as fs from "node:fs"
import { PyDict, PyGlobal, PyTuple, unpickle, type PyValue } from "./pickle.ts"

// ---------------------------------------------------------------------------------------------
// ZIP central directory

export interface ZipEntry {
  readonly name: string
  /** 0 = stored, 8 = deflated. */
  readonly method: number
  readonly compressedSize: number
  readonly size: number
  readonly localHeaderOffset: number
  /** Absolute offset of the entry's first data byte (local header + 30 + its name and extra lengths). */
  readonly dataOffset: number
}

const EOCD = 0x06054b50
const ZIP64_LOCATOR = 0x07064b50
const ZIP64_EOCD = 0x06064b50
const CENTRAL = 0x02014b50
const LOCAL = 0x04034b50

const readAt = (fd: number, pos: number, n: number): Buffer => {
  const b = Buffer.alloc(n)
  const got = fs.readSync(fd, b, 0, n, pos)
  return got === n ? b : b.subarray(0, got)
}

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64LE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`a 64-bit field (${v}) beyond 2^53`)
  return Number(v)
}

/**
 * Every entry of a ZIP file, from its central directory (ZIP64 when the archive has the record),
 * with data offsets read from the local headers.
 * @throws Error "<why>" (no end record, a directory outside the file, a bad signature, …)
 */
export const readZipEntries = (fd: number, size: number): ZipEntry[] => {
  // The end record is 22 bytes plus a comment of up to 65535 bytes, at the very end.
  const tailLen = Math.min(size, 22 + 65535)
  const tail = readAt(fd, size - tailLen, tailLen)
  let e = -1
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tail.length) {
      e = i
      break
    }
  }
  if (e < 0) throw new Error("no ZIP end-of-central-directory record (truncated, or not a ZIP file)")
  const eocdPos = size - tailLen + e
  let count = tail.readUInt16LE(e + 10)
  let cdSize = tail.readUInt32LE(e + 12)
  let cdOffset = tail.readUInt32LE(e + 16)
  if (eocdPos >= 20) {
    const loc = readAt(fd, eocdPos - 20, 20)
    if (loc.readUInt32LE(0) === ZIP64_LOCATOR) {
      const z64Pos = u64(loc, 8)
      const z = readAt(fd, z64Pos, 56)
      if (z.length < 56 || z.readUInt32LE(0) !== ZIP64_EOCD) throw new Error(`no ZIP64 end record at byte ${z64Pos}, where its locator points`)
      count = u64(z, 32)
      cdSize = u64(z, 40)
      cdOffset = u64(z, 48)
    }
  }
  if (cdOffset + cdSize > eocdPos) throw new Error(`the central directory (bytes ${cdOffset}…${cdOffset + cdSize}) does not fit before the end record at ${eocdPos} (truncated?)`)
  const cd = readAt(fd, cdOffset, cdSize)
  const out: ZipEntry[] = []
  let p = 0
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw new Error(`central directory entry ${k} at byte ${cdOffset + p} has no signature`)
    const method = cd.readUInt16LE(p + 10)
    let compressedSize = cd.readUInt32LE(p + 20)
    let entrySize = cd.readUInt32LE(p + 24)
    const nameLen = cd.readUInt16LE(p + 28)
    const extraLen = cd.readUInt16LE(p + 30)
    const commentLen = cd.readUInt16LE(p + 32)
    let local = cd.readUInt32LE(p + 42)
    const name = cd.subarray(p + 46, p + 46 + nameLen).toString("utf8")
    // ZIP64 extended information (id 1): the 8-byte values of the fields set to 0xFFFFFFFF, in this order.
    let x = p + 46 + nameLen
    const xEnd = x + extraLen
    while (x + 4 <= xEnd) {
      const id = cd.readUInt16LE(x)
      const len = cd.readUInt16LE(x + 2)
      if (id === 1) {
        let q = x + 4
        const next = () => {
          if (q + 8 > x + 4 + len) throw new Error(`entry ${name}: a short ZIP64 extra field`)
          q += 8
          return u64(cd, q - 8)
        }
        if (entrySize === 0xffffffff) entrySize = next()
        if (compressedSize === 0xffffffff) compressedSize = next()
        if (local === 0xffffffff) local = next()
      }
      x += 4 + len
    }
    p = xEnd + commentLen
    const lh = readAt(fd, local, 30)
    if (lh.length < 30 || lh.readUInt32LE(0) !== LOCAL) throw new Error(`entry ${name}: no local header at byte ${local}`)
    const dataOffset = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28)
    if (dataOffset + compressedSize > size) throw new Error(`entry ${name} ends at byte ${dataOffset + compressedSize}, beyond the file's ${size} bytes (truncated?)`)
    out.push({ name, method, compressedSize, size: entrySize, localHeaderOffset: local, dataOffset })
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// torch.save state dicts

/** safetensors dtype names of the storage classes torch.save writes. */
export const STORAGE_DTYPES: Readonly<Record<string, { readonly dtype: string; readonly bytes: number }>> = {
  FloatStorage: { dtype: "F32", bytes: 4 },
  HalfStorage: { dtype: "F16", bytes: 2 },
  BFloat16Storage: { dtype: "BF16", bytes: 2 },
  DoubleStorage: { dtype: "F64", bytes: 8 },
  LongStorage: { dtype: "I64", bytes: 8 },
  IntStorage: { dtype: "I32", bytes: 4 },
  ShortStorage: { dtype: "I16", bytes: 2 },
  CharStorage: { dtype: "I8", bytes: 1 },
  ByteStorage: { dtype: "U8", bytes: 1 },
  BoolStorage: { dtype: "BOOL", bytes: 1 },
}

/** The globals a state dict may name; anything else is refused before anything is built from it. */
const ALLOWED = new Set(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`)])

class Storage {
  constructor(
    readonly dtype: string,
    readonly bytes: number,
    readonly key: string,
    readonly numel: number,
  ) {}
}

class Tensor {
  constructor(
    readonly storage: Storage,
    readonly storageOffset: number,
    readonly shape: ReadonlyArray<number>,
    readonly stride: ReadonlyArray<number>,
  ) {}
}

const intTuple = (v: PyValue, what: string): number[] => {
  if (!(v instanceof PyTuple) || !v.items.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) throw new Error(`${what} is not a tuple of non-negative ints`)
  return v.items as number[]
}

const hooks = {
  global: (module: string, name: string): PyValue => {
    const q = `${module}.${name}`
    if (!ALLOWED.has(q)) throw new Error(`refused global ${q} (a state dict names only collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage)`)
    return new PyGlobal(module, name)
  },
  persistentLoad: (pid: PyValue): PyValue => {
    if (!(pid instanceof PyTuple) || pid.items[0] !== "storage" || pid.items.length !== 5) throw new Error("a persistent id that is not ('storage', type, key, location, numel)")
    const [, type, key, , numel] = pid.items
    if (!(type instanceof PyGlobal) || STORAGE_DTYPES[type.name] === undefined) throw new Error("a storage of unknown type")
    if (typeof key !== "string" || !Number.isSafeInteger(numel)) throw new Error("a storage without a string key and an int size")
    const d = STORAGE_DTYPES[type.name]
    return new Storage(d.dtype, d.bytes, key, numel as number)
  },
  reduce: (callable: PyValue, args: PyTuple): PyValue => {
    const q = callable instanceof PyGlobal ? callable.qualified : "a value that is not a global"
    const a = args.items
    if (q === "collections.OrderedDict" && a.length === 0) return new PyDict()
    if (q === "torch._utils._rebuild_tensor_v2" && (a.length === 6 || a.length === 7)) {
      if (!(a[0] instanceof Storage) || !Number.isSafeInteger(a[1])) throw new Error("_rebuild_tensor_v2 without a storage and an offset")
      return new Tensor(a[0], a[1] as number, intTuple(a[2], "a tensor's size"), intTuple(a[3], "a tensor's stride"))
    }
    if (q === "torch._utils._rebuild_parameter" && a.length === 3 && a[0] instanceof Tensor) return a[0]
    throw new Error(`refused call of ${q} with ${a.length} arguments`)
  },
  build: (obj: PyValue, state: PyValue): void => {
    if (obj instanceof PyDict) obj.state = state // OrderedDict._metadata: not needed
    else throw new Error("BUILD on something that is not a dict")
  },
}

/** One tensor of a torch.save file: `offset` is absolute in the file, `length` = numel × element size. */
export interface TorchTensor {
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly offset: number
  readonly length: number
}

export interface TorchBin {
  /** `<root>/` of the archive's entries. */
  readonly root: string
  /** data.pkl's bytes (what decides the tensors' names, dtypes, shapes and storages). */
  readonly pickle: Uint8Array
  readonly tensors: Readonly<Record<string, TorchTensor>>
}

/** Strides of a row-major contiguous tensor; dimensions of size 1 may have any stride. */
const contiguous = (shape: ReadonlyArray<number>, stride: ReadonlyArray<number>): boolean => {
  if (shape.length !== stride.length) return false
  let expect = 1
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false
    expect *= shape[i]
  }
  return true
}

/**
 * Read the state dict of a torch.save file: tensor names, dtypes, shapes and where their bytes are.
 * Non-tensor values of the dict are skipped. Throws an Error with a one-line message naming the file:
 * not a ZIP (or the legacy pre-1.6 format), truncated, no data.pkl, a compressed entry, an opcode or
 * global outside the allow-list, a non-contiguous tensor, a storage entry too short, big-endian data.
 */
export const readTorchBin = (file: string): TorchBin => {
  const fd = fs.openSync(file, "r")
  const bad = (why: string) => new Error(`${file}: not a readable torch.save file: ${why}`)
  try {
    const size = fs.fstatSync(fd).size
    const head = readAt(fd, 0, 4)
    if (head.length >= 3 && head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a) {
      throw bad("the legacy (PyTorch < 1.6) format, not a ZIP archive; re-save it with a newer torch.save or as safetensors")
    }
    let entries: ZipEntry[]
    try {
      entries = readZipEntries(fd, size)
    } catch (e) {
      throw bad(e instanceof Error ? e.message : String(e))
    }
    const pkl = entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name))
    if (pkl.length !== 1) throw bad(`${pkl.length} <root>/data.pkl entries (expected one)`)
    const root = pkl[0].name.slice(0, -"data.pkl".length)
    const byName = new Map(entries.map((e) => [e.name, e]))
    const stored = (e: ZipEntry): ZipEntry => {
      if (e.method !== 0) throw bad(`entry ${e.name} is compressed (method ${e.method}); torch.save stores entries uncompressed`)
      if (e.compressedSize !== e.size) throw bad(`entry ${e.name} is stored with ${e.compressedSize} bytes for ${e.size}`)
      return e
    }
    const order = byName.get(`${root}byteorder`)
    if (order !== undefined) {
      const s = readAt(fd, stored(order).dataOffset, order.size).toString("latin1").trim()
      if (s !== "little") throw bad(`byteorder is "${s}"; only little-endian files are supported`)
    }
    const p = stored(pkl[0])
    const pickle = new Uint8Array(readAt(fd, p.dataOffset, p.size))
    let value: PyValue
    try {
      value = unpickle(pickle, hooks)
    } catch (e) {
      throw bad(`${root}data.pkl: ${e instanceof Error ? e.message : String(e)}`)
    }
    if (!(value instanceof PyDict)) throw bad("data.pkl is not a dict of tensors")
    const tensors: Record<string, TorchTensor> = {}
    for (const [name, t] of value.map) {
      if (!(t instanceof Tensor)) continue
      const s = t.storage
      if (!contiguous(t.shape, t.stride)) {
        throw bad(`tensor "${name}" has strides ${JSON.stringify(t.stride)} for shape ${JSON.stringify(t.shape)}, not contiguous row-major (re-save it with .contiguous())`)
      }
      const e = byName.get(`${root}data/${s.key}`)
      if (e === undefined) throw bad(`tensor "${name}": storage entry ${root}data/${s.key} is missing`)
      stored(e)
      const numel = t.shape.reduce((a, d) => a * d, 1)
      const begin = t.storageOffset * s.bytes
      const length = numel * s.bytes
      if (begin + length > e.size) {
        throw bad(`tensor "${name}" (${s.dtype} ${JSON.stringify(t.shape)} at element ${t.storageOffset}) needs ${begin + length} bytes of ${e.name}, which has ${e.size}`)
      }
      tensors[String(name)] = { dtype: s.dtype, shape: t.shape, offset: e.dataOffset + begin, length }
    }
    return { root, pickle, tensors }
  } finally {
    fs.closeSync(fd)
  }
}
