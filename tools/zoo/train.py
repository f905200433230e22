#!/usr/bin/python3
"""Train the demo checkpoint family zoo/<size>/step-<step>.onnx on the Brown training split.

    npx tsx tools/zoo/tokenizer.ts                 # zoo/tokenizer.json + tools/zoo/work/*.bin
    /usr/bin/python3 tools/zoo/train.py tiny small  # sizes in one process, one after the other
    /usr/bin/python3 tools/zoo/train.py base        # (another process, for the second core)
    /usr/bin/python3 tools/zoo/train.py --summary   # zoo/metrics.json + the tables of zoo/README.md

Needs Debian's python3-torch (1.13, CPU) and python3-onnx (1.12); numpy comes with them.

Every size sees the same token stream in the same order: tools/zoo/work/train.bin (uint16 ids,
each document preceded by <|endoftext|>) cut into consecutive windows of CONTEXT + 1 tokens
(stride CONTEXT), shuffled once per pass with a seed shared by all sizes, batches of BATCH
windows, PASSES passes. The model is a GPT: learned positions, pre-LayerNorm blocks (causal
self-attention, 4x GELU MLP), final LayerNorm, logits through the tied token embedding; every
weight initialised N(0, 0.02) (residual projections N(0, 0.02 / sqrt(2 layers)), biases 0).

At every checkpoint step the weights are rounded to fp16; that rounded model is what is exported
(fp16 initializers, each followed by Cast to float, so ONNX Runtime computes in fp32) and what is
evaluated on the held-out groups, so zoo/metrics.json describes exactly the committed files.
Validation perplexity follows the tokenize stage's window rule: each document preceded by
<|endoftext|>, windows of CONTEXT tokens, the first scores all its tokens, every later one
advances by STRIDE and scores only its new tokens, so every document token is predicted once.
"""
import json
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper, numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "tools", "zoo", "work")
ZOO = os.path.join(ROOT, "zoo")

SEED = 1234
CONTEXT = 128
STRIDE = 64
BATCH = 32
PASSES = 2
WARMUP = 30
MIN_LR_FRACTION = 0.1
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
CLIP = 1.0
EARLY_STEPS = [8, 16, 32, 64]
EVEN_FROM = 3  # evenly spaced checkpoints at round(k * total / EVEN_OF) for k = EVEN_FROM … EVEN_OF
EVEN_OF = 24
GROUPS = ["press", "learned", "fiction"]

