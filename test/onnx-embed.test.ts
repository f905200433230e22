/**
 * Sequence embeddings (lib/onnx/embed.ts): the final hidden state at each row's last token.
 *
 * What ties the vector to the real hidden state, independently of the rewrite: the embedding e of
 * a row, multiplied here in float64 by the output layer's weight W as the ORIGINAL model stores it
 * (its initializer, through the Cast / Transpose the graph applies to it, transB and alpha of a
 * FusedMatMul), then the per-position ops between that MatMul and `logits` (a bias Add), equals
 * the logits the original graph computes at the row's last position in a plain onnxruntime session
 * (fed by this file, not by feeds.ts). On the zoo (fp16 weights cast to float, tied head through a
 * Transpose), on graphs built from Hugging Face folders (FusedMatMul transB, bf16 / fp16 weights
 * read in place from safetensors), on an Optimum "decoder with past" export (position_ids, an empty
 * past) and on a model whose hidden state reads attention_mask and position_ids.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import * as ort from "onnxruntime-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openEmbedder, withEmbedder, type Embedder } from "../lib/onnx/embed.ts"
import { HIDDEN } from "../lib/onnx/head.ts"
import { buildHfGraph } from "../lib/onnx/hf/build.ts"
import { DT, GraphBuilder, decodeModel, int, valueInfo, type IGraphProto, type INodeProto } from "../lib/onnx/proto.ts"
import { withScorer } from "../lib/onnx/scorer.ts"
import { gptModel, gptWeights, linearModel, linearWeights, maskedModel, maskedWeights, optimumModel, rng, saveModel, toModel } from "./fixtures/onnx.ts"
import { VARIANTS } from "./fixtures/hf-variants.ts"
import { toF16, writeRandomCheckpoint } from "./fixtures/safetensors.ts"

const root = path.join(import.meta.dirname, "..")
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onnx-embed-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

// ---------------------------------------------------------------------------------------------
// The original model, read and run here

const f16 = (h: number): number => {
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15)
  return h & 0x8000 ? -v : v
}
const bf16 = (h: number): number => new Float32Array(new Uint32Array([h << 16]).buffer)[0]

/** A constant of the original graph as float64: an initializer (inline or external), a Constant, or a Cast / Identity / Transpose of one. */
const constant = (g: IGraphProto, folder: string, name: string): { dims: number[]; data: Float64Array } => {
  const t = (g.initializer ?? []).find((x) => x.name === name) ?? (g.node ?? []).find((n) => n.opType === "Constant" && n.output![0] === name)?.attribute?.[0]?.t
  if (t) {
    const dims = (t.dims ?? []).map((d) => int(d))
    let raw: Uint8Array | undefined = t.rawData && t.rawData.length > 0 ? t.rawData : undefined
    const ext = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]))
    if (ext.location) {
      const buf = Buffer.alloc(Number(ext.length))
      const fd = fs.openSync(path.join(folder, ext.location), "r")
      fs.readSync(fd, buf, 0, buf.length, Number(ext.offset ?? 0))
      fs.closeSync(fd)
      raw = buf
    }
    const view = raw ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : undefined
    const n = dims.reduce((a, d) => a * d, 1)
    const data = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      if (t.dataType === DT.FLOAT) data[i] = view ? view.getFloat32(4 * i, true) : t.floatData![i]
      else if (t.dataType === DT.FLOAT16) data[i] = f16(view ? view.getUint16(2 * i, true) : t.int32Data![i])
      else if (t.dataType === DT.BFLOAT16) data[i] = bf16(view ? view.getUint16(2 * i, true) : t.int32Data![i])
      else throw new Error(`constant ${name}: element type ${t.dataType} not read by this test`)
    }
    return { dims, data }
  }
  const n = (g.node ?? []).find((x) => (x.output ?? []).includes(name))
  if (n?.opType === "Cast" || n?.opType === "Identity") return constant(g, folder, n.input![0])
  if (n?.opType === "Transpose") {
    const { dims, data } = constant(g, folder, n.input![0])
    if (dims.length !== 2) throw new Error("only 2-D transposes here")
    const out = new Float64Array(data.length)
    for (let i = 0; i < dims[0]; i++) for (let j = 0; j < dims[1]; j++) out[j * dims[0] + i] = data[i * dims[1] + j]
    return { dims: [dims[1], dims[0]], data: out }
  }
  throw new Error(`"${name}" is not a constant this test reads (${n?.opType ?? "no producer"})`)
}

