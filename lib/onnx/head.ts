/**
 * The scoring head: appended to a causal LM's graph so ONNX Runtime returns per-token log-probs
 * [batch, seq−1] (and entropies) instead of logits [batch, seq, vocab], without a second
 * vocabulary-sized tensor beside the logits:
 *
 *   input_ids [b, s] ──Slice(:, 1:)──Concat(0)──Unsqueeze(2)──► next [b, s, 1]   ids shifted left, a 0 at the end
 *   logits [b, s, V] ──Cast(float)?──┬─ReduceLogSumExp(axis 2)──► lse [b, s]
 *                                    └─GatherElements(next, axis 2)──Squeeze(2)──► target [b, s]
 *   (target − lse)[:, :−1] ──► trajectories/token_logprob [b, s−1]          = log softmax(logits[r, j−1])[ids[r, j]]
 *   (lse − Σ_v exp(logits − lse)·logits)[:, :−1] ──► trajectories/token_entropy [b, s−1]   (when asked)
 *   logits ──Shape──► trajectories/logits_shape [3]                          (the vocabulary width)
 *
 * The log-softmax is never materialised: only [b, s] results are sliced, so the peak holds the
 * logits and nothing else of their size (the entropy, when asked, needs one temporary more). The
 * last position's target is a dummy 0, dropped by the final slice.
 *
 * How it is appended: a serialized protobuf message followed by another one of the same type
 * parses as their merge (embedded messages merge, repeated fields concatenate). So the rewritten
 * model is the original's bytes followed by a small ModelProto `{ graph: { node, initializer,
 * output } }` holding only the new pieces; the original outputs (logits, present.*) remain
 * declared — they are simply not fetched. The weights are not copied: before the head is appended,
 * every large inline weight becomes an external-data reference into the checkpoint file itself
 * (file.ts externalizeWeights), and weights already external keep their relative locations;
 * the session loads the rewritten bytes with the checkpoint's folder as its external-data folder.
 * A rewritten model is therefore a few kilobytes (plus the graph's nodes), whatever the weights.
 *
 * The rewritten model is cached under `<cacheDir>/score-graphs/`, keyed by the checkpoint's content
 * (pipeline/hash.ts hashFile: whole up to 64 MiB, sampled above) and whether entropy is asked, so
 * each checkpoint is rewritten once, and a checkpoint replaced by another of the same size and
 * mtime is not scored with the old graph.
 *
 * The same walk back from `logits` (findOutputLayer) also gives the hidden-state graph of the
 * embedder (planHiddenOutput, embed.ts): the output layer's input at each row's last token, with the
 * output layer removed; it is cached under `<cacheDir>/embed-graphs/` (hiddenKey).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { writeFileAtomicSync } from "../../pipeline/atomic.ts"
import { DT, GraphBuilder, decodeModel, encodeModel, int, node, tensorI64, valueInfo, type IModelProto, type INodeProto } from "./proto.ts"
import { externalizeWeights, type ModelHeader, type TensorDecl } from "./file.ts"
import { hashFile } from "../../pipeline/hash.ts"

/** Bump when the appended head changes: cached graphs of older versions are not reused. */
export const REWRITE_VERSION = 3

export const OUT = {
  logprob: "trajectories/token_logprob",
  entropy: "trajectories/token_entropy",
  logitsShape: "trajectories/logits_shape",
} as const

/** The inputs and outputs the scorer relies on, found in a model's header. */
export interface Signature {
  readonly inputIds: TensorDecl
  readonly logits: TensorDecl
}

/** Find input_ids and logits; a string says what is missing (an error, not a fallback). */
export const findSignature = (h: ModelHeader): Signature | string => {
  const inputIds = h.inputs.find((i) => i.name === "input_ids")
  const logits = h.outputs.find((o) => o.name === "logits")
  const names = (xs: ReadonlyArray<TensorDecl>) => xs.map((x) => x.name).join(", ") || "none"
  if (!inputIds) return `the model has no input "input_ids" (its inputs: ${names(h.inputs)})`
  if (!logits) return `the model has no output "logits" (its outputs: ${names(h.outputs)})`
  if (logits.dims !== undefined && logits.dims.length !== 3) {
    return `output "logits" has rank ${logits.dims.length}, expected [batch, seq, vocab]`
  }
  return { inputIds, logits }
}

