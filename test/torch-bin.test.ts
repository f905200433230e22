/**
 * PyTorch weights (`pytorch_model.bin`, torch.save's ZIP format) read in place by
 * lib/onnx/torch-zip.ts: a file written by real PyTorch, graphs built from the PyTorch twins of
 * random safetensors checkpoints (the same logits), and the files it must refuse.
 *
 * zoo/fixtures/torch/small.bin and strided.bin were written ONCE by Debian 12's python3-torch
 * (1.13.0a0) with
 *
 *   /usr/bin/python3 -c '
 *   import torch, collections
 *   torch.manual_seed(0)
 *   m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
 *   sd = m.state_dict()  # an OrderedDict with _metadata (BUILD)
 *   big = torch.arange(10, dtype=torch.float32)
 *   sd["half"] = torch.tensor([1.5, -2.0, 65504.0], dtype=torch.float16)
 *   sd["bf16"] = torch.tensor([[0.25], [-3.0]], dtype=torch.bfloat16)
 *   sd["step"] = torch.tensor(1234, dtype=torch.int64)
 *   sd["view"] = big[2:6]
 *   sd["whole"] = big
 *   sd["mask"] = torch.tensor([True, False, True])
 *   sd["col"] = torch.arange(4, dtype=torch.float64).reshape(4, 1)
 *   sd["empty"] = torch.zeros(0, 3)
 *   for i in range(40):
 *       sd[f"many.{i}"] = torch.full((2,), float(i), dtype=torch.int32)
 *   torch.save(sd, "small.bin")
 *   torch.save(collections.OrderedDict(t=torch.arange(6.0).reshape(2, 3).t()), "strided.bin")'
 *
 * (run in zoo/fixtures/torch/; sha256 03767cfb… and 6e508f5d…). small.bin's pickle has 256 BINPUT
 * then LONG_BINPUT, BINGET and LONG_BINGET, a storage shared by two tensors ("view" at element 2 of
 * "whole"), a 0-d, an empty and a [4, 1] tensor with stride (1, 1), and the BUILD of _metadata.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { hubSettingsFromEnv, makeHub } from "../lib/hub/index.ts"
import { hfFolderFiles } from "../lib/onnx/external.ts"
import { buildHfGraph, type BuiltGraph } from "../lib/onnx/hf/build.ts"
import { checkpointWeights } from "../lib/onnx/safetensors.ts"
import { graphSource } from "../lib/onnx/source.ts"
import { PyDict, PyGlobal, PyList, PyTuple, unpickle, type PyValue } from "../lib/onnx/pickle.ts"
import { readTorchBin } from "../lib/onnx/torch-zip.ts"
import { SEQUENCES } from "./fixtures/hf-variants.ts"
import { startMockHub } from "./fixtures/mock-hub.ts"
import { writeRandomCheckpoint, type CheckpointSpec } from "./fixtures/safetensors.ts"
import { torchTwin, writeTorchBin } from "./fixtures/torch-zip.ts"
import { openBuilt, runBuilt } from "./fixtures/built-graph.ts"

// Committed binaries live in zoo/ (the one place for them).
const FIXTURES = path.join(import.meta.dirname, "..", "zoo", "fixtures", "torch")

let tmp: string
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "torch-bin-"))
})
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const f16 = (h: number): number => {
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15)
  return h & 0x8000 ? -v : v
}

/** The values of a tensor read at its offset, as numbers (bigint for I64). */
const valuesAt = (file: string, t: { dtype: string; offset: number; length: number }): Array<number | bigint | boolean> => {
  const b = fs.readFileSync(file).subarray(t.offset, t.offset + t.length)
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const out: Array<number | bigint | boolean> = []
  const step = { F32: 4, F64: 8, F16: 2, BF16: 2, I64: 8, I32: 4, BOOL: 1 }[t.dtype]!
  for (let i = 0; i < t.length; i += step) {
    if (t.dtype === "F32") out.push(v.getFloat32(i, true))
    else if (t.dtype === "F64") out.push(v.getFloat64(i, true))
    else if (t.dtype === "F16") out.push(f16(v.getUint16(i, true)))
    else if (t.dtype === "BF16") out.push(new Float32Array(new Uint32Array([v.getUint16(i, true) << 16]).buffer)[0])
    else if (t.dtype === "I64") out.push(v.getBigInt64(i, true))
    else if (t.dtype === "I32") out.push(v.getInt32(i, true))
    else out.push(v.getUint8(i) === 1)
  }
  return out
}

