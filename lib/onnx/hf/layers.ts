/**
 * Graph pieces shared by the Hugging Face architectures (opset 17). Hidden states stay 2-D
 * [batch·seq, hidden] ("rows"); only attention reshapes to heads.
 *
 *   const m = new HfGraph(config, checkpointWeights(folder), "folder/model.safetensors")
 *   let x = m.embed("model.embed_tokens.weight", 64)              // [rows, 64], rows = batch·seq
 *   const q = m.heads(m.linear(x, "…q_proj.weight", undefined, 64, 64), 4, 16)   // [b, s, 4, 16]
 *   const rope = m.rope(16, 10000)                                // cos/sin [s, 1, 16], shared by all layers
 *   const ctx = m.attend(m.applyRope(q, rope, 16), m.applyRope(k, rope, 16), v, 4, 2, 16)  // [rows, 64]
 *   m.lmHead(x, "lm_head.weight", 64)                             // graph output `logits` [batch, seq, vocab]
 *   const bytes = m.finish()                                      // ModelProto; weights stay in the safetensors files
 *
 * Weights are initializers with external data pointing into the weight files in place, in their
 * own data type (location = file name; safetensors: offset = 8 + header length + data_offsets[0];
 * torch.save: offset = the storage entry's data offset + storage_offset × element size);
 * F16 / BF16 ones are followed by Cast(to=float), an exact upcast. `linear` is
 * Gemm(x, W, b, transB=1) over PyTorch's [out, in] weights, `conv1d` Gemm(x, W, b) over GPT-2's
 * [in, out] ones: no weight is ever transposed or copied by the graph itself. The head is
 * FusedMatMul(x [b, s, width], W, transB=1) from ONNX Runtime's com.microsoft domain, so `logits`
 * is written once in its final shape (see lmHead).
 *
 * Attention: [rows, n·d] → Reshape [b, s, n, d] (+ RoPE) → Transpose → scores = (q/√d)·kᵀ
 * + causal bias [s, s] (built in-graph from Range) → Softmax → ·v → [rows, n·d]. Grouped-query
 * attention (kv heads < heads) reshapes q to [b, kvHeads, (heads/kvHeads)·s, d] so that query head h
 * meets kv head ⌊h / (heads/kvHeads)⌋ (transformers' repeat_kv) without copying k or v.
 */
import * as path from "node:path"
import { DT, GraphBuilder, encodeModel, node, onnx, tensorI64, valueInfo, type ITensorProto } from "../proto.ts"
import type { WeightRef } from "../safetensors.ts"
import type { Activation, HfConfig } from "./config.ts"

export const OPSET = 17

const ONNX_TYPE: Readonly<Record<string, number>> = { F32: DT.FLOAT, F16: DT.FLOAT16, BF16: DT.BFLOAT16 }

/** Rotary tables shared by all layers: cos, sin [s, 1, rot] (broadcast over heads). */
export interface Rope {
  readonly dim: number
  readonly cos: string
  readonly sin: string
}

export class HfGraph {
  readonly g = new GraphBuilder(OPSET)
  private readonly loaded = new Map<string, string>()
  private readonly files = new Set<string>()
  /** Shape of input_ids [2]: batch, seq (int64). */
  readonly idsShape: string
  /** seq as a scalar int64. */
  private readonly seqScalar: string
  private causal: string | undefined

  constructor(
    readonly config: HfConfig,
    readonly weights: Readonly<Record<string, WeightRef>>,
    /** Names the checkpoint in errors ("…/model.safetensors" or the index file). */
    readonly source: string,
  ) {
    this.idsShape = this.g.op("Shape", ["input_ids"])
    this.seqScalar = this.g.squeeze(this.g.slice(this.idsShape, [1], [2], [0]), [0])
  }

  /** An int64 scalar constant. */
  private i64s(v: number): string {
    const n = this.g.fresh("i")
    this.g.initializers.push(tensorI64(n, [], [v]))
    return n
  }