const FLOAT_TYPES: ReadonlyArray<number> = [DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE]
const INDEX_TYPES: ReadonlyArray<number> = [DT.INT64, DT.INT32]

export type RewritePlan =
  | { readonly ok: true; readonly fragment: Uint8Array }
  | { readonly ok: false; readonly reason: string }

/**
 * The bytes to append to the model (pure). Fails with a reason when the graph cannot take the
 * head: no default-domain opset ≥ 11 (GatherElements), or logits / input_ids of an unusable type.
 */
export const planRewrite = (h: ModelHeader, sig: Signature, options: { readonly entropy: boolean }): RewritePlan => {
  if (h.opset === undefined) return { ok: false, reason: "the model imports no ai.onnx opset" }
  if (h.opset < 11) return { ok: false, reason: `opset ${h.opset} < 11 has no GatherElements` }
  if (!FLOAT_TYPES.includes(sig.logits.elemType)) return { ok: false, reason: `logits have element type ${DT[sig.logits.elemType] ?? sig.logits.elemType}` }
  if (!INDEX_TYPES.includes(sig.inputIds.elemType)) return { ok: false, reason: `input_ids have element type ${DT[sig.inputIds.elemType] ?? sig.inputIds.elemType}` }

  const g = new GraphBuilder(h.opset, "trajectories/")
  const logits = sig.logits.elemType === DT.FLOAT ? sig.logits.name : g.op("Cast", [sig.logits.name], { to: DT.FLOAT })
  const ids = sig.inputIds.elemType === DT.INT64 ? sig.inputIds.name : g.op("Cast", [sig.inputIds.name], { to: DT.INT64 })
  // [b, s] ids shifted left by one, a 0 in the last column: the target of every position.
  const zeros = g.op("Mul", [g.slice(ids, [0], [1], [1]), g.i64([0])])
  const next = g.unsqueeze(g.op("Concat", [g.slice(ids, [1], [Number.MAX_SAFE_INTEGER], [1]), zeros], { axis: 1 }), [2])
  const lse = g.reduceLogSumExp(logits, [2], 0)
  const target = g.squeeze(g.op("GatherElements", [logits, next], { axis: 2 }), [2])
  const dropLast = (x: string, name: string) => g.op("Slice", [x, g.i64([0]), g.i64([-1]), g.i64([1])], {}, name)
  dropLast(g.op("Sub", [target, lse]), OUT.logprob)
  const outputs = [valueInfo(OUT.logprob, DT.FLOAT, [null, null])]
  if (options.entropy) {
    // H = lse − Σ_v p_v · logit_v with p = exp(logits − lse).
    const p = g.op("Exp", [g.op("Sub", [logits, g.unsqueeze(lse, [2])])])
    const expected = g.reduceSum(g.op("Mul", [p, logits]), [2], 0)
    dropLast(g.op("Sub", [lse, expected]), OUT.entropy)
    outputs.push(valueInfo(OUT.entropy, DT.FLOAT, [null, null]))
  }
  g.op("Shape", [sig.logits.name], {}, OUT.logitsShape)
  outputs.push(valueInfo(OUT.logitsShape, DT.INT64, [3]))
  return { ok: true, fragment: encodeModel({ graph: { node: g.nodes, initializer: g.initializers, output: outputs } }) }
}

/** Which head a rewritten graph has: over the scored positions only (planPositionsHead), or over all logits (planRewrite). */
export type HeadVariant = "positions" | "all"

/** Cache key of a checkpoint's rewritten graph: its content digest, the head's version and variant. */
export const rewriteKey = (modelPath: string, options: { readonly entropy: boolean; readonly variant?: HeadVariant }): string =>
  createHash("sha256")
    .update(`${hashFile(path.resolve(modelPath))}\0v${REWRITE_VERSION}\0entropy=${options.entropy}\0${options.variant ?? "all"}`)
    .digest("hex")
    .slice(0, 24)

export const cachedGraphPath = (cacheDir: string, modelPath: string, key: string): string =>
  path.join(cacheDir, "score-graphs", `${path.basename(modelPath, ".onnx")}-${key}.onnx`)

