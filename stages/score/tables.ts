/**
 * Arrow in and out of the score stage, pure: windows (stages/tokenize/contract.ts Windows) become
 * scoring requests, score columns become the `scores` table.
 *
 * Worked example: a document of 6 tokens t0…t5 with context 4 and stride 2 gives windows
 *   seq 0: [t0 t1 t2 t3]  first_target 1  first_token_index 0  → predicts t1 t2 t3 (token_index 0 1 2)
 *   seq 1: [t2 t3 t4 t5]  first_target 2  first_token_index 3  → predicts t4 t5    (token_index 3 4)
 * so the scores rows, in token_index order, are the windows' targets concatenated in seq_id order.
 */
import * as arrow from "apache-arrow"
import { Scores, ScoresWithEntropy } from "./contract.ts"

export interface Window {
  readonly seqId: number
  /** A view into the Arrow column (no copy). */
  readonly ids: Int32Array
  readonly firstTarget: number
  readonly firstTokenIndex: number
}

/** The windows of a table holding seq_id, input_ids, first_target, first_token_index (any row group). */
export const windowsOf = (t: arrow.Table): Window[] => {
  const out: Window[] = []
  const seq = t.getChild("seq_id")
  const ids = t.getChild("input_ids")
  const ft = t.getChild("first_target")
  const fti = t.getChild("first_token_index")
  if (!seq || !ids || !ft || !fti) {
    throw new Error(`windows table lacks ${["seq_id", "input_ids", "first_target", "first_token_index"].filter((c) => !t.getChild(c)).join(", ")}`)
  }
  let row = 0
  for (const d of ids.data as ReadonlyArray<arrow.Data<arrow.List<arrow.Int32>>>) {
    // Arrow JS slices valueOffsets (and a child's values) along with the data, so they index directly.
    const values = (d.children[0] as arrow.Data<arrow.Int32>).values
    for (let i = 0; i < d.length; i++, row++) {
      const a = d.valueOffsets[i]
      const b = d.valueOffsets[i + 1]
      out.push({ seqId: seq.get(row) as number, ids: values.subarray(a, b), firstTarget: ft.get(row) as number, firstTokenIndex: fti.get(row) as number })
    }
  }
  return out
}

/** Targets predicted by a window. */
export const targetsOf = (w: Window): number => Math.max(0, w.ids.length - w.firstTarget)

/**
 * The `scores` table (./contract.ts Scores, or ScoresWithEntropy): token_index 0…N−1, token_id, logprob, entropy when given.
 * token_id / logprob / entropy: [N], logprob and entropy in nats. Zero-copy over the arrays.
 */
export const scoresTable = (tokenId: Int32Array, logprob: Float32Array, entropy?: Float32Array): arrow.Table => {
  const n = tokenId.length
  const schema = (entropy !== undefined ? ScoresWithEntropy : Scores).schema
  const index = new Int32Array(n)
  for (let i = 0; i < n; i++) index[i] = i
  const children: arrow.Data[] = [
    arrow.makeData({ type: new arrow.Int32(), length: n, data: index }),
    arrow.makeData({ type: new arrow.Int32(), length: n, data: tokenId }),
    arrow.makeData({ type: new arrow.Float32(), length: n, data: logprob }),
  ]
  if (entropy) children.push(arrow.makeData({ type: new arrow.Float32(), length: n, data: entropy }))
  const struct = arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children })
  return new arrow.Table(schema, new arrow.RecordBatch(schema, struct))
}