# name: (layers, width, heads, peak learning rate)
SIZES = {
    "tiny": (2, 16, 2, 3e-3),
    "small": (3, 32, 4, 3e-3),
    "base": (3, 64, 4, 3e-3),
}


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.d = d
        self.scale = 1.0 / math.sqrt(d // heads)
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x, keep):
        # x [B, T, d]; keep [B, 1, T, T] bool: may query position i attend to key j
        b, t = x.shape[0], x.shape[1]
        d, hd = self.d, self.d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = att.masked_fill(~keep, -1e9).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, layers, d, heads):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(CONTEXT, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            elif name.endswith("proj.weight") or name.endswith("out.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, input_ids, attention_mask):
        # input_ids, attention_mask [B, T] int64 → logits [B, T, vocab]; T ≤ CONTEXT
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        causal = pos.unsqueeze(0) <= pos.unsqueeze(1)  # [T, T]: key j ≤ query i
        keep = causal.unsqueeze(0).unsqueeze(0) & (attention_mask > 0).unsqueeze(1).unsqueeze(2)
        x = self.wte(input_ids) + self.wpe(pos).unsqueeze(0)
        for blk in self.blocks:
            x = blk(x, keep)
        return self.ln_f(x) @ self.wte.weight.t()


def load_ids(name):
    return np.fromfile(os.path.join(WORK, name), dtype="<u2").astype(np.int64)


def meta():
    with open(os.path.join(WORK, "meta.json")) as f:
        return json.load(f)


def schedule(total):
    steps = set(s for s in EARLY_STEPS if s < total)
    steps.update(round(k * total / EVEN_OF) for k in range(EVEN_FROM, EVEN_OF + 1))
    return sorted(steps)


def lr_at(step, peak, total):
    # step counts from 1; linear warmup, then cosine from peak down to MIN_LR_FRACTION * peak
    if step <= WARMUP:
        return peak * step / WARMUP
    progress = (step - WARMUP) / max(1, total - WARMUP)
    return peak * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def eval_windows(ids, eot):
    """Windows [N, CONTEXT] and score masks [N, CONTEXT] (True where the target at i+1 is new)."""
    starts = np.flatnonzero(ids == eot)
    ends = list(starts[1:]) + [len(ids)]
    wins, masks = [], []
    for s, e in zip(starts, ends):
        doc = ids[s:e]  # eot + document tokens; targets are doc[1:]
        n = len(doc)
        first_end = min(n, CONTEXT)
        w = np.full(CONTEXT, eot, dtype=np.int64)
        w[:first_end] = doc[:first_end]
        m = np.zeros(CONTEXT, dtype=bool)
        m[: first_end - 1] = True
        wins.append(w), masks.append(m)
        done = first_end  # tokens doc[:done] have been seen as targets (or are the eot)
        while done < n:
            end = min(n, done + STRIDE)
            w = doc[end - CONTEXT : end]
            m = np.zeros(CONTEXT, dtype=bool)
            m[CONTEXT - 1 - (end - done) : CONTEXT - 1] = True
            wins.append(w.copy()), masks.append(m)
            done = end
    return torch.tensor(np.stack(wins)), torch.tensor(np.stack(masks))


@torch.no_grad()
def perplexity(model, wins, masks, batch=64):
    model.eval()
    nll, count = 0.0, 0
    ones = torch.ones(1, CONTEXT, dtype=torch.int64)
    for i in range(0, len(wins), batch):
        x = wins[i : i + batch]
        m = masks[i : i + batch][:, :-1]
        logp = model(x, ones.expand(len(x), -1)).log_softmax(-1)[:, :-1]
        lp = logp.gather(2, x[:, 1:].unsqueeze(2)).squeeze(2)
        nll -= lp[m].double().sum().item()
        count += int(m.sum())
    return math.exp(nll / count), count


def fp16_rounded(model, vocab, layers, d, heads):
    twin = GPT(vocab, layers, d, heads)
    twin.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    return twin.eval()


def export_onnx(model, path):
    """torch.onnx.export, then store every float initializer as fp16 followed by Cast(to=float)."""
    tmp = path + ".tmp"
    x = torch.zeros(1, 8, dtype=torch.int64)
    torch.onnx.export(
        model,
        (x, torch.ones_like(x)),
        tmp,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
        },
        opset_version=14,
        # Folding would store the transposed tied embedding as a second initializer.
        do_constant_folding=False,
    )
    m = onnx.load(tmp)
    g = m.graph
    casts, inits = [], []
    for init in g.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float16)
            inits.append(numpy_helper.from_array(arr, init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=onnx.TensorProto.FLOAT, name="cast_" + init.name))
        else:
            inits.append(init)
    del g.initializer[:]
    g.initializer.extend(inits)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    m.producer_name = "trajectories tools/zoo/train.py"
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    os.replace(tmp, path)


