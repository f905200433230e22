/**
 * The regress stage: per-token OLS trends → `regressions/model=M/dataset=D/part-NNNNN.parquet`
 * (threshold, x_axis, token_index, slope, intercept, r2, p_value, n).
 *
 * One unit per (model, dataset), id `model=M/dataset=D`. For every threshold τ
 * (`analysis.thresholds`, fractions of the final step) and x-axis (`analysis.x_axes`), every token
 * gets the OLS of y_c = p_c / p_i0 on x_c over the checkpoints c = i0…C (DESIGN.md "Regression";
 * math in analysis/ols.ts and analysis/blocks.ts).
 *
 * Streaming: block g = row group g of every checkpoint's score file, read together; its
 * regressions are encoded as part g (one Parquet row group) and written, with at most a few
 * blocks in flight (analysis/parallel.ts: on `scoring.threads` worker threads for large units),
 * so memory is bounded by the row-group size (`scoring.row_group_size`), not by the dataset.
 *
 * Worked example: 30 checkpoints, thresholds 0.1…0.7, x_axes [log_step], row groups of 65,536
 * tokens → part g has 7 × 65,536 rows (threshold-major); the regression of token 70,000 at τ = 0.3
 * is in part 1 at row 2 × 65,536 + (70,000 − 65,536).
 */
import { Effect } from "effect"
import { alignedLayout, logprobChunks } from "../../lib/analysis/aligned.ts"
import { chunkPlaces, type RegressTask } from "../../lib/analysis/block-tasks.ts"
import { analysisThreads, mapBlocks, prepareWorkers } from "../../lib/analysis/parallel.ts"
import { axisValues, thresholdStarts } from "../../lib/analysis/window.ts"
import type { Config, Model } from "../../pipeline/config.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import type { XAxis } from "../../pipeline/config.ts"
import { AGGREGATE, aggregateUnit, checkpointColumn, readCheckpointRows } from "../aggregate/contract.ts"
import { SCORE, scoreUnit, scoresFile } from "../score/contract.ts"
import { REGRESS, regressionsPart, regressUnit } from "./contract.ts"

export interface RegressParams {
  readonly model: string
  readonly dataset: string
  readonly steps: ReadonlyArray<number>
  readonly params: number
  readonly tokens_per_step: number
  readonly thresholds: ReadonlyArray<number>
  readonly x_axes: ReadonlyArray<XAxis>
  /** Dataset whose perplexity is the log_valid_ppl axis (only when that axis is configured). */
  readonly valid_dataset?: string
}

const plan = (config: Config): UnitPlan<RegressParams>[] =>
  config.models.flatMap((m) =>
    config.datasets.map((d) => {
      const needsValid = config.analysis.x_axes.includes("log_valid_ppl")
      const params: RegressParams = {
        model: m.name,
        dataset: d.name,
        steps: m.checkpoints.map((c) => c.step),
        params: m.params,
        tokens_per_step: m.tokens_per_step,
        thresholds: config.analysis.thresholds,
        x_axes: config.analysis.x_axes,
        ...(needsValid ? { valid_dataset: config.analysis.valid_dataset } : {}),
      }
      return {
        id: regressUnit(m.name, d.name).id,
        params,
        inputs: [...m.checkpoints.map((cp) => scoreUnit(m.name, cp.step, d.name)), ...(needsValid ? [aggregateUnit] : [])],
        files: [],
        weight: m.checkpoints.length * config.analysis.thresholds.length * config.analysis.x_axes.length,
      }
    }),
  )

/** Regressors of every configured axis for one model (reads checkpoints.parquet only for log_valid_ppl). */
const axesOf = (ctx: UnitContext, model: Model, p: RegressParams, what: string) =>
  Effect.gen(function* () {
    const steps = model.checkpoints.map((c) => c.step)
    let validNll: number[] | undefined
    if (p.valid_dataset !== undefined) {
      const rows = yield* readCheckpointRows(ctx)
      const nll = yield* checkpointColumn(rows, model, p.valid_dataset, (r) => r.mean_nll, what)
      // A checkpoint without finite tokens has no validation perplexity: NaN drops that point
      // from every regression (the OLS filters x and y together).
      validNll = nll.map((v) => (v === null ? Number.NaN : v))
    }
    return p.x_axes.map((axis) => axisValues(axis, model, steps, validNll))
  })

const run = Effect.fn("stage.regress")(function* (unit: UnitPlan<RegressParams>, ctx: UnitContext) {
  const p = unit.params
  prepareWorkers()
  const model = ctx.config.models.find((m) => m.name === p.model)
  if (model === undefined) return yield* Effect.fail(new UnitError({ message: `regress: no model named ${p.model} in the config` }))
  const what = `model ${p.model}, dataset ${p.dataset}`
  const windows = thresholdStarts(model.checkpoints.map((c) => c.step), p.thresholds, what)
  if ("error" in windows) return yield* Effect.fail(new UnitError({ message: windows.error }))
  const axes = yield* axesOf(ctx, model, p, what)
  const inputs = model.checkpoints.map((cp) => ({ input: ctx.input(scoreUnit(model.name, cp.step, p.dataset)), file: scoresFile(model.name, cp.step, p.dataset) }))
  // The workers read the score files themselves, from the local disk, at the places their
  // footers give (read here once, in TypeScript: a parquet-wasm reader per file and thread kept
  // ~6 KiB per row group in wasm memory, so memory grew with the number of tokens).
  const [chunks] = yield* logprobChunks([inputs], what)
  const files = chunks.map((c) => c.path)
  const layout = yield* alignedLayout([chunks], what)
  // Checkpoints before the earliest window start are never read (with dense early checkpoints,
  // as in Pythia's log-spaced steps, that is most of them).
  const first = Math.min(...windows.starts)
  const read = files.slice(first)
  const readChunks = chunks.slice(first)
  const starts = windows.starts.map((i0) => i0 - first)
  const readAxes = axes.map((x) => x.slice(first))
  const tasks: RegressTask[] = layout.groupRows.map((_, g) => ({
    files: read,
    places: chunkPlaces(readChunks, g),
    group: g,
    firstToken: layout.groupStart[g],
    thresholds: p.thresholds,
    starts,
    axisNames: p.x_axes,
    axes: readAxes,
  }))
  const perToken = p.thresholds.length * p.x_axes.length
  ctx.progress.start(layout.tokens * perToken, "regressions")
  yield* mapBlocks("regress", tasks, analysisThreads(ctx.config, layout.tokens * (files.length - first)), what, (out, g) =>
    Effect.gen(function* () {
      yield* ctx.writeFile(regressionsPart(p.model, p.dataset, g).path, out.bytes)
      ctx.progress.advance(out.tokens * perToken)
    }),
  )
})

export const regressStage = defineStage<RegressParams>({
  name: REGRESS,
  version: 1,
  after: [SCORE, AGGREGATE],
  describe: "per-token OLS of perplexity ratio on log step (tokens, FLOPs, validation ppl) after each threshold",
  plan,
  run,
})
