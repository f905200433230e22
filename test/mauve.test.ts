/**
 * MAUVE (lib/analysis/mauve.ts): the divergence curve and its area against mauve-text's definitions,
 * the eigen-decomposition and PCA against numpy, k-means on planted clusters, and the whole score on
 * samples whose answer is known.
 *
 * Expected values: computed ONCE with numpy 2.4 by tools/reference/mauve_reference.py (which holds
 * the same histograms, matrix and planted data) and pasted here. The samples of the `mauve` tests are
 * drawn here from mulberry32; their expected values do not depend on the draw (see each test).
 */
import { describe, expect, it } from "vitest"
import {
  autoBuckets,
  curveArea,
  divergenceCurve,
  kmeans,
  linspace,
  mauve,
  pca,
  symmetricEigen,
  type Features,
} from "../lib/analysis/mauve.ts"
import { mulberry32 } from "../lib/random.ts"

const REF = {
  halfOverlap: 0.09257236294829274,
  skewed: 0.9579019525489152,
  /** Disjoint supports: x = (1−λ)^5, y = λ^5 on the default grid, whatever the histograms. */
  disjoint: 0.0040720962619612555,
  counts10: 0.5229353805675194,
  counts10c2m7: 0.8420504771734895,
  skewedX: [
    1.0, 0.9999999999994995, 0.9991320358701682, 0.9965297823391147, 0.9921979072308891, 0.9861441946665148, 0.9783795518891065,
    0.9689180190859853, 0.9577767824845551, 0.9449761910947752, 0.9305397775801786, 0.9144942838665204, 0.8968696922479852,
    0.8776992629325446, 0.8570195791897839, 0.8348706015384023, 0.8112957327527429, 0.786341895899537, 0.7600596281670375,
    0.7325031939590608, 0.7037307216524789, 0.673804369637923, 0.6427905288939657, 0.6107600715512354, 0.5777886579315629,
    0.5439571187715366, 0.0,
  ],
  skewedY: [
    0.0, 0.5873116521605376, 0.6117732805529575, 0.6361764003597276, 0.6604602401179809, 0.6845614727964289, 0.7084141096885698,
    0.7319493790607601, 0.7550955869718611, 0.7777779571759083, 0.7999184463962975, 0.8214355304872811, 0.8422439560339283,
    0.8622544507289989, 0.8813733843294704, 0.8995023700352685, 0.9165377936097542, 0.9323702542844637, 0.9468838971928883,
    0.9599556113823264, 0.9714540598184865, 0.9812384974384116, 0.9891573190618895, 0.9950462590939848, 0.9987261367672511,
    0.999999999999245, 1.0,
  ],
  counts10c2m7X: [
    1.0, 0.9999997999995561, 0.9542953298916732, 0.8833260665534858, 0.7852656167492938, 0.6556903978772995, 0.4816069550167411,
    0.008836508706776984, 0.0,
  ],
  counts10c2m7Y: [
    0.0, 0.040094413997653906, 0.4970778669851013, 0.6294093485710267, 0.7420823497141524, 0.8430728906234403, 0.9314461009940851,
    0.9999996799992834, 1.0,
  ],
  /** numpy.linalg.eigh of M[i][j] = 1/(i+j+1) + (i+1)·[i = j], 6 × 6, descending. */
  eigM: [6.141910684854164, 5.161510651264512, 4.208181391314868, 3.295480725110688, 2.446520821661162, 1.6246064040052817],
  /** eigh(np.cov(X.T)) of the planted-plane data, descending (the last is 0 up to rounding). */
  planeVariances: [4.614864380244662, 1.1784306402726532, 0.00010456708462324209, 1.2236243028349863e-5, 0],
  /** The same for its first 4 rows (n < d: the Gram route), the 4 leading ones. */
  plane4Variances: [2.285295036779474, 0.25492505773726964, 7.107420894764241e-5, 0],
} as const

const normalise = (c: ReadonlyArray<number>): Float64Array => {
  const s = c.reduce((a, b) => a + b, 0)
  return Float64Array.from(c, (v) => v / s)
}
const P10 = normalise([7, 0, 3, 12, 5, 1, 0, 9, 2, 11])
const Q10 = normalise([4, 6, 3, 8, 0, 5, 2, 9, 7, 6])

/** A standard normal draw (Box–Muller). */
const gauss = (next: () => number): number => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next())

