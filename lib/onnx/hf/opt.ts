/**
 * OPT as an ONNX graph. x = project_in?(embed_tokens[id]) + embed_positions[p + 2] (OPT's learned
 * positions are offset by 2); per layer, with ln = LayerNorm and attention's q scaled by d^−½:
 *
 *   pre-LN  (do_layer_norm_before, e.g. 125m):  x += attn(ln_a(x));  x += fc2(act(fc1(ln_f(x))))
 *   post-LN (e.g. 350m):                        x = ln_a(x + attn(x)); x = ln_f(x + fc2(act(fc1(x))))
 *
 * then final_layer_norm (only when do_layer_norm_before and not _remove_final_layer_norm),
 * project_out when word_embed_proj_dim ≠ hidden_size, and the head: embed_tokens transposed
 * unless tie_word_embeddings is false and lm_head.weight exists. Keys under `model.decoder.` (or
 * `decoder.`): embed_tokens, embed_positions, project_in/out, layers.N.{self_attn.{q,k,v,out}_proj,
 * self_attn_layer_norm, fc1, fc2, final_layer_norm}, final_layer_norm.
 */
import type { OptConfig } from "./config.ts"
import type { HfGraph } from "./layers.ts"

export const buildOpt = (m: HfGraph, c: OptConfig): void => {
  const g = m.g
  const H = c.hidden
  const d = c.headDim
  const E = c.wordEmbedDim
  const P = m.has("model.decoder.embed_tokens.weight") ? "model.decoder" : m.has("decoder.embed_tokens.weight") ? "decoder" : "model.decoder"
  const ln = (x: string, p: string) => (c.affine ? m.layerNorm(x, `${p}.weight`, `${p}.bias`, H, c.eps) : m.layerNorm(x, undefined, undefined, H, c.eps))
  const lin = (x: string, p: string, o: number, i: number) => m.linear(x, `${p}.weight`, c.bias ? `${p}.bias` : undefined, o, i)
  let x = m.embed(`${P}.embed_tokens.weight`, E)
  if (E !== H) x = m.linear(x, `${P}.project_in.weight`, undefined, H, E)
  x = m.addPositions(x, m.learnedPositions(`${P}.embed_positions.weight`, c.positions + 2, H, 2), H)
  for (let l = 0; l < c.layers; l++) {
    const p = `${P}.layers.${l}`
    const attn = (y: string) => {
      const q = lin(y, `${p}.self_attn.q_proj`, H, H)
      const k = lin(y, `${p}.self_attn.k_proj`, H, H)
      const v = lin(y, `${p}.self_attn.v_proj`, H, H)
      return lin(m.attend(m.heads(q, c.heads, d), m.heads(k, c.heads, d), m.heads(v, c.heads, d), c.heads, c.heads, d), `${p}.self_attn.out_proj`, H, H)
    }
    const mlp = (y: string) => lin(m.act(lin(y, `${p}.fc1`, c.intermediate, H), c.act), `${p}.fc2`, H, c.intermediate)
    if (c.preLayerNorm) {
      x = g.op("Add", [x, attn(ln(x, `${p}.self_attn_layer_norm`))])
      x = g.op("Add", [x, mlp(ln(x, `${p}.final_layer_norm`))])
    } else {
      x = ln(g.op("Add", [x, attn(x)]), `${p}.self_attn_layer_norm`)
      x = ln(g.op("Add", [x, mlp(x)]), `${p}.final_layer_norm`)
    }
  }
  if (c.finalLayerNorm) x = ln(x, `${P}.final_layer_norm`)
  if (E !== H) x = m.linear(x, `${P}.project_out.weight`, undefined, E, H)
  const head = !c.tied && m.has("lm_head.weight") ? "lm_head.weight" : `${P}.embed_tokens.weight`
  m.lmHead(x, head, E)
}
