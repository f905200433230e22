/**
 * MAUVE (Pillutla et al., NeurIPS 2021): how close the distribution P of model generations is to
 * the distribution Q of human text, from their feature vectors (pure, no I/O). Follows
 * `compute_mauve` of the reference package mauve-text (github.com/krishnap25/mauve, 2024-07 head).
 *
 * Steps, with P [n_p × d] and Q [n_q × d] the feature rows:
 *   1. union    X = [Q; P] ((n_q + n_p) × d, Q's rows first, as mauve-text stacks them), each row
 *               divided by its L2 norm (a zero row stays zero: sklearn's `normalize`).
 *   2. PCA      centre X on its column means μ; the eigenpairs (λ_i, v_i) of the covariance
 *               C = (X−μ)ᵀ(X−μ)/(n−1), λ descending, i < min(n, d); ratio_i = λ_i / tr C; keep the
 *               first k components, k = 1 + the first i with ratio_0 + … + ratio_i ≥ explainedVariance
 *               (0.9); Z = (X−μ)·[v_0 … v_{k−1}] (n × k). No whitening, all rows (pca_max_data = −1).
 *   3. k-means  B buckets, B = "auto" → max(2, round(min(n_p, n_q)/10)), round half to even as
 *               Python's `round` (25 → 2, 35 → 4, 45 → 4). Lloyd's algorithm on Z with `kmeansInits`
 *               (5) restarts of at most `kmeansIters` (500) iterations; the run of lowest inertia
 *               Σ‖z − c_label‖² is kept. Labels: each row's nearest centroid.
 *   4. hist     p_b = #{P rows labelled b}/n_p, q_b = #{Q rows labelled b}/n_q.
 *   5. curve    λ_j = linspace(1e-6, 1 − 1e-6, curvePoints = 25) (numpy's: j·step + start, the last
 *               set to the stop), R_j = λ_j·p + (1 − λ_j)·q,
 *                 x_j = exp(−c·KL(q‖R_j)),  y_j = exp(−c·KL(p‖R_j)),   c = scaling (5),
 *               KL(a‖b) = Σ_{a_b>0} a_b ln(a_b/b_b) (∞ if some a_b > 0 = b_b); with the end points
 *               (1, 0) first (KL pair (0, ∞)) and (0, 1) last.
 *   6. MAUVE    ½(∫y dx + ∫x dy): trapezoids over the points sorted by x, and over them sorted by y
 *               (mauve-text averages both `sklearn.metrics.auc` orders; they agree for a monotone curve).
 *
 * Worked example (buckets given): p = (0.5, 0.5, 0), q = (0, 0.5, 0.5) share half their mass;
 * λ = 0.5 gives R = (0.25, 0.5, 0.25), KL(q‖R) = KL(p‖R) = 0.5·ln 2, x = y = 2^(−2.5) = 0.1768;
 * over the 25 + 2 points MAUVE = 0.092572 (tools/reference/mauve_reference.py). Disjoint supports give
 * x = (1−λ)^c, y = λ^c whatever the histograms, and MAUVE = 0.0040721 on the default grid (the exact
 * curve's area is 5·B(5, 6) = 1/252 = 0.0039683); identical histograms give MAUVE = 1.
 *
 * Departures from mauve-text (the definitions above are its; the numerics are ours):
 *   - k-means: mauve-text calls faiss (float32, centroids initialised as a random sample of rows,
 *     exactly `niter` iterations, empty clusters split from a large one, rows subsampled above 256
 *     per centroid). Here: float64, k-means++ seeding (Arthur & Vassilvitskii 2007) from
 *     lib/random.ts's mulberry32, restart r seeded by streamSeed(seed, KMEANS_STREAM, r); Lloyd stops
 *     early at a fixed point (labels unchanged: further iterations would change nothing); an empty
 *     cluster is moved onto the row farthest from its centroid; all rows are used. Same seed, same
 *     histograms, on every platform. Buckets come out in a different order than faiss's, and a
 *     different local optimum may be found, so MAUVE agrees with mauve-text's in distribution, not
 *     digit for digit.
 *   - PCA: the symmetric eigen-decomposition (Householder tridiagonalisation + implicit QL) of the
 *     d × d covariance, or of the n × n Gram matrix (X−μ)(X−μ)ᵀ when n < d, instead of sklearn's SVD;
 *     the same λ and subspace (component signs may differ, which no distance sees).
 *   - the area: points tied in x are taken in decreasing y (and tied in y in decreasing x), the
 *     curve's own order. numpy's argsort leaves ties in an unspecified order: for P = Q (every
 *     x_j = y_j = 1) mauve-text's value depends on the sort and numpy 2.4 on AVX-512 gives 0.75,
 *     here it is 1. KL is clamped at 0 so a rounding residue cannot push x or y above 1.
 *   - not computed: the smoothed MAUVE* and the frontier integral of the same package.
 *
 * Cost (pure JS, one core): PCA ≈ n·d² + 10·min(n, d)³ flops, k-means ≈ inits · iterations · n·B·k.
 * Measured: the eigen-decomposition of d = 1024 takes 11 s; the whole score of 2 × 1000 rows of
 * isotropic noise at d = 1024 (676 components kept, B = 100) 20 s. At mauve-text's usual 2 × 5000 rows
 * with B = 500 the k-means dominates: expect many minutes.
 */
