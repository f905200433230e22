/**
 * The aggregate stage: validation perplexity of every checkpoint → `checkpoints.parquet`
 * (model, step, tokens_seen, flops, params, dataset, n_tokens, mean_nll, ppl).
 *
 * One unit for the whole run (id `all`): the table covers every model × step × dataset and sits
 * at the run root, so one unit owns it. It reads only the logprob column of every score file, one
 * row group at a time (memory is one row group). Tokens seen and FLOPs come from the config
 * (`tokens_per_step`, `params`), never from model names.
 *
 *   mean_nll = (1/n) Σ −logprob over the tokens with a finite log-prob (n = n_tokens)
 *   ppl      = exp(mean_nll)
 */
import { Effect } from "effect"
import { alignedLayout, readLogprobs } from "../../lib/analysis/aligned.ts"
import { flopsAt, tokensSeen, type Config } from "../../pipeline/config.ts"
import { defineStage, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { SCORE, scoreUnit, scoresFile } from "../score/contract.ts"
import { AGGREGATE, aggregateUnit, checkpointsFile, Checkpoints, type CheckpointRow } from "./contract.ts"

/** Σ −lp and the count over the finite log-probs of one array (nats). */
export const nllSum = (lp: Float32Array): { sum: number; n: number } => {
  let sum = 0
  let n = 0
  for (let i = 0; i < lp.length; i++) {
    const v = lp[i]
    if (v - v !== 0) continue
    sum -= v
    n++
  }
  return { sum, n }
}

interface AggregateParams {
  readonly models: ReadonlyArray<{ readonly name: string; readonly params: number; readonly tokens_per_step: number; readonly steps: ReadonlyArray<number> }>
  readonly datasets: ReadonlyArray<string>
}

const plan = (config: Config): UnitPlan<AggregateParams>[] => [
  {
    id: aggregateUnit.id,
    params: {
      models: config.models.map((m) => ({ name: m.name, params: m.params, tokens_per_step: m.tokens_per_step, steps: m.checkpoints.map((c) => c.step) })),
      datasets: config.datasets.map((d) => d.name),
    },
    inputs: config.models.flatMap((m) => m.checkpoints.flatMap((cp) => config.datasets.map((d) => scoreUnit(m.name, cp.step, d.name)))),
    files: [],
    weight: config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length,
  },
]

const run = Effect.fn("stage.aggregate")(function* (_unit: UnitPlan<AggregateParams>, ctx: UnitContext) {
  const config = ctx.config
  const rows: CheckpointRow[] = []
  ctx.progress.start(config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length, "score files")
  for (const model of config.models) {
    for (const dataset of config.datasets) {
      const what = `model ${model.name}, dataset ${dataset.name}`
      yield* Effect.scoped(
        Effect.gen(function* () {
          const readers = yield* Effect.forEach(model.checkpoints, (cp) =>
            ctx.input(scoreUnit(model.name, cp.step, dataset.name)).open(scoresFile(model.name, cp.step, dataset.name)),
          )
          const layout = yield* alignedLayout([readers], what)
          for (const [c, cp] of model.checkpoints.entries()) {
            let sum = 0
            let n = 0
            for (let g = 0; g < layout.groupRows.length; g++) {
              const s = nllSum(yield* readLogprobs(readers[c], g, what))
              sum += s.sum
              n += s.n
            }
            const mean = n > 0 ? sum / n : null
            rows.push({
              model: model.name,
              step: cp.step,
              tokens_seen: tokensSeen(model, cp.step),
              flops: flopsAt(model, cp.step),
              params: model.params,
              dataset: dataset.name,
              n_tokens: n,
              mean_nll: mean,
              ppl: mean === null ? null : Math.exp(mean),
            })
            ctx.progress.advance(1)
          }
        }),
      )
    }
  }
  yield* ctx.writeParquet(checkpointsFile, Checkpoints.fromRows(rows))
})

export const aggregateStage = defineStage<AggregateParams>({
  name: AGGREGATE,
  version: 1,
  after: [SCORE],
  describe: "validation perplexity of every checkpoint (checkpoints.parquet)",
  plan,
  run,
})
