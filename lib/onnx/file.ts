/**
 * ONNX model files at the protobuf wire level, so a multi-gigabyte checkpoint is never loaded into
 * JavaScript:
 *  - readModelHeader: opsets, inputs and outputs, seeking over the weights;
 *  - externalizeWeights: the model's bytes with every large inline weight replaced by an
 *    external-data reference to the same bytes inside the original file. The result is a few
 *    kilobytes that ONNX Runtime loads with the original's folder as its external-data folder.
 *
 * Worked example: an initializer `wte` whose 1 MiB raw_data payload starts at byte 5,120 of
 * `step-100.onnx` becomes { name: "wte", dims, data_type, data_location: EXTERNAL,
 * external_data: [location "step-100.onnx", offset "5120", length "1048576"] }.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import onnxProto from "onnx-proto"

const onnx = onnxProto.onnx

/** protobufjs decodes int64 as a Long object when the `long` package is present. */
export const int = (x: number | { toNumber(): number } | null | undefined): number =>
  x == null ? 0 : typeof x === "number" ? x : x.toNumber()

/** A tensor input or output as declared in the graph. */
export interface TensorDecl {
  readonly name: string
  /** TensorProto.DataType; 0 when not declared. */
  readonly elemType: number
  /** Dimensions: a number, a symbolic name, or null (unknown). Undefined when the rank is unknown. */
  readonly dims: ReadonlyArray<number | string | null> | undefined
}

export interface ModelHeader {
  readonly irVersion: number
  /** Version of the default ("ai.onnx") opset; undefined when the model imports none. */
  readonly opset: number | undefined
  readonly inputs: ReadonlyArray<TensorDecl>
  readonly outputs: ReadonlyArray<TensorDecl>
  /** Some initializer keeps its bytes in an external file. */
  readonly externalData: boolean
}

/** Thrown when the bytes are not a well-formed ONNX ModelProto. */
export class NotOnnx extends Error {}

// Field numbers of onnx.proto.
const MODEL = { irVersion: 1, graph: 7, opsetImport: 8 } as const
const GRAPH = { initializer: 5, input: 11, output: 12 } as const
const TENSOR = { rawData: 9, externalData: 13, dataLocation: 14 } as const

// ---------------------------------------------------------------------------------------------
// Reading the wire format

/** Random-access bytes of a file, read at offsets. */
interface ByteSource {
  readonly size: number
  read(pos: number, len: number): Uint8Array
}

/** Reads of up to 16 bytes share one buffer: use the result before the next read. */
const fileSource = (fd: number, size: number): ByteSource => {
  const small = Buffer.alloc(16)
  return {
    size,
    read: (pos, len) => {
      const out = len <= small.length ? small : Buffer.alloc(len)
      const n = fs.readSync(fd, out, 0, len, pos)
      return out.subarray(0, n)
    },
  }
}

/** Read a varint at `pos`: [value, position after it]. Exact up to 2^53. */
const varint = (src: ByteSource, pos: number): [number, number] => {
  const b = src.read(pos, Math.min(10, src.size - pos))
  let v = 0
  let mul = 1
  for (let i = 0; i < b.length; i++) {
    v += (b[i] & 0x7f) * mul
    if ((b[i] & 0x80) === 0) return [v, pos + i + 1]
    mul *= 128
  }
  throw new NotOnnx(`truncated varint at byte ${pos}`)
}

interface Field {
  readonly field: number
  readonly wire: number
  /** Varint value (wire 0) or payload length (wire 2). */
  readonly value: number
  /** Where the field's tag starts, where its payload starts, where it ends. */
  readonly tagAt: number
  readonly start: number
  readonly end: number
}

/** Walk the fields of the message occupying [start, end). */
function* fields(src: ByteSource, start: number, end: number): Generator<Field> {
  let pos = start
  while (pos < end) {
    const [tag, p1] = varint(src, pos)
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (field === 0) throw new NotOnnx(`field number 0 at byte ${pos}`)
    let f: Field
    if (wire === 0) {
      const [v, p2] = varint(src, p1)
      f = { field, wire, value: v, tagAt: pos, start: p1, end: p2 }
    } else if (wire === 2) {
      const [len, p2] = varint(src, p1)
      f = { field, wire, value: len, tagAt: pos, start: p2, end: p2 + len }
    } else if (wire === 1 || wire === 5) {
      f = { field, wire, value: 0, tagAt: pos, start: p1, end: p1 + (wire === 1 ? 8 : 4) }
    } else throw new NotOnnx(`unsupported wire type ${wire} at byte ${pos}`)
    if (f.end > end) throw new NotOnnx(`field ${field} runs past its message at byte ${f.start}`)
    yield f
    pos = f.end
  }
}

const toDecl = (v: onnxProto.onnx.ValueInfoProto): TensorDecl => {
  const t = v.type?.tensorType
  return {
    name: v.name,
    elemType: t?.elemType ?? 0,
    dims: t?.shape
      ? (t.shape.dim ?? []).map((d) => {
          const which = (d as onnxProto.onnx.TensorShapeProto.Dimension).value // the oneof's set field
          return which === "dimValue" ? int(d.dimValue) : which === "dimParam" && d.dimParam ? d.dimParam : null
        })
      : undefined,
  }
}