import { mulberry32, streamSeed } from "../random.ts"

/** A feature matrix: `data` row-major [rows × dim], rows = data.length / dim. */
export interface Features {
  readonly data: Float32Array | Float64Array
  readonly dim: number
}

export interface MauveOptions {
  /** c in exp(−c·KL); mauve-text's `mauve_scaling_factor`. Default 5. */
  readonly scaling?: number
  /** Histogram size; "auto" (default) → max(2, round(min(n_p, n_q)/10)). */
  readonly buckets?: number | "auto"
  /** Fraction of variance the kept PCA components explain, in (0, 1). Default 0.9. */
  readonly explainedVariance?: number
  /** Seed of k-means++ (32-bit). */
  readonly seed: number
  /** k-means restarts, the lowest inertia kept (`kmeans_num_redo`). Default 5. */
  readonly kmeansInits?: number
  /** Lloyd iterations at most per restart (`kmeans_max_iter`). Default 500. */
  readonly kmeansIters?: number
  /** Mixture weights on the divergence curve (`divergence_curve_discretization_size`). Default 25. */
  readonly curvePoints?: number
}

/** A point of the divergence curve: x = exp(−c·KL(q‖R)), y = exp(−c·KL(p‖R)), both in [0, 1]. */
export interface CurvePoint {
  readonly x: number
  readonly y: number
}

export interface MauveResult {
  /** MAUVE in [0, 1]; 1 when the histograms are equal. */
  readonly mauve: number
  /** [curvePoints + 2]: (1, 0), then λ ascending, then (0, 1). */
  readonly curve: ReadonlyArray<CurvePoint>
  readonly buckets: number
  /** PCA components kept (k of step 2). */
  readonly dims: number
  /** [buckets] histogram of P's labels (sums to 1). */
  readonly p: Float64Array
  /** [buckets] histogram of Q's labels (sums to 1). */
  readonly q: Float64Array
}

/** The stream purpose of k-means++ restarts under lib/random.ts's streamSeed. */
export const KMEANS_STREAM = 0x6b6d

const DEFAULTS = { scaling: 5, explainedVariance: 0.9, kmeansInits: 5, kmeansIters: 500, curvePoints: 25 } as const

const isCount = (x: number, min: number): boolean => Number.isInteger(x) && x >= min

/** Python's round(x) for x ≥ 0: to the nearest integer, halves to the even one. */
const roundHalfEven = (x: number): number => {
  const f = Math.floor(x)
  const r = x - f
  return r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f
}

/** mauve-text's `num_buckets = 'auto'`: max(2, round(min(n_p, n_q) / 10)). */
export const autoBuckets = (np: number, nq: number): number => Math.max(2, roundHalfEven(Math.min(np, nq) / 10))

/** numpy.linspace(start, stop, num): j·step + start, the last point exactly `stop`. */
export const linspace = (start: number, stop: number, num: number): Float64Array => {
  const out = new Float64Array(num)
  const step = (stop - start) / (num - 1)
  for (let j = 0; j < num; j++) out[j] = num > 1 ? j * step + start : start
  if (num > 1) out[num - 1] = stop
  return out
}