/** rows of centre + σ·N(0, I), row-major. */
const blob = (next: () => number, centre: ReadonlyArray<number>, rows: number, sigma: number): number[] =>
  Array.from({ length: rows * centre.length }, (_, i) => centre[i % centre.length] + sigma * gauss(next))

const unit = (dim: number, i: number, scale = 10): number[] => Array.from({ length: dim }, (_, j) => (j === i ? scale : 0))

const features = (data: ReadonlyArray<number>, dim: number): Features => ({ data: Float64Array.from(data), dim })

describe("buckets and grid", () => {
  it("auto buckets are max(2, round(min/10)) with Python's half-to-even round", () => {
    expect([autoBuckets(25, 100), autoBuckets(35, 35), autoBuckets(45, 50), autoBuckets(15, 15), autoBuckets(5000, 4990)]).toEqual([2, 4, 4, 2, 499])
  })
  it("linspace is numpy's (the last point exactly the stop)", () => {
    const w = linspace(1e-6, 1 - 1e-6, 25)
    expect(w[0]).toBe(1e-6)
    expect(w[24]).toBe(1 - 1e-6)
    expect(w[12]).toBeCloseTo(0.5, 15)
    expect(Array.from(linspace(0, 1, 1))).toEqual([0])
  })
})

describe("divergence curve and area (mauve-text's definitions, numpy reference)", () => {
  it("matches the reference curve point by point and its MAUVE", () => {
    const c = divergenceCurve([0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], 5, 25)
    expect(c).toHaveLength(27)
    c.forEach((pt, i) => {
      expect(pt.x).toBeCloseTo(REF.skewedX[i], 13)
      expect(pt.y).toBeCloseTo(REF.skewedY[i], 13)
    })
    expect(curveArea(c)).toBeCloseTo(REF.skewed, 13)
  })
  it("honours scaling and the number of points", () => {
    const c = divergenceCurve(P10, Q10, 2, 7)
    expect(c.map((p) => p.x)).toHaveLength(9)
    c.forEach((pt, i) => {
      expect(pt.x).toBeCloseTo(REF.counts10c2m7X[i], 13)
      expect(pt.y).toBeCloseTo(REF.counts10c2m7Y[i], 13)
    })
    expect(curveArea(c)).toBeCloseTo(REF.counts10c2m7, 13)
    expect(curveArea(divergenceCurve(P10, Q10, 5, 25))).toBeCloseTo(REF.counts10, 13)
  })
  it("half overlap, disjoint supports, identical histograms", () => {
    expect(curveArea(divergenceCurve([0.5, 0.5, 0], [0, 0.5, 0.5], 5, 25))).toBeCloseTo(REF.halfOverlap, 13)
    expect(curveArea(divergenceCurve([0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], 5, 25))).toBeCloseTo(REF.disjoint, 13)
    expect(curveArea(divergenceCurve([1, 0], [0, 1], 5, 25))).toBeCloseTo(REF.disjoint, 13)
    expect(curveArea(divergenceCurve(P10, P10, 5, 25))).toBeCloseTo(1, 14)
    // Interior points all (1, 1): the tie order decides; the curve's own order gives 1 (numpy's argsort gave 0.75).
    const tied = [{ x: 1, y: 0 }, ...Array.from({ length: 25 }, () => ({ x: 1, y: 1 })), { x: 0, y: 1 }]
    expect(curveArea(tied)).toBe(1)
    expect(curveArea([...tied].reverse())).toBe(1)
  })
  it("is symmetric under swapping p and q, and rejects bad input", () => {
    expect(curveArea(divergenceCurve(Q10, P10, 5, 25))).toBeCloseTo(REF.counts10, 13)
    expect(() => divergenceCurve([1], [0.5, 0.5], 5, 25)).toThrow(/buckets/)
    expect(() => divergenceCurve([1], [1], 0, 25)).toThrow(/scaling/)
    expect(() => divergenceCurve([1], [1], 5, 0)).toThrow(/points/)
  })
})

