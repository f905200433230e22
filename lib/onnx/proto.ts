/**
 * ONNX protobuf access: with file.ts, the only modules that touch `onnx-proto`.
 *
 * Small constructors for graph pieces (nodes, attributes, tensors, value infos) and a graph
 * builder, used by the rewrite and by the test fixtures that build whole models.
 */
import onnxProto from "onnx-proto"

export const onnx = onnxProto.onnx
export type IModelProto = onnxProto.onnx.IModelProto
export type IGraphProto = onnxProto.onnx.IGraphProto
export type INodeProto = onnxProto.onnx.INodeProto
export type ITensorProto = onnxProto.onnx.ITensorProto
export type IValueInfoProto = onnxProto.onnx.IValueInfoProto
export type IAttributeProto = onnxProto.onnx.IAttributeProto

/** ONNX tensor element types (TensorProto.DataType). */
export const DT = onnx.TensorProto.DataType

const AT = onnx.AttributeProto.AttributeType

// ---------------------------------------------------------------------------------------------
// Constructors

export type AttrValue = number | string | ReadonlyArray<number> | ITensorProto | IGraphProto | { readonly float: number }

/** An attribute: integers become INT(S), `{float}` FLOAT, strings STRING, tensors TENSOR, graphs GRAPH. */
export const attr = (name: string, v: AttrValue): IAttributeProto => {
  if (typeof v === "number") return { name, type: AT.INT, i: v }
  if (typeof v === "string") return { name, type: AT.STRING, s: new TextEncoder().encode(v) }
  if (Array.isArray(v)) return { name, type: AT.INTS, ints: [...(v as number[])] }
  if ("float" in (v as object)) return { name, type: AT.FLOAT, f: (v as { float: number }).float }
  if ("node" in (v as object) || "output" in (v as object)) return { name, type: AT.GRAPH, g: v as IGraphProto }
  return { name, type: AT.TENSOR, t: v as ITensorProto }
}

export const node = (
  opType: string,
  inputs: ReadonlyArray<string>,
  outputs: ReadonlyArray<string>,
  attrs: Readonly<Record<string, AttrValue>> = {},
  name?: string,
): INodeProto => ({
  opType,
  input: [...inputs],
  output: [...outputs],
  name: name ?? `${opType}:${outputs[0]}`,
  attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
})

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

/** A float32 tensor stored as raw little-endian bytes. */
export const tensorF32 = (name: string, dims: ReadonlyArray<number>, data: Float32Array): ITensorProto => ({
  name,
  dims: [...dims],
  dataType: DT.FLOAT,
  rawData: bytesOf(data),
})

/** An int64 tensor (small: shapes, axes, indices). */
export const tensorI64 = (name: string, dims: ReadonlyArray<number>, data: ReadonlyArray<number>): ITensorProto => ({
  name,
  dims: [...dims],
  dataType: DT.INT64,
  rawData: bytesOf(BigInt64Array.from(data, (x) => BigInt(x))),
})

/** A float32 tensor whose bytes live in an external file (`location` relative to the model's folder). */
export const tensorExternal = (
  name: string,
  dims: ReadonlyArray<number>,
  location: string,
  offset: number,
  length: number,
): ITensorProto => ({
  name,
  dims: [...dims],
  dataType: DT.FLOAT,
  dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
  externalData: [
    { key: "location", value: location },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(length) },
  ],
})

