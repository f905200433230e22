#!/usr/bin/env python3
"""Reference values for test/correlate-bootstrap.test.ts, computed once with Debian's python3-scipy
(1.10), python3-statsmodels (0.13) and numpy (1.24):

    /usr/bin/python3 tools/reference/bootstrap_reference.py

An independent implementation of the bootstrap of stages/correlate/bootstrap.ts: only the random
draws are the same (mulberry32 and streamSeed of lib/random.ts, ported below, so that both resample
the same examples); accuracies, Spearman (scipy), Pearson (numpy), pooled and per-model R²
(statsmodels OLS) and percentiles (numpy's default, linear) are computed here on their own. The
planted hits are built by the same rule in the test; change both together.
"""
import json
import numpy as np
import pandas as pd
import scipy.stats as st
import statsmodels.formula.api as smf

M32 = 0xFFFFFFFF


def imul(a, b):
    return (a * b) & M32


def mulberry32(seed):
    a = seed & M32

    def nxt():
        nonlocal a
        a = (a + 0x6D2B79F5) & M32
        t = a
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return nxt


def stream_seed(seed, purpose, index):
    h = (seed ^ imul(purpose, 0x85EBCA6B)) & M32
    h = imul(h ^ (h >> 16), 0x7FEB352D)
    h = (h ^ imul(index + 1, 0x9E3779B1)) & M32
    h = imul(h ^ (h >> 15), 0x846CA68B)
    return (h ^ (h >> 16)) & M32


STREAM_BOOTSTRAP = 21
SEED = 7
B = 60

# Points: models A and B, steps 0, 1, 2, 4, 8 (10 points, A's first).
MODELS = ["A"] * 5 + ["B"] * 5
STEPS = [0, 1, 2, 4, 8] * 2
# Axis u: finite everywhere (think ln valid ppl); axis v: ln step (−∞ at step 0).
U = [3.0 - 0.25 * k - 0.4 * (m == "B") for k, m in zip([0, 1, 2, 3, 4] * 2, MODELS)]
V = [np.log(s) if s > 0 else -np.inf for s in STEPS]
# Tasks: hit of example e at point p.
N_EX = [12, 9]


def hit(task, p, e):
    if task == 1 and p == 3 and e == 4:
        return 255  # not scored at that point
    level = [2, 3, 4, 6, 7, 3, 4, 6, 8, 9][p] if task == 0 else [1, 2, 2, 3, 5, 2, 3, 5, 6, 8][p]
    return 1 if (e * 7 + p * 3 + task) % 10 < level else 0


HITS = [np.array([[hit(t, p, e) for e in range(N_EX[t])] for p in range(10)]) for t in range(2)]


def accuracy(t, w):
    h = HITS[t]
    out = []
    for p in range(10):
        present = h[p] != 255
        n = (w * present).sum()
        out.append((w * np.where(present, h[p], 0)).sum() / n)
    return np.array(out)


def r2(x, y, groups=False):
    df = pd.DataFrame({"x": x, "y": y, "m": [MODELS[i] for i in range(len(MODELS))]})
    df = df[np.isfinite(df.x)]
    if df.y.std() == 0:
        return None
    return smf.ols("y ~ x + C(m)" if groups else "y ~ x", df).fit().rsquared


def stats(x, y):
    x = np.asarray(x)
    keep = np.isfinite(x)
    xs, ys = x[keep], y[keep]
    if ys.std() == 0:
        return dict(spearman=None, pearson=None, r2_pooled=None, size_effect=None)
    rp, rg = r2(x, y), r2(x, y, True)
    return dict(
        spearman=st.spearmanr(xs, ys).correlation,
        pearson=float(np.corrcoef(xs, ys)[0, 1]),
        r2_pooled=rp,
        size_effect=max(0.0, rg - rp),
    )


def diff(y):
    keep = np.isfinite(np.asarray(V))
    u, v = np.asarray(U)[keep], np.asarray(V)[keep]
    ys = y[keep]
    if ys.std() == 0:
        return None
    ru = smf.ols("y ~ x", pd.DataFrame({"x": u, "y": ys})).fit().rsquared
    rv = smf.ols("y ~ x", pd.DataFrame({"x": v, "y": ys})).fit().rsquared
    return ru - rv


series = {"t0": [0], "t1": [1], "mean": [0, 1]}
vals = {(s, a, k): [] for s in series for a in "uv" for k in ["spearman", "pearson", "r2_pooled", "size_effect"]}
diffs = {s: [] for s in series}
for b in range(B):
    accs = []
    for t in range(2):
        nxt = mulberry32(stream_seed(SEED, STREAM_BOOTSTRAP, b * 65536 + t))
        w = np.zeros(N_EX[t])
        for _ in range(N_EX[t]):
            w[int(np.floor(nxt() * N_EX[t]))] += 1
        accs.append(accuracy(t, w))
    for s, ts in series.items():
        y = np.mean([accs[t] for t in ts], axis=0)
        for a, x in (("u", U), ("v", V)):
            for k, v in stats(x, y).items():
                vals[(s, a, k)].append(v)
        diffs[s].append(diff(y))


def interval(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < B / 2:
        return [None, None]
    return [float(np.percentile(xs, 2.5)), float(np.percentile(xs, 97.5))]


obs = {s: np.mean([accuracy(t, np.ones(N_EX[t])) for t in ts], axis=0) for s, ts in series.items()}
out = {
    "intervals": {f"{s}/{a}/{k}": interval(v) for (s, a, k), v in vals.items()},
    "diff": {s: {"diff": diff(obs[s]), "ci": interval(d)} for s, d in diffs.items()},
}
print(json.dumps(out, indent=1))