describe("symmetricEigen", () => {
  const residual = (a: ArrayLike<number>, n: number): { maxRes: number; maxOrth: number } => {
    const { values, vectors } = symmetricEigen(a, n)
    let maxRes = 0
    let maxOrth = 0
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n; i++) {
        let s = 0
        for (let j = 0; j < n; j++) s += a[i * n + j] * vectors[k * n + j]
        maxRes = Math.max(maxRes, Math.abs(s - values[k] * vectors[k * n + i]))
      }
      for (let l = 0; l < n; l++) {
        let s = 0
        for (let j = 0; j < n; j++) s += vectors[k * n + j] * vectors[l * n + j]
        maxOrth = Math.max(maxOrth, Math.abs(s - (k === l ? 1 : 0)))
      }
    }
    return { maxRes, maxOrth }
  }
  it("gives numpy.linalg.eigh's eigenvalues, descending, with orthonormal eigenvectors", () => {
    const n = 6
    const m = Array.from({ length: n * n }, (_, k) => {
      const i = Math.floor(k / n)
      const j = k % n
      return 1 / (i + j + 1) + (i === j ? i + 1 : 0)
    })
    const { values } = symmetricEigen(m, n)
    Array.from(values).forEach((v, i) => expect(v).toBeCloseTo(REF.eigM[i], 13))
    const { maxRes, maxOrth } = residual(m, n)
    expect(maxRes).toBeLessThan(1e-13)
    expect(maxOrth).toBeLessThan(1e-13)
  })
  it("solves a random 60 × 60 matrix and degenerate ones (identity, a repeated eigenvalue, 1 × 1)", () => {
    const n = 60
    const next = mulberry32(7)
    const a = new Float64Array(n * n)
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = next() - 0.5
    const r = residual(a, n)
    expect(r.maxRes).toBeLessThan(1e-12)
    expect(r.maxOrth).toBeLessThan(1e-12)
    let trace = 0
    for (let i = 0; i < n; i++) trace += a[i * n + i]
    expect(symmetricEigen(a, n).values.reduce((s, v) => s + v, 0)).toBeCloseTo(trace, 11)
    const id = Float64Array.from({ length: 16 }, (_, k) => (k % 5 === 0 ? 1 : 0))
    expect(Array.from(symmetricEigen(id, 4).values)).toEqual([1, 1, 1, 1])
    // 2·I + 1·1ᵀ on 3 dims: eigenvalues 5, 2, 2.
    const rep = Float64Array.from({ length: 9 }, (_, k) => (k % 4 === 0 ? 3 : 1))
    Array.from(symmetricEigen(rep, 3).values).forEach((v, i) => expect(v).toBeCloseTo([5, 2, 2][i], 13))
    expect(residual(rep, 3).maxRes).toBeLessThan(1e-13)
    expect(Array.from(symmetricEigen([4], 1).values)).toEqual([4])
  })
})

describe("pca", () => {
  // 40 points near the plane spanned by b1, b2 in R⁵ (the same formula as the reference script).
  const b1 = [1, 2, 0, -1, 1].map((v) => v / Math.sqrt(7))
  const b2 = [0, 1, 1, 1, -1].map((v) => v / 2)
  const plane = Array.from({ length: 40 * 5 }, (_, k) => {
    const r = Math.floor(k / 5)
    const j = k % 5
    return 3 * Math.sin(0.7 * r + 0.3) * b1[j] + 1.5 * Math.cos(1.3 * r) * b2[j] + 0.01 * Math.sin(2.1 * r + j)
  })
  it("gives numpy's covariance eigenvalues, keeps the 2 components of 90% variance, and recovers the plane", () => {
    const r = pca(plane, 40, 5, 0.9)
    Array.from(r.variances).forEach((v, i) => expect(v).toBeCloseTo(REF.planeVariances[i], 11))
    expect(r.ratios.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 14)
    expect(r.kept).toBe(2)
    // b1 and b2 lie (to the 0.01 noise) in the span of the kept components.
    for (const b of [b1, b2]) {
      let inSpan = 0
      for (let c = 0; c < r.kept; c++) inSpan += b.reduce((s, v, j) => s + v * r.components[c * 5 + j], 0) ** 2
      expect(inSpan).toBeGreaterThan(1 - 1e-4)
    }
    expect(pca(plane, 40, 5, 0.99).kept).toBe(2)
    expect(pca(plane, 40, 5, 0.9999999).kept).toBe(4)
  })
  it("takes the Gram route when rows < dim: same eigenvalues, unit components, Z = X_c·Vᵀ", () => {
    const x = plane.slice(0, 20)
    const r = pca(x, 4, 5, 0.999999)
    expect(r.variances).toHaveLength(4)
    Array.from(r.variances).forEach((v, i) => expect(v).toBeCloseTo(REF.plane4Variances[i], 11))
    expect(r.kept).toBe(3)
    for (let c = 0; c < r.kept; c++) {
      const v = r.components.subarray(c * 5, c * 5 + 5)
      expect(v.reduce((s, t) => s + t * t, 0)).toBeCloseTo(1, 12)
      for (let row = 0; row < 4; row++) {
        let z = 0
        for (let j = 0; j < 5; j++) z += (x[row * 5 + j] - r.mean[j]) * v[j]
        expect(r.projected[row * r.kept + c]).toBeCloseTo(z, 12)
      }
    }
  })
  it("rejects a zero-variance set and a bad fraction", () => {
    expect(() => pca([1, 2, 1, 2, 1, 2], 3, 2, 0.9)).toThrow(/variance 0/)
    expect(() => pca(plane, 40, 5, 1)).toThrow(/explainedVariance/)
  })
})