// ---------------------------------------------------------------------------------------------
// Divergence curve and its area

/** KL(a‖b) = Σ_{a_i>0} a_i ln(a_i / b_i), ∞ when some a_i > 0 = b_i, clamped at ≥ 0. */
export const klMultinomial = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < a.length; i++) {
    if (a[i] === 0) continue
    if (b[i] === 0) return Infinity
    s += a[i] * Math.log(a[i] / b[i])
  }
  return Math.max(0, s)
}

/**
 * The divergence curve of histograms p, q (same length, each summing to 1) on `points` mixture
 * weights λ = linspace(1e-6, 1 − 1e-6, points): (1, 0), then (exp(−c·KL(q‖R_λ)), exp(−c·KL(p‖R_λ)))
 * for λ ascending with R_λ = λp + (1−λ)q, then (0, 1). [points + 2] points.
 */
export const divergenceCurve = (p: ArrayLike<number>, q: ArrayLike<number>, scaling: number, points: number): CurvePoint[] => {
  if (p.length !== q.length) throw new Error(`divergenceCurve: histograms of ${p.length} and ${q.length} buckets`)
  if (!(scaling > 0) || !Number.isFinite(scaling)) throw new Error(`divergenceCurve: scaling must be > 0, got ${scaling}`)
  if (!isCount(points, 1)) throw new Error(`divergenceCurve: points must be an integer ≥ 1, got ${points}`)
  const r = new Float64Array(p.length)
  const curve: CurvePoint[] = [{ x: 1, y: 0 }]
  for (const w of linspace(1e-6, 1 - 1e-6, points)) {
    for (let i = 0; i < r.length; i++) r[i] = w * p[i] + (1 - w) * q[i]
    curve.push({ x: Math.exp(-scaling * klMultinomial(q, r)), y: Math.exp(-scaling * klMultinomial(p, r)) })
  }
  curve.push({ x: 0, y: 1 })
  return curve
}

/** Σ trapezoids of v over u, the points sorted by u ascending and, among equal u, v descending. */
const trapezoid = (u: ReadonlyArray<number>, v: ReadonlyArray<number>): number => {
  const order = Array.from(u, (_, i) => i).sort((i, j) => u[i] - u[j] || v[j] - v[i])
  let area = 0
  for (let k = 1; k < order.length; k++) {
    const a = order[k - 1]
    const b = order[k]
    area += ((u[b] - u[a]) * (v[a] + v[b])) / 2
  }
  return area
}

/** MAUVE of a divergence curve: ½(∫y dx + ∫x dy) by trapezoids (see the module comment on ties). */
export const curveArea = (curve: ReadonlyArray<CurvePoint>): number => {
  const x = curve.map((c) => c.x)
  const y = curve.map((c) => c.y)
  return 0.5 * (trapezoid(x, y) + trapezoid(y, x))
}

// ---------------------------------------------------------------------------------------------
// Symmetric eigen-decomposition and PCA

export interface Eigen {
  /** [n] eigenvalues, descending. */
  readonly values: Float64Array
  /** [n × n] row i is the unit eigenvector of values[i]. */
  readonly vectors: Float64Array
}

/**
 * All eigenpairs of the symmetric n × n matrix `a` (row-major; only read): Householder reduction to
 * a tridiagonal T = QᵀAQ, then implicit-shift QL on T (Wilkinson shifts), the rotations accumulated
 * onto Q. Deterministic; ≈ 10n³ flops. Eigenvectors are kept as rows so that every update runs
 * along contiguous memory.
 */
