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
import { flopsAt, tokensSeen, type Config } from "../pipeline/config.ts"
import type { Stage, UnitContext, UnitPlan } from "../pipeline/stage.ts"
import { analysisPaths, checkpointsSchema } from "../schemas/analysis-tables.ts"
import { f64OrNull, i32, tableOf, utf8 } from "./analysis/columns.ts"
import { AGGREGATE_ID, readLogprobs, scoreFiles, scoreUnit, withAligned } from "./analysis/inputs.ts"

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

const plan = (config: Config): UnitPlan[] => [
  {
    id: AGGREGATE_ID,
    params: {
      models: config.models.map((m) => ({ name: m.name, params: m.params, tokens_per_step: m.tokens_per_step, steps: m.checkpoints.map((c) => c.step) })),
      datasets: config.datasets.map((d) => d.name),
    },
    inputs: config.models.flatMap((m) => m.checkpoints.flatMap((cp) => config.datasets.map((d) => scoreUnit(m.name, cp.step, d.name)))),
    files: [],
    weight: config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length,
  },
]

const run = Effect.fn("stage.aggregate")(function* (_unit: UnitPlan, ctx: UnitContext) {
  const config = ctx.config
  const rows = {
    model: [] as string[],
    step: [] as number[],
    tokens_seen: [] as number[],
    flops: [] as number[],
    params: [] as number[],
    dataset: [] as string[],
    n_tokens: [] as number[],
    mean_nll: [] as Array<number | null>,
    ppl: [] as Array<number | null>,
  }
  ctx.progress.start(config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length, "score files")
  for (const model of config.models) {
    for (const dataset of config.datasets) {
      const what = `model ${model.name}, dataset ${dataset.name}`
      const files = yield* scoreFiles(ctx, model, dataset.name)
      yield* withAligned([files], what, (scores) => Effect.gen(function* () {
        for (const [c, cp] of model.checkpoints.entries()) {
          let sum = 0
          let n = 0
          for (let g = 0; g < scores.groupRows.length; g++) {
            const [lp] = yield* readLogprobs([scores.readers[0][c]], g, what)
            const s = nllSum(lp)
            sum += s.sum
            n += s.n
          }
          const mean = n > 0 ? sum / n : null
          rows.model.push(model.name)
          rows.step.push(cp.step)
          rows.tokens_seen.push(tokensSeen(model, cp.step))
          rows.flops.push(flopsAt(model, cp.step))
          rows.params.push(model.params)
          rows.dataset.push(dataset.name)
          rows.n_tokens.push(n)
          rows.mean_nll.push(mean)
          rows.ppl.push(mean === null ? null : Math.exp(mean))
          ctx.progress.advance(1)
        }
      }))
    }
  }
  const table = tableOf(checkpointsSchema, {
    model: utf8(rows.model),
    step: i32(Int32Array.from(rows.step)),
    tokens_seen: f64OrNull(rows.tokens_seen),
    flops: f64OrNull(rows.flops),
    params: f64OrNull(rows.params),
    dataset: utf8(rows.dataset),
    n_tokens: i32(Int32Array.from(rows.n_tokens)),
    mean_nll: f64OrNull(rows.mean_nll),
    ppl: f64OrNull(rows.ppl),
  })
  yield* ctx.writeParquet(analysisPaths.checkpoints, table)
})

export const aggregateStage: Stage = {
  name: "aggregate",
  version: 1,
  after: ["score"],
  describe: "validation perplexity of every checkpoint (checkpoints.parquet)",
  plan,
  run,
}