const isConstant = (g: IGraphProto, name: string): boolean =>
  (g.initializer ?? []).some((t) => t.name === name) ||
  (g.node ?? []).some((n) => (n.output ?? []).includes(name) && (n.opType === "Constant" || ((n.input ?? []).length > 0 && (n.input ?? []).every((i) => isConstant(g, i)))))

/**
 * The logits [V] that the original graph's output layer makes of a hidden vector e [d]: walk back
 * from `logits` to the MatMul / FusedMatMul, multiply by its weight, then the ops after it.
 */
const logitsOf = (g: IGraphProto, folder: string, e: Float32Array): Float64Array => {
  const producer = (x: string) => (g.node ?? []).find((n) => (n.output ?? []).includes(x))!
  const after: INodeProto[] = []
  let n = producer("logits")
  while (n.opType !== "MatMul" && n.opType !== "FusedMatMul") {
    after.unshift(n)
    n = producer(n.input!.find((i) => !isConstant(g, i))!)
  }
  const w = constant(g, folder, n.input![1])
  const attr = (k: string) => n.attribute?.find((a) => a.name === k)
  const transB = int(attr("transB")?.i) === 1
  const alpha = attr("alpha")?.f ?? 1
  const [d, V] = transB ? [w.dims[1], w.dims[0]] : w.dims
  expect(e.length).toBe(d)
  let z = new Float64Array(V)
  for (let v = 0; v < V; v++) {
    let s = 0
    for (let k = 0; k < d; k++) s += e[k] * w.data[transB ? v * d + k : k * V + v]
    z[v] = alpha * s
  }
  for (const op of after) {
    if (op.opType === "Cast" || op.opType === "Identity") continue
    const ci = op.input!.findIndex((i) => isConstant(g, i))
    const c = constant(g, folder, op.input![ci]).data
    const f = { Add: (a: number, b: number) => a + b, Sub: (a: number, b: number) => a - b, Mul: (a: number, b: number) => a * b, Div: (a: number, b: number) => a / b }[op.opType as "Add"]
    if (!f) throw new Error(`op ${op.opType} after the output layer is not one this test applies`)
    z = z.map((x, v) => (ci === 1 ? f(x, c[c.length === 1 ? 0 : v]) : f(c[c.length === 1 ? 0 : v], x)))
  }
  return z
}

/** The original graph's logits at the last position of `ids`, run alone (batch 1, no padding), fed by this test. */
const lastLogits = async (s: ort.InferenceSession, ids: Int32Array): Promise<Float32Array> => {
  const n = ids.length
  const ints = (type: string, xs: number[]) =>
    type === "int32" ? new ort.Tensor("int32", Int32Array.from(xs), [1, n]) : new ort.Tensor("int64", BigInt64Array.from(xs, BigInt), [1, n])
  const feeds: Record<string, ort.Tensor> = {}
  for (const m of s.inputMetadata) {
    if (!m.isTensor) throw new Error(m.name)
    if (m.name === "input_ids") feeds[m.name] = ints(m.type, [...ids])
    else if (m.name === "attention_mask") feeds[m.name] = ints(m.type, new Array(n).fill(1))
    else if (m.name === "position_ids") feeds[m.name] = ints(m.type, [...ids.keys()])
    else if (m.name.startsWith("past_key_values")) {
      const dims = m.shape.map((x, i) => (typeof x === "number" ? x : i === 0 ? 1 : 0))
      feeds[m.name] = new ort.Tensor(m.type as "float32", m.type === "float64" ? new Float64Array(0) : new Float32Array(0), dims)
    } else if (m.name === "use_cache_branch") feeds[m.name] = new ort.Tensor("bool", Uint8Array.of(0), [1])
    else throw new Error(`input ${m.name} is not fed by this test`)
  }
  const out = await s.run(feeds, ["logits"])
  const V = out.logits.dims[2]
  return (out.logits.data as Float32Array).slice((n - 1) * V, n * V)
}