/** A tensor value info; a string dim is symbolic, null is unknown. */
export const valueInfo = (name: string, elemType: number, dims: ReadonlyArray<number | string | null>): IValueInfoProto => ({
  name,
  type: {
    tensorType: {
      elemType,
      shape: { dim: dims.map((d) => (d === null ? {} : typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
    },
  },
})

export const encodeModel = (m: IModelProto): Uint8Array => onnx.ModelProto.encode(m).finish()

export const decodeModel = (bytes: Uint8Array): onnxProto.onnx.ModelProto => onnx.ModelProto.decode(bytes)

// ---------------------------------------------------------------------------------------------
// Graph builder

/**
 * Appends nodes and constant initializers under fresh names (`<prefix><n>`), hiding the few ops
 * whose signature changed with the opset (axes became an input of Squeeze, Unsqueeze and
 * ReduceSum in opset 13, of ReduceMean in 18).
 *
 *   const g = new GraphBuilder(14, "t/")
 *   const y = g.op("LogSoftmax", [x], { axis: 2 })
 *   const z = g.squeeze(y, [2])       // Squeeze(y, axes=[2]) in opset < 13, Squeeze(y, const) after
 */
export class GraphBuilder {
  readonly nodes: INodeProto[] = []
  readonly initializers: ITensorProto[] = []
  private n = 0
  constructor(
    readonly opset: number,
    readonly prefix = "",
  ) {}

  fresh(hint = "t"): string {
    return `${this.prefix}${hint}_${this.n++}`
  }

  /** One node; returns its single output name (or `name` when given). */
  op(opType: string, inputs: ReadonlyArray<string>, attrs: Readonly<Record<string, AttrValue>> = {}, name?: string): string {
    const out = name ?? this.fresh(opType.toLowerCase())
    this.nodes.push(node(opType, inputs, [out], attrs))
    return out
  }

  /** A node with several outputs. */
  opN(opType: string, inputs: ReadonlyArray<string>, nOut: number, attrs: Readonly<Record<string, AttrValue>> = {}): string[] {
    const outs = Array.from({ length: nOut }, () => this.fresh(opType.toLowerCase()))
    this.nodes.push(node(opType, inputs, outs, attrs))
    return outs
  }

  /** A float32 initializer; returns its name. */
  f32(dims: ReadonlyArray<number>, data: Float32Array, name?: string): string {
    const n = name ?? this.fresh("w")
    this.initializers.push(tensorF32(n, dims, data))
    return n
  }

  /** A 1-D int64 constant (shapes, axes, slice bounds). */
  i64(values: ReadonlyArray<number>, name?: string): string {
    const n = name ?? this.fresh("c")
    this.initializers.push(tensorI64(n, [values.length], values))
    return n
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    const n = this.fresh("s")
    this.initializers.push(tensorF32(n, [], Float32Array.of(v)))
    return n
  }

  private axesOp(opType: string, x: string, axes: ReadonlyArray<number>, since: number, attrs: Record<string, AttrValue> = {}, name?: string): string {
    return this.opset >= since ? this.op(opType, [x, this.i64(axes)], attrs, name) : this.op(opType, [x], { ...attrs, axes }, name)
  }
  squeeze(x: string, axes: ReadonlyArray<number>, name?: string): string {
    return this.axesOp("Squeeze", x, axes, 13, {}, name)
  }
  unsqueeze(x: string, axes: ReadonlyArray<number>): string {
    return this.axesOp("Unsqueeze", x, axes, 13)
  }
  reduceSum(x: string, axes: ReadonlyArray<number>, keepdims: 0 | 1): string {
    return this.axesOp("ReduceSum", x, axes, 13, { keepdims })
  }
  reduceMean(x: string, axes: ReadonlyArray<number>, keepdims: 0 | 1): string {
    return this.axesOp("ReduceMean", x, axes, 18, { keepdims })
  }
  reduceLogSumExp(x: string, axes: ReadonlyArray<number>, keepdims: 0 | 1): string {
    return this.axesOp("ReduceLogSumExp", x, axes, 18, { keepdims })
  }
  /** x[axes: starts…ends) (opset ≥ 10). */
  slice(x: string, starts: ReadonlyArray<number>, ends: ReadonlyArray<number> | string, axes: ReadonlyArray<number>): string {
    return this.op("Slice", [x, this.i64(starts), typeof ends === "string" ? ends : this.i64(ends), this.i64(axes)])
  }
}

// The wire-level file readers live in file.ts; re-exported here for one import site.
export { NotOnnx, externalizeWeights, int, readModelHeader, type ModelHeader, type TensorDecl } from "./file.ts"
