/**
 * The score stage's pure parts: batch plans, padding, TypeScript log-softmax, float16 decoding,
 * the ONNX header scanner, the rewrite plan, and the Arrow tables in and out.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { decodeParquet, encodeParquet } from "../pipeline/store.ts"
import { ScoresWithEntropy } from "../stages/score/contract.ts"
import { firstNonFinite, halfToFloat, logSoftmaxTargets, padRight, planBatches } from "../lib/onnx/batching.ts"
import { DT, decodeModel, valueInfo, type IModelProto } from "../lib/onnx/proto.ts"
import { NotOnnx, externalizeWeights, readModelHeader } from "../lib/onnx/file.ts"
import { IN, OUT, findSignature, planPositionsHead, planRewrite, type Signature } from "../lib/onnx/head.ts"
import { scoresTable, windowsOf } from "../stages/score/tables.ts"
import { slidingWindows, windowsTable } from "./fixtures/windows.ts"
import { linearModel, linearWeights, maskedWeights, normal, optimumModel, referenceScores, rng, saveModel } from "./fixtures/onnx.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-score-core-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

describe("batch plan and padding", () => {
  it("sorts longest first (stable) and cuts batches of batchSize", () => {
    expect(planBatches([5, 9, 3, 9], 2)).toEqual([[1, 3], [0, 2]])
    expect(planBatches([4, 4, 4], 2)).toEqual([[0, 1], [2]])
    expect(planBatches([], 8)).toEqual([])
  })

  it("pads right with id 0 and mask 0", () => {
    const b = padRight([Int32Array.of(5, 6, 7), Int32Array.of(8)])
    expect([b.rows, b.cols]).toEqual([2, 3])
    expect([...b.ids]).toEqual([5, 6, 7, 8, 0, 0])
    expect([...b.mask]).toEqual([1, 1, 1, 1, 0, 0])
  })
})

describe("TypeScript log-softmax (the fallback path)", () => {
  it("matches a float64 reference for the targets of one row of a padded batch", () => {
    const vocab = 17
    const cols = 6
    const logits = normal(rng(9), 2 * cols * vocab, 3)
    const ids = Int32Array.of(3, 16, 0, 5, 9)
    const lp = new Float32Array(3)
    const h = new Float32Array(3)
    logSoftmaxTargets(logits, cols, vocab, 1, ids, 2, lp, h)
    const row1 = Float64Array.from(logits.subarray(cols * vocab, 2 * cols * vocab))
    const want = referenceScores(row1, vocab, ids, 2)
    want.logprob.forEach((x, k) => expect(lp[k]).toBeCloseTo(x, 5))
    want.entropy.forEach((x, k) => expect(h[k]).toBeCloseTo(x, 5))
  })

  it("decodes float16 bits", () => {
    const f = halfToFloat(Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x7c00, 0xfc00, 0x7e00))
    expect([...f.subarray(0, 5)]).toEqual([1, -2, 65504, 2 ** -24, Math.fround(0.333251953125)])
    expect([f[5], f[6]]).toEqual([Infinity, -Infinity])
    expect(Number.isNaN(f[7])).toBe(true)
  })

  it("decodes float16 from any view of the bits: a Float16Array where the runtime has one (ORT's output on Node 24+)", () => {
    const bits = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555)
    const want = [...halfToFloat(bits)]
    expect([...halfToFloat(new Uint8Array(bits.buffer))]).toEqual(want)
    const F16 = (globalThis as { Float16Array?: new (b: ArrayBufferLike) => ArrayBufferView }).Float16Array
    if (F16) expect([...halfToFloat(new F16(bits.buffer))]).toEqual(want)
  })

  it("finds the first non-finite value", () => {
    expect(firstNonFinite(Float32Array.of(0, -1, 2))).toBe(-1)
    expect(firstNonFinite(Float32Array.of(0, -Infinity, NaN))).toBe(1)
  })
})

describe("ONNX header scanner", () => {
  it("reads opset, inputs, outputs, element types and shapes without loading weights", () => {
    const f = saveModel(optimumModel(maskedWeights(), { layers: 1, heads: 2, headDim: 3, pastType: "float16" }), tmp, "opt.onnx")
    const h = readModelHeader(f)
    expect(h.opset).toBe(14)
    expect(h.irVersion).toBe(8)
    expect(h.externalData).toBe(false)
    expect(h.inputs.map((i) => i.name)).toEqual([
      "input_ids",
      "attention_mask",
      "position_ids",
      "past_key_values.0.key",
      "past_key_values.0.value",
      "use_cache_branch",
    ])
    expect(h.inputs[3]).toEqual({ name: "past_key_values.0.key", elemType: DT.FLOAT16, dims: ["batch", 2, "past_seq", 3] })
    expect(h.inputs[5]).toEqual({ name: "use_cache_branch", elemType: DT.BOOL, dims: [1] })
    expect(h.outputs.map((o) => o.name)).toEqual(["logits", "present.0.key", "present.0.value"])
  })

  it("notices external data", () => {
    const f = saveModel(linearModel(linearWeights({ vocab: 30, dim: 8 })), path.join(tmp, "ext"), "m.onnx", { externalData: "w.bin" })
    expect(readModelHeader(f).externalData).toBe(true)
  })

  it("externalizes large inline weights into references to the model file itself", () => {
    const w = linearWeights({ vocab: 40, dim: 16, seed: 4 })
    const f = saveModel(linearModel(w), tmp, "big.onnx")
    const bytes = externalizeWeights(f)
    expect(bytes.length).toBeLessThan(fs.statSync(f).size / 4)
    const original = fs.readFileSync(f)
    const m = decodeModel(bytes)
    const inits = m.graph!.initializer ?? []
    const moved = inits.filter((t) => t.dataLocation === 1)
    expect(moved.map((t) => t.name).sort()).toEqual([...inits].filter((t) => (t.dims ?? []).length === 2).map((t) => t.name).sort())
    for (const t of moved) {
      const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]))
      expect(kv.location).toBe("big.onnx")
      expect(t.rawData?.length ?? 0).toBe(0)
      const data = original.subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length))
      const want = (t.dims ?? []).map(Number)[0] === 40 ? w.emb : w.w // [vocab, dim] or [dim, vocab]
      expect(Buffer.from(data).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true)
    }
    // The 160-byte bias stays inline; nodes, inputs and outputs are unchanged.
    expect(inits.find((t) => (t.dims ?? []).length === 1)?.rawData?.length).toBe(160)
    expect(m.graph!.node).toEqual(decodeModel(original).graph!.node)
    expect(readModelHeader(f).inputs).toEqual([{ name: "input_ids", elemType: DT.INT64, dims: ["batch", "seq"] }])
  })

  it("rejects what is not a ModelProto", () => {
    for (const [name, bytes] of [
      ["text", Buffer.from("hello world, not a model")],
      ["empty", Buffer.alloc(0)],
      ["truncated", fs.readFileSync(saveModel(linearModel(linearWeights()), tmp, "whole.onnx")).subarray(0, 100)],
    ] as const) {
      fs.writeFileSync(path.join(tmp, name), bytes)
      expect(() => readModelHeader(path.join(tmp, name))).toThrow(NotOnnx)
    }
  })
})

describe("rewrite plan", () => {
  const header = (opset: number | undefined, logitsType = DT.FLOAT, idsType = DT.INT64) => ({
    irVersion: 8,
    opset,
    inputs: [{ name: "input_ids", elemType: idsType, dims: ["b", "s"] }],
    outputs: [{ name: "logits", elemType: logitsType, dims: ["b", "s", 7] }],
    externalData: false,
  })
  const sigOf = (h: ReturnType<typeof header>) => findSignature(h) as Signature

  it("says why a graph cannot take the head", () => {
    const reason = (h: ReturnType<typeof header>) => {
      const p = planRewrite(h, sigOf(h), { entropy: false })
      return p.ok ? "ok" : p.reason
    }
    expect(reason(header(undefined))).toBe("the model imports no ai.onnx opset")
    expect(reason(header(10))).toBe("opset 10 < 11 has no GatherElements")
    expect(reason(header(14, DT.INT32))).toBe("logits have element type INT32")
    expect(reason(header(14, DT.FLOAT, DT.FLOAT))).toBe("input_ids have element type FLOAT")
    expect(reason(header(14, DT.FLOAT16))).toBe("ok")
  })

  it("names what is missing", () => {
    expect(findSignature({ ...header(14), inputs: [] })).toBe('the model has no input "input_ids" (its inputs: none)')
    expect(findSignature({ ...header(14), outputs: [{ name: "out", elemType: 1, dims: undefined }] })).toBe(
      'the model has no output "logits" (its outputs: out)',
    )
    expect(findSignature({ ...header(14), outputs: [{ name: "logits", elemType: 1, dims: ["b", 7] }] })).toMatch(/rank 2/)
  })

  it("appends log-sum-exp and GatherElements of the next token over the logits as they are (no vocabulary-sized copy), entropy and the logits shape, with axes per opset", () => {
    const ops = (opset: number, entropy: boolean, logitsType = DT.FLOAT) => {
      const h = header(opset, logitsType)
      const p = planRewrite(h, sigOf(h), { entropy })
      if (!p.ok) throw new Error(p.reason)
      const g = decodeModel(p.fragment).graph!
      const nodes = g.node ?? []
      return {
        g,
        ops: nodes.map((n) => `${n.opType}(${(n.input ?? []).length})`),
        outputs: (g.output ?? []).map((o) => o.name),
        /** The ops that read the logits (or their float cast). */
        readers: (name: string) => nodes.filter((n) => (n.input ?? []).includes(name)).map((n) => n.opType),
        castOf: (name: string) => nodes.find((n) => n.opType === "Cast" && n.input?.[0] === name)?.output?.[0],
      }
    }
    const v14 = ops(14, false)
    expect(v14.readers("logits").sort()).toEqual(["GatherElements", "ReduceLogSumExp", "Shape"])
    expect(v14.ops).not.toContain("LogSoftmax(1)")
    expect(v14.ops.filter((o) => o.startsWith("ReduceLogSumExp"))).toEqual(["ReduceLogSumExp(1)"]) // axes an attribute before opset 18
    expect(v14.outputs).toEqual([OUT.logprob, OUT.logitsShape])
    // Entropy: one temporary of the logits' size, exp(logits − lse).
    const e14 = ops(14, true)
    expect(e14.readers("logits").sort()).toEqual(["GatherElements", "Mul", "ReduceLogSumExp", "Shape", "Sub"])
    expect(e14.outputs).toEqual([OUT.logprob, OUT.entropy, OUT.logitsShape])
    expect(ops(18, false).ops.filter((o) => o.startsWith("ReduceLogSumExp"))).toEqual(["ReduceLogSumExp(2)"]) // axes an input from 18
    // Opset 11: float16 logits are cast once, and only the cast is read.
    const v11 = ops(11, false, DT.FLOAT16)
    const cast = v11.castOf("logits")!
    expect(v11.readers("logits").sort()).toEqual(["Cast", "Shape"])
    expect(v11.readers(cast).sort()).toEqual(["GatherElements", "ReduceLogSumExp"])
    expect(v11.outputs).toEqual([OUT.logprob, OUT.logitsShape])
    // Only new pieces are in the fragment: no graph name, no inputs, nothing that would overwrite the model's fields.
    expect(v11.g.name).toBe("")
    expect(v11.g.input).toEqual([])
  })
})