export const symmetricEigen = (a: ArrayLike<number>, n: number): Eigen => {
  if (a.length !== n * n) throw new Error(`symmetricEigen: ${a.length} entries for ${n} × ${n}`)
  const m = Float64Array.from(a)
  const qt = new Float64Array(n * n) // Qᵀ: row i of Qᵀ is column i of Q
  for (let i = 0; i < n; i++) qt[i * n + i] = 1
  const v = new Float64Array(n)
  const w = new Float64Array(n)
  // Householder: for column k, reflect m[k+1.., k] onto a multiple of e_{k+1}.
  for (let k = 0; k < n - 2; k++) {
    let norm2 = 0
    for (let i = k + 1; i < n; i++) norm2 += m[i * n + k] ** 2
    if (norm2 === 0) continue
    const x0 = m[(k + 1) * n + k]
    const alpha = x0 >= 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2)
    let vv = 0
    for (let i = k + 1; i < n; i++) {
      v[i] = m[i * n + k] - (i === k + 1 ? alpha : 0)
      vv += v[i] * v[i]
    }
    if (vv === 0) continue
    const beta = 2 / vv // H = I − β v vᵀ on indices k+1 … n−1
    // m' = H m H on the trailing block: p = β m v, K = β vᵀp / 2, w = p − K v, m ← m − v wᵀ − w vᵀ.
    let vp = 0
    for (let i = k + 1; i < n; i++) {
      let s = 0
      for (let j = k + 1; j < n; j++) s += m[i * n + j] * v[j]
      w[i] = beta * s
      vp += v[i] * w[i]
    }
    const kk = (beta * vp) / 2
    for (let i = k + 1; i < n; i++) w[i] -= kk * v[i]
    for (let i = k + 1; i < n; i++) for (let j = k + 1; j < n; j++) m[i * n + j] -= v[i] * w[j] + w[i] * v[j]
    m[(k + 1) * n + k] = m[k * n + k + 1] = alpha
    for (let i = k + 2; i < n; i++) m[i * n + k] = m[k * n + i] = 0
    // Q ← Q H, i.e. Qᵀ ← H Qᵀ on rows k+1 … n−1.
    for (let c = 0; c < n; c++) {
      let s = 0
      for (let i = k + 1; i < n; i++) s += v[i] * qt[i * n + c]
      s *= beta
      if (s !== 0) for (let i = k + 1; i < n; i++) qt[i * n + c] -= s * v[i]
    }
  }
  const d = new Float64Array(n)
  const e = new Float64Array(n) // e[i] couples i and i+1; e[n−1] = 0
  for (let i = 0; i < n; i++) d[i] = m[i * n + i]
  for (let i = 0; i < n - 1; i++) e[i] = m[(i + 1) * n + i]
  // Implicit QL on the tridiagonal (d, e).
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let mm = l
      for (; mm < n - 1; mm++) {
        const dd = Math.abs(d[mm]) + Math.abs(d[mm + 1])
        if (Math.abs(e[mm]) + dd === dd) break
      }
      if (mm === l) break
      if (iter === 100) throw new Error("symmetricEigen: QL did not converge in 100 iterations")
      let g = (d[l + 1] - d[l]) / (2 * e[l])
      let r = Math.hypot(g, 1)
      g = d[mm] - d[l] + e[l] / (g + (g >= 0 ? r : -r))
      let s = 1
      let c = 1
      let p = 0
      let i = mm - 1
      for (; i >= l; i--) {
        const f = s * e[i]
        const b = c * e[i]
        r = Math.hypot(f, g)
        e[i + 1] = r
        if (r === 0) {
          d[i + 1] -= p
          e[mm] = 0
          break
        }
        s = f / r
        c = g / r
        g = d[i + 1] - p
        r = (d[i] - g) * s + 2 * c * b
        p = s * r
        d[i + 1] = g + p
        g = c * r - b
        const ri = i * n
        const rj = (i + 1) * n
        for (let k = 0; k < n; k++) {
          const zi = qt[ri + k]
          const zj = qt[rj + k]
          qt[rj + k] = s * zi + c * zj
          qt[ri + k] = c * zi - s * zj
        }
      }
      if (r === 0 && i >= l) continue
      d[l] -= p
      e[l] = g
      e[mm] = 0
    }
  }
  const order = Array.from(d, (_, i) => i).sort((i, j) => d[j] - d[i] || i - j)
  const values = Float64Array.from(order, (i) => d[i])
  const vectors = new Float64Array(n * n)
  order.forEach((i, r) => vectors.set(qt.subarray(i * n, (i + 1) * n), r * n))
  return { values, vectors }
}