describe("the pickle interpreter", () => {
  /** Plain JS of a decoded value: dicts as [key, value] pairs, tuples as { tuple: [...] }. */
  const plain = (v: PyValue): unknown =>
    v instanceof PyDict ? [...v.map].map(([k, x]) => [k, plain(x)]) : v instanceof PyList ? v.items.map(plain) : v instanceof PyTuple ? { tuple: v.items.map(plain) } : v
  const hooks = {
    global: (m: string, n: string) => {
      if (`${m}.${n}` !== "collections.OrderedDict") throw new Error(`refused ${m}.${n}`)
      return new PyGlobal(m, n)
    },
    reduce: () => new PyDict(),
    persistentLoad: () => null,
  }
  // /usr/bin/python3 -c 'import pickle, collections; print(pickle.dumps(collections.OrderedDict([("k", [1, 2.5, None, True,
  //   False, 2**40, -3, -70000, 300, "é"*2, (1,), (1,2), (1,2,3), (1,2,3,4), ()]), (7, {"n": "x"})]), protocol=P).hex())'
  const P2 =
    "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006b71025d7103284b014740040000000000004e88898a060000000000014afdffffff4a90eefeff4d2c015804000000c3a9c3a971044b018571054b014b028671064b014b024b03877107284b014b024b034b0474710829654b077d710958010000006e710a580100000078710b73752e"
  const P4 =
    "80049581000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c016b945d94284b014740040000000000004e88898a060000000000014afdffffff4a90eefeff4d2c018c04c3a9c3a9944b0185944b014b0286944b014b024b038794284b014b024b034b04749429654b077d948c016e948c01789473752e"
  const expected = [
    ["k", [1, 2.5, null, true, false, 2 ** 40, -3, -70000, 300, "éé", { tuple: [1] }, { tuple: [1, 2] }, { tuple: [1, 2, 3] }, { tuple: [1, 2, 3, 4] }, { tuple: [] }]],
    [7, [["n", "x"]]],
  ]

  it("decodes what CPython's pickler writes with protocol 2 and 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE)", () => {
    expect(plain(unpickle(Buffer.from(P2, "hex"), hooks))).toEqual(expected)
    expect(plain(unpickle(Buffer.from(P4, "hex"), hooks))).toEqual(expected)
  })

  it("stops at a refused global, an unknown opcode, a truncated stream", () => {
    const evil = Buffer.from("\x80\x02cos\nsystem\n.", "latin1") // PROTO 2, GLOBAL "os system", STOP
    expect(() => unpickle(evil, hooks)).toThrow("refused os.system at byte 2 of the pickle")
    expect(() => unpickle(Buffer.from("8002692e", "hex"), hooks)).toThrow("unsupported pickle opcode 0x69 INST at byte 2 of the pickle")
    expect(() => unpickle(Buffer.from(P2, "hex").subarray(0, 60), hooks)).toThrow(/truncated pickle/)
  })
})

