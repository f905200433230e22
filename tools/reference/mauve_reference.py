"""Reference values for test/mauve.test.ts, computed once and pasted there.

Run: python3 tools/reference/mauve_reference.py   (numpy 2.4; no sklearn, faiss or mauve-text needed)

The divergence curve and its area follow mauve-text's compute_mauve.py (github.com/krishnap25/mauve):
mixture weights np.linspace(1e-6, 1 - 1e-6, m), R = w p + (1 - w) q, points exp(-c KL(q||R)),
exp(-c KL(p||R)) between the end points (1, 0) and (0, 1), MAUVE = 0.5 (auc(x, y) + auc(y, x)) with
sklearn's auc on the points sorted by x (resp. y), i.e. np.trapezoid. None of the histograms below has
tied x or y, so the order numpy's argsort gives ties does not matter.
The eigenvalues come from numpy.linalg.eigh; the PCA from eigh of np.cov (ddof=1), which is what
sklearn's PCA reports as explained_variance_ (S^2 / (n - 1) of the centred SVD).
"""
import numpy as np

np.set_printoptions(precision=17, floatmode="unique", linewidth=140)


def kl(a, b):
    if np.any((a != 0) & (b == 0)):
        return np.inf
    i = (a != 0) & (b != 0)
    return float(np.sum(a[i] * np.log(a[i] / b[i])))


def curve(p, q, c=5.0, m=25):
    pts = [[0.0, np.inf]]
    for w in np.sort(np.linspace(1e-6, 1 - 1e-6, m)):
        r = w * p + (1 - w) * q
        pts.append([kl(q, r), kl(p, r)])
    pts.append([np.inf, 0.0])
    return np.exp(-c * np.asarray(pts))


def area(cv):
    x, y = cv.T
    i, j = np.argsort(x, kind="stable"), np.argsort(y, kind="stable")
    return 0.5 * (np.trapezoid(y[i], x[i]) + np.trapezoid(x[j], y[j]))


def show(name, p, q, c=5.0, m=25, points=False):
    cv = curve(np.asarray(p, float), np.asarray(q, float), c, m)
    print(f"{name}: mauve = {area(cv)!r}")
    if points:
        print("  x =", repr(cv[:, 0].tolist()))
        print("  y =", repr(cv[:, 1].tolist()))


print("== divergence curves ==")
show("half overlap (0.5,0.5,0) vs (0,0.5,0.5)", [0.5, 0.5, 0], [0, 0.5, 0.5])
show("skewed (.4,.3,.2,.1) vs uniform 4", [0.4, 0.3, 0.2, 0.1], [0.25] * 4, points=True)
show("disjoint supports", [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5])
p10 = np.array([7, 0, 3, 12, 5, 1, 0, 9, 2, 11], float)
q10 = np.array([4, 6, 3, 8, 0, 5, 2, 9, 7, 6], float)
show("counts/sum, 10 buckets, c=5, m=25", p10 / p10.sum(), q10 / q10.sum())
show("same, c=2, m=7", p10 / p10.sum(), q10 / q10.sum(), c=2.0, m=7, points=True)
show("pipeline: (40,30,20,10)/100 vs uniform 4", [0.4, 0.3, 0.2, 0.1], [0.25] * 4)
# Exact area of the disjoint-support curve x^(1/5) + y^(1/5) = 1: 5 B(5, 6) = 1/252.
print("disjoint exact area 1/252 =", 1 / 252)

print("== eigh of M[i][j] = 1/(i+j+1) + (i+1)*[i==j], 6 x 6 ==")
M = np.array([[1 / (i + j + 1) + (i + 1) * (i == j) for j in range(6)] for i in range(6)])
print(repr(np.linalg.eigh(M)[0][::-1].tolist()))

print("== PCA of the planted-plane data (40 x 5) ==")
b1 = np.array([1, 2, 0, -1, 1]) / np.sqrt(7)
b2 = np.array([0, 1, 1, 1, -1]) / 2.0
X = np.array([
    3 * np.sin(0.7 * r + 0.3) * b1 + 1.5 * np.cos(1.3 * r) * b2 + 0.01 * np.sin(2.1 * r + np.arange(5))
    for r in range(40)
])
lam = np.linalg.eigh(np.cov(X.T))[0][::-1]
print("variances =", repr(lam.tolist()))
ratio = lam / lam.sum()
print("ratios =", repr(ratio.tolist()), "kept(0.9) =", int(np.argmax(np.cumsum(ratio) >= 0.9)) + 1)
X4 = X[:4]
lam4 = np.linalg.eigh(np.cov(X4.T))[0][::-1]
print("first 4 rows (n < d): variances =", repr(lam4[:4].tolist()))
