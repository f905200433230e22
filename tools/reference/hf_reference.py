#!/usr/bin/env python3
"""Reference per-token log-probs for test/hf-graphs.test.ts and the PyTorch side of bench/hf.ts.

An independent PyTorch implementation of gpt_neox, gpt2, opt and llama causal LMs written from their
descriptions (not transformers, which is not installed), reading Hugging Face checkpoint folders
(config.json + model.safetensors or shards with model.safetensors.index.json). The safetensors header
is parsed with json; F32/F16 tensors with numpy, BF16 by widening the 16 bits to float32.

Computes log p(ids[j] | ids[<j]) for j >= 1 of each id sequence, in float64 by default.

  # one folder, one or more sequences
  /usr/bin/python3 tools/reference/hf_reference.py --folder DIR --ids 1,5,9,2 --ids 3,4,5
  # the test suite: folders and sequences written by `npx tsx test/fixtures/hf-variants.ts OUT`
  /usr/bin/python3 tools/reference/hf_reference.py --suite OUT/suite.json
  # the benchmark: tokens/s of the float32 model (no_grad, log-softmax + gather), best over threads
  /usr/bin/python3 tools/reference/hf_reference.py --bench DIR --batch 4 --seq 512 --threads 1,2 --rounds 2

`--mutation NAME` (or the suite's per-variant list) computes the values a builder with that typical
mistake would give (see MUTATIONS), so a test can show its tolerance would catch the mistake.
Prints one JSON object.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

MUTATIONS = {
    "neox_qkv_blocks": "gpt_neox: read query_key_value as [Q; K; V] blocks instead of per head",
    "neox_invfreq_headdim": "gpt_neox: inv_freq over head_dim instead of the rotary width",
    "rope_interleaved": "gpt_neox/llama: interleaved (GPT-J) rotation instead of rotate-half",
    "neox_gelu_tanh": "gpt_neox: tanh GELU instead of exact erf GELU",
    "neox_residual_flip": "gpt_neox: sequential residual when parallel and vice versa",
    "gpt2_gelu_erf": "gpt2: exact GELU instead of the tanh approximation (gelu_new)",
    "gpt2_conv_as_linear": "gpt2: Conv1D c_proj weights read as [out, in]",
    "opt_pos_offset0": "opt: learned positions read at p instead of p + 2",
    "opt_ln_flip": "opt: pre-LN wiring when post-LN and vice versa",
    "llama_gqa_tile": "llama: query head h uses kv head h % n_kv (tile) instead of h // (n_heads / n_kv)",
    "head_flip": "untied head when tied and vice versa",
    "rms_mean_sub": "llama: LayerNorm-style mean subtraction in RMSNorm",
}

# ---------------------------------------------------------------------------------------------
# safetensors

_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "BOOL": np.bool_, "U8": np.uint8}


def read_header(file):
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


class Checkpoint:
    """Tensors by name, read on first use, as float tensors of `dtype`."""

    def __init__(self, folder, dtype, keep=False):
        self.folder = folder
        self.dtype = dtype
        self.kept = {} if keep else None  # keep=True holds every tensor once read (the benchmark)
        self.where = {}
        index = os.path.join(folder, "model.safetensors.index.json")
        files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
        for name in files:
            path = os.path.join(folder, name)
            start, header = read_header(path)
            for k, v in header.items():
                self.where[k] = (path, start, v)
        self.config = json.load(open(os.path.join(folder, "config.json")))

    def has(self, name):
        return name in self.where

    def __getitem__(self, name):
        if self.kept is not None and name in self.kept:
            return self.kept[name]
        path, start, v = self.where[name]
        a, b = v["data_offsets"]
        with open(path, "rb") as f:
            f.seek(start + a)
            raw = f.read(b - a)
        if v["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_NP[v["dtype"]])
        t = torch.from_numpy(arr.astype(np.float64).reshape(v["shape"])).to(self.dtype)
        if self.kept is not None:
            self.kept[name] = t
        return t


# ---------------------------------------------------------------------------------------------
# Building blocks

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    return y * w + b if w is not None else y


def rms_norm(x, w, eps, mut):
    if "rms_mean_sub" in mut:
        x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def act(name, x):
    if name == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return torch.relu(x)
    if name in ("silu", "swish"):
        return x * torch.sigmoid(x)
    raise ValueError(f"activation {name}")


def rope_tables(seq, rot, base, dtype):
    inv = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]  # [s, rot/2]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, cos, sin, rot, interleaved=False):
    """x [b, h, s, d]; rotate the first `rot` dims; cos/sin [s, rot/2]."""
    xr, xp = x[..., :rot], x[..., rot:]
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        o1 = x1 * cos - x2 * sin
        o2 = x1 * sin + x2 * cos
        out = torch.stack([o1, o2], dim=-1).flatten(-2)
    else:
        half = rot // 2
        x1, x2 = xr[..., :half], xr[..., half:]
        c = torch.cat([cos, cos], dim=-1)
        s = torch.cat([sin, sin], dim=-1)
        out = xr * c + torch.cat([-x2, x1], dim=-1) * s
    return torch.cat([out, xp], dim=-1)


def attention(q, k, v):
    """q [b, h, s, d], k/v [b, h, s, d] → [b, s, h·d], causal."""
    b, h, s, d = q.shape
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(b, s, h * d)


def split_heads(x, h):
    b, s, n = x.shape
    return x.view(b, s, h, n // h).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Architectures: ids [b, s] → logits [b, s, vocab]

def neox(ck, ids, mut):
    c = ck.config
    H, nh = c["hidden_size"], c["num_attention_heads"]
    d = H // nh
    eps = c.get("layer_norm_eps", 1e-5)
    pct = c.get("rotary_pct", 0.25)
    rot = int(d * pct)
    base = c.get("rotary_emb_base", 10000)
    parallel = c.get("use_parallel_residual", True)
    if "neox_residual_flip" in mut:
        parallel = not parallel
    act_name = c.get("hidden_act", "gelu")
    if "neox_gelu_tanh" in mut:
        act_name = "gelu_new"
    tied = c.get("tie_word_embeddings", False)
    if "head_flip" in mut:
        tied = not tied
    bias = c.get("attention_bias", True)
    b, s = ids.shape
    cos, sin = rope_tables(s, rot, base, ck.dtype)
    if "neox_invfreq_headdim" in mut:
        inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))[: rot // 2]
        ang = torch.arange(s, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).to(ck.dtype), torch.sin(ang).to(ck.dtype)
    x = ck["gpt_neox.embed_in.weight"][ids]
    for l in range(c["num_hidden_layers"]):
        p = f"gpt_neox.layers.{l}"
        ln = lambda y, n: layer_norm(y, ck[f"{p}.{n}.weight"], ck[f"{p}.{n}.bias"], eps)
        opt_b = lambda n: ck[n] if bias else None
        qkv = linear(ln(x, "input_layernorm"), ck[f"{p}.attention.query_key_value.weight"], opt_b(f"{p}.attention.query_key_value.bias"))
        if "neox_qkv_blocks" in mut:
            q, k, v = (split_heads(t, nh) for t in qkv.split(H, dim=-1))
        else:
            t = qkv.view(b, s, nh, 3 * d).transpose(1, 2)  # [b, nh, s, 3d]: per head q | k | v
            q, k, v = t[..., :d], t[..., d : 2 * d], t[..., 2 * d :]
        inter = "rope_interleaved" in mut
        q, k = apply_rope(q, cos, sin, rot, inter), apply_rope(k, cos, sin, rot, inter)
        a = linear(attention(q, k, v), ck[f"{p}.attention.dense.weight"], opt_b(f"{p}.attention.dense.bias"))
        mlp = lambda y: linear(act(act_name, linear(y, ck[f"{p}.mlp.dense_h_to_4h.weight"], ck[f"{p}.mlp.dense_h_to_4h.bias"])), ck[f"{p}.mlp.dense_4h_to_h.weight"], ck[f"{p}.mlp.dense_4h_to_h.bias"])
        if parallel:
            x = x + a + mlp(ln(x, "post_attention_layernorm"))
        else:
            x = x + a
            x = x + mlp(ln(x, "post_attention_layernorm"))
    x = layer_norm(x, ck["gpt_neox.final_layer_norm.weight"], ck["gpt_neox.final_layer_norm.bias"], eps)
    head = ck["gpt_neox.embed_in.weight"] if tied else ck["embed_out.weight"]
    return linear(x, head)


def gpt2(ck, ids, mut):
    c = ck.config
    t = "transformer." if ck.has("transformer.wte.weight") else ""
    H, nh = c["n_embd"], c["n_head"]
    eps = c.get("layer_norm_epsilon", 1e-5)
    act_name = c.get("activation_function", "gelu_new")
    if "gpt2_gelu_erf" in mut:
        act_name = "gelu"
    b, s = ids.shape
    conv = lambda y, n: y @ ck[f"{n}.weight"] + ck[f"{n}.bias"]
    conv_sq = (lambda y, n: y @ ck[f"{n}.weight"].t() + ck[f"{n}.bias"]) if "gpt2_conv_as_linear" in mut else conv
    x = ck[f"{t}wte.weight"][ids] + ck[f"{t}wpe.weight"][torch.arange(s)][None]
    for l in range(c["n_layer"]):
        p = f"{t}h.{l}"
        ln = lambda y, n: layer_norm(y, ck[f"{p}.{n}.weight"], ck[f"{p}.{n}.bias"], eps)
        q, k, v = (split_heads(z, nh) for z in conv(ln(x, "ln_1"), f"{p}.attn.c_attn").split(H, dim=-1))
        x = x + conv_sq(attention(q, k, v), f"{p}.attn.c_proj")
        x = x + conv(act(act_name, conv(ln(x, "ln_2"), f"{p}.mlp.c_fc")), f"{p}.mlp.c_proj")
    x = layer_norm(x, ck[f"{t}ln_f.weight"], ck[f"{t}ln_f.bias"], eps)
    tied = c.get("tie_word_embeddings", True)
    if "head_flip" in mut:
        tied = not tied
    head = ck["lm_head.weight"] if not tied and ck.has("lm_head.weight") else ck[f"{t}wte.weight"]
    return linear(x, head)


def opt(ck, ids, mut):
    c = ck.config
    P = "model.decoder" if ck.has("model.decoder.embed_tokens.weight") else "decoder"
    H, nh = c["hidden_size"], c["num_attention_heads"]
    E = c.get("word_embed_proj_dim") or H
    pre = c.get("do_layer_norm_before", True)
    if "opt_ln_flip" in mut:
        pre = not pre
    bias = c.get("enable_bias", True)
    affine = c.get("layer_norm_elementwise_affine", True)
    b, s = ids.shape
    offset = 0 if "opt_pos_offset0" in mut else 2
    ln = lambda y, n: layer_norm(y, ck[f"{n}.weight"], ck[f"{n}.bias"], 1e-5) if affine else layer_norm(y, None, None, 1e-5)
    lin = lambda y, n: linear(y, ck[f"{n}.weight"], ck[f"{n}.bias"] if bias else None)
    x = ck[f"{P}.embed_tokens.weight"][ids]
    if E != H:
        x = linear(x, ck[f"{P}.project_in.weight"])
    x = x + ck[f"{P}.embed_positions.weight"][torch.arange(s) + offset][None]
    for l in range(c["num_hidden_layers"]):
        p = f"{P}.layers.{l}"

        def attn(y):
            q = lin(y, f"{p}.self_attn.q_proj")
            k = lin(y, f"{p}.self_attn.k_proj")
            v = lin(y, f"{p}.self_attn.v_proj")
            return lin(attention(split_heads(q, nh), split_heads(k, nh), split_heads(v, nh)), f"{p}.self_attn.out_proj")

        mlp = lambda y: lin(act(c.get("activation_function", "relu"), lin(y, f"{p}.fc1")), f"{p}.fc2")
        if pre:
            x = x + attn(ln(x, f"{p}.self_attn_layer_norm"))
            x = x + mlp(ln(x, f"{p}.final_layer_norm"))
        else:
            x = ln(x + attn(x), f"{p}.self_attn_layer_norm")
            x = ln(x + mlp(x), f"{p}.final_layer_norm")
    if c.get("do_layer_norm_before", True) and not c.get("_remove_final_layer_norm", False):
        x = ln(x, f"{P}.final_layer_norm")
    if E != H:
        x = linear(x, ck[f"{P}.project_out.weight"])
    tied = c.get("tie_word_embeddings", True)
    if "head_flip" in mut:
        tied = not tied
    head = ck["lm_head.weight"] if not tied and ck.has("lm_head.weight") else ck[f"{P}.embed_tokens.weight"]
    return linear(x, head)


def llama(ck, ids, mut):
    c = ck.config
    H, nh = c["hidden_size"], c["num_attention_heads"]
    nkv = c.get("num_key_value_heads") or nh
    d = c.get("head_dim") or H // nh
    eps = c.get("rms_norm_eps", 1e-6)
    ab, mb = c.get("attention_bias", False), c.get("mlp_bias", False)
    b, s = ids.shape
    cos, sin = rope_tables(s, d, c.get("rope_theta", 10000), ck.dtype)
    lin = lambda y, n, use: linear(y, ck[f"{n}.weight"], ck[f"{n}.bias"] if use else None)
    x = ck["model.embed_tokens.weight"][ids]
    rep = nh // nkv
    kv_of = [(h % nkv) if "llama_gqa_tile" in mut else h // rep for h in range(nh)]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        y = rms_norm(x, ck[f"{p}.input_layernorm.weight"], eps, mut)
        q = lin(y, f"{p}.self_attn.q_proj", ab).view(b, s, nh, d).transpose(1, 2)
        k = lin(y, f"{p}.self_attn.k_proj", ab).view(b, s, nkv, d).transpose(1, 2)
        v = lin(y, f"{p}.self_attn.v_proj", ab).view(b, s, nkv, d).transpose(1, 2)
        inter = "rope_interleaved" in mut
        q, k = apply_rope(q, cos, sin, d, inter), apply_rope(k, cos, sin, d, inter)
        k, v = k[:, kv_of], v[:, kv_of]
        x = x + lin(attention(q, k, v), f"{p}.self_attn.o_proj", ab)
        z = rms_norm(x, ck[f"{p}.post_attention_layernorm.weight"], eps, mut)
        gate = act(c.get("hidden_act", "silu"), lin(z, f"{p}.mlp.gate_proj", mb))
        x = x + lin(gate * lin(z, f"{p}.mlp.up_proj", mb), f"{p}.mlp.down_proj", mb)
    x = rms_norm(x, ck["model.norm.weight"], eps, mut)
    tied = c.get("tie_word_embeddings", False)
    if "head_flip" in mut:
        tied = not tied
    return linear(x, ck["model.embed_tokens.weight"] if tied else ck["lm_head.weight"])


ARCHS = {"gpt_neox": neox, "gpt2": gpt2, "opt": opt, "llama": llama}


def forward(ck, ids, mut=()):
    t = ck.config["model_type"]
    if t not in ARCHS:
        raise SystemExit(f"model_type {t} not supported")
    return ARCHS[t](ck, ids, set(mut))


def token_logprobs(ck, seqs, mut=()):
    """Per sequence: [log p(ids[j] | ids[<j]) for j = 1…len−1], each sequence run on its own."""
    out = []
    with torch.no_grad():
        for seq in seqs:
            ids = torch.tensor([seq], dtype=torch.long)
            lp = torch.log_softmax(forward(ck, ids, mut)[0, :-1], dim=-1)
            out.append(lp.gather(-1, ids[0, 1:, None])[:, 0].tolist())
    return out


# ---------------------------------------------------------------------------------------------
# Benchmark

def bench(folder, batch, seq, threads, rounds, seed=7):
    ck = Checkpoint(folder, torch.float32, keep=True)  # weights read once, held like a loaded model's
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, ck.config["vocab_size"], (batch, seq), generator=g)
    best = {}
    with torch.no_grad():
        for th in threads:
            torch.set_num_threads(th)
            run = lambda: torch.log_softmax(forward(ck, ids), dim=-1)[:, :-1].gather(-1, ids[:, 1:, None])
            run()  # warm-up (and loads the weights)
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            best[th] = batch * (seq - 1) / min(times)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    # The BLAS under PyTorch decides its speed: Debian's python3-torch over the reference libblas3 runs
    # a matmul at ~7 GFLOP/s, over OpenBLAS (libopenblas0-pthread) at ~100 per core. Reported beside the figures.
    torch.set_num_threads(max(best, key=best.get))
    a, b = torch.randn(2048, 768, generator=g), torch.randn(768, 3072, generator=g)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    gflops = 3 * 2 * 2048 * 768 * 3072 / (time.perf_counter() - t0) / 1e9
    return {"tokens_per_s_by_threads": best, "tokens_per_s": max(best.values()), "threads": max(best, key=best.get), "peak_rss_mb": peak, "matmul_gflops": gflops}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder")
    ap.add_argument("--ids", action="append", default=[])
    ap.add_argument("--mutation", action="append", default=[])
    ap.add_argument("--suite")
    ap.add_argument("--bench")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--float32", action="store_true", help="compute in float32 instead of float64")
    a = ap.parse_args()
    dtype = torch.float32 if a.float32 else torch.float64
    for m in a.mutation:
        if m not in MUTATIONS:
            raise SystemExit(f"unknown mutation {m}; known: {', '.join(MUTATIONS)}")
    if a.bench:
        print(json.dumps(bench(a.bench, a.batch, a.seq, [int(t) for t in a.threads.split(",")], a.rounds)))
    elif a.suite:
        suite = json.load(open(a.suite))
        base = os.path.dirname(os.path.abspath(a.suite))
        out = {}
        for v in suite["variants"]:
            ck = Checkpoint(os.path.join(base, v["folder"]), dtype)
            out[v["name"]] = {"digest": v.get("digest"), "logprobs": token_logprobs(ck, v["ids"])}
            for m in v.get("mutations", []):
                out[v["name"]].setdefault("mutations", {})[m] = token_logprobs(ck, v["ids"], [m])
        print(json.dumps({"torch": torch.__version__, "dtype": str(dtype), "results": out}))
    else:
        ck = Checkpoint(a.folder, dtype)
        seqs = [[int(t) for t in s.split(",")] for s in a.ids]
        print(json.dumps({"logprobs": token_logprobs(ck, seqs, a.mutation)}))


if __name__ == "__main__":
    sys.exit(main())
