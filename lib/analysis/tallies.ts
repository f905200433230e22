/**
 * Counts that classify accumulates block by block for one dataset, and the rows of its summary
 * tables (pure, no I/O). Only sums are kept, so memory does not grow with the number of tokens.
 * Blocks come in block order: the counts would not depend on it, but the numbering of documents
 * (by first appearance), which the bootstrap's draws index, does.
 *
 *   class counts        [model][threshold][class]
 *   category counts     [model][threshold][class][category]
 *   transitions         [threshold][model_from][model_to][class_from][class_to]
 *   group sums          for the reference model R: [model][threshold][class][checkpoint] Σ p over
 *                       the tokens of that class in R (non-finite p are left out and counted)
 *   document counts     [document][model][threshold][class], and [document] tokens: the
 *                       resampling units of class_summary's intervals (doc-shares.ts); these
 *                       grow with the number of documents, not of tokens
 * Float sums are added block by block in block order, so the result does not depend on which
 * thread computed a block.
 */
import { CLASSES } from "./classes.ts"
import { documentShareIntervals, DocumentCounts, type DocumentRuns } from "./doc-shares.ts"

/** Category codes are bytes. */
export const MAX_CATEGORIES = 256
const K = CLASSES.length

export interface TallyModel {
  readonly name: string
  /** [checkpoints] */
  readonly steps: ReadonlyArray<number>
}

/** Per block and model: [threshold][class][checkpoint] Σ p over the reference model's class, and the non-finite p left out. */
export interface GroupSums {
  readonly sum: Float64Array
  readonly missing: Float64Array
}

export class ClassTallies {
  readonly models: ReadonlyArray<TallyModel>
  readonly thresholds: ReadonlyArray<number>
  /** Tokens seen so far. */
  tokens = 0
  private readonly counts: Float64Array
  private readonly cats: Float64Array
  private readonly trans: Float64Array
  /** [model] → [threshold][class][checkpoint] */
  private readonly groupSum: Float64Array[]
  private readonly groupMissing: Float64Array[]
  /** [threshold][class] tokens in the reference model's class */
  private readonly groupN: Float64Array
  /** Cells [model][threshold][class] of each document. */
  private readonly documents: DocumentCounts

  constructor(models: ReadonlyArray<TallyModel>, thresholds: ReadonlyArray<number>) {
    this.models = models
    this.thresholds = thresholds
    const M = models.length
    const T = thresholds.length
    this.counts = new Float64Array(M * T * K)
    this.cats = new Float64Array(M * T * K * MAX_CATEGORIES)
    this.trans = new Float64Array(T * M * M * K * K)
    this.groupSum = models.map((m) => new Float64Array(T * K * m.steps.length))
    this.groupMissing = models.map((m) => new Float64Array(T * K * m.steps.length))
    this.groupN = new Float64Array(T * K)
    this.documents = new DocumentCounts(M * T * K)
  }

  /**
   * Class and category counts of one model's block.
   * @param cls [thresholds × tokens] class codes (row τ·B + i)
   * @param categories [tokens] category codes
   */
  addClasses(model: number, cls: Uint8Array, categories: Uint8Array): void {
    const B = categories.length
    const T = this.thresholds.length
    for (let k = 0; k < T; k++) {
      const base = (model * T + k) * K
      for (let i = 0; i < B; i++) {
        const c = cls[k * B + i]
        this.counts[base + c]++
        this.cats[(base + c) * MAX_CATEGORIES + categories[i]]++
      }
    }
  }

  /**
   * Transitions between every ordered pair of models for one block.
   * @param cls [models] arrays of [thresholds × tokens] class codes, same tokens
   */
  addTransitions(cls: ReadonlyArray<Uint8Array>, tokens: number): void {
    const M = this.models.length
    const T = this.thresholds.length
    for (let k = 0; k < T; k++) {
      for (let a = 0; a < M; a++) {
        for (let b = 0; b < M; b++) {
          if (a === b) continue
          const base = ((k * M + a) * M + b) * K * K
          const ca = cls[a]
          const cb = cls[b]
          for (let i = 0; i < tokens; i++) this.trans[base + ca[k * tokens + i] * K + cb[k * tokens + i]]++
        }
      }
    }
  }

  /**
   * Every model's class counts in each document of one block (for the intervals of class_summary).
   * @param cls [models] arrays of [thresholds × tokens] class codes, same tokens
   * @param runs the block's documents, in token order (block-tasks.ts readBlockTokens)
   */
  addDocuments(cls: ReadonlyArray<Uint8Array>, runs: DocumentRuns, tokens: number): void {
    const T = this.thresholds.length
    let from = 0
    for (let r = 0; r < runs.ids.length; r++) {
      const to = runs.ends[r]
      const d = this.documents.documentOf(runs.ids[r])
      this.documents.addTokens(d, to - from)
      const row = this.documents.row(d)
      for (let mi = 0; mi < cls.length; mi++) {
        const c = cls[mi]
        for (let k = 0; k < T; k++) {
          const base = (mi * T + k) * K
          for (let i = k * tokens + from; i < k * tokens + to; i++) row[base + c[i]]++
        }
      }
      from = to
    }
  }

  /** Count a block's tokens (once per block, for the shares of class_summary). */
  addTokens(tokens: number): void {
    this.tokens += tokens
  }

