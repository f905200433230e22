/**
 * The aggregate stage: validation perplexity of every checkpoint → `checkpoints.parquet`
 * (model, step, tokens_seen, flops, params, dataset, n_tokens, mean_nll, ppl).
 *
 * One unit for the whole run (id `all`): the table covers every model × step × dataset and sits
 * at the run root, so one unit owns it. It reads only the logprob column of every score file, one
 * row group at a time (memory is one row group; the footers are read in TypeScript, see localSums). Tokens seen and FLOPs come from the config
 * (`tokens_per_step`, `params`), never from model names.
 *
 *   mean_nll = (1/n) Σ −logprob over the tokens with a finite log-prob (n = n_tokens)
 *   ppl      = exp(mean_nll)
 */
import { Effect } from "effect"
import { alignedLayout, logprobChunks, readLogprobs } from "../../lib/analysis/aligned.ts"
import { chunkPlaces, closeReaders, readLogprobGroup } from "../../lib/analysis/block-tasks.ts"
import type { ColumnChunks } from "../../lib/analysis/chunks.ts"
import { flopsAt, tokensSeen, type Config } from "../../pipeline/config.ts"
import { firstLine } from "../../pipeline/errors.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import type { RowGroupReader } from "../../pipeline/store.ts"
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

type Sum = { sum: number; n: number }

/** Σ −lp and n of every checkpoint ([checkpoints]) over the row groups of its readers. */
const sumsOf = (readers: ReadonlyArray<RowGroupReader>, what: string, advance: () => void): Effect.Effect<Sum[], UnitError> =>
  Effect.gen(function* () {
    const layout = yield* alignedLayout([readers], what)
    const out: Sum[] = []
    for (const r of readers) {
      const acc = { sum: 0, n: 0 }
      for (let g = 0; g < layout.groupRows.length; g++) addSum(acc, nllSum(yield* readLogprobs(r, g, what)))
      out.push(acc)
      advance()
    }
    return out
  })

const addSum = (acc: Sum, s: Sum) => {
  acc.sum += s.sum
  acc.n += s.n
}

/**
 * The same from score files on the local disk: their footers read in TypeScript and each row
 * group's chunk read directly (analysis/chunks.ts), one file at a time. parquet-wasm readers of
 * every file at once kept each footer in wasm memory (~6 KiB per row group), growing with the
 * number of tokens.
 */
const localSums = (chunks: ReadonlyArray<ColumnChunks>, what: string, advance: () => void): Effect.Effect<Sum[], UnitError> =>
  Effect.gen(function* () {
    const layout = yield* alignedLayout([chunks], what)
    const out: Sum[] = []
    let into: Float32Array[] = []
    for (const c of chunks) {
      const acc = { sum: 0, n: 0 }
      for (let g = 0; g < layout.groupRows.length; g++) {
        into = yield* Effect.tryPromise({
          try: () => readLogprobGroup([c.path], g, into, chunkPlaces([c], g)),
          catch: (e) => new UnitError({ message: `${what}: ${firstLine(e)}`, cause: e }),
        })
        addSum(acc, nllSum(into[0]))
      }
      out.push(acc)
      advance()
    }
    return out
  }).pipe(Effect.ensuring(Effect.promise(closeReaders)))

const run = Effect.fn("stage.aggregate")(function* (_unit: UnitPlan<AggregateParams>, ctx: UnitContext) {
  const config = ctx.config
  const rows: CheckpointRow[] = []
  ctx.progress.start(config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length, "score files")
  for (const model of config.models) {
    for (const dataset of config.datasets) {
      const what = `model ${model.name}, dataset ${dataset.name}`
      const files = model.checkpoints.map((cp) => ({ input: ctx.input(scoreUnit(model.name, cp.step, dataset.name)), file: scoresFile(model.name, cp.step, dataset.name) }))
      const advance = () => ctx.progress.advance(1)
      const sums = yield* Effect.matchEffect(logprobChunks([files], what), {
        // a run store without local files (in memory), or a file missing or unreadable: through
        // the store's readers, one row group at a time (which fail with the store's error)
        onFailure: () => Effect.scoped(Effect.flatMap(Effect.forEach(files, ({ input, file }) => input.open(file)), (readers) => sumsOf(readers, what, advance))),
        onSuccess: ([chunks]) => localSums(chunks, what, advance),
      })
      for (const [c, cp] of model.checkpoints.entries()) {
        const { sum, n } = sums[c]
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
      }
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