/**
 * The model's bytes with its large weights pointing back into the checkpoint file
 * (externalizeWeights): small. A graph built from safetensors (source.ts) keeps every weight
 * external already; its small inline constants must stay inline (their bytes are not in the
 * external-data folder), so it is read as it is.
 */
export const baseBytes = (modelPath: string, externalize = true): Uint8Array => (externalize ? externalizeWeights(modelPath) : fs.readFileSync(modelPath))

/**
 * The rewritten model's bytes (small): the base bytes followed by the head. Load them from bytes
 * with the checkpoint's folder as the external-data folder.
 */
export const rewrittenBytes = (modelPath: string, fragment: Uint8Array, externalize = true): Uint8Array =>
  Buffer.concat([baseBytes(modelPath, externalize), fragment])

/**
 * A rewritten model's bytes from the cache, or made by `make` and written there (atomically);
 * `make` may answer why it cannot (a string), which is returned and not cached.
 */
export const cachedGraph = (target: string | undefined, make: () => Uint8Array | string): { readonly bytes: Uint8Array; readonly reused: boolean } | string => {
  if (target !== undefined && fs.existsSync(target)) return { bytes: fs.readFileSync(target), reused: true }
  const bytes = make()
  if (typeof bytes === "string") return bytes
  if (target !== undefined) writeFileAtomicSync(target, bytes)
  return { bytes, reused: false }
}

// ---------------------------------------------------------------------------------------------
// The head on scored positions only

/** The inputs of the positions head, fed by the scorer at every run. */
export const IN = {
  /** int64 [n]: flat index r·cols + (j − 1) of the hidden state that predicts token j of row r. */
  positions: "trajectories/positions",
  /** int64 [n]: that token's id. */
  targets: "trajectories/targets",
} as const

/** Ops between the output layer's MatMul and `logits` that act on each position alone. */
const UNARY = new Set(["Cast", "Identity", "Tanh", "Softplus", "Relu"])
const BINARY = new Set(["Add", "Sub", "Mul", "Div"])

/** Most positions per chunk of the head: 64 MiB of float32 logits, within 16…4096 positions. */
export const chunkFor = (vocab: number): number => Math.max(16, Math.min(4096, Math.floor(2 ** 26 / (4 * vocab))))

export type PositionsPlan = { readonly ok: true; readonly bytes: Uint8Array } | { readonly ok: false; readonly reason: string }

/** The output layer of a causal LM: the ops from the hidden state to `logits`, in graph order. */
export interface OutputLayer {
  /** The output layer's MatMul (or FusedMatMul) first, then the ops on each position alone, the last one computing `logits`. */
  readonly chain: ReadonlyArray<INodeProto>
  /** The tensor the output layer reads: the final hidden state [b, s, d] (after the final norm). */
  readonly hidden: string
  /** Every name the graph already computes, holds as a constant or takes as an input (for fresh names). */
  readonly names: ReadonlySet<string>
}

/**
 * Walk back from `logits` to the output layer (pure; the model is not changed):
 *
 *   hidden [b, s, d] ──MatMul(W)──(Add bias, Cast, …)──► logits [b, s, V]
 *   → { chain: [MatMul, Add, Cast], hidden: "hidden", names }
 *
 * The walk passes ops that act on each position alone (Cast, Identity, Tanh, Softplus, Relu, and
 * Add/Sub/Mul/Div with a constant of rank ≤ 1) and stops at a MatMul (or ONNX Runtime's
 * FusedMatMul without transA) whose weight is a 2-D constant (an initializer, a Constant, or a
 * Cast/Transpose/… of one). It fails with a one-line reason when the graph is of another shape, or
 * when a tensor of the chain (logits included) is read by anything else, so that the chain can be
 * removed or replaced without changing what the rest of the graph computes.
 */
