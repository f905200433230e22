/**
 * The log-prob side of the checks (I/O): one streaming pass over every score file of a model,
 * one row group at a time, collects the screening features of every block (rules.ts,
 * `blockFeatures`) and the count of NaN/Inf log-probs; a second pass, only over the files of
 * checkpoints the screen could not tell apart, compares them token by token.
 *
 * Memory: the features are 4 float64 per row group per checkpoint; the second pass holds two row
 * groups at a time.
 */
import { Effect } from "effect"
import { alignedLayout, readLogprobs } from "../../lib/analysis/aligned.ts"
import type { Model } from "../../pipeline/config.ts"
import type { UnitContext, UnitError } from "../../pipeline/stage.ts"
import { scoreUnit, scoresFile } from "../score/contract.ts"
import { FEATURES, blockFeatures, candidateGroups, equalWithin, type Copy } from "./rules.ts"

export interface ModelScan {
  /** [checkpoints] features of every block of every dataset, [blocks × FEATURES]. */
  readonly features: ReadonlyArray<Float64Array>
  /** [blocks] rows of each block, datasets one after another. */
  readonly blockRows: ReadonlyArray<number>
  /** [datasets][checkpoints] NaN/Inf log-probs. */
  readonly nonFinite: ReadonlyArray<ReadonlyArray<number>>
  /** [datasets] tokens of each dataset. */
  readonly tokens: ReadonlyArray<number>
}

/** First pass over every score file of `model` on `datasets`. */
export const scanModel = (ctx: UnitContext, model: Model, datasets: ReadonlyArray<string>): Effect.Effect<ModelScan, UnitError> =>
  Effect.gen(function* () {
    const C = model.checkpoints.length
    const perDataset: Float64Array[][] = [] // [datasets][checkpoints]
    const blockRows: number[] = []
    const nonFinite: number[][] = []
    const tokens: number[] = []
    for (const dataset of datasets) {
      const what = `model ${model.name}, dataset ${dataset}`
      yield* Effect.scoped(
        Effect.gen(function* () {
          const readers = yield* openScores(ctx, model, dataset, model.checkpoints.map((_, c) => c))
          const scores = yield* alignedLayout([readers], what)
          const G = scores.groupRows.length
          const feats = Array.from({ length: C }, () => new Float64Array(G * FEATURES))
          const bad = new Array<number>(C).fill(0)
          for (let c = 0; c < C; c++) {
            for (let g = 0; g < G; g++) {
              const lp = yield* readLogprobs(readers[c], g, what)
              blockFeatures(lp, scores.groupStart[g], feats[c], g * FEATURES)
              bad[c] += feats[c][g * FEATURES + 3]
            }
            ctx.progress.advance(1)
          }
          perDataset.push(feats)
          nonFinite.push(bad)
          blockRows.push(...scores.groupRows)
          tokens.push(scores.tokens)
        }),
      )
    }
    const features = Array.from({ length: C }, (_, c) => {
      const out = new Float64Array(blockRows.length * FEATURES)
      let at = 0
      for (const d of perDataset) {
        out.set(d[c], at)
        at += d[c].length
      }
      return out
    })
    return { features, blockRows, nonFinite, tokens }
  })

/**
 * Checkpoints whose log-probs are within `tol` of another's on every token of every dataset, as
 * copy → kept pairs (kept = the latest step of its group; rules.ts). Candidates come from the
 * screen; each group is confirmed against its latest member, and members that differ from it are
 * tried again among themselves.
 */
export const predictionCopies = (
  ctx: UnitContext,
  model: Model,
  datasets: ReadonlyArray<string>,
  scan: ModelScan,
  tol: number,
): Effect.Effect<Copy[], UnitError> =>
  Effect.gen(function* () {
    const copies: Copy[] = []
    for (const group of candidateGroups(scan.features, scan.blockRows, tol)) {
      let remaining = group
      while (remaining.length >= 2) {
        const kept = remaining[remaining.length - 1]
        const others = remaining.slice(0, -1)
        const alive = new Set(others)
        for (const [d, dataset] of datasets.entries()) {
          if (alive.size === 0) break
          const what = `model ${model.name}, dataset ${dataset}`
          const members = [kept, ...others]
          yield* Effect.scoped(
            Effect.gen(function* () {
              const readers = yield* openScores(ctx, model, dataset, members)
              const scores = yield* alignedLayout([readers], what)
              const readerOf = new Map(members.map((c, k) => [c, readers[k]]))
              for (let g = 0; g < scores.groupRows.length && alive.size > 0; g++) {
                const ref = yield* readLogprobs(readerOf.get(kept)!, g, what)
                for (const c of [...alive]) {
                  const lp = yield* readLogprobs(readerOf.get(c)!, g, what)
                  if (!equalWithin(lp, ref, tol)) alive.delete(c)
                }
              }
            }),
          )
        }
        for (const c of alive) copies.push({ step: model.checkpoints[c].step, kept: model.checkpoints[kept].step })
        remaining = others.filter((c) => !alive.has(c))
      }
    }
    return copies.sort((a, b) => a.step - b.step)
  })

/** Row-group readers of the score files of some checkpoints (indexes) of `model` on `dataset`, closed with the scope. */
const openScores = (ctx: UnitContext, model: Model, dataset: string, checkpoints: ReadonlyArray<number>) =>
  Effect.forEach(checkpoints, (c) => {
    const step = model.checkpoints[c].step
    return ctx.input(scoreUnit(model.name, step, dataset)).open(scoresFile(model.name, step, dataset))
  })