describe("a state dict written by real PyTorch", () => {
  const small = path.join(FIXTURES, "small.bin")

  it("names, dtypes, shapes and the values at the computed offsets", () => {
    const bin = readTorchBin(small)
    expect(bin.root).toBe("small/")
    const names = Object.keys(bin.tensors)
    expect(names.slice(0, 12)).toEqual(["0.weight", "0.bias", "1.weight", "1.bias", "half", "bf16", "step", "view", "whole", "mask", "col", "empty"])
    expect(names).toHaveLength(52)
    const t = bin.tensors
    const shapes = Object.fromEntries(names.slice(0, 12).map((n) => [n, [t[n].dtype, t[n].shape]]))
    expect(shapes).toEqual({
      "0.weight": ["F32", [2, 3]], "0.bias": ["F32", [2]], "1.weight": ["F32", [2]], "1.bias": ["F32", [2]], half: ["F16", [3]],
      bf16: ["BF16", [2, 1]], step: ["I64", []], view: ["F32", [4]], whole: ["F32", [10]], mask: ["BOOL", [3]], col: ["F64", [4, 1]], empty: ["F32", [0, 3]],
    })
    // torch.manual_seed(0) Linear(3, 2): the float32 values torch printed (as float64 of the float32s)
    expect(valuesAt(small, t["0.weight"])).toEqual([-0.004322517663240433, 0.3097158372402191, -0.4751853346824646, -0.4248946011066437, -0.2223689705133438, 0.15482072532176971])
    expect(valuesAt(small, t["0.bias"])).toEqual([-0.011439144611358643, 0.45777493715286255])
    expect(valuesAt(small, t["1.weight"])).toEqual([1, 1])
    expect(valuesAt(small, t.half)).toEqual([1.5, -2, 65504])
    expect(valuesAt(small, t.bf16)).toEqual([0.25, -3])
    expect(valuesAt(small, t.step)).toEqual([1234n])
    expect(valuesAt(small, t.view)).toEqual([2, 3, 4, 5])
    expect(t.view.offset).toBe(t.whole.offset + 2 * 4) // one storage, in place
    expect(valuesAt(small, t.whole)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(valuesAt(small, t.mask)).toEqual([true, false, true])
    expect(valuesAt(small, t.col)).toEqual([0, 1, 2, 3])
    expect(t.empty.length).toBe(0)
    for (let i = 0; i < 40; i++) expect(valuesAt(small, t[`many.${i}`])).toEqual([i, i])
    // torch aligns every storage to 64 bytes
    for (const n of names) if (n !== "view") expect(t[n].offset % 64, n).toBe(0)
  })

  it("the fixture writer reproduces a torch-written file byte for byte", () => {
    const file = path.join(tmp, "same", "strided.bin")
    const bytes = writeTorchBin(file, { t: { dtype: "F32", shape: [3, 2], stride: [1, 3], data: Float32Array.of(0, 1, 2, 3, 4, 5) } })
    expect(bytes.equals(fs.readFileSync(path.join(FIXTURES, "strided.bin")))).toBe(true)
  })

  it("a folder with pytorch_model.bin: checkpointWeights and hfFolderFiles; ZIP64 extra fields read alike", () => {
    const dir = path.join(tmp, "real")
    fs.mkdirSync(dir)
    fs.copyFileSync(small, path.join(dir, "pytorch_model.bin"))
    fs.writeFileSync(path.join(dir, "config.json"), "{}")
    const w = checkpointWeights(dir)
    const file = fs.realpathSync(path.join(dir, "pytorch_model.bin"))
    expect(w.half).toEqual({ file, dtype: "F16", shape: [3], offset: readTorchBin(small).tensors.half.offset, length: 6 })
    expect(hfFolderFiles(dir)).toEqual([path.join(dir, "config.json"), path.join(dir, "pytorch_model.bin")])
    const tensors = { a: { dtype: "BF16", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }, b: { dtype: "I64", shape: [], data: BigInt64Array.of(5n) } } as const
    const plain = readTorchBin((writeTorchBin(path.join(tmp, "z", "plain.bin"), tensors), path.join(tmp, "z", "plain.bin")))
    const z64 = readTorchBin((writeTorchBin(path.join(tmp, "z", "plain64.bin"), tensors, { root: "plain", zip64: true }), path.join(tmp, "z", "plain64.bin")))
    expect(z64.tensors).toEqual(plain.tensors)
  })
})

// ---------------------------------------------------------------------------------------------

/** Logits of `seqs` as one batch padded on the right with 0, and the per-token log-probs. */
const run = async (b: BuiltGraph, seqs: ReadonlyArray<ReadonlyArray<number>>): Promise<{ logits: Float32Array; logprobs: number[] }> => {
  const s = await openBuilt(b)
  try {
    const r = await runBuilt(s, seqs)
    return { logits: r.logits, logprobs: r.logprobs.flat() }
  } finally {
    await s.release()
  }
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length)
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]))
  return d
}

