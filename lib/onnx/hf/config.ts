/**
 * A Hugging Face `config.json`, read and validated per architecture into one normalized shape
 * that the graph builders (gpt-neox.ts, gpt2.ts, opt.ts, llama.ts) read.
 *
 * Worked example: Pythia-160M's config.json
 *   { "model_type": "gpt_neox", "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
 *     "intermediate_size": 3072, "vocab_size": 50304, "rotary_pct": 0.25, "rotary_emb_base": 10000,
 *     "use_parallel_residual": true, "hidden_act": "gelu", "layer_norm_eps": 1e-5, "tie_word_embeddings": false }
 * → { modelType: "gpt_neox", hidden: 768, heads: 12, kvHeads: 12, headDim: 64, layers: 12, vocab: 50304,
 *     intermediate: 3072, tied: false, act: "gelu", eps: 1e-5, rotaryDim: 16, ropeBase: 10000,
 *     parallelResidual: true, attentionBias: true }
 *
 * Absent fields take the defaults of the architecture's transformers config class:
 * `tie_word_embeddings` is true for gpt2 and opt (PretrainedConfig's default) but false for
 * gpt_neox and llama (GPTNeoXConfig and LlamaConfig set it so). Settings the builders do not
 * implement (rope_scaling, sliding windows, GPT-2's scale_attn_by_inverse_layer_idx, …) are
 * refused with a one-line message naming config.json and the field.
 */
import * as fs from "node:fs"

export const SUPPORTED_MODEL_TYPES = ["gpt_neox", "gpt2", "opt", "llama"] as const
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number]

/** Activations by their transformers (ACT2FN) names: gelu = exact erf GELU; gelu_new = tanh approximation. */
export type Activation = "gelu" | "gelu_new" | "relu" | "silu"
const ACTIVATIONS: Readonly<Record<string, Activation>> = {
  gelu: "gelu",
  gelu_new: "gelu_new",
  gelu_pytorch_tanh: "gelu_new",
  gelu_fast: "gelu_new",
  relu: "relu",
  silu: "silu",
  swish: "silu",
}

interface Common {
  readonly file: string
  readonly hidden: number
  readonly heads: number
  readonly kvHeads: number
  readonly headDim: number
  readonly layers: number
  readonly vocab: number
  /** MLP inner width. */
  readonly intermediate: number
  /** The LM head is the token embedding (transposed). */
  readonly tied: boolean
  readonly act: Activation
  /** LayerNorm / RMSNorm epsilon. */
  readonly eps: number
}

export interface NeoxConfig extends Common {
  readonly modelType: "gpt_neox"
  /** int(headDim · rotary_pct): rotary covers dims [0, rotaryDim) of each head. */
  readonly rotaryDim: number
  readonly ropeBase: number
  readonly parallelResidual: boolean
  readonly attentionBias: boolean
}

export interface Gpt2Config extends Common {
  readonly modelType: "gpt2"
  readonly positions: number
}

export interface OptConfig extends Common {
  readonly modelType: "opt"
  readonly positions: number
  readonly preLayerNorm: boolean
  /** Width of the token embedding; ≠ hidden means project_in / project_out exist. */
  readonly wordEmbedDim: number
  readonly finalLayerNorm: boolean
  readonly bias: boolean
  readonly affine: boolean
}

export interface LlamaConfig extends Common {
  readonly modelType: "llama"
  readonly ropeTheta: number
  readonly attentionBias: boolean
  readonly mlpBias: boolean
}

export type HfConfig = NeoxConfig | Gpt2Config | OptConfig | LlamaConfig