export interface Pca {
  /** [dim] column means. */
  readonly mean: Float64Array
  /** [min(rows, dim)] covariance eigenvalues λ_i (denominator rows − 1), descending, ≥ 0. */
  readonly variances: Float64Array
  /** [min(rows, dim)] λ_i / tr C. */
  readonly ratios: Float64Array
  /** Components kept: 1 + the first i with ratio_0 + … + ratio_i ≥ explainedVariance. */
  readonly kept: number
  /** [kept × dim] unit principal directions, rows. */
  readonly components: Float64Array
  /** [rows × kept] (x − mean)·componentsᵀ. */
  readonly projected: Float64Array
}

/**
 * PCA of x [rows × dim] (see the module comment, step 2): the eigenpairs of the covariance when
 * rows ≥ dim, else of the Gram matrix G = X_c X_cᵀ (λ = σ²/(rows−1), v = X_cᵀu/‖X_cᵀu‖); Z = X_c·vᵀ.
 * Throws when rows < 2 or the total variance is 0 (every row the same).
 */
export const pca = (x: ArrayLike<number>, rows: number, dim: number, explainedVariance: number): Pca => {
  if (!(explainedVariance > 0 && explainedVariance < 1)) throw new Error(`pca: explainedVariance must be in (0, 1), got ${explainedVariance}`)
  if (rows < 2 || x.length !== rows * dim) throw new Error(`pca: ${x.length} values for ${rows} rows × ${dim} (need ≥ 2 rows)`)
  const mean = new Float64Array(dim)
  for (let r = 0; r < rows; r++) for (let j = 0; j < dim; j++) mean[j] += x[r * dim + j]
  for (let j = 0; j < dim; j++) mean[j] /= rows
  const xc = new Float64Array(rows * dim)
  let trace = 0
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < dim; j++) {
      const v = x[r * dim + j] - mean[j]
      xc[r * dim + j] = v
      trace += v * v
    }
  trace /= rows - 1
  if (!(trace > 0)) throw new Error("pca: total variance 0 (every row is the same)")
  const gram = rows < dim
  const n = gram ? rows : dim
  const s = new Float64Array(n * n) // upper triangle filled, then mirrored
  if (gram) {
    for (let a = 0; a < rows; a++)
      for (let b = a; b < rows; b++) {
        let t = 0
        for (let j = 0; j < dim; j++) t += xc[a * dim + j] * xc[b * dim + j]
        s[a * n + b] = t
      }
  } else {
    for (let r = 0; r < rows; r++) {
      const o = r * dim
      for (let i = 0; i < dim; i++) {
        const xi = xc[o + i]
        if (xi === 0) continue
        const si = i * n
        for (let j = i; j < dim; j++) s[si + j] += xi * xc[o + j]
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) s[j * n + i] = s[i * n + j]
  const eig = symmetricEigen(s, n)
  const count = Math.min(rows, dim)
  const variances = Float64Array.from(eig.values.subarray(0, count), (l) => Math.max(0, l / (rows - 1)))
  const ratios = Float64Array.from(variances, (l) => l / trace)
  let kept = 0
  for (let cum = 0; kept < count; ) {
    cum += ratios[kept++]
    if (cum >= explainedVariance) break
  }
  const components = new Float64Array(kept * dim)
  const projected = new Float64Array(rows * kept)
  for (let c = 0; c < kept; c++) {
    const u = eig.vectors.subarray(c * n, (c + 1) * n)
    const v = components.subarray(c * dim, (c + 1) * dim)
    if (gram) {
      // v ∝ X_cᵀu, normalised here rather than divided by σ (which loses digits when σ is small).
      for (let r = 0; r < rows; r++) for (let j = 0; j < dim; j++) v[j] += xc[r * dim + j] * u[r]
      let norm2 = 0
      for (let j = 0; j < dim; j++) norm2 += v[j] * v[j]
      const norm = Math.sqrt(norm2)
      for (let j = 0; j < dim; j++) v[j] /= norm
    } else v.set(u)
    for (let r = 0; r < rows; r++) {
      let t = 0
      for (let j = 0; j < dim; j++) t += xc[r * dim + j] * v[j]
      projected[r * kept + c] = t
    }
  }
  return { mean, variances, ratios, kept, components, projected }
}

// ---------------------------------------------------------------------------------------------
// k-means

export interface KmeansOptions {
  readonly seed: number
  /** Restarts; the lowest inertia wins (the first on a tie). Default 5. */
  readonly inits?: number
  /** Lloyd iterations at most per restart. Default 500. */
  readonly iters?: number
}

export interface Kmeans {
  /** [k × dim] centroids. */
  readonly centroids: Float64Array
  /** [rows] index of each row's nearest centroid (the lowest index on a tie). */
  readonly labels: Int32Array
  /** Σ over rows of the squared distance to its centroid. */
  readonly inertia: number
  /** Lloyd iterations the kept restart ran. */
  readonly iterations: number
}

const dist2 = (x: ArrayLike<number>, xo: number, c: Float64Array, co: number, dim: number): number => {
  let s = 0
  for (let j = 0; j < dim; j++) {
    const t = x[xo + j] - c[co + j]
    s += t * t
  }
  return s
}

/** Label every row with its nearest centroid into `labels`, the squared distances into `d2`; true if a label changed. */
const assign = (x: ArrayLike<number>, rows: number, dim: number, c: Float64Array, k: number, labels: Int32Array, d2: Float64Array): boolean => {
  let changed = false
  for (let r = 0; r < rows; r++) {
    let best = 0
    let bd = Infinity
    for (let b = 0; b < k; b++) {
      const t = dist2(x, r * dim, c, b * dim, dim)
      if (t < bd) {
        bd = t
        best = b
      }
    }
    d2[r] = bd
    if (labels[r] !== best) changed = true
    labels[r] = best
  }
  return changed
}

/** k-means++: the first centre uniform, each next one a row drawn with probability ∝ D² (squared distance to the nearest centre so far). */
const seedCentres = (x: ArrayLike<number>, rows: number, dim: number, k: number, next: () => number): Float64Array => {
  const c = new Float64Array(k * dim)
  const d2 = new Float64Array(rows).fill(Infinity)
  let pick = Math.floor(next() * rows)
  for (let b = 0; b < k; b++) {
    for (let j = 0; j < dim; j++) c[b * dim + j] = x[pick * dim + j]
    if (b === k - 1) break
    let total = 0
    for (let r = 0; r < rows; r++) {
      d2[r] = Math.min(d2[r], dist2(x, r * dim, c, b * dim, dim))
      total += d2[r]
    }
    if (total === 0) {
      pick = Math.floor(next() * rows) // fewer distinct rows than k: any row
      continue
    }
    const target = next() * total
    let cum = 0
    pick = -1
    for (let r = 0; r < rows; r++) {
      if (d2[r] === 0) continue
      cum += d2[r]
      pick = r
      if (cum > target) break
    }
  }
  return c
}

const lloyd = (x: ArrayLike<number>, rows: number, dim: number, k: number, iters: number, next: () => number): Kmeans => {
  const centroids = seedCentres(x, rows, dim, k, next)
  const labels = new Int32Array(rows).fill(-1)
  const d2 = new Float64Array(rows)
  const counts = new Float64Array(k)
  assign(x, rows, dim, centroids, k, labels, d2)
  let iterations = 0
  while (iterations < iters) {
    iterations++
    centroids.fill(0)
    counts.fill(0)
    for (let r = 0; r < rows; r++) {
      const b = labels[r]
      counts[b]++
      for (let j = 0; j < dim; j++) centroids[b * dim + j] += x[r * dim + j]
    }
    const taken = new Set<number>()
    for (let b = 0; b < k; b++) {
      if (counts[b] > 0) {
        for (let j = 0; j < dim; j++) centroids[b * dim + j] /= counts[b]
        continue
      }
      // Empty: move onto the row farthest from its centroid (distances of the last assignment).
      let far = -1
      for (let r = 0; r < rows; r++) if (!taken.has(r) && (far < 0 || d2[r] > d2[far])) far = r
      taken.add(far)
      for (let j = 0; j < dim; j++) centroids[b * dim + j] = x[far * dim + j]
    }
    if (!assign(x, rows, dim, centroids, k, labels, d2)) break
  }
  let inertia = 0
  for (let r = 0; r < rows; r++) inertia += d2[r]
  return { centroids, labels, inertia, iterations }
}

/**
 * k-means of x [rows × dim] into k clusters: per restart i, k-means++ seeding from
 * mulberry32(streamSeed(seed, KMEANS_STREAM, i)), then Lloyd (assign to the nearest centroid, move
 * each centroid to its rows' mean) until no label changes or `iters` updates; the restart of lowest
 * inertia is returned. Deterministic for a seed.
 */
export const kmeans = (x: ArrayLike<number>, rows: number, dim: number, k: number, o: KmeansOptions): Kmeans => {
  const inits = o.inits ?? DEFAULTS.kmeansInits
  const iters = o.iters ?? DEFAULTS.kmeansIters
  if (x.length !== rows * dim || rows < 1) throw new Error(`kmeans: ${x.length} values for ${rows} rows × ${dim}`)
  if (!isCount(k, 1) || k > rows) throw new Error(`kmeans: k must be an integer in [1, ${rows}], got ${k}`)
  if (!isCount(inits, 1) || !isCount(iters, 0)) throw new Error(`kmeans: inits ≥ 1 and iters ≥ 0 must be integers, got ${inits}, ${iters}`)
  let best: Kmeans | undefined
  for (let i = 0; i < inits; i++) {
    const run = lloyd(x, rows, dim, k, iters, mulberry32(streamSeed(o.seed, KMEANS_STREAM, i)))
    if (best === undefined || run.inertia < best.inertia) best = run
  }
  return best!
}

// ---------------------------------------------------------------------------------------------
// MAUVE

const rowsOf = (f: Features, name: string): number => {
  if (!isCount(f.dim, 1) || f.data.length % f.dim !== 0) throw new Error(`mauve: ${name} has ${f.data.length} values, not a multiple of dim ${f.dim}`)
  const rows = f.data.length / f.dim
  if (rows < 2) throw new Error(`mauve: ${name} has ${rows} row(s); need at least 2`)
  for (let i = 0; i < f.data.length; i++)
    if (!Number.isFinite(f.data[i])) throw new Error(`mauve: ${name} row ${Math.floor(i / f.dim)} has a non-finite value (${f.data[i]})`)
  return rows
}

/**
 * MAUVE of generations p [n_p × d] against human text q [n_q × d] (see the module comment).
 * Throws on fewer than 2 rows in either set, different dims, non-finite values, bad options.
 */
export const mauve = (p: Features, q: Features, o: MauveOptions): MauveResult => {
  const np = rowsOf(p, "P")
  const nq = rowsOf(q, "Q")
  if (p.dim !== q.dim) throw new Error(`mauve: P has dim ${p.dim}, Q has dim ${q.dim}`)
  const dim = p.dim
  const buckets = o.buckets === undefined || o.buckets === "auto" ? autoBuckets(np, nq) : o.buckets
  if (!isCount(buckets, 1) || buckets > np + nq) throw new Error(`mauve: buckets must be an integer in [1, ${np + nq}], got ${o.buckets}`)
  const rows = nq + np
  const x = new Float64Array(rows * dim)
  x.set(q.data, 0)
  x.set(p.data, nq * dim)
  for (let r = 0; r < rows; r++) {
    let s = 0
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2
    const norm = Math.sqrt(s)
    if (norm > 0) for (let j = 0; j < dim; j++) x[r * dim + j] /= norm
  }
  const reduced = pca(x, rows, dim, o.explainedVariance ?? DEFAULTS.explainedVariance)
  const km = kmeans(reduced.projected, rows, reduced.kept, buckets, { seed: o.seed, inits: o.kmeansInits, iters: o.kmeansIters })
  const ph = new Float64Array(buckets)
  const qh = new Float64Array(buckets)
  for (let r = 0; r < nq; r++) qh[km.labels[r]]++
  for (let r = nq; r < rows; r++) ph[km.labels[r]]++
  for (let b = 0; b < buckets; b++) {
    ph[b] /= np
    qh[b] /= nq
  }
  const curve = divergenceCurve(ph, qh, o.scaling ?? DEFAULTS.scaling, o.curvePoints ?? DEFAULTS.curvePoints)
  return { mauve: curveArea(curve), curve, buckets, dims: reduced.kept, p: ph, q: qh }
}