  /**
   * Group sizes of one block: the reference model's class counts at every threshold.
   * @param refCls [thresholds × tokens] the reference model's class codes
   */
  addGroupSizes(refCls: Uint8Array, tokens: number): void {
    for (let k = 0; k < this.thresholds.length; k++) {
      for (let i = 0; i < tokens; i++) this.groupN[k * K + refCls[k * tokens + i]]++
    }
  }

  /** Add one block's group sums of one model (accumulated by blocks.ts `classifyBlock`). */
  addGroupSums(model: number, sums: GroupSums): void {
    const sum = this.groupSum[model]
    const missing = this.groupMissing[model]
    for (let j = 0; j < sum.length; j++) {
      sum[j] += sums.sum[j]
      missing[j] += sums.missing[j]
    }
  }

  /**
   * Rows of class_summary for this dataset: every model, threshold and class (zeros included),
   * share_lo and share_hi from `bootstrap.samples` resamples of the documents (doc-shares.ts; null
   * without documents).
   */
  summaryRows(dataset: string, bootstrap: { readonly samples: number; readonly seed: number }): Array<{
    model: string; dataset: string; threshold: number; class: string; n_tokens: number; share: number; share_lo: number | null; share_hi: number | null
  }> {
    const T = this.thresholds.length
    const docs = this.documents.counts()
    const ci = documentShareIntervals(docs.tokens, docs.cells, this.documents.cells, bootstrap.samples, bootstrap.seed)
    return this.models.flatMap((m, mi) =>
      this.thresholds.flatMap((tau, k) =>
        CLASSES.map((cls, q) => {
          const cell = (mi * T + k) * K + q
          const n = this.counts[cell]
          return {
            model: m.name, dataset, threshold: tau, class: cls, n_tokens: n, share: this.tokens > 0 ? n / this.tokens : 0,
            share_lo: ci?.lo[cell] ?? null, share_hi: ci?.hi[cell] ?? null,
          }
        }),
      ),
    )
  }

  /** Documents seen so far. */
  get docs(): number {
    return this.documents.docs
  }

  /** Rows of class_transitions: share = n / (tokens of class_from in model_from); rows only where that is > 0. */
  transitionRows(dataset: string): Array<{
    dataset: string; threshold: number; model_from: string; class_from: string; model_to: string; class_to: string; n: number; share: number
  }> {
    const M = this.models.length
    const T = this.thresholds.length
    const out = []
    for (let k = 0; k < T; k++) {
      for (let a = 0; a < M; a++) {
        for (let b = 0; b < M; b++) {
          if (a === b) continue
          for (let qf = 0; qf < K; qf++) {
            const from = this.counts[(a * T + k) * K + qf]
            if (from === 0) continue
            for (let qt = 0; qt < K; qt++) {
              const n = this.trans[((k * M + a) * M + b) * K * K + qf * K + qt]
              out.push({
                dataset, threshold: this.thresholds[k],
                model_from: this.models[a].name, class_from: CLASSES[qf],
                model_to: this.models[b].name, class_to: CLASSES[qt],
                n, share: n / from,
              })
            }
          }
        }
      }
    }
    return out
  }

  /** Rows of class_categories: share = n / (tokens of that class); rows only for classes with tokens, every category name given. */
  categoryRows(dataset: string, categories: ReadonlyArray<string>): Array<{
    model: string; dataset: string; threshold: number; class: string; category: string; n: number; share: number
  }> {
    const T = this.thresholds.length
    const out = []
    for (let mi = 0; mi < this.models.length; mi++) {
      for (let k = 0; k < T; k++) {
        for (let q = 0; q < K; q++) {
          const total = this.counts[(mi * T + k) * K + q]
          if (total === 0) continue
          for (let cat = 0; cat < categories.length; cat++) {
            const n = this.cats[((mi * T + k) * K + q) * MAX_CATEGORIES + cat]
            out.push({ model: this.models[mi].name, dataset, threshold: this.thresholds[k], class: CLASSES[q], category: categories[cat], n, share: n / total })
          }
        }
      }
    }
    return out
  }

  /**
   * Rows of group_trajectories: every threshold, class, model and step; group_ppl null when the
   * group is empty (or every p of it at that checkpoint was non-finite).
   * @param validPpl [model] → [checkpoints] whole-dataset perplexity (null when unknown)
   */
  groupRows(dataset: string, refModel: string, validPpl: ReadonlyArray<ReadonlyArray<number | null>>): Array<{
    dataset: string; ref_model: string; threshold: number; class: string; model: string; step: number
    valid_ppl: number | null; group_ppl: number | null; n_tokens: number
  }> {
    const out = []
    for (let k = 0; k < this.thresholds.length; k++) {
      for (let q = 0; q < K; q++) {
        const n = this.groupN[k * K + q]
        for (const [mi, m] of this.models.entries()) {
          const C = m.steps.length
          for (let c = 0; c < C; c++) {
            const used = n - this.groupMissing[mi][(k * K + q) * C + c]
            out.push({
              dataset, ref_model: refModel, threshold: this.thresholds[k], class: CLASSES[q], model: m.name, step: m.steps[c],
              valid_ppl: validPpl[mi][c], group_ppl: used > 0 ? this.groupSum[mi][(k * K + q) * C + c] / used : null, n_tokens: n,
            })
          }
        }
      }
    }
    return out
  }
}