export const findOutputLayer = (model: IModelProto, sig: Signature): OutputLayer | { readonly reason: string } => {
  const fail = (reason: string) => ({ reason })
  const graph = model.graph
  if (!graph) return fail("the model has no graph")
  const nodes = graph.node ?? []
  const producer = new Map<string, INodeProto>()
  const uses = new Map<string, number>()
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n)
    for (const i of n.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1)
    // A subgraph may read any outer name: count its reads too (conservatively, every input it names).
    for (const a of n.attribute ?? []) for (const sub of [a.g, ...(a.graphs ?? [])]) for (const m of sub?.node ?? []) for (const i of m.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1)
  }
  // Constants (initializers, Constant nodes and what is computed from them alone) and their ranks where known.
  const rank = new Map<string, number | undefined>()
  for (const t of graph.initializer ?? []) rank.set(t.name ?? "", (t.dims ?? []).length)
  for (const n of nodes) {
    const out = n.output?.[0]
    if (out === undefined) continue
    if (n.opType === "Constant") {
      const a = n.attribute?.[0]
      rank.set(out, a?.t ? (a.t.dims ?? []).length : a?.name === "value_float" || a?.name === "value_int" ? 0 : a?.name?.endsWith("s") ? 1 : undefined)
    } else if ((n.input ?? []).length > 0 && (n.input ?? []).every((i) => i === "" || rank.has(i))) {
      rank.set(out, ["Cast", "Identity", "Transpose", "DequantizeLinear"].includes(n.opType ?? "") ? rank.get(n.input![0]) : undefined)
    }
  }
  const isSmallConst = (x: string) => rank.has(x) && (rank.get(x) ?? 99) <= 1
  // Walk back from logits to the output layer.
  const chain: INodeProto[] = []
  let cur = sig.logits.name
  for (;;) {
    const n = producer.get(cur)
    if (n === undefined) return fail(`"${cur}" is not computed by a node`)
    if ((n.output ?? []).length !== 1) return fail(`"${cur}" comes from ${n.opType} with several outputs`)
    chain.unshift(n)
    if (chain.length > 8) return fail("logits are more than 8 ops after the output layer")
    const ins = n.input ?? []
    const op = n.opType ?? ""
    const domain = n.domain ?? ""
    if ((op === "MatMul" && domain === "") || (op === "FusedMatMul" && domain === "com.microsoft")) {
      const transA = (n.attribute ?? []).find((a) => a.name === "transA" || a.name === "transBatchA" || a.name === "transBatchB")
      if (transA !== undefined && int(transA.i) !== 0) return fail(`the output layer's ${op} transposes its input`)
      if (rank.get(ins[1]) !== 2) return fail(`the output layer's weight "${ins[1]}" is not a 2-D constant`)
      if (rank.has(ins[0])) return fail("the output layer's input is a constant")
      break
    }
    if (domain === "" && UNARY.has(op) && ins.length === 1) cur = ins[0]
    else if (domain === "" && BINARY.has(op) && ins.length === 2 && isSmallConst(ins[1]) && !rank.has(ins[0])) cur = ins[0]
    else if (domain === "" && BINARY.has(op) && ins.length === 2 && isSmallConst(ins[0]) && !rank.has(ins[1])) cur = ins[1]
    else return fail(`logits come from ${op} (${ins.length} inputs), not a MatMul and ops on each position alone`)
  }
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name))
  for (const n of chain.slice(0, -1)) {
    const o = n.output![0]
    if ((uses.get(o) ?? 0) !== 1 || graphOutputs.has(o)) return fail(`"${o}" (between the output layer and logits) has other readers`)
  }
  if ((uses.get(sig.logits.name) ?? 0) > 0) return fail("logits are read by other nodes")
  const names = new Set<string>([...producer.keys(), ...rank.keys(), ...(graph.input ?? []).map((i) => i.name ?? "")])
  return { chain, hidden: chain[0].input![0], names }
}

