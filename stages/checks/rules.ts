/**
 * The checkpoint checks, as pure functions (no I/O, no Effect). The stage (./index.ts) feeds them
 * digests, log-prob blocks and checkpoints.parquet; each returns findings for one model.
 *
 * A model's checkpoints are sorted by step s_1 < … < s_C. Four checks:
 *
 * 1. identical weights (error) — checkpoints whose ONNX content is the same (the .onnx file and
 *    every external-data file it names: see ./digest.ts). Public suites have served one late set
 *    of weights under dozens of step names, step 0 included.
 * 2. identical predictions (error) — checkpoints whose log-probs differ by at most
 *    `checks.prediction_tolerance` (1e-6 nats) on every token of every dataset: the same weights
 *    in another file (re-exported, other precision of the graph), or a run that did not move.
 *    Not reported again for a checkpoint that check 1 already flagged.
 * 3. out of order (warning) — a checkpoint whose validation loss is better than every one of the
 *    next `checks.order_window` checkpoints (3) by more than `checks.order_margin` nats (0.05,
 *    ≈ 5% lower perplexity): most likely a later checkpoint saved under an earlier name.
 * 4. broken (error) — NaN/Inf log-probs, or a perplexity above the uniform distribution's (the
 *    vocabulary size) after the first `checks.uniform_after` (10%) of training.
 *
 * Which copy is flagged (checks 1 and 2): every member of a group of equal checkpoints except the
 * one with the latest step, with related_step = that latest step. Training can't leave a later
 * checkpoint's weights in an earlier one, so the latest copy is the one whose step can be right
 * (a late checkpoint uploaded under early names; or a run that stalled, whose last copy is its
 * true state at that step). `exclude_flagged` then keeps the latest copy and drops the rest.
 */
import type { CheckName, Severity } from "./contract.ts"

/** One row of checkpoint_checks.parquet. */
export interface CheckRow {
  readonly model: string
  readonly step: number
  readonly check: CheckName
  readonly severity: Severity
  readonly detail: string
  readonly related_step: number | null
}

export const SEVERITY: Readonly<Record<CheckName, Severity>> = {
  identical_weights: "error",
  identical_predictions: "error",
  out_of_order: "warning",
  broken: "error",
}

const row = (model: string, step: number, check: CheckName, detail: string, related_step: number | null = null): CheckRow => ({
  model,
  step,
  check,
  severity: SEVERITY[check],
  detail,
  related_step,
})

// ---------------------------------------------------------------------------------------------
// Grouping equal checkpoints (checks 1 and 2)

export interface Copy {
  /** The flagged checkpoint's step. */
  readonly step: number
  /** The latest step of its group, kept. */
  readonly kept: number
}

/**
 * Checkpoints with the same key, as (copy → kept) pairs: every step of a group of ≥ 2 except the
 * latest, which is kept. Example: keys {0: "a", 10: "b", 20: "a", 30: "a"} → [0 → 30, 20 → 30].
 */
export const copiesByKey = (items: ReadonlyArray<{ readonly step: number; readonly key: string }>): Copy[] => {
  const groups = new Map<string, number[]>()
  for (const it of items) groups.set(it.key, [...(groups.get(it.key) ?? []), it.step])
  const out: Copy[] = []
  for (const steps of groups.values()) {
    if (steps.length < 2) continue
    const kept = Math.max(...steps)
    for (const s of steps) if (s !== kept) out.push({ step: s, kept })
  }
  return out.sort((a, b) => a.step - b.step)
}

/** Check 1. `digests` maps a step to the sha256 of its ONNX content (hex). */
export const identicalWeights = (model: string, digests: ReadonlyArray<{ readonly step: number; readonly digest: string }>): CheckRow[] => {
  const byStep = new Map(digests.map((d) => [d.step, d.digest]))
  return copiesByKey(digests.map((d) => ({ step: d.step, key: d.digest }))).map((c) =>
    row(model, c.step, "identical_weights", `same ONNX content as step ${c.kept} (sha256 ${byStep.get(c.step)!.slice(0, 12)}…)`, c.kept),
  )
}

// ---------------------------------------------------------------------------------------------
// Identical predictions (check 2): a cheap screen over block sums, then an exact comparison
//
// Equal log-probs (|a_i − b_i| ≤ tol on every token) give block sums within tol·n of each other,
// for plain sums and for sums with pseudo-random signs alike; so a pair whose sums differ by more
// on any block can't be equal, and the few pairs that pass are compared token by token. The
// screen never drops an equal pair (no rounding into bins whose edges could split two equal
// values), and catches equal checkpoints anywhere in the step order, not only neighbours.

/** Features of one block of one checkpoint: Σ lp, Σ w_i·lp, Σ |lp| (finite values), # non-finite. */
export const FEATURES = 4

/** A ±1 weight per token index (a fixed integer hash, the same in every file). */
const signOf = (i: number): number => {
  let x = Math.imul(i + 0x7f4a7c15, 0x9e3779b1)
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  return x & 1 ? 1 : -1
}