describe("kmeans", () => {
  const next = mulberry32(11)
  const centres = [
    [0, 0],
    [10, 0],
    [0, 10],
  ]
  const sizes = [30, 20, 10]
  const x = Float64Array.from(centres.flatMap((c, i) => blob(next, c, sizes[i], 0.5)))
  const truth = sizes.flatMap((s, i) => Array<number>(s).fill(i))
  it("recovers three separated blobs (labels up to renaming, centroids at the blob means)", () => {
    const r = kmeans(x, 60, 2, 3, { seed: 1 })
    const rename = new Map<number, number>()
    truth.forEach((t, i) => {
      expect(rename.get(t) ?? r.labels[i]).toBe(r.labels[i])
      rename.set(t, r.labels[i])
    })
    expect(new Set(rename.values()).size).toBe(3)
    centres.forEach((c, t) => {
      const b = rename.get(t)!
      expect(Math.hypot(r.centroids[b * 2] - c[0], r.centroids[b * 2 + 1] - c[1])).toBeLessThan(0.5)
    })
    expect(r.iterations).toBeLessThan(20)
  })
  it("is deterministic for a seed, and restarts never raise the inertia", () => {
    const a = kmeans(x, 60, 2, 5, { seed: 3 })
    const b = kmeans(x, 60, 2, 5, { seed: 3 })
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels))
    expect(Array.from(a.centroids)).toEqual(Array.from(b.centroids))
    expect(a.inertia).toBe(b.inertia)
    expect(kmeans(x, 60, 2, 5, { seed: 3, inits: 10 }).inertia).toBeLessThanOrEqual(a.inertia)
  })
  it("fills every cluster when k = rows, and rejects k > rows", () => {
    const r = kmeans(x.subarray(0, 12), 6, 2, 6, { seed: 2 })
    expect(new Set(r.labels).size).toBe(6)
    expect(r.inertia).toBe(0)
    expect(() => kmeans(x, 60, 2, 61, { seed: 1 })).toThrow(/k must be/)
  })
})