/** A copy of bytes read (Buffer.prototype.slice would give a view of the shared read buffer). */
const copyOf = (b: Uint8Array): Uint8Array => new Uint8Array(b)

const payload = (src: ByteSource, f: Field): Uint8Array => copyOf(src.read(f.start, f.value))

/** The graph field of a ModelProto, after checking it has one and an ir_version. */
const graphField = (src: ByteSource): { graph: Field; irVersion: number; opset: number | undefined } => {
  let irVersion = 0
  let opset: number | undefined
  let graph: Field | undefined
  for (const f of fields(src, 0, src.size)) {
    if (f.field === MODEL.irVersion && f.wire === 0) irVersion = f.value
    else if (f.field === MODEL.opsetImport && f.wire === 2) {
      const o = onnx.OperatorSetIdProto.decode(payload(src, f))
      if (!o.domain || o.domain === "ai.onnx") opset = int(o.version)
    } else if (f.field === MODEL.graph && f.wire === 2) graph = f
  }
  if (irVersion === 0 || graph === undefined) throw new NotOnnx("no ir_version or no graph")
  return { graph, irVersion, opset }
}

const withFile = <A>(file: string, f: (src: ByteSource) => A): A => {
  const fd = fs.openSync(file, "r")
  try {
    return f(fileSource(fd, fs.fstatSync(fd).size))
  } catch (e) {
    if (e instanceof Error && !("code" in e) && !(e instanceof NotOnnx)) throw new NotOnnx(e.message) // protobufjs decode errors
    throw e
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Read a model's header from its file without loading the weights.
 * Throws NotOnnx when the file is not a protobuf ModelProto (a node:fs error when unreadable).
 */
export const readModelHeader = (file: string): ModelHeader =>
  withFile(file, (src) => {
    const { graph, irVersion, opset } = graphField(src)
    const inputs: TensorDecl[] = []
    const outputs: TensorDecl[] = []
    let externalData = false
    for (const g of fields(src, graph.start, graph.end)) {
      if (g.wire !== 2) continue
      if (g.field === GRAPH.input) inputs.push(toDecl(onnx.ValueInfoProto.decode(payload(src, g))))
      else if (g.field === GRAPH.output) outputs.push(toDecl(onnx.ValueInfoProto.decode(payload(src, g))))
      else if (g.field === GRAPH.initializer && !externalData) {
        for (const t of fields(src, g.start, g.end)) {
          if (t.field === TENSOR.dataLocation && t.wire === 0 && t.value === 1) externalData = true
        }
      }
    }
    return { irVersion, opset, inputs, outputs, externalData }
  })

// ---------------------------------------------------------------------------------------------
// Writing the wire format

const encVarint = (v: number): number[] => {
  const out: number[] = []
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return out
}

/** A length-delimited field: tag, length, payload. */
const lenField = (field: number, parts: ReadonlyArray<Uint8Array>): Uint8Array[] => {
  const len = parts.reduce((a, p) => a + p.length, 0)
  return [Uint8Array.from([...encVarint(field * 8 + 2), ...encVarint(len)]), ...parts]
}

const entry = (key: string, value: string): Uint8Array[] =>
  lenField(TENSOR.externalData, [onnx.StringStringEntryProto.encode({ key, value }).finish()])

/**
 * The model's bytes with every inline raw_data weight of at least `minBytes` replaced by an
 * external-data reference into the model file itself (location = its file name). Load the result
 * from bytes with the model's folder as the external-data folder. Everything else — nodes, inputs,
 * outputs, small or already external tensors, subgraphs — is copied byte for byte.
 */
export const externalizeWeights = (file: string, minBytes = 1024): Uint8Array =>
  withFile(file, (src) => {
    const location = path.basename(file)
    const { graph } = graphField(src)
    const verbatim = (f: Field) => copyOf(src.read(f.tagAt, f.end - f.tagAt))
    const graphParts: Uint8Array[] = []
    for (const g of fields(src, graph.start, graph.end)) {
      if (g.field !== GRAPH.initializer || g.wire !== 2) {
        graphParts.push(verbatim(g))
        continue
      }
      const tensor = [...fields(src, g.start, g.end)]
      const raw = tensor.find((t) => t.field === TENSOR.rawData && t.wire === 2)
      if (raw === undefined || raw.value < minBytes || tensor.some((t) => t.field === TENSOR.dataLocation && t.value === 1)) {
        graphParts.push(verbatim(g))
        continue
      }
      const kept = tensor.filter((t) => t !== raw && t.field !== TENSOR.dataLocation).map(verbatim)
      const ext = [
        ...entry("location", location),
        ...entry("offset", String(raw.start)),
        ...entry("length", String(raw.value)),
        Uint8Array.from([TENSOR.dataLocation * 8, 1]),
      ]
      graphParts.push(...lenField(GRAPH.initializer, [...kept, ...ext]))
    }
    const modelParts: Uint8Array[] = []
    for (const f of fields(src, 0, src.size)) {
      if (f.tagAt === graph.tagAt) modelParts.push(...lenField(MODEL.graph, graphParts))
      else modelParts.push(verbatim(f))
    }
    return Buffer.concat(modelParts)
  })