/**
 * The screening features of one block, written at out[at…at+3].
 * @param lp     [rows] log-probs of one row group, nats
 * @param start  token_index of its first row
 */
export const blockFeatures = (lp: Float32Array, start: number, out: Float64Array, at: number): void => {
  let sum = 0
  let signed = 0
  let abs = 0
  let bad = 0
  for (let i = 0; i < lp.length; i++) {
    const v = lp[i]
    if (v - v !== 0) {
      bad++
      continue
    }
    sum += v
    signed += signOf(start + i) * v
    abs += Math.abs(v)
  }
  out[at] = sum
  out[at + 1] = signed
  out[at + 2] = abs
  out[at + 3] = bad
}

/**
 * Can two checkpoints be equal within `tol`, given their features over the same blocks?
 * @param a, b       [blocks × FEATURES]
 * @param blockRows  [blocks] rows of each block
 */
export const mayBeEqual = (a: Float64Array, b: Float64Array, blockRows: ReadonlyArray<number>, tol: number): boolean => {
  for (let g = 0; g < blockRows.length; g++) {
    const k = g * FEATURES
    if (a[k + 3] !== b[k + 3]) return false
    const n = blockRows[g] - a[k + 3]
    // tol per token, plus room for float64 rounding of the sums (relative 1e-9 of their size).
    const room = tol * n + 1e-9 * (a[k + 2] + b[k + 2]) + 1e-12
    if (Math.abs(a[k] - b[k]) > room || Math.abs(a[k + 1] - b[k + 1]) > room) return false
  }
  return true
}

/** Indices that may be equal, as connected components of ≥ 2 (each sorted ascending). */
export const candidateGroups = (features: ReadonlyArray<Float64Array>, blockRows: ReadonlyArray<number>, tol: number): number[][] => {
  const parent = features.map((_, i) => i)
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])))
  for (let i = 0; i < features.length; i++) {
    for (let j = i + 1; j < features.length; j++) {
      if (mayBeEqual(features[i], features[j], blockRows, tol)) parent[find(j)] = find(i)
    }
  }
  const groups = new Map<number, number[]>()
  features.forEach((_, i) => groups.set(find(i), [...(groups.get(find(i)) ?? []), i]))
  return [...groups.values()].filter((g) => g.length > 1)
}

/** |a_i − b_i| ≤ tol on every token; NaN matches NaN and ±Inf matches itself. */
export const equalWithin = (a: Float32Array, b: Float32Array, tol: number): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = a[i]
    const y = b[i]
    if (x === y || Math.abs(x - y) <= tol) continue
    if (x !== x && y !== y) continue
    return false
  }
  return true
}

/**
 * Check 2, from confirmed copies (copy → kept, equal on every dataset). Checkpoints already
 * flagged with identical weights are left out: the same fact, said once.
 */
export const identicalPredictions = (
  model: string,
  copies: ReadonlyArray<Copy>,
  datasets: ReadonlyArray<string>,
  tol: number,
  sameWeights: ReadonlySet<number>,
): CheckRow[] =>
  copies
    .filter((c) => !sameWeights.has(c.step))
    .map((c) =>
      row(model, c.step, "identical_predictions", `log-probs within ${tol} of step ${c.kept}'s on every token of ${datasets.join(", ")}`, c.kept),
    )

// ---------------------------------------------------------------------------------------------
// Out of order (check 3)

export interface OrderFinding {
  /** Index of the flagged checkpoint. */
  readonly index: number
  /** Index of the lowest-loss checkpoint among the ones it beats. */
  readonly related: number
  /** How many later checkpoints it was compared with (≤ window). */
  readonly compared: number
}

/**
 * Checkpoint i (sorted by step) is out of order when
 *     L_i + margin < min{ L_j : j ∈ the next `window` checkpoints after i with a known L }
 * with L = ln ppl (mean NLL, nats). It needs at least one later checkpoint; unknown L (null:
 * no finite log-prob, or a broken checkpoint) is skipped, never compared.
 *
 * Worked example (window 3, margin 0.05):
 *     step  1000 2000 3000 4000 5000 6000 7000
 *     L      6.0  5.0  2.0  4.0  3.5  3.0  2.6
 *   i = 2: next three are 4.0, 3.5, 3.0; 2.0 + 0.05 < 3.0 → flagged, related = step 6000.
 *   i = 1: next three are 2.0, 4.0, 3.5; 5.0 is not below 2.0 → not flagged.
 * A single later loss spike does not flag the checkpoint before it: every checkpoint in the
 * window must be worse. Noise of a few hundredths of a nat between neighbours stays under the
 * margin.
 */
export const outOfOrder = (L: ReadonlyArray<number | null>, window: number, margin: number): OrderFinding[] => {
  const out: OrderFinding[] = []
  for (let i = 0; i < L.length; i++) {
    const li = L[i]
    if (li === null || !Number.isFinite(li)) continue
    let best = Infinity
    let related = -1
    let compared = 0
    for (let j = i + 1; j < L.length && compared < window; j++) {
      const lj = L[j]
      if (lj === null || !Number.isFinite(lj)) continue
      compared++
      if (lj < best) {
        best = lj
        related = j
      }
    }
    if (compared > 0 && li + margin < best) out.push({ index: i, related, compared })
  }
  return out
}