describe("mauve", () => {
  const dim = 6
  it("is 1 for identical samples", () => {
    const next = mulberry32(21)
    const data = [...blob(next, unit(dim, 0), 60, 2), ...blob(next, unit(dim, 1), 40, 2)]
    const r = mauve(features(data, dim), { data: Float32Array.from(data), dim }, { seed: 5 })
    expect(r.buckets).toBe(10)
    expect(Array.from(r.p)).toEqual(Array.from(r.q))
    expect(Math.abs(r.mauve - 1)).toBeLessThan(1e-12)
  })
  it("compares rows by direction (L2-normalised): P = 3·Q scores 1, a zero row is kept as zero", () => {
    const next = mulberry32(26)
    const q = blob(next, unit(dim, 0), 50, 4)
    const r = mauve(features(q.map((v) => 3 * v), dim), features(q, dim), { seed: 2 })
    expect(Math.abs(r.mauve - 1)).toBeLessThan(1e-12)
    const withZero = [...Array<number>(dim).fill(0), ...q.slice(dim)]
    expect(mauve(features(withZero, dim), features(q, dim), { seed: 2 }).mauve).toBeGreaterThan(0.5)
  })
  it("is the disjoint-support value for clusters at +10 and −10 (every bucket pure)", () => {
    // Every bucket holds P rows only or Q rows only, so the curve is ((1−λ)^5, λ^5) and MAUVE the
    // grid's area of it: 0.0040721 (the exact curve's area is 1/252).
    const next = mulberry32(22)
    const p = features(blob(next, [10, 10, 10, 10], 100, 1), 4)
    const q = features(blob(next, [-10, -10, -10, -10], 100, 1), 4)
    const r = mauve(p, q, { seed: 1 })
    expect(r.buckets).toBe(10)
    for (let b = 0; b < r.buckets; b++) expect(r.p[b] === 0 || r.q[b] === 0).toBe(true)
    expect(r.mauve).toBeCloseTo(REF.disjoint, 13)
  })
  it("rises with the fraction w of P drawn from Q's distribution", () => {
    const next = mulberry32(23)
    const q = features(blob(next, unit(dim, 0), 200, 1.5), dim)
    const scores = [0, 0.25, 0.5, 0.75, 1].map((w) => {
      const same = Math.round(w * 200)
      const p = features([...blob(next, unit(dim, 0), same, 1.5), ...blob(next, unit(dim, 1), 200 - same, 1.5)], dim)
      return mauve(p, q, { seed: 9 }).mauve
    })
    for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeGreaterThan(scores[i - 1])
    expect(scores[0]).toBeCloseTo(REF.disjoint, 13)
    expect(scores[4]).toBeGreaterThan(0.8)
  })
  it("equals the score of the planted proportions when k-means finds the planted clusters", () => {
    // Four directions; P takes 40/30/20/10 rows of them, Q 25 each: p = (.4, .3, .2, .1), q uniform.
    const next = mulberry32(24)
    const rowsOf = (counts: number[]) => counts.flatMap((c, i) => blob(next, unit(dim, i), c, 0.5))
    const r = mauve(features(rowsOf([40, 30, 20, 10]), dim), features(rowsOf([25, 25, 25, 25]), dim), { seed: 4, buckets: 4 })
    expect(Array.from(r.p).sort()).toEqual([0.1, 0.2, 0.3, 0.4])
    expect(Array.from(r.q)).toEqual([0.25, 0.25, 0.25, 0.25])
    expect(r.mauve).toBeCloseTo(REF.skewed, 13)
    expect(r.curve).toHaveLength(27)
    expect(r.dims).toBeGreaterThanOrEqual(3)
  })
  it("is deterministic for a seed and follows the options", () => {
    const next = mulberry32(25)
    const p = features(blob(next, unit(dim, 0), 80, 4), dim)
    const q = features(blob(next, unit(dim, 0, 8), 80, 4), dim)
    const a = mauve(p, q, { seed: 7 })
    expect(mauve(p, q, { seed: 7 })).toEqual(a)
    const b = mauve(p, q, { seed: 7, buckets: 5, curvePoints: 9, scaling: 2, kmeansInits: 1, kmeansIters: 50, explainedVariance: 0.5 })
    expect(b.buckets).toBe(5)
    expect(b.curve).toHaveLength(11)
    expect(b.mauve).toBeCloseTo(curveArea(divergenceCurve(b.p, b.q, 2, 9)), 15)
  })
  it("rejects too few rows, mismatched dims, non-finite values and bad options", () => {
    const ok = features([1, 2, 3, 4, 5, 6], 2)
    expect(() => mauve(features([1, 2], 2), ok, { seed: 1 })).toThrow(/P has 1 row/)
    expect(() => mauve(ok, features([1, 2, 3], 3), { seed: 1 })).toThrow(/Q has 1 row/)
    expect(() => mauve(ok, features([1, 2, 3, 4, 5, 6], 3), { seed: 1 })).toThrow(/dim 2, Q has dim 3/)
    expect(() => mauve(ok, features([1, 2, 3], 2), { seed: 1 })).toThrow(/not a multiple/)
    expect(() => mauve(ok, features([1, NaN, 3, 4], 2), { seed: 1 })).toThrow(/Q row 0 has a non-finite/)
    expect(() => mauve(features([1, 2, Infinity, 4], 2), ok, { seed: 1 })).toThrow(/P row 1 has a non-finite/)
    expect(() => mauve(ok, ok, { seed: 1, buckets: 7 })).toThrow(/buckets/)
    expect(() => mauve(ok, ok, { seed: 1, buckets: 2.5 })).toThrow(/buckets/)
  })
})