def train(size):
    layers, d, heads, peak = SIZES[size]
    info = meta()
    vocab, eot = info["vocab_size"], info["eot_id"]
    data = torch.tensor(load_ids("train.bin"))
    n_win = (len(data) - 1) // CONTEXT
    per_pass = n_win // BATCH
    total = per_pass * PASSES
    ckpts = schedule(total)
    valid = {g: eval_windows(load_ids(f"valid-{g}.bin"), eot) for g in GROUPS}

    torch.manual_seed(SEED)
    model = GPT(vocab, layers, d, heads)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=peak, betas=BETAS
    )
    out_dir = os.path.join(ZOO, size)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.startswith("step-") and f.endswith(".onnx"):
            os.remove(os.path.join(out_dir, f))
    print(f"[{size}] layers={layers} d={d} heads={heads} params={params} steps={total} checkpoints={len(ckpts)}", flush=True)

    offsets = torch.arange(CONTEXT + 1)
    losses, records = [], []
    t0 = time.time()
    step = 0
    for p in range(PASSES):
        order = np.random.default_rng(SEED + p).permutation(n_win)
        for b in range(per_pass):
            step += 1
            idx = torch.tensor(order[b * BATCH : (b + 1) * BATCH]) * CONTEXT
            chunk = data[idx.unsqueeze(1) + offsets]  # [BATCH, CONTEXT + 1]
            x, y = chunk[:, :-1], chunk[:, 1:]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, peak, total)
            model.train()
            logits = model(x, torch.ones_like(x))
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            losses.append(loss.item())
            if step in ckpts:
                twin = fp16_rounded(model, vocab, layers, d, heads)
                ppl = {g: round(perplexity(twin, *valid[g])[0], 3) for g in GROUPS}
                export_onnx(twin, os.path.join(out_dir, f"step-{step}.onnx"))
                prev = records[-1]["step"] if records else 0
                rec = {"step": step, "train_loss": round(float(np.mean(losses[prev:step])), 4), "valid_ppl": ppl}
                records.append(rec)
                print(f"[{size}] step {step}/{total} loss {rec['train_loss']:.3f} ppl {ppl} {time.time() - t0:.0f}s", flush=True)
    wall = time.time() - t0
    result = {
        "name": size,
        "layers": layers,
        "width": d,
        "heads": heads,
        "params": params,
        "peak_lr": peak,
        "tokens_per_step": BATCH * CONTEXT,
        "steps": total,
        "final_train_loss": round(float(np.mean(losses[-20:])), 4),
        "checkpoints": records,
        "valid_tokens": {g: int(valid[g][1].sum()) for g in GROUPS},
        "wall_s": round(wall, 1),
        "threads": torch.get_num_threads(),
    }
    with open(os.path.join(WORK, f"result-{size}.json"), "w") as f:
        json.dump(result, f, indent=1)
    np.savetxt(os.path.join(WORK, f"loss-{size}.txt"), np.array(losses), fmt="%.4f")
    print(f"[{size}] done in {wall:.0f}s", flush=True)


def summary():
    """zoo/metrics.json from the per-size results; checks the two statements of zoo/README.md."""
    res = [json.load(open(os.path.join(WORK, f"result-{s}.json"))) for s in SIZES]
    res.sort(key=lambda r: r["params"])
    checks = {}
    final = {r["name"]: r["checkpoints"][-1]["valid_ppl"] for r in res}
    checks["final_ppl_strictly_decreases_with_size"] = {
        g: all(final[a["name"]][g] > final[b["name"]][g] for a, b in zip(res, res[1:])) for g in GROUPS
    }
    falls = {}
    for r in res:
        ck = r["checkpoints"]
        for g in GROUPS:
            series = [c["valid_ppl"][g] for c in ck]
            rises = [(ck[i]["step"], ck[i + 1]["step"]) for i in range(len(series) - 1) if series[i + 1] >= series[i]]
            falls[f"{r['name']}/{g}"] = {"first": series[0], "last": series[-1], "last_below_first": series[-1] < series[0], "non_decreasing_between": rises}
    checks["valid_ppl_falls_over_training"] = falls
    doc = {"sizes": res, "checks": checks}
    with open(os.path.join(ZOO, "metrics.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("| size | layers | width | heads | parameters | tokens/step | steps | checkpoints | final train loss | " + " | ".join(f"ppl {g}" for g in GROUPS) + " |")
    print("|---" * (9 + len(GROUPS)) + "|")
    for r in res:
        f = r["checkpoints"][-1]["valid_ppl"]
        print(
            f"| {r['name']} | {r['layers']} | {r['width']} | {r['heads']} | {r['params']:,} | {r['tokens_per_step']:,} | {r['steps']} | {len(r['checkpoints'])} | {r['final_train_loss']:.3f} | "
            + " | ".join(f"{f[g]:.1f}" for g in GROUPS)
            + " |"
        )
    print("steps:", [c["step"] for c in res[0]["checkpoints"]])
    print(json.dumps(checks, indent=1))
    print("wall:", {r["name"]: r["wall_s"] for r in res})


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if args == ["--summary"]:
        summary()
    else:
        for s in args:
            if s not in SIZES:
                sys.exit(f"unknown size {s!r}; sizes: {', '.join(SIZES)}")
        for s in args or list(SIZES):
            train(s)