describe("random checkpoints as PyTorch weights give the same outputs as safetensors", () => {
  const cases: ReadonlyArray<[string, CheckpointSpec, number]> = [
    ["gpt_neox F16 + extras, one pytorch_model.bin", { arch: "gpt_neox", dtype: "F16", extras: true }, 1],
    ["llama BF16, 2 shards", { arch: "llama", dtype: "BF16", seed: 3 }, 2],
    ["gpt2 F32 + extras, 3 shards", { arch: "gpt2", extras: true, seed: 4 }, 3],
    ["opt F32, one file", { arch: "opt", seed: 5 }, 1],
  ]
  for (const [name, spec, shards] of cases) {
    it(name, async () => {
      const st = path.join(tmp, `st-${spec.arch}`)
      const pt = path.join(tmp, `pt-${spec.arch}`)
      writeRandomCheckpoint(st, spec)
      const files = torchTwin(st, pt, { shards })
      expect(files.filter((f) => f.endsWith(".bin"))).toHaveLength(shards)
      const a = buildHfGraph(st)
      const b = buildHfGraph(pt)
      expect(b.externalFolder).toBe(fs.realpathSync(pt))
      expect(b.weightFiles.every((f) => f.endsWith(".bin"))).toBe(true)
      const [ra, rb] = [await run(a, SEQUENCES), await run(b, SEQUENCES)]
      expect(maxAbs(ra.logits, rb.logits)).toBeLessThanOrEqual(1e-6)
      expect(maxAbs(ra.logprobs, rb.logprobs)).toBeLessThanOrEqual(1e-6)
      expect(rb.logprobs.every((x) => Number.isFinite(x) && x < 0)).toBe(true)
      const listed = hfFolderFiles(pt).map((f) => path.basename(f))
      expect(listed.sort()).toEqual([...files].sort())
    })
  }

  it("graphSource caches the PyTorch graph by data.pkl and offsets; safetensors win when both are there", () => {
    const st = path.join(tmp, "st-gpt_neox")
    const pt = path.join(tmp, "pt-gpt_neox")
    const cache = path.join(tmp, "cache")
    const g1 = graphSource(pt, cache, "pt")
    expect(g1.built).toBe(true)
    expect(graphSource(pt, cache, "pt").file).toBe(g1.file)
    const copy = path.join(tmp, "pt-copy", path.basename(pt))
    fs.cpSync(pt, copy, { recursive: true })
    expect(path.basename(graphSource(copy, cache, "copy").file)).toBe(path.basename(g1.file)) // same content, same key
    // the same tensors under another archive root move every offset: another graph
    const moved = path.join(tmp, "pt-moved", path.basename(pt))
    fs.cpSync(pt, moved, { recursive: true })
    const w = checkpointWeights(pt)
    const tensors = Object.fromEntries(Object.entries(w).map(([n, r]) => [n, { dtype: r.dtype as "F16", shape: r.shape, data: new Uint8Array(fs.readFileSync(r.file).subarray(r.offset, r.offset + r.length)) }]))
    writeTorchBin(path.join(moved, "pytorch_model.bin"), tensors, { root: "archive" })
    expect(graphSource(moved, cache, "moved").file).not.toBe(g1.file)
    // both formats in one folder: the safetensors are read
    fs.copyFileSync(path.join(pt, "pytorch_model.bin"), path.join(st, "pytorch_model.bin"))
    expect(new Set(Object.values(checkpointWeights(st)).map((r) => path.basename(r.file)))).toEqual(new Set(["model.safetensors"]))
    expect(hfFolderFiles(st).map((f) => path.basename(f))).toEqual(["config.json", "model.safetensors"])
  })
})

