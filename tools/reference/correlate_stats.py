#!/usr/bin/env python3
"""Reference values for test/correlate-stats.test.ts, computed once with Debian's python3-scipy
(1.10) and python3-statsmodels (0.13):

    python3 tools/reference/correlate_stats.py

prints the values the test pastes as constants. The planted points are copied verbatim into the
test; change both together.
"""
import numpy as np
import pandas as pd
import scipy.stats as st
import statsmodels.formula.api as smf

# Spearman with ties, Pearson.
TIES_X = [1, 2, 2, 3, 4, 4, 4, 5, 6, 6]
TIES_Y = [1.5, 1.0, 2.5, 2.5, 4.0, 3.0, 5.0, 5.0, 7.0, 6.5]

# Three sizes on ONE curve of x (think ln validation ppl): y = 1.9 - 0.3 x + noise.
SHARED_MODEL = [0] * 5 + [1] * 5 + [2] * 5
SHARED_X = [6.0, 5.6, 5.3, 5.1, 5.0, 6.0, 5.4, 5.0, 4.8, 4.7, 5.9, 5.2, 4.8, 4.5, 4.4]
SHARED_NOISE = [0.004, -0.003, 0.002, -0.001, 0.003, -0.002, 0.001, -0.004, 0.002, 0.0,
                0.003, -0.001, -0.002, 0.004, -0.003]
SHARED_Y = [round(1.9 - 0.3 * x + e, 6) for x, e in zip(SHARED_X, SHARED_NOISE)]

# Three sizes on SHIFTED curves of x (think ln FLOPs): y = 0.1 x + c_model + noise, c = 0, 0.2, 0.4.
SHIFT_MODEL = SHARED_MODEL
SHIFT_X = [1.0, 2.0, 3.0, 4.0, 5.0, 1.5, 2.5, 3.5, 4.5, 5.5, 2.0, 3.0, 4.0, 5.0, 6.0]
SHIFT_Y = [round(0.1 * x + 0.2 * m + e, 6) for x, m, e in zip(SHIFT_X, SHIFT_MODEL, SHARED_NOISE)]

# Per-token log-probs of two checkpoints (multiples of 1/4: exact in float32), with ties.
LP_A = [-1.0, -2.5, -0.25, -4.0, -2.5, -3.0, -0.5, -6.0, -1.0, -2.0]
LP_B = [-1.25, -2.0, -0.5, -3.5, -3.0, -3.0, -0.25, -5.0, -1.5, -1.75]


def fits(model, x, y):
    df = pd.DataFrame({"model": model, "x": x, "y": y})
    pooled = smf.ols("y ~ x", df).fit().rsquared
    full = smf.ols("y ~ x + C(model)", df).fit().rsquared
    return pooled, full


def show(name, v):
    print(f"  {name}: {float(v)!r},")


print("ties:")
show("spearman", st.spearmanr(TIES_X, TIES_Y).correlation)
show("pearson", st.pearsonr(TIES_X, TIES_Y)[0])
for name, model, x, y in [("shared", SHARED_MODEL, SHARED_X, SHARED_Y), ("shifted", SHIFT_MODEL, SHIFT_X, SHIFT_Y)]:
    pooled, full = fits(model, x, y)
    print(f"{name}:  # y = {y}")
    show("spearman", st.spearmanr(x, y).correlation)
    show("pearson", st.pearsonr(x, y)[0])
    show("r2_pooled", pooled)
    show("r2_models", full)
    show("size_effect", full - pooled)
print("tokens:")
show("pearson", st.pearsonr(LP_A, LP_B)[0])
show("spearman", st.spearmanr(LP_A, LP_B).correlation)