/**
 * The model rewritten so that its output layer runs only on the positions that are scored (pure):
 * `base` is the model's bytes with its weights external (externalizeWeights, or a built graph).
 *
 *   hidden [b, s, d] ──MatMul(W)──(Add bias, Cast, …)──► logits [b, s, V]            (removed)
 *   hidden ──Flatten(axis 2)──Gather(positions)──► [n, d] ──MatMul(W)──(Add bias, Cast, …)──► L [n, V]
 *   L ──┬─ReduceLogSumExp(axis 1)──► lse [n]
 *       └─GatherElements(targets, axis 1)──► target [n];   token_logprob = target − lse   [n]
 *   token_entropy = lse − Σ_v exp(L − lse)·L   [n] (when asked);   logits_shape = Shape(L) [2]
 *
 * The chain from the output layer to `logits` is found by findOutputLayer (a MatMul whose weight
 * is a 2-D constant, then ops on each position alone); it is removed with the `logits` output,
 * since ONNX Runtime computes every node whether its output is fetched or not. So the output layer costs n × d × V instead of b × s × d × V: the
 * context-only half of a strided window, a prompt before its options and the padding are never
 * multiplied by the vocabulary. A graph of another shape gets the head over all logits (planRewrite).
 */
export const planPositionsHead = (
  base: Uint8Array,
  h: ModelHeader,
  sig: Signature,
  options: { readonly entropy: boolean; readonly chunk?: number },
): PositionsPlan => {
  const fail = (reason: string): PositionsPlan => ({ ok: false, reason })
  if (h.opset === undefined || h.opset < 11) return fail("opset < 11")
  if (!FLOAT_TYPES.includes(sig.logits.elemType)) return fail(`logits have element type ${DT[sig.logits.elemType] ?? sig.logits.elemType}`)
  const model = decodeModel(base)
  const found = findOutputLayer(model, sig)
  if ("reason" in found) return fail(found.reason)
  const { chain, hidden, names: taken } = found
  const graph = model.graph!
  const nodes = graph.node ?? []
  const mine = [IN.positions, IN.targets, OUT.logprob, OUT.entropy, OUT.logitsShape]
  if (mine.some((x) => taken.has(x))) return fail("the model already has a tensor named trajectories/…")

  const g = new GraphBuilder(h.opset, "trajectories/pos_")
  const flat = g.op("Flatten", [hidden], { axis: 2 }) // [b·s, d]
  // Chunks: M = ⌈n / most⌉ iterations of c = ⌈n / M⌉ positions each (fewer than M padded ones in all).
  const vocab = typeof sig.logits.dims?.[2] === "number" ? (sig.logits.dims[2] as number) : 50_304
  const most = options.chunk ?? chunkFor(vocab)
  const n = g.op("Shape", [IN.positions]) // [1]
  const iterations = g.op("Div", [g.op("Add", [n, g.i64([most - 1])]), g.i64([most])]) // [1]
  const c = g.op("Div", [g.op("Add", [n, g.op("Sub", [iterations, g.i64([1])])]), iterations]) // [1]
  const pads = g.op("Concat", [g.i64([0]), g.op("Sub", [g.op("Mul", [iterations, c]), n])], { axis: 0 })
  const positions = g.op("Pad", [IN.positions, pads])
  const targets = g.op("Pad", [IN.targets, pads])

  // The loop body: positions i·c … (i+1)·c − 1 through the output layer and the head.
  const b = new GraphBuilder(h.opset, "trajectories/chunk_")
  const start = b.op("Mul", ["trajectories/chunk_i", c]) // [1]
  const stop = b.op("Add", [start, c])
  const part = (x: string) => b.op("Slice", [x, start, stop, b.i64([0])])
  let x = b.op("Gather", [flat, part(positions)], { axis: 0 }) // [c, d]
  let prev = hidden // the original tensor the next op of the chain reads
  for (const nd of chain) {
    const out = b.fresh((nd.opType ?? "op").toLowerCase())
    const ins = (nd.input ?? []).map((i) => (i === prev ? x : i))
    b.nodes.push({ ...node(nd.opType ?? "", ins, [out]), attribute: nd.attribute ?? [], domain: nd.domain ?? "" })
    prev = nd.output![0]
    x = out
  }
  const logits = sig.logits.elemType === DT.FLOAT ? x : b.op("Cast", [x], { to: DT.FLOAT })
  const lse = b.reduceLogSumExp(logits, [1], 0)
  const target = b.squeeze(b.op("GatherElements", [logits, b.unsqueeze(part(targets), [1])], { axis: 1 }), [1])
  const scans = [b.op("Sub", [target, lse])]
  if (options.entropy) {
    const p = b.op("Exp", [b.op("Sub", [logits, b.unsqueeze(lse, [1])])])
    scans.push(b.op("Sub", [lse, b.reduceSum(b.op("Mul", [p, logits]), [1], 0)]))
  }
  scans.push(b.op("Shape", [x]))
  b.op("Identity", ["trajectories/chunk_cond"], {}, "trajectories/chunk_cond_out")
  const body = {
    name: "trajectories_chunk",
    node: b.nodes,
    initializer: b.initializers,
    input: [valueInfo("trajectories/chunk_i", DT.INT64, []), valueInfo("trajectories/chunk_cond", DT.BOOL, [])],
    output: [
      valueInfo("trajectories/chunk_cond_out", DT.BOOL, []),
      ...scans.map((sc, i) => valueInfo(sc, i === scans.length - 1 ? DT.INT64 : DT.FLOAT, i === scans.length - 1 ? [2] : [null])),
    ],
  }
  const outs = g.opN("Loop", [g.squeeze(iterations, [0]), ""], scans.length, { body }) // [M, c] each, the shapes [M, 2]
  const firstN = (scan: string, name: string) => g.op("Slice", [g.op("Reshape", [scan, g.i64([-1])]), g.i64([0]), n, g.i64([0])], {}, name)
  firstN(outs[0], OUT.logprob)
  const outputs = [valueInfo(OUT.logprob, DT.FLOAT, ["n"])]
  if (options.entropy) {
    firstN(outs[1], OUT.entropy)
    outputs.push(valueInfo(OUT.entropy, DT.FLOAT, ["n"]))
  }
  g.op("Reshape", [g.op("Gather", [outs[outs.length - 1], g.i64([0])], { axis: 0 }), g.i64([-1])], {}, OUT.logitsShape) // the first chunk's [c, V]
  outputs.push(valueInfo(OUT.logitsShape, DT.INT64, [2]))

  const removed = new Set(chain)
  const removedNames = new Set(chain.map((n) => n.output![0]))
  graph.node = [...nodes.filter((n) => !removed.has(n)), ...g.nodes]
  graph.initializer = [...(graph.initializer ?? []), ...g.initializers]
  graph.input = [...(graph.input ?? []), valueInfo(IN.positions, DT.INT64, ["n"]), valueInfo(IN.targets, DT.INT64, ["n"])]
  graph.output = [...(graph.output ?? []).filter((o) => o.name !== sig.logits.name), ...outputs]
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !removedNames.has(v.name ?? ""))
  return { ok: true, bytes: encodeModel(model) }
}