/** Field readers over one config object; errors name the file and the field. */
const reader = (file: string, j: Record<string, unknown>) => {
  const fail = (field: string, why: string) => new Error(`${file}: field "${field}" ${why}`)
  const has = (k: string) => j[k] !== undefined && j[k] !== null
  const int = (k: string, dflt?: number): number => {
    const v = has(k) ? j[k] : dflt
    if (v === undefined) throw fail(k, "is missing")
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw fail(k, `must be a positive integer, got ${JSON.stringify(v)}`)
    return v as number
  }
  const num = (k: string, dflt?: number): number => {
    const v = has(k) ? j[k] : dflt
    if (v === undefined) throw fail(k, "is missing")
    if (typeof v !== "number" || !Number.isFinite(v)) throw fail(k, `must be a number, got ${JSON.stringify(v)}`)
    return v
  }
  const bool = (k: string, dflt: boolean): boolean => {
    const v = has(k) ? j[k] : dflt
    if (typeof v !== "boolean") throw fail(k, `must be true or false, got ${JSON.stringify(v)}`)
    return v
  }
  const act = (k: string, dflt: string): Activation => {
    const v = has(k) ? j[k] : dflt
    const a = typeof v === "string" ? ACTIVATIONS[v] : undefined
    if (a === undefined) throw fail(k, `is ${JSON.stringify(v)}; supported: ${Object.keys(ACTIVATIONS).join(", ")}`)
    return a
  }
  /** Refuse a field unless it is absent, null or one of `ok`. */
  const refuse = (k: string, why: string, ok: ReadonlyArray<unknown> = []) => {
    if (has(k) && !ok.includes(j[k])) throw fail(k, `is ${JSON.stringify(j[k])}: ${why} is not supported`)
  }
  return { fail, has, int, num, bool, act, refuse }
}

/**
 * RoPE settings, from `rope_theta` / `rope_scaling` or the newer `rope_parameters` dict; only the
 * default (unscaled) RoPE is implemented.
 */
const ropeOf = (r: ReturnType<typeof reader>, j: Record<string, any>, thetaKey: string, thetaDefault: number): { theta: number; partial?: number } => {
  for (const k of ["rope_scaling", "rope_parameters"]) {
    const v = j[k]
    if (v === undefined || v === null) continue
    const type = v.rope_type ?? v.type
    if (typeof v !== "object" || (type !== undefined && type !== "default")) throw r.fail(k, `is ${JSON.stringify(v)}: only the default RoPE (no scaling) is supported`)
  }
  const p = j.rope_parameters ?? {}
  const theta = typeof p.rope_theta === "number" ? p.rope_theta : r.num(thetaKey, thetaDefault)
  return typeof p.partial_rotary_factor === "number" ? { theta, partial: p.partial_rotary_factor } : { theta }
}

