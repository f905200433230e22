/**
 * GPT-2 as an ONNX graph. Learned positions wpe[0…s−1]; per layer (pre-LN):
 *
 *   qkv = Conv1D(c_attn)(ln_1(x))    weights [in, out] = [hidden, 3·hidden]; columns [Q | K | V]
 *   x  += Conv1D(attn.c_proj)(attention(q, k, v))
 *   x  += Conv1D(mlp.c_proj)(act(Conv1D(c_fc)(ln_2(x))))   act "gelu_new" = tanh GELU
 *
 * then ln_f and the head: lm_head.weight [vocab, hidden] when untied, else wte (transposed in the
 * Gemm, no copy). Keys carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model).
 */
import type { Gpt2Config } from "./config.ts"
import type { HfGraph } from "./layers.ts"

export const buildGpt2 = (m: HfGraph, c: Gpt2Config): void => {
  const g = m.g
  const H = c.hidden
  const d = c.headDim
  const t = m.has("transformer.wte.weight") ? "transformer." : m.has("wte.weight") ? "" : "transformer."
  const ln = (x: string, p: string) => m.layerNorm(x, `${p}.weight`, `${p}.bias`, H, c.eps)
  const conv = (x: string, p: string, i: number, o: number) => m.conv1d(x, `${p}.weight`, `${p}.bias`, i, o)
  let x = m.addPositions(m.embed(`${t}wte.weight`, H), m.learnedPositions(`${t}wpe.weight`, c.positions, H, 0), H)
  for (let l = 0; l < c.layers; l++) {
    const p = `${t}h.${l}`
    const [q, k, v] = g.opN("Split", [conv(ln(x, `${p}.ln_1`), `${p}.attn.c_attn`, H, 3 * H), g.i64([H, H, H])], 3, { axis: 1 })
    const ctx = m.attend(m.heads(q, c.heads, d), m.heads(k, c.heads, d), m.heads(v, c.heads, d), c.heads, c.heads, d)
    x = g.op("Add", [x, conv(ctx, `${p}.attn.c_proj`, H, H)])
    x = g.op("Add", [x, conv(m.act(conv(ln(x, `${p}.ln_2`), `${p}.mlp.c_fc`, H, c.intermediate), c.act), `${p}.mlp.c_proj`, c.intermediate, H)])
  }
  const head = !c.tied && m.has("lm_head.weight") ? "lm_head.weight" : `${t}wte.weight`
  if (!c.tied && head !== "lm_head.weight") m.pick("lm_head.weight") // untied but no head: an error naming it
  m.lmHead(ln(x, `${t}ln_f`), head, H)
}