  has(name: string): boolean {
    return name in this.weights
  }

  /** The first of `names` the checkpoint holds (checkpoints differ in key prefixes). */
  pick(...names: string[]): string {
    for (const n of names) if (this.has(n)) return n
    throw new Error(`${this.source}: tensor "${names[0]}" not found${names.length > 1 ? ` (nor ${names.slice(1).map((n) => `"${n}"`).join(", ")})` : ""}`)
  }

  /**
   * A weight as a float32 value in the graph (memoized): an external initializer, Cast to float
   * when stored as F16 / BF16. Checks the shape when `shape` is given.
   */
  w(name: string, shape?: ReadonlyArray<number>): string {
    const done = this.loaded.get(name)
    if (done !== undefined) return done
    const ref = this.weights[name]
    if (ref === undefined) throw new Error(`${this.source}: tensor "${name}" not found`)
    const at = path.basename(ref.file)
    if (shape !== undefined && (ref.shape.length !== shape.length || ref.shape.some((d, i) => d !== shape[i]))) {
      throw new Error(`${ref.file}: tensor "${name}" has shape ${JSON.stringify(ref.shape)}, the config implies ${JSON.stringify(shape)}`)
    }
    const type = ONNX_TYPE[ref.dtype]
    if (type === undefined) throw new Error(`${ref.file}: tensor "${name}" has dtype ${ref.dtype}; weights must be F32, F16 or BF16`)
    const t: ITensorProto = {
      name,
      dims: [...ref.shape],
      dataType: type,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: at },
        { key: "offset", value: String(ref.offset) },
        { key: "length", value: String(ref.length) },
      ],
    }
    this.g.initializers.push(t)
    this.files.add(ref.file)
    const out = type === DT.FLOAT ? name : this.g.op("Cast", [name], { to: DT.FLOAT }, `${name}/f32`)
    this.loaded.set(name, out)
    return out
  }

  /** Realpaths of the weight files (safetensors or torch.save) referenced so far. */
  weightFiles(): string[] {
    return [...this.files].sort()
  }

  // -------------------------------------------------------------------------------------------
  // Rows

  /** Token embedding rows [rows, width] of `table` [vocab, width]. */
  embed(table: string, width: number): string {
    const e = this.g.op("Gather", [this.w(table, [this.config.vocab, width]), "input_ids"], { axis: 0 })
    return this.g.op("Reshape", [e, this.g.i64([-1, width])])
  }

  /** Positions 0…seq−1 (+ offset) as int64 [seq]. */
  positions(offset = 0): string {
    const end = offset === 0 ? this.seqScalar : this.g.op("Add", [this.seqScalar, this.i64s(offset)])
    return this.g.op("Range", [this.i64s(offset), end, this.i64s(1)])
  }

  /** Learned position rows [rows, width]: table[p + offset] for p = 0…seq−1 of every sequence. */
  learnedPositions(table: string, rows: number, width: number, offset: number): string {
    return this.g.op("Gather", [this.w(table, [rows, width]), this.positions(offset)], { axis: 0 }) // [s, width]
  }

  /** x [rows, width] + pos [s, width] broadcast over the batch. */
  addPositions(x: string, pos: string, width: number): string {
    const shape3 = this.g.op("Concat", [this.idsShape, this.g.i64([width])], { axis: 0 })
    const sum = this.g.op("Add", [this.g.op("Reshape", [x, shape3]), pos])
    return this.g.op("Reshape", [sum, this.g.i64([-1, width])])
  }

  /** PyTorch Linear: x [rows, in] · Wᵀ (+ b), W [out, in]. */
  linear(x: string, weight: string, bias: string | undefined, outDim: number, inDim: number): string {
    const ins = [x, this.w(weight, [outDim, inDim])]
    if (bias !== undefined) ins.push(this.w(bias, [outDim]))
    return this.g.op("Gemm", ins, { transB: 1 })
  }

  /** GPT-2 Conv1D: x [rows, in] · W + b, W [in, out]. */
  conv1d(x: string, weight: string, bias: string, inDim: number, outDim: number): string {
    return this.g.op("Gemm", [x, this.w(weight, [inDim, outDim]), this.w(bias, [outDim])])
  }

  layerNorm(x: string, weight: string | undefined, bias: string | undefined, width: number, eps: number): string {
    const scale = weight !== undefined ? this.w(weight, [width]) : this.g.f32([width], new Float32Array(width).fill(1))
    const shift = bias !== undefined ? this.w(bias, [width]) : this.g.f32([width], new Float32Array(width))
    return this.g.op("LayerNormalization", [x, scale, shift], { axis: -1, epsilon: { float: eps } })
  }

  /** RMSNorm in float32: x / √(mean(x²) + eps) · w (the pattern ORT fuses into SimplifiedLayerNormalization). */
  rmsNorm(x: string, weight: string, width: number, eps: number): string {
    const ms = this.g.reduceMean(this.g.op("Pow", [x, this.g.scalar(2)]), [-1], 1)
    const rms = this.g.op("Sqrt", [this.g.op("Add", [ms, this.g.scalar(eps)])])
    return this.g.op("Mul", [this.g.op("Div", [x, rms]), this.w(weight, [width])])
  }

  act(x: string, a: Activation): string {
    const g = this.g
    switch (a) {
      case "relu":
        return g.op("Relu", [x])
      case "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
      case "gelu": // exact: x · ½(1 + erf(x/√2))
        return g.op("Mul", [g.op("Mul", [x, g.op("Add", [g.op("Erf", [g.op("Div", [x, g.scalar(Math.SQRT2)])]), g.scalar(1)])]), g.scalar(0.5)])
      case "gelu_new": {
        // tanh approximation: ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
        const inner = g.op("Mul", [g.op("Add", [x, g.op("Mul", [g.op("Pow", [x, g.scalar(3)]), g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))])
        return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [g.op("Tanh", [inner]), g.scalar(1)])])
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Attention

  /** cos / sin tables for rotate-half RoPE over the first `dim` dims of a head: inv_freq = 1/base^(2i/dim). */
  rope(dim: number, base: number): Rope {
    const inv = new Float32Array(dim / 2)
    for (let i = 0; i < dim / 2; i++) inv[i] = 1 / Math.pow(base, (2 * i) / dim)
    const p = this.g.op("Cast", [this.positions()], { to: DT.FLOAT })
    const freqs = this.g.op("Mul", [this.g.unsqueeze(p, [1]), this.g.f32([dim / 2], inv)]) // [s, dim/2]
    const emb = this.g.unsqueeze(this.g.op("Concat", [freqs, freqs], { axis: 1 }), [1]) // [s, 1, dim]
    return { dim, cos: this.g.op("Cos", [emb]), sin: this.g.op("Sin", [emb]) }
  }

  /** Rotate-half RoPE on x [b, s, n, d] over its first rope.dim dims. */
  applyRope(x: string, rope: Rope, headDim: number): string {
    const g = this.g
    const r = rope.dim
    const xr = r === headDim ? x : g.slice(x, [0], [r], [3])
    const x1 = g.slice(xr, [0], [r / 2], [3])
    const x2 = g.slice(xr, [r / 2], [r], [3])
    const rot = g.op("Concat", [g.op("Neg", [x2]), x1], { axis: 3 })
    const out = g.op("Add", [g.op("Mul", [xr, rope.cos]), g.op("Mul", [rot, rope.sin])])
    return r === headDim ? out : g.op("Concat", [out, g.slice(x, [r], [headDim], [3])], { axis: 3 })
  }

  /** [rows, n·d] → [b, s, n, d]. */
  heads(x: string, n: number, d: number): string {
    const shape = this.g.op("Concat", [this.idsShape, this.g.i64([n, d])], { axis: 0 })
    return this.g.op("Reshape", [x, shape])
  }

  /** Additive causal bias [s, s]: 0 where key ≤ query, the float32 minimum above the diagonal. */
  causalBias(): string {
    if (this.causal === undefined) {
      const r = this.positions()
      const above = this.g.op("Greater", [this.g.unsqueeze(r, [0]), this.g.unsqueeze(r, [1])]) // [s, s]: key j > query i
      this.causal = this.g.op("Where", [above, this.g.scalar(-3.4028234663852886e38), this.g.scalar(0)])
    }
    return this.causal
  }

  /**
   * Causal self-attention over q [b, s, heads, d], k and v [b, s, kvHeads, d] (RoPE already
   * applied); returns [rows, heads·d].
   */
  attend(q: string, k: string, v: string, heads: number, kvHeads: number, d: number): string {
    const g = this.g
    const qs = g.op("Mul", [g.op("Transpose", [q], { perm: [0, 2, 1, 3] }), g.scalar(1 / Math.sqrt(d))]) // [b, H, s, d]
    const kT = g.op("Transpose", [k], { perm: [0, 2, 3, 1] }) // [b, Hkv, d, s]
    const vh = g.op("Transpose", [v], { perm: [0, 2, 1, 3] }) // [b, Hkv, s, d]
    let ctx: string
    if (kvHeads === heads) {
      const scores = g.op("Add", [g.op("MatMul", [qs, kT]), this.causalBias()])
      ctx = g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), vh]) // [b, H, s, d]
    } else {
      // Query heads kv·rep … kv·rep + rep − 1 share kv head kv: [b, H, s, d] → [b, Hkv, rep·s, d].
      const grouped = g.op("Reshape", [qs, g.i64([0, kvHeads, -1, d])])
      const scores = g.op("Reshape", [g.op("MatMul", [grouped, kT]), g.i64([0, heads, -1, 0])]) // [b, H, s, s]
      const p = g.op("Softmax", [g.op("Add", [scores, this.causalBias()])], { axis: -1 })
      const c = g.op("MatMul", [g.op("Reshape", [p, g.i64([0, kvHeads, -1, 0])]), vh]) // [b, Hkv, rep·s, d]
      ctx = g.op("Reshape", [c, g.i64([0, heads, -1, d])])
    }
    return g.op("Reshape", [g.op("Transpose", [ctx], { perm: [0, 2, 1, 3] }), g.i64([-1, heads * d])])
  }

  // -------------------------------------------------------------------------------------------
  // Output

  /**
   * The head: x [rows, width] · W[vocab, width]ᵀ → the graph output `logits` [batch, seq, vocab].
   * FusedMatMul (com.microsoft, transB=1) on x reshaped to [b, s, width] writes the output in its
   * final shape; Gemm followed by a Reshape into the graph output costs one more [b, s, vocab]
   * buffer in ONNX Runtime (measured: +412 MB at 4 × 512 × 50304).
   */
  lmHead(x: string, weight: string, width: number): void {
    const w = this.w(weight, [this.config.vocab, width])
    const x3 = this.g.op("Reshape", [x, this.g.op("Concat", [this.idsShape, this.g.i64([width])], { axis: 0 })])
    this.g.nodes.push({ ...node("FusedMatMul", [x3, w], ["logits"], { transB: 1 }), domain: "com.microsoft" })
  }

  /** The ModelProto's bytes (input_ids int64 [batch, seq] → logits float32 [batch, seq, vocab]). */
  finish(): Uint8Array {
    return encodeModel({
      irVersion: 8,
      producerName: "trajectories-hf",
      opsetImport: [{ domain: "", version: OPSET }, { domain: "com.microsoft", version: 1 }],
      graph: {
        name: this.config.modelType,
        node: this.g.nodes,
        initializer: this.g.initializers,
        input: [valueInfo("input_ids", DT.INT64, ["batch", "seq"])],
        output: [valueInfo("logits", DT.FLOAT, ["batch", "seq", this.config.vocab])],
      },
    })
  }
}