const parse = (file: string, j: Record<string, any>): HfConfig => {
  const r = reader(file, j)
  const type = j.model_type
  if (typeof type !== "string" || !(SUPPORTED_MODEL_TYPES as ReadonlyArray<string>).includes(type)) {
    throw new Error(`${file}: model_type ${JSON.stringify(type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`)
  }
  r.refuse("sliding_window", "a sliding attention window")
  r.refuse("use_sliding_window", "a sliding attention window", [false])
  r.refuse("is_encoder_decoder", "an encoder-decoder model", [false])
  r.refuse("add_cross_attention", "cross-attention", [false])
  const heads = (k: string, hidden: number) => {
    const h = r.int(k)
    if (hidden % h !== 0) throw r.fail(k, `(${h}) does not divide the hidden size ${hidden}`)
    return h
  }
  switch (type as ModelType) {
    case "gpt_neox": {
      const hidden = r.int("hidden_size")
      const nh = heads("num_attention_heads", hidden)
      const headDim = hidden / nh
      const rope = ropeOf(r, j, "rotary_emb_base", 10000)
      const pct = rope.partial ?? r.num("rotary_pct", 0.25)
      if (pct <= 0 || pct > 1) throw r.fail("rotary_pct", `must be in (0, 1], got ${pct}`)
      const rotaryDim = Math.floor(headDim * pct)
      if (rotaryDim % 2 !== 0 || rotaryDim === 0) throw r.fail("rotary_pct", `gives an odd or empty rotary width ${rotaryDim} of head_dim ${headDim}`)
      return {
        modelType: "gpt_neox", file, hidden, heads: nh, kvHeads: nh, headDim,
        layers: r.int("num_hidden_layers"), vocab: r.int("vocab_size"), intermediate: r.int("intermediate_size", 4 * hidden),
        tied: r.bool("tie_word_embeddings", false), act: r.act("hidden_act", "gelu"), eps: r.num("layer_norm_eps", 1e-5),
        rotaryDim, ropeBase: rope.theta, parallelResidual: r.bool("use_parallel_residual", true), attentionBias: r.bool("attention_bias", true),
      }
    }
    case "gpt2": {
      r.refuse("scale_attn_by_inverse_layer_idx", "scaling attention by the inverse layer index", [false])
      r.refuse("scale_attn_weights", "unscaled attention", [true])
      const hidden = r.int("n_embd", 768)
      const nh = heads("n_head", hidden)
      return {
        modelType: "gpt2", file, hidden, heads: nh, kvHeads: nh, headDim: hidden / nh,
        layers: r.int("n_layer", 12), vocab: r.int("vocab_size", 50257), intermediate: r.int("n_inner", 4 * hidden),
        tied: r.bool("tie_word_embeddings", true), act: r.act("activation_function", "gelu_new"), eps: r.num("layer_norm_epsilon", 1e-5),
        positions: r.int("n_positions", 1024),
      }
    }
    case "opt": {
      const hidden = r.int("hidden_size", 768)
      const nh = heads("num_attention_heads", hidden)
      const pre = r.bool("do_layer_norm_before", true)
      const affine = r.bool("layer_norm_elementwise_affine", true)
      return {
        modelType: "opt", file, hidden, heads: nh, kvHeads: nh, headDim: hidden / nh,
        layers: r.int("num_hidden_layers", 12), vocab: r.int("vocab_size", 50272), intermediate: r.int("ffn_dim", 3072),
        tied: r.bool("tie_word_embeddings", true), act: r.act("activation_function", "relu"), eps: 1e-5,
        positions: r.int("max_position_embeddings", 2048), preLayerNorm: pre, wordEmbedDim: r.int("word_embed_proj_dim", hidden),
        finalLayerNorm: pre && !r.bool("_remove_final_layer_norm", false), bias: r.bool("enable_bias", true), affine,
      }
    }
    case "llama": {
      r.refuse("pretraining_tp", "pretraining_tp > 1", [1])
      const hidden = r.int("hidden_size")
      const nh = r.int("num_attention_heads")
      const kv = r.int("num_key_value_heads", nh)
      if (nh % kv !== 0) throw r.fail("num_key_value_heads", `(${kv}) does not divide num_attention_heads ${nh}`)
      const headDim = r.int("head_dim", Math.floor(hidden / nh))
      const rope = ropeOf(r, j, "rope_theta", 10000)
      if (rope.partial !== undefined && rope.partial !== 1) throw r.fail("rope_parameters", `has partial_rotary_factor ${rope.partial}: partial RoPE is not supported for llama`)
      if (headDim % 2 !== 0) throw r.fail("head_dim", `must be even for RoPE, got ${headDim}`)
      return {
        modelType: "llama", file, hidden, heads: nh, kvHeads: kv, headDim,
        layers: r.int("num_hidden_layers"), vocab: r.int("vocab_size"), intermediate: r.int("intermediate_size"),
        tied: r.bool("tie_word_embeddings", false), act: r.act("hidden_act", "silu"), eps: r.num("rms_norm_eps", 1e-6),
        ropeTheta: rope.theta, attentionBias: r.bool("attention_bias", false), mlpBias: r.bool("mlp_bias", false),
      }
    }
  }
}

/** Parse a config object (as read from `file`, named in errors). */
export const parseHfConfig = (file: string, json: unknown): HfConfig => {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error(`${file}: not a JSON object`)
  return parse(file, json as Record<string, any>)
}

/** Read and validate `file` (a config.json). */
export const readHfConfig = (file: string): HfConfig => {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"))
  } catch (e) {
    throw new Error(`${file}: cannot read config: ${e instanceof Error ? e.message : String(e)}`)
  }
  return parseHfConfig(file, json)
}
