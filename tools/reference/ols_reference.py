#!/usr/bin/env python3
"""Reference values for test/analysis-ols.test.ts and test/regress-stage.test.ts.

Run once with Debian's python3-statsmodels / python3-scipy; the printed numbers are pasted into the
tests as constants (the tests never run Python):

    python3 tools/reference/ols_reference.py

Every regression is statsmodels `sm.OLS(y, sm.add_constant(x)).fit()` (the paper's model); the
p-value of the slope is `fit.pvalues[1]` (two-sided Student t, n - 2 df). Inputs are written here
as literals; the tests hold the same literals.
"""
import json
import math

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import stats


def fit(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)  # NaN/inf dropped from x and y together
    r = sm.OLS(y[keep], sm.add_constant(x[keep], has_constant="add")).fit()
    return {
        "n": int(keep.sum()),
        "slope": float(r.params[1]),
        "intercept": float(r.params[0]),
        "r2": float(r.rsquared),
        "p_value": float(r.pvalues[1]),
    }


STEPS = [(k + 1) * 100 for k in range(20)]
LN_STEPS = [math.log(s) for s in STEPS]

# Pure OLS cases: (name, x, y)
PURE = [
    ("worked example", [math.log(100), math.log(200), math.log(400)], [1.0, 1.5, 2.5]),
    ("noisy rise, 20 points", LN_STEPS, [1 + 0.02 * k + 0.03 * math.sin(1.3 * k) for k in range(20)]),
    ("fall, 7 points", LN_STEPS[13:], [1.0, 0.97, 0.951, 0.93, 0.925, 0.9, 0.884]),
    ("near-perfect fit", LN_STEPS, [2.0 + 0.5 * x + 1e-4 * math.cos(7 * k) for k, x in enumerate(LN_STEPS)]),
    ("no trend", LN_STEPS, [1 + 0.1 * math.sin(2.9 * k * k) for k in range(20)]),
]

# NaN / inf dropped from x and y together (x NaN at 3, y NaN at 7, x -inf at 0 as ln 0 would give).
NAN_X = [float("-inf")] + LN_STEPS[1:3] + [float("nan")] + LN_STEPS[4:10]
NAN_Y = [1.0, 1.1, 1.25, 1.3, 1.42, 1.5, 1.49, float("nan"), 1.71, 1.8]

# t-distribution: two-sided p = 2 * t.sf(|t|, df)
T_GRID = [(0.5, 1), (12.7, 1), (2.1, 3), (5.0, 10), (2.06, 25), (12.0, 25), (40.0, 28), (3.0, 200), (0.01, 7), (150.0, 5)]

# Planted per-token log-probs (float32 when stored) on steps 100..2000 of a model with
# params 1e6 and tokens_per_step 1000.
PLANTED = {
    "up": [-3.0148, -3.2188, -3.2482, -3.3079, -3.4388, -3.4772, -3.4425, -3.5019, -3.5979, -3.581,
           -3.5495, -3.6287, -3.6893, -3.6399, -3.6341, -3.7241, -3.7433, -3.6826, -3.7114, -3.7952],
    "down": [-6.0713, -5.8409, -5.7362, -5.8019, -5.6167, -5.6443, -5.6686, -5.5044, -5.609, -5.5547,
             -5.4517, -5.5794, -5.454, -5.4399, -5.5345, -5.3764, -5.4493, -5.4697, -5.3314, -5.4592],
    "noise": [-4.1933, -3.8164, -4.1526, -3.904, -4.0104, -4.1, -3.7854, -4.2919, -3.7227, -4.1366,
              -4.0937, -3.7214, -4.2514, -4.0138, -3.7239, -4.2081, -4.1498, -3.7157, -3.9376, -4.2953],
}
PARAMS, TOKENS_PER_STEP = 1e6, 1000


def start_index(tau):
    target = tau * STEPS[-1]
    return min(range(len(STEPS)), key=lambda c: (abs(STEPS[c] - target), c))


def planted(name, tau, axis):
    # float32 exactly as the score file stores it (decimal -> double -> float32, as Math.fround does)
    lp = np.array([np.float32(float(v)) for v in PLANTED[name]], dtype=np.float32).astype(np.float64)
    p = np.exp(-lp)
    i0 = start_index(tau)
    y = p[i0:] / p[i0]
    s = np.array(STEPS[i0:], dtype=np.float64)
    x = np.log(s) if axis == "log_step" else np.log(6 * PARAMS * s * TOKENS_PER_STEP)
    return fit(x, y)


out = {
    "versions": {"statsmodels": statsmodels.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
    "pure": {name: fit(x, y) for name, x, y in PURE},
    "nan": fit(NAN_X, NAN_Y),
    "t": [{"t": t, "df": df, "p": float(2 * stats.t.sf(abs(t), df))} for t, df in T_GRID],
    "planted": {
        f"{name} {tau} {axis}": planted(name, tau, axis)
        for name in PLANTED
        for tau in (0.1, 0.7)
        for axis in ("log_step", "log_flops")
    },
}
print(json.dumps(out, indent=1))