/** Check 3 on one dataset. `L` is [checkpoints] in the order of `steps`. */
export const outOfOrderRows = (
  model: string,
  dataset: string,
  steps: ReadonlyArray<number>,
  L: ReadonlyArray<number | null>,
  window: number,
  margin: number,
): CheckRow[] =>
  outOfOrder(L, window, margin).map((f) =>
    row(
      model,
      steps[f.index],
      "out_of_order",
      `${dataset}: ppl ${fmt(Math.exp(L[f.index]!))} is more than ${pct(margin)} below each of the next ${f.compared} checkpoints' ` +
        `(lowest ${fmt(Math.exp(L[f.related]!))} at step ${steps[f.related]})`,
      steps[f.related],
    ),
  )

// ---------------------------------------------------------------------------------------------
// Broken (check 4)

/**
 * The vocabulary size of a Hugging Face tokenizer.json: 1 + the largest id in `model.vocab`
 * (a {token: id} map, or a list for Unigram) and `added_tokens`. Undefined when it has neither.
 */
export const vocabSizeOf = (json: unknown): number | undefined => {
  const j = json as { model?: { vocab?: unknown }; added_tokens?: ReadonlyArray<{ id?: unknown }> } | null
  let max = -1
  const vocab = j?.model?.vocab
  if (Array.isArray(vocab)) max = vocab.length - 1
  else if (vocab !== null && typeof vocab === "object") {
    for (const v of Object.values(vocab)) if (typeof v === "number" && v > max) max = v
  }
  for (const t of j?.added_tokens ?? []) if (typeof t.id === "number" && t.id > max) max = t.id
  return max >= 0 ? max + 1 : undefined
}

/** Check 4, a checkpoint that could not be scored at all (its score unit failed: a truncated or unloadable file, NaN weights). */
export const unscoredRow = (model: string, step: number, error: string): CheckRow => row(model, step, "broken", `could not be scored: ${error}`)

/** Check 4, non-finite log-probs of one checkpoint on one dataset. */
export const nonFiniteRow = (model: string, step: number, dataset: string, bad: number, tokens: number): CheckRow[] =>
  bad > 0 ? [row(model, step, "broken", `${dataset}: ${bad} of ${tokens} log-probs are NaN or infinite`)] : []

/**
 * Check 4, worse than uniform: mean NLL > ln V at a step past `after` × the model's last step
 * (the first checkpoints may be near uniform: a fresh model predicts ~1/V for every token).
 * Example: V = 50,277, last step 143,000, after 0.1: step 20,000 with ppl 61,000 is broken; step
 * 10,000 with the same ppl is not checked.
 * @param meanNll  [checkpoints] in the order of `steps` (nats; null = unknown, not checked)
 */
export const worseThanUniformRows = (
  model: string,
  dataset: string,
  steps: ReadonlyArray<number>,
  meanNll: ReadonlyArray<number | null>,
  vocabSize: number,
  after: number,
): CheckRow[] => {
  const last = steps.length ? steps[steps.length - 1] : 0
  const out: CheckRow[] = []
  steps.forEach((s, c) => {
    const l = meanNll[c]
    if (l === null || s <= after * last) return
    if (l > Math.log(vocabSize)) {
      out.push(row(model, s, "broken", `${dataset}: ppl ${fmt(Math.exp(l))} is above the uniform distribution's (${vocabSize}, the vocabulary size)`))
    }
  })
  return out
}

// ---------------------------------------------------------------------------------------------
// Rows

/**
 * One row per (model, step, check): findings of several datasets are joined ("; "), the first
 * related_step is kept. Ordered by model (in `models` order), step, check (in CHECK order).
 */
export const mergeRows = (rows: ReadonlyArray<CheckRow>, models: ReadonlyArray<string>): CheckRow[] => {
  const byKey = new Map<string, CheckRow>()
  for (const r of rows) {
    const k = `${r.model}\u0000${r.step}\u0000${r.check}`
    const old = byKey.get(k)
    byKey.set(k, old ? { ...old, detail: `${old.detail}; ${r.detail}`, related_step: old.related_step ?? r.related_step } : r)
  }
  const order: CheckName[] = ["identical_weights", "identical_predictions", "broken", "out_of_order"]
  return [...byKey.values()].sort(
    (a, b) => models.indexOf(a.model) - models.indexOf(b.model) || a.step - b.step || order.indexOf(a.check) - order.indexOf(b.check),
  )
}

const fmt = (x: number): string => (!Number.isFinite(x) ? String(x) : x >= 1000 ? x.toFixed(0) : x.toPrecision(4))
const pct = (nats: number): string => `${((Math.exp(nats) - 1) * 100).toPrecision(2)}%`