describe("head on scored positions (plan)", () => {
  const plan = (m: IModelProto, entropy = false) => {
    const f = saveModel(m, tmp, "pos.onnx")
    const h = readModelHeader(f)
    return planPositionsHead(externalizeWeights(f), h, findSignature(h) as Signature, { entropy })
  }
  const lw = linearWeights({ vocab: 40, dim: 16, seed: 4 })

  it("replaces MatMul → Add(bias) → Cast → logits by the same ops on the gathered positions, and drops the logits output", () => {
    const p = plan(linearModel(lw, { logitsType: "float16" }), true)
    if (!p.ok) throw new Error(p.reason)
    const g = decodeModel(p.bytes).graph!
    const nodes = g.node ?? []
    const producerOf = (x: string) => nodes.find((n) => (n.output ?? []).includes(x))
    expect(producerOf("logits")).toBeUndefined()
    expect((g.output ?? []).map((o) => o.name)).toEqual([OUT.logprob, OUT.entropy, OUT.logitsShape])
    expect((g.input ?? []).map((i) => i.name)).toEqual(["input_ids", IN.positions, IN.targets])
    // The log-prob is the first n of the Loop's scan; inside its body, walking back from the scan:
    // Sub ← Squeeze ← GatherElements ← Cast(float) ← Cast(fp16) ← Add ← MatMul ← Gather(a chunk of the positions).
    const loop = nodes.find((n) => n.opType === "Loop")!
    const body = loop.attribute!.find((a) => a.name === "body")!.g!
    const inBody = (x: string) => body.node!.find((n) => (n.output ?? []).includes(x))
    const chain: string[] = []
    for (let n = inBody(body.output![1].name!); n !== undefined; n = inBody(n.input![0])) {
      chain.push(n.opType!)
      if (n.opType === "Gather") break
    }
    expect(chain).toEqual(["Sub", "Squeeze", "GatherElements", "Cast", "Cast", "Add", "MatMul", "Gather"])
    expect(body.output!.map((o) => o.name).length).toBe(4) // cond, log-prob, entropy, shape
    // One MatMul by the output layer's weight remains: the new one, on [n, d].
    const weight = decodeModel(fs.readFileSync(saveModel(linearModel(lw), tmp, "w.onnx"))).graph!.node!.find((n) => n.opType === "MatMul")!.input![1]
    expect(nodes.filter((n) => (n.input ?? []).includes(weight))).toEqual([])
    expect(body.node!.filter((n) => (n.input ?? []).includes(weight)).map((n) => n.opType)).toEqual(["MatMul"])
  })

  it("says why a graph's output layer cannot be found", () => {
    const reason = (m: IModelProto) => {
      const p = plan(m)
      return p.ok ? "ok" : p.reason
    }
    expect(reason(optimumModel(maskedWeights(), { layers: 1 }))).toMatch(/^logits come from (Where|If|Neg|Mul)/)
    // The weight is a graph input, not a constant.
    const m1 = linearModel(lw)
    const mm = m1.graph!.node!.find((n) => n.opType === "MatMul")!
    m1.graph!.initializer = m1.graph!.initializer!.filter((t) => t.name !== mm.input![1])
    m1.graph!.input!.push(valueInfo(mm.input![1], DT.FLOAT, [16, 40]))
    expect(reason(m1)).toMatch(/weight .* is not a 2-D constant/)
    // The MatMul's result is also a graph output.
    const m2 = linearModel(lw)
    m2.graph!.output!.push(valueInfo(m2.graph!.node!.find((n) => n.opType === "MatMul")!.output![0], DT.FLOAT, ["b", "s", 40]))
    expect(reason(m2)).toMatch(/has other readers/)
    // Logits are read by another node.
    const m3 = linearModel(lw)
    m3.graph!.node!.push({ opType: "Identity", input: ["logits"], output: ["copy"], name: "copy" })
    m3.graph!.output!.push(valueInfo("copy", DT.FLOAT, ["b", "s", 40]))
    expect(reason(m3)).toBe("logits are read by other nodes")
    expect(reason(linearModel(lw))).toBe("ok")
  })
})

