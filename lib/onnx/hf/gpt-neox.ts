/**
 * GPT-NeoX (Pythia) as an ONNX graph. Per layer, with x [rows, hidden]:
 *
 *   qkv = Linear(query_key_value)(ln1(x))   [rows, 3·hidden], laid out PER HEAD: for head h the
 *         columns h·3d … h·3d+3d are q, k, v (d = head_dim each) → Reshape [b, s, heads, 3d], Split
 *   q, k ← rotate-half RoPE on dims [0, rotary_ndims) of each head, rotary_ndims = int(d·rotary_pct),
 *         inv_freq = 1/base^(arange(0, rot, 2)/rot)
 *   a = Linear(dense)(attention(q, k, v))
 *   parallel:   x + a + mlp(ln2(x))          sequential: h = x + a; h + mlp(ln2(h))
 *   mlp(y) = Linear(dense_4h_to_h)(act(Linear(dense_h_to_4h)(y)))   (hidden_act "gelu" = exact erf GELU)
 *
 * Keys: gpt_neox.embed_in, gpt_neox.layers.N.{input_layernorm, post_attention_layernorm,
 * attention.query_key_value, attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h},
 * gpt_neox.final_layer_norm, embed_out (the head; embed_in when tie_word_embeddings).
 */
import type { NeoxConfig } from "./config.ts"
import type { HfGraph } from "./layers.ts"

export const buildGptNeox = (m: HfGraph, c: NeoxConfig): void => {
  const g = m.g
  const H = c.hidden
  const d = c.headDim
  const ln = (x: string, p: string) => m.layerNorm(x, `${p}.weight`, `${p}.bias`, H, c.eps)
  const bias = (p: string) => (c.attentionBias ? `${p}.bias` : undefined)
  const rope = m.rope(c.rotaryDim, c.ropeBase)
  let x = m.embed("gpt_neox.embed_in.weight", H)
  for (let l = 0; l < c.layers; l++) {
    const p = `gpt_neox.layers.${l}`
    const qkv = m.linear(ln(x, `${p}.input_layernorm`), `${p}.attention.query_key_value.weight`, bias(`${p}.attention.query_key_value`), 3 * H, H)
    const [q, k, v] = g.opN("Split", [m.heads(qkv, c.heads, 3 * d), g.i64([d, d, d])], 3, { axis: 3 })
    const ctx = m.attend(m.applyRope(q, rope, d), m.applyRope(k, rope, d), v, c.heads, c.heads, d)
    const a = m.linear(ctx, `${p}.attention.dense.weight`, bias(`${p}.attention.dense`), H, H)
    const mlp = (y: string) =>
      m.linear(
        m.act(m.linear(y, `${p}.mlp.dense_h_to_4h.weight`, `${p}.mlp.dense_h_to_4h.bias`, c.intermediate, H), c.act),
        `${p}.mlp.dense_4h_to_h.weight`, `${p}.mlp.dense_4h_to_h.bias`, H, c.intermediate,
      )
    if (c.parallelResidual) x = g.op("Add", [g.op("Add", [x, a]), mlp(ln(x, `${p}.post_attention_layernorm`))])
    else {
      const h = g.op("Add", [x, a])
      x = g.op("Add", [h, mlp(ln(h, `${p}.post_attention_layernorm`))])
    }
  }
  const head = c.tied ? "gpt_neox.embed_in.weight" : "embed_out.weight"
  m.lmHead(ln(x, "gpt_neox.final_layer_norm"), head, H)
}