describe("a pickle-only Hub revision", () => {
  it("is fetched (index + shards) into the cache and built from the blobs in place", async () => {
    const st = path.join(tmp, "hub-st")
    const pt = path.join(tmp, "hub-pt")
    writeRandomCheckpoint(st, { arch: "gpt_neox", dtype: "F16", seed: 9 })
    const files = torchTwin(st, pt, { shards: 2 })
    const hub = await startMockHub({ repos: { "org/old": { revisions: { step1000: { files: Object.fromEntries(files.map((f) => [f, new Uint8Array(fs.readFileSync(path.join(pt, f)))])) } } } } })
    try {
      const settings = { ...hubSettingsFromEnv({}, "/nonexistent"), endpoint: hub.url, cacheDir: path.join(tmp, "hf-cache"), retry: { attempts: 2, baseMs: 5, maxMs: 20 } }
      const snap = await Effect.runPromise(makeHub(settings).fetchCheckpoint("org/old", "step1000"))
      expect(snap.files.map((f) => f.file)).toEqual(["config.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"])
      const built = buildHfGraph(snap.folder)
      expect(built.externalFolder).toBe(fs.realpathSync(path.join(settings.cacheDir, "models--org--old", "blobs")))
      const [a, b] = [await run(buildHfGraph(st), SEQUENCES), await run(built, SEQUENCES)]
      expect(maxAbs(a.logits, b.logits)).toBeLessThanOrEqual(1e-6)
    } finally {
      await hub.close()
    }
  })
})

// ---------------------------------------------------------------------------------------------

describe("errors: one line naming the file", () => {
  const oneLine = (f: () => unknown, file: string, why: RegExp) => {
    let msg = ""
    try {
      f()
    } catch (e) {
      msg = (e as Error).message
    }
    expect(msg.split("\n")).toHaveLength(1)
    expect(msg.startsWith(`${file}: not a readable torch.save file: `), msg).toBe(true)
    expect(msg).toMatch(why)
  }
  const tensors = { w: { dtype: "F32", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) } } as const

  it("a compressed entry", () => {
    const file = path.join(tmp, "err", "deflated.bin")
    writeTorchBin(file, tensors, { compress: true })
    oneLine(() => readTorchBin(file), file, /entry deflated\/data\/0 is compressed \(method 8\)/)
  })

  it("a non-contiguous stride (written by real PyTorch), also through buildHfGraph", () => {
    const file = path.join(FIXTURES, "strided.bin")
    oneLine(() => readTorchBin(file), file, /tensor "t" has strides \[1,3\] for shape \[3,2\], not contiguous row-major/)
    const dir = path.join(tmp, "err", "strided-folder")
    writeRandomCheckpoint(dir, { arch: "gpt2" })
    fs.rmSync(path.join(dir, "model.safetensors"))
    fs.copyFileSync(file, path.join(dir, "pytorch_model.bin"))
    oneLine(() => buildHfGraph(dir), path.join(dir, "pytorch_model.bin"), /not contiguous/)
  })

  it("a global outside the allow-list (os.system) is refused before anything runs", () => {
    const file = path.join(tmp, "err", "evil.bin")
    writeTorchBin(file, tensors, { rebuild: "os.system" })
    oneLine(() => readTorchBin(file), file, /evil\/data\.pkl: refused global os\.system .* at byte \d+ of the pickle/)
  })

  it("an unsupported opcode names it", () => {
    const file = path.join(tmp, "err", "opcode.bin")
    const bytes = writeTorchBin(file, tensors)
    const at = bytes.indexOf(Buffer.from("\x89", "latin1"), bytes.indexOf("cpu")) // NEWFALSE → INST (0x69)
    bytes[at] = 0x69
    fs.writeFileSync(file, bytes)
    oneLine(() => readTorchBin(file), file, /unsupported pickle opcode 0x69 INST at byte \d+/)
  })

  it("a truncated zip", () => {
    const file = path.join(tmp, "err", "cut.bin")
    const bytes = writeTorchBin(file, tensors)
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 40))
    oneLine(() => readTorchBin(file), file, /no ZIP end-of-central-directory record \(truncated, or not a ZIP file\)/)
    fs.writeFileSync(file, bytes.subarray(0, 200))
    oneLine(() => readTorchBin(file), file, /no ZIP end-of-central-directory record/)
  })

  it("the legacy (PyTorch < 1.6) format", () => {
    const file = path.join(tmp, "err", "legacy.bin")
    fs.writeFileSync(file, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]))
    oneLine(() => readTorchBin(file), file, /the legacy \(PyTorch < 1\.6\) format/)
  })
})