// ---------------------------------------------------------------------------------------------
// The final hidden state at each row's last token (sequence embeddings)

/** The input and output of the hidden-state graph (planHiddenOutput). */
export const HIDDEN = {
  /** int64 [b]: the column of each row's last real token (rows are padded on the right). */
  last: "trajectories/last",
  /** float32 [b, d]: the output layer's input at that column. */
  hidden: "trajectories/hidden",
} as const

/** Bump when planHiddenOutput (or findOutputLayer) changes: cached hidden-state graphs of older versions are not reused. */
export const HIDDEN_VERSION = 1

/** Cache key of a checkpoint's hidden-state graph: its content digest and the version; never equal to a score graph's (rewriteKey). */
export const hiddenKey = (modelPath: string): string =>
  createHash("sha256")
    .update(`${hashFile(path.resolve(modelPath))}\0hidden\0v${HIDDEN_VERSION}`)
    .digest("hex")
    .slice(0, 24)

/** Where a checkpoint's hidden-state graph is cached: `<cacheDir>/embed-graphs/<name>-<hiddenKey>.onnx`, beside (not among) the score graphs. */
export const hiddenGraphPath = (cacheDir: string, modelPath: string): string =>
  path.join(cacheDir, "embed-graphs", `${path.basename(modelPath, ".onnx")}-${hiddenKey(modelPath)}.onnx`)

export type HiddenPlan = { readonly ok: true; readonly bytes: Uint8Array } | { readonly ok: false; readonly reason: string }

/** Names every tensor a node reads, its subgraphs' reads included (conservatively: every input named inside them). */
const readsOf = (n: INodeProto): string[] => [
  ...(n.input ?? []),
  ...(n.attribute ?? []).flatMap((a) => [a.g, ...(a.graphs ?? [])].flatMap((sub) => (sub?.node ?? []).flatMap(readsOf))),
]