/** Rows of ids below `vocab`, of the given lengths, from a seeded PRNG. */
const rowsOf = (vocab: number, lengths: ReadonlyArray<number>, seed: number): Int32Array[] => {
  const r = rng(seed)
  return lengths.map((n) => Int32Array.from({ length: n }, () => Math.floor(r() * vocab)))
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

// ---------------------------------------------------------------------------------------------
// e · W = the original logits; padding does not change e

interface Case {
  readonly name: string
  /** What openEmbedder opens: an ONNX file or a Hugging Face folder. */
  readonly checkpoint: () => string
  /** The original graph, the folder its external data resolves against, and a plain session on it. */
  readonly original: (checkpoint: string) => Promise<{ graph: IGraphProto; folder: string; session: ort.InferenceSession }>
  readonly vocab: number
  readonly contextLength: number
  readonly lengths: ReadonlyArray<number>
}

const onnxFile = async (file: string) => ({ graph: decodeModel(fs.readFileSync(file)).graph!, folder: path.dirname(file), session: await ort.InferenceSession.create(file) })
const hfFolder = (name: string) => () => {
  const folder = path.join(tmp, name)
  if (!fs.existsSync(folder)) writeRandomCheckpoint(folder, VARIANTS.find((v) => v.name === name)!.spec)
  return folder
}
const hfOriginal = async (folder: string) => {
  const b = buildHfGraph(folder)
  const session = await ort.InferenceSession.create(b.model, { extra: { session: { model_external_initializers_file_folder_path: b.externalFolder } } })
  return { graph: decodeModel(b.model).graph!, folder: b.externalFolder, session }
}

const CASES: ReadonlyArray<Case> = [
  { name: "zoo tiny step 908", checkpoint: () => path.join(root, "zoo/tiny/step-908.onnx"), original: onnxFile, vocab: 1024, contextLength: 128, lengths: [1, 17, 128, 5, 40] },
  { name: "zoo base step 8", checkpoint: () => path.join(root, "zoo/base/step-8.onnx"), original: onnxFile, vocab: 1024, contextLength: 128, lengths: [3, 64, 2] },
  { name: "HF gpt2 (tied head, FusedMatMul transB)", checkpoint: hfFolder("gpt2-prefix-tied"), original: hfOriginal, vocab: 96, contextLength: 32, lengths: [14, 1, 7, 32] },
  { name: "HF llama (bf16 weights, biases)", checkpoint: hfFolder("llama-bias-bf16-sharded"), original: hfOriginal, vocab: 96, contextLength: 32, lengths: [9, 30, 2] },
  { name: "HF opt (untied fp16 head)", checkpoint: hfFolder("opt-untied-f16"), original: hfOriginal, vocab: 96, contextLength: 32, lengths: [6, 20, 1] },
  {
    name: "Optimum decoder with past (position_ids, empty past)",
    checkpoint: () => saveModel(gptModel(gptWeights({ vocab: 64, context: 32, layers: 2, dim: 32, heads: 4, seed: 9 }), { kvCache: true }), tmp, "gpt-kv.onnx"),
    original: onnxFile,
    vocab: 64,
    contextLength: 32,
    lengths: [32, 4, 11],
  },
  {
    name: "masked (hidden state reads attention_mask and position_ids), weights external",
    checkpoint: () => saveModel(maskedModel(maskedWeights({ seed: 5 })), tmp, "masked.onnx", { externalData: "data/masked.bin" }),
    original: onnxFile,
    vocab: 13,
    contextLength: 16,
    lengths: [16, 3, 9, 1],
  },
]

for (const c of CASES) {
  describe(c.name, () => {
    let e: Embedder
    let original: Awaited<ReturnType<Case["original"]>>
    let rows: Int32Array[]
    let batched: Float32Array[]
    beforeAll(async () => {
      const checkpoint = c.checkpoint()
      e = await openEmbedder(checkpoint, { contextLength: c.contextLength, batchSize: 2, threads: 1, cacheDir: path.join(tmp, "cache") }, c.name)
      original = await c.original(checkpoint)
      rows = rowsOf(c.vocab, c.lengths, c.lengths.length * 7 + c.vocab)
      batched = await e.embed(rows) // batches of 2, longest first: every row but the longest is padded
    })
    afterAll(async () => {
      await e?.close()
      await original?.session.release()
    })

    it("e · W (+ the ops after the output layer) equals the original graph's logits at the last token", async () => {
      expect(batched).toHaveLength(rows.length)
      for (const [i, row] of rows.entries()) {
        expect(batched[i]).toBeInstanceOf(Float32Array)
        expect(batched[i].length).toBe(e.dim)
        const want = await lastLogits(original.session, row)
        expect(maxAbs(logitsOf(original.graph, original.folder, batched[i]), want)).toBeLessThan(1e-4)
      }
    })

    it("a row embedded alone equals the same row embedded in a batch with longer rows", async () => {
      for (const [i, row] of rows.entries()) expect(maxAbs((await e.embed([row]))[0], batched[i])).toBeLessThan(1e-5)
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Exact hidden states, the rewritten graph, the cache, errors

describe("the hidden-state graph", () => {
  it("is the output layer's input exactly: emb[last id] for the linear fixture, float32 from an fp16 model", async () => {
    const lw = linearWeights({ vocab: 40, dim: 16, seed: 4 })
    const rows = rowsOf(40, [5, 1, 3], 2)
    const lin = await openEmbedder(saveModel(linearModel(lw, { idsType: "int32", logitsType: "float16" }), tmp, "linear.onnx"), { contextLength: 8, threads: 1 }, "linear")
    const got = await lin.embed(rows)
    await lin.close()
    rows.forEach((r, i) => expect(got[i]).toEqual(lw.emb.slice(r[r.length - 1] * 16, (r[r.length - 1] + 1) * 16)))

    // An fp16 model: fp16 embedding → fp16 hidden state → fp16 MatMul → fp16 logits.
    const g = new GraphBuilder(14)
    const bits = Uint16Array.from(lw.emb, toF16)
    g.initializers.push({ name: "emb16", dims: [40, 16], dataType: DT.FLOAT16, rawData: new Uint8Array(bits.buffer) })
    g.initializers.push({ name: "w16", dims: [16, 40], dataType: DT.FLOAT16, rawData: new Uint8Array(Uint16Array.from(lw.w, toF16).buffer) })
    g.op("MatMul", [g.op("Gather", ["emb16", "input_ids"], { axis: 0 }), "w16"], {}, "logits")
    const m = toModel(g, [valueInfo("input_ids", DT.INT64, ["batch", "seq"])], [valueInfo("logits", DT.FLOAT16, ["batch", "seq", 40])])
    const half = await openEmbedder(saveModel(m, tmp, "half.onnx"), { contextLength: 8, threads: 1 }, "half")
    const got16 = await half.embed(rows)
    await half.close()
    rows.forEach((r, i) => {
      expect(got16[i]).toBeInstanceOf(Float32Array)
      expect([...got16[i]]).toEqual([...bits.slice(r[r.length - 1] * 16, (r[r.length - 1] + 1) * 16)].map(f16))
    })
  })

  it("outputs trajectories/hidden for input trajectories/last, without the output layer or logits; cached apart from the score graphs", async () => {
    const file = path.join(root, "zoo/tiny/step-908.onnx")
    const cacheDir = path.join(tmp, "cache-tiny")
    const o = { contextLength: 128, threads: 1, cacheDir }
    const first = await openEmbedder(file, o, "tiny")
    const v1 = await first.embed(rowsOf(1024, [9, 4], 3))
    await first.close()
    expect(first.graph).toBe("rewritten")

    const [cached] = fs.readdirSync(path.join(cacheDir, "embed-graphs"))
    const g = decodeModel(fs.readFileSync(path.join(cacheDir, "embed-graphs", cached))).graph!
    // The weights stay in the checkpoint: the graph refers to their bytes there.
    const wte = g.initializer!.find((t) => t.name === "wte.weight_fp16")!
    expect(wte.dataLocation).toBe(1) // EXTERNAL
    expect(wte.externalData!.find((x) => x.key === "location")!.value).toBe("step-908.onnx")
    expect((g.input ?? []).map((i) => i.name)).toEqual(["input_ids", "attention_mask", HIDDEN.last])
    expect((g.output ?? []).map((x) => x.name)).toEqual([HIDDEN.hidden])
    // The original's output layer: MatMul(hidden, Transpose(wte)) → logits. Neither it nor the Transpose is left.
    const orig = decodeModel(fs.readFileSync(file)).graph!
    const head = orig.node!.find((n) => n.output![0] === "logits")!
    expect(head.opType).toBe("MatMul")
    const produced = new Set(g.node!.flatMap((n) => n.output ?? []))
    expect(produced.has("logits")).toBe(false)
    expect(produced.has(head.input![1])).toBe(false)
    expect(g.node!.filter((n) => (n.input ?? []).includes(head.input![0])).map((n) => n.opType).sort()).toEqual(["Flatten", "Shape"]) // the hidden state: read by the new Flatten and Shape only
    expect(g.node!.filter((n) => n.opType === "MatMul").length).toBe(orig.node!.filter((n) => n.opType === "MatMul").length - 1)

    // A scorer on the same cache folder keeps its own graph; the embedder's is reused.
    await Effect.runPromise(withScorer(file, { threads: 1, cacheDir }, (s) => s.scoreAll([{ ids: Int32Array.of(1, 2, 3), firstTarget: 1 }])))
    expect(fs.readdirSync(path.join(cacheDir, "score-graphs"))).toHaveLength(1)
    const again = await openEmbedder(file, o, "tiny")
    const v2 = await again.embed(rowsOf(1024, [9, 4], 3))
    await again.close()
    expect(again.graph).toBe("cached")
    expect(fs.readdirSync(path.join(cacheDir, "embed-graphs"))).toEqual([cached])
    v2.forEach((v, i) => expect(v).toEqual(v1[i]))
  })
})

describe("errors", () => {
  const oneLine = async <A>(eff: Effect.Effect<A, unknown>): Promise<string> => {
    const r = await Effect.runPromise(Effect.either(eff))
    if (Either.isRight(r)) throw new Error("expected a failure")
    expect((r.left as { _tag?: string })._tag).toBe("OnnxError")
    const msg = (r.left as Error).message
    expect(msg.split("\n")).toHaveLength(1)
    return msg
  }

  it("a graph whose output layer cannot be found fails in one line saying why", async () => {
    const file = saveModel(optimumModel(maskedWeights(), { layers: 1 }), tmp, "optimum-if.onnx")
    const msg = await oneLine(withEmbedder(file, { contextLength: 16, threads: 1, label: "m step 1" }, () => Effect.void))
    expect(msg).toMatch(/^m step 1: cannot output the hidden state the output layer reads: logits come from If/)
  })

  it("a row longer than the context, or empty, is an error naming the row (the caller truncates)", async () => {
    const file = path.join(root, "zoo/tiny/step-908.onnx")
    const run = (rows: Int32Array[]) =>
      oneLine(withEmbedder(file, { contextLength: 128, threads: 1, label: "tiny" }, (e) => Effect.tryPromise({ try: () => e.embed(rows), catch: (x) => x })))
    expect(await run([Int32Array.of(1, 2), new Int32Array(129)])).toMatch(/^tiny: row 1 has 129 tokens, more than the context length 128/)
    expect(await run([Int32Array.of(1), new Int32Array(0)])).toMatch(/^tiny: row 1 has no tokens/)
    // Exactly the context length is fine, and an empty call returns nothing.
    const ok = await Effect.runPromise(
      withEmbedder(file, { contextLength: 128, threads: 1 }, (e) => Effect.promise(() => Promise.all([e.embed([new Int32Array(128)]), e.embed([])]))),
    )
    expect(ok[0]).toHaveLength(1)
    expect(ok[1]).toEqual([])
  })
})
