/**
 * Task metrics of one checkpoint from its options table (pure).
 *
 * Per example, with s(o) = logprob_sum of option o (nats) and C / W its correct / incorrect options:
 *   hit        max_{o∈C} s(o) > max_{o∈W} s(o)                 (a tie is a miss; any correct option counts)
 *   hit_norm   the same with s(o) / n_chars(o)                 (log-prob per character)
 *   baseline   |C| / (|C| + |W|)                               (the hit rate of a uniform random guess)
 * accuracy, accuracy_norm, random_baseline are the means over examples, in [0, 1];
 * acc_lo, acc_hi (acc_norm_lo, acc_norm_hi) the 95% Wilson score interval of accuracy (accuracy_norm)
 * as a proportion of hits in n_examples (stats.ts wilson).
 * grade      the target score of the option with the highest s(o) (BIG-bench's multiple_choice_grade:
 *            partial credit), the lowest of them when several tie (a tie earns no more than its worst);
 *            over the examples, its mean. With 1/0 scores it is the accuracy but for ties.
 * correct_ppl   = exp(−Σ_{o∈C} s(o) / Σ_{o∈C} n_tokens(o))    over every example's correct options
 * incorrect_ppl = exp(−Σ_{o∈W} s(o) / Σ_{o∈W} n_tokens(o))
 *
 * Worked example: one example, options A (correct; s = −2, 2 tokens, 4 chars) and B (s = −3,
 * 1 token, 2 chars): hit (−2 > −3); hit_norm (−2/4 = −0.5 > −3/2 = −1.5); baseline 0.5;
 * correct_ppl = exp(2/2) = 2.718, incorrect_ppl = exp(3/1) = 20.09.
 */
import { wilson } from "./stats.ts"

/** The columns of an options table (stages/downstream/contract.ts), one entry per option row. */
export interface OptionColumns {
  readonly exampleId: ArrayLike<number>
  readonly isCorrect: ArrayLike<boolean>
  /** nats */
  readonly logprobSum: ArrayLike<number>
  readonly nTokens: ArrayLike<number>
  readonly nChars: ArrayLike<number>
  /** Each option's target score (default: 1 for a correct option, 0 else). */
  readonly targetScore?: ArrayLike<number>
}

export interface TaskMetrics {
  readonly n_examples: number
  readonly accuracy: number
  readonly acc_lo: number
  readonly acc_hi: number
  readonly grade: number
  readonly accuracy_norm: number
  readonly acc_norm_lo: number
  readonly acc_norm_hi: number
  readonly random_baseline: number
  readonly correct_ppl: number
  readonly incorrect_ppl: number
}

interface Acc {
  bestC: number
  bestW: number
  bestCNorm: number
  bestWNorm: number
  nC: number
  n: number
  best: number
  bestScore: number
}

/** Per example (by example_id) its best correct and incorrect scores, and the token sums of correct / incorrect options. */
const perExample = (rows: OptionColumns) => {
  const byExample = new Map<number, Acc>()
  let lpC = 0
  let tokC = 0
  let lpW = 0
  let tokW = 0
  for (let r = 0; r < rows.exampleId.length; r++) {
    const id = rows.exampleId[r]
    let a = byExample.get(id)
    if (a === undefined) {
      a = { bestC: -Infinity, bestW: -Infinity, bestCNorm: -Infinity, bestWNorm: -Infinity, nC: 0, n: 0, best: -Infinity, bestScore: 0 }
      byExample.set(id, a)
    }
    const s = rows.logprobSum[r]
    const norm = s / rows.nChars[r]
    const score = rows.targetScore?.[r] ?? (rows.isCorrect[r] ? 1 : 0)
    if (s > a.best || a.n === 0) [a.best, a.bestScore] = [s, score]
    else if (s === a.best) a.bestScore = Math.min(a.bestScore, score)
    a.n++
    if (rows.isCorrect[r]) {
      a.nC++
      a.bestC = Math.max(a.bestC, s)
      a.bestCNorm = Math.max(a.bestCNorm, norm)
      lpC += s
      tokC += rows.nTokens[r]
    } else {
      a.bestW = Math.max(a.bestW, s)
      a.bestWNorm = Math.max(a.bestWNorm, norm)
      lpW += s
      tokW += rows.nTokens[r]
    }
  }
  return { byExample, lpC, tokC, lpW, tokW }
}