/**
 * The model rewritten to output the final hidden state at each row's last token (pure): `base` is
 * the model's bytes with its weights external (externalizeWeights, or a built graph).
 *
 *   hidden [b, s, d] ──MatMul(W)──(Add bias, Cast, …)──► logits [b, s, V]                    (removed)
 *   hidden ──Flatten(axis 2)──► [b·s, d] ──Gather(r·s + last[r])──► [b, d] ──Cast(float)──► trajectories/hidden
 *   trajectories/last: int64 [b], the column of row r's last real token
 *
 * `hidden` is the output layer's input as findOutputLayer finds it: after the final norm, what
 * MAUVE's reference takes from GPT-2. The output layer and `logits` are removed, and with them
 * every node that only fed them (the Transpose or Cast of a tied or fp16 head weight) and the
 * initializers no node reads any more: ONNX Runtime computes every node, fetched or not, so the
 * vocabulary-sized MatMul would cost as much as the whole model on a small one. The model's other
 * outputs (present.* of an export with a KV cache) stay. Fails with a one-line reason where the
 * output layer cannot be found, or the opset is below 11 (Range).
 */
export const planHiddenOutput = (base: Uint8Array, h: ModelHeader, sig: Signature): HiddenPlan => {
  const fail = (reason: string): HiddenPlan => ({ ok: false, reason })
  if (h.opset === undefined || h.opset < 11) return fail("opset < 11")
  const model = decodeModel(base)
  const found = findOutputLayer(model, sig)
  if ("reason" in found) return fail(found.reason)
  const { hidden, names } = found
  if (names.has(HIDDEN.last) || names.has(HIDDEN.hidden)) return fail("the model already has a tensor named trajectories/…")
  const graph = model.graph!

  const g = new GraphBuilder(h.opset, "trajectories/hid_")
  const scalar = (v: number) => {
    const name = g.fresh("k")
    g.initializers.push(tensorI64(name, [], [v]))
    return name
  }
  const flat = g.op("Flatten", [hidden], { axis: 2 }) // [b·s, d]
  const cols = g.slice(g.op("Shape", [hidden]), [1], [2], [0]) // [1]: s
  const rows = g.op("Range", [scalar(0), g.squeeze(g.op("Shape", [HIDDEN.last]), [0]), scalar(1)]) // [b]: 0 … b−1
  const at = g.op("Add", [g.op("Mul", [rows, cols]), HIDDEN.last]) // [b]: r·s + last[r]
  g.op("Cast", [g.op("Gather", [flat, at], { axis: 0 })], { to: DT.FLOAT }, HIDDEN.hidden)

  // Keep the nodes the remaining outputs need (the new ones among them), in graph order.
  const outputs = [...(graph.output ?? []).filter((o) => o.name !== sig.logits.name), valueInfo(HIDDEN.hidden, DT.FLOAT, ["batch", null])]
  const all = [...(graph.node ?? []), ...g.nodes]
  const producer = new Map<string, INodeProto>()
  for (const n of all) for (const o of n.output ?? []) producer.set(o, n)
  const kept = new Set<INodeProto>()
  const needed = outputs.map((o) => o.name ?? "")
  for (let x = needed.pop(); x !== undefined; x = needed.pop()) {
    const n = producer.get(x)
    if (n === undefined || kept.has(n)) continue
    kept.add(n)
    needed.push(...readsOf(n))
  }
  graph.node = all.filter((n) => kept.has(n))
  const read = new Set(graph.node.flatMap(readsOf))
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ""))
  graph.initializer = [...(graph.initializer ?? []), ...g.initializers].filter((t) => read.has(t.name ?? "") || inputs.has(t.name ?? ""))
  graph.input = [...(graph.input ?? []), valueInfo(HIDDEN.last, DT.INT64, ["batch"])]
  graph.output = outputs
  const computed = new Set([...producer.keys()].filter((x) => kept.has(producer.get(x)!)))
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => computed.has(v.name ?? "") || read.has(v.name ?? ""))
  return { ok: true, bytes: encodeModel(model) }
}
