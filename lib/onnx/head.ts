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
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { writeFileAtomicSync } from "../../pipeline/atomic.ts"
import { DT, GraphBuilder, encodeModel, valueInfo } from "./proto.ts"
import { externalizeWeights, type ModelHeader, type TensorDecl } from "./file.ts"
import { hashFile } from "../../pipeline/hash.ts"

/** Bump when the appended head changes: cached graphs of older versions are not reused. */
export const REWRITE_VERSION = 2

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

/** Cache key of a checkpoint's rewritten graph: its content digest, the head's version and variant. */
export const rewriteKey = (modelPath: string, options: { readonly entropy: boolean }): string =>
  createHash("sha256")
    .update(`${hashFile(path.resolve(modelPath))}\0v${REWRITE_VERSION}\0entropy=${options.entropy}`)
    .digest("hex")
    .slice(0, 24)

export const cachedGraphPath = (cacheDir: string, modelPath: string, key: string): string =>
  path.join(cacheDir, "score-graphs", `${path.basename(modelPath, ".onnx")}-${key}.onnx`)

/**
 * The rewritten model's bytes (small): the checkpoint with its large weights pointing back into
 * the checkpoint file (externalizeWeights), followed by the head. Load them from bytes with the
 * checkpoint's folder as the external-data folder.
 */
export const rewrittenBytes = (modelPath: string, fragment: Uint8Array, externalize = true): Uint8Array =>
  // A graph built from safetensors (source.ts) keeps every weight external already; its small inline
  // constants must stay inline (their bytes are not in the external-data folder).
  Buffer.concat([externalize ? externalizeWeights(modelPath) : fs.readFileSync(modelPath), fragment])

/** The rewritten model's bytes from the cache, written there (atomically) when missing. */
export const cachedGraph = (
  target: string,
  modelPath: string,
  fragment: Uint8Array,
  externalize = true,
): { readonly bytes: Uint8Array; readonly reused: boolean } => {
  if (fs.existsSync(target)) return { bytes: fs.readFileSync(target), reused: true }
  const bytes = rewrittenBytes(modelPath, fragment, externalize)
  writeFileAtomicSync(target, bytes)
  return { bytes, reused: false }
}