/** Whether each example is a hit (see the module comment), by example_id, ascending. */
export const exampleHits = (rows: OptionColumns): { readonly ids: Int32Array; readonly hit: Uint8Array } => {
  const { byExample } = perExample(rows)
  const ids = Int32Array.from(byExample.keys()).sort()
  return { ids, hit: Uint8Array.from(ids, (id) => (byExample.get(id)!.bestC > byExample.get(id)!.bestW ? 1 : 0)) }
}

/** Metrics over the examples present in `rows` (rows may come in any order). */
export const taskMetrics = (rows: OptionColumns): TaskMetrics => {
  const { byExample, lpC, tokC, lpW, tokW } = perExample(rows)
  let hits = 0
  let hitsNorm = 0
  let baseline = 0
  let grade = 0
  for (const a of byExample.values()) {
    grade += a.bestScore
    if (a.bestC > a.bestW) hits++
    if (a.bestCNorm > a.bestWNorm) hitsNorm++
    baseline += a.nC / a.n
  }
  const n = byExample.size
  const [accLo, accHi] = wilson(hits, n)
  const [normLo, normHi] = wilson(hitsNorm, n)
  return {
    n_examples: n,
    accuracy: hits / n,
    acc_lo: accLo,
    acc_hi: accHi,
    grade: grade / n,
    accuracy_norm: hitsNorm / n,
    acc_norm_lo: normLo,
    acc_norm_hi: normHi,
    random_baseline: baseline / n,
    correct_ppl: Math.exp(-lpC / tokC),
    incorrect_ppl: Math.exp(-lpW / tokW),
  }
}

/** The margin of one checkpoint on one task (./contract.ts TaskMargins), over the examples that have one. */
export interface TaskMargin {
  readonly n_examples: number
  /** nats per token; null without examples */
  readonly margin: number | null
  /** margin ± 1.96 standard errors over the examples; null with fewer than 2 */
  readonly margin_lo: number | null
  readonly margin_hi: number | null
}

/** z of a two-sided 95% normal interval. */
const Z95 = 1.959963984540054

/**
 * How far the correct options are ahead of the incorrect ones in per-token log-prob (the paper's
 * mechanism: the perplexity of the correct options against the incorrect ones). Per example,
 * with ℓ(o) = s(o) / n_tokens(o) (nats per token, −ln of the option's perplexity):
 *   margin_e = mean_{o∈C} ℓ(o) − mean_{o∈W} ℓ(o)      (> 0: the correct options are likelier)
 * over the examples with at least one correct and one incorrect option of ≥ 1 token:
 *   margin = mean_e margin_e,  margin_lo/hi = margin ∓ 1.96 · sd_e / √n  (sd with n − 1).
 * Worked example: example 0, A correct (s = −2, 2 tokens: ℓ = −1), B, C incorrect (ℓ = −3, −2):
 * margin_0 = −1 − (−2.5) = 1.5; example 1, A correct (ℓ = −2), B incorrect (ℓ = −1.5): margin_1 =
 * −0.5; margin = 0.5, sd = √2, interval 0.5 ∓ 1.96 · √2 / √2 = [−1.46, 2.46].
 */
export const taskMargin = (rows: OptionColumns): TaskMargin => {
  const byExample = new Map<number, { c: number; nC: number; w: number; nW: number }>()
  for (let r = 0; r < rows.exampleId.length; r++) {
    if (!(rows.nTokens[r] > 0)) continue
    const id = rows.exampleId[r]
    let a = byExample.get(id)
    if (a === undefined) byExample.set(id, (a = { c: 0, nC: 0, w: 0, nW: 0 }))
    const l = rows.logprobSum[r] / rows.nTokens[r]
    if (rows.isCorrect[r]) [a.c, a.nC] = [a.c + l, a.nC + 1]
    else [a.w, a.nW] = [a.w + l, a.nW + 1]
  }
  const m: number[] = []
  for (const a of byExample.values()) if (a.nC > 0 && a.nW > 0) m.push(a.c / a.nC - a.w / a.nW)
  const n = m.length
  if (n === 0) return { n_examples: 0, margin: null, margin_lo: null, margin_hi: null }
  const mean = m.reduce((x, y) => x + y, 0) / n
  if (n < 2) return { n_examples: n, margin: mean, margin_lo: null, margin_hi: null }
  const sd = Math.sqrt(m.reduce((x, y) => x + (y - mean) ** 2, 0) / (n - 1))
  const half = (Z95 * sd) / Math.sqrt(n)
  return { n_examples: n, margin: mean, margin_lo: mean - half, margin_hi: mean + half }
}
