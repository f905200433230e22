/**
 * Llama as an ONNX graph. Per layer (pre-RMSNorm, computed in float32):
 *
 *   q, k, v = q_proj, k_proj, v_proj (input_layernorm(x))   k, v with num_key_value_heads heads (GQA)
 *   q, k ← rotate-half RoPE over the whole head, inv_freq = 1/rope_theta^(arange(0, d, 2)/d)
 *   x += o_proj(attention(q, k, v))
 *   x += down_proj(silu(gate_proj(y)) · up_proj(y)),  y = post_attention_layernorm(x)
 *
 * then model.norm and the head (lm_head, or embed_tokens when tie_word_embeddings). Keys:
 * model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
 * post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
 */
import type { LlamaConfig } from "./config.ts"
import type { HfGraph } from "./layers.ts"

export const buildLlama = (m: HfGraph, c: LlamaConfig): void => {
  const g = m.g
  const H = c.hidden
  const d = c.headDim
  const rms = (x: string, p: string) => m.rmsNorm(x, `${p}.weight`, H, c.eps)
  const lin = (x: string, p: string, o: number, i: number, bias: boolean) => m.linear(x, `${p}.weight`, bias ? `${p}.bias` : undefined, o, i)
  const rope = m.rope(d, c.ropeTheta)
  let x = m.embed("model.embed_tokens.weight", H)
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`
    const y = rms(x, `${p}.input_layernorm`)
    const q = m.heads(lin(y, `${p}.self_attn.q_proj`, c.heads * d, H, c.attentionBias), c.heads, d)
    const k = m.heads(lin(y, `${p}.self_attn.k_proj`, c.kvHeads * d, H, c.attentionBias), c.kvHeads, d)
    const v = m.heads(lin(y, `${p}.self_attn.v_proj`, c.kvHeads * d, H, c.attentionBias), c.kvHeads, d)
    const ctx = m.attend(m.applyRope(q, rope, d), m.applyRope(k, rope, d), v, c.heads, c.kvHeads, d)
    x = g.op("Add", [x, lin(ctx, `${p}.self_attn.o_proj`, H, c.heads * d, c.attentionBias)])
    const z = rms(x, `${p}.post_attention_layernorm`)
    const gate = m.act(lin(z, `${p}.mlp.gate_proj`, c.intermediate, H, c.mlpBias), c.act)
    const up = lin(z, `${p}.mlp.up_proj`, c.intermediate, H, c.mlpBias)
    x = g.op("Add", [x, lin(g.op("Mul", [gate, up]), `${p}.mlp.down_proj`, H, c.intermediate, c.mlpBias)])
  }
  const head = c.tied ? "model.embed_tokens.weight" : "lm_head.weight"
  m.lmHead(rms(x, "model.norm"), head, H)
}