describe("windows in, scores out", () => {
  const windows = (rows: Array<[number, number[], number, number]>) =>
    windowsTable(rows.map(([seqId, ids, firstTarget, firstTokenIndex]) => ({ seqId, docId: "d", ids, firstTarget, firstTokenIndex })))

  it("reads windows as zero-copy views, also from a sliced or Parquet-decoded table", () => {
    const t = windows([
      [0, [1, 2, 3, 4], 1, 0],
      [1, [3, 4, 5], 2, 3],
      [2, [9, 8], 1, 4],
    ])
    const plain = windowsOf(t)
    expect(plain.map((w) => [w.seqId, [...w.ids], w.firstTarget, w.firstTokenIndex])).toEqual([
      [0, [1, 2, 3, 4], 1, 0],
      [1, [3, 4, 5], 2, 3],
      [2, [9, 8], 1, 4],
    ])
    expect(windowsOf(t.slice(1)).map((w) => [...w.ids])).toEqual([[3, 4, 5], [9, 8]])
    const back = decodeParquet(encodeParquet(t, { rowGroupSize: 2 }))
    expect(windowsOf(back).map((w) => [...w.ids])).toEqual([[1, 2, 3, 4], [3, 4, 5], [9, 8]])
  })

  it("the windows fixture follows the tokenize rule: every token but a document's first predicted once", () => {
    const w = slidingWindows([[1, 2, 3, 4, 5, 6, 7], [8, 9]], 4, 2)
    expect(w.map((r) => [r.ids, r.firstTarget, r.firstTokenIndex])).toEqual([
      [[1, 2, 3, 4], 1, 0],
      [[3, 4, 5, 6], 2, 3],
      [[4, 5, 6, 7], 3, 5],
      [[8, 9], 1, 6],
    ])
  })

  it("builds the scores table with exactly the declared schema", () => {
    const t = scoresTable(Int32Array.of(5, 6, 7), Float32Array.of(-1, -2, -3), Float32Array.of(0.5, 0.25, 1))
    expect(t.schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`)).toEqual(
      ScoresWithEntropy.schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`),
    )
    const back = decodeParquet(encodeParquet(t))
    expect([...back.getChild("token_index")!.toArray()]).toEqual([0, 1, 2])
    expect([...back.getChild("entropy")!.toArray()]).toEqual([0.5, 0.25, 1])
    expect(scoresTable(Int32Array.of(1), Float32Array.of(-1)).schema.fields.map((f) => f.name)).toEqual(["token_index", "token_id", "logprob"])
  })
})
