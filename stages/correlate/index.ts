/**
 * The correlate stage: one whole-run unit (`all`) that reads
 *   downstream/model=M/step=S/task=T/options.parquet   every checkpoint × task (downstream stage)
 *   checkpoints.parquet                                validation perplexity (aggregate stage)
 *   scores/model=M/step=S/dataset=V/scores.parquet     per-token log-probs on V (score stage)
 * where V = analysis.valid_dataset (default: the first dataset), and writes
 *   task_metrics.parquet   accuracy etc. per (model, step, task)      (../downstream/metrics.ts)
 *   correlations.parquet   what predicts accuracy                     (tables.ts, stats.ts)
 *   agreement.parquet      per-token agreement of matched checkpoints (match.ts)
 * Task metrics are written here, not by the downstream stage, because they need every options
 * table of the run and a unit cannot wait for units of its own stage.
 * Agreement: for every pair of sizes (smaller first, by params), each checkpoint of the smaller
 * size is paired with the larger size's checkpoint of nearest validation perplexity, and again
 * with that of nearest FLOPs; a row holds the Pearson and Spearman correlation of the two
 * checkpoints' log-probs over every token of V.
 */
import * as fs from "node:fs"
import { Effect } from "effect"
import { flopsAt, modelsBySize, tokensSeen, type Config } from "../../pipeline/config.ts"
import { UnitError, type Stage, type UnitContext, type UnitRef } from "../../pipeline/stage.ts"
import { readParquetFile } from "../../pipeline/store.ts"
import { analysisPaths } from "../../schemas/analysis-tables.ts"
import { downstreamPaths } from "../../schemas/downstream-tables.ts"
import { tablePaths } from "../../schemas/tables.ts"
import { aggregateUnit, scoreUnit } from "../analysis/inputs.ts"
import { downstreamUnits, displayPath } from "../downstream/index.ts"
import { taskMetrics } from "../downstream/metrics.ts"
import { matchCheckpoints, type CheckpointValues, type MatchKind } from "./match.ts"
import { averageRanks, pearson } from "./stats.ts"
import {
  agreementTable,
  correlationRows,
  correlationsTable,
  taskMetricsTable,
  type AgreementRow,
  type CorrelationAxis,
  type MetricRow,
} from "./tables.ts"

const CHECKPOINTS = analysisPaths.checkpoints

export const validDatasetOf = (config: Config): string => config.analysis.valid_dataset ?? config.datasets[0].name

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split("\n")[0].trim()

/** Read a Parquet file or fail with a message naming it and the stage that writes it. */
const readTable = (file: string, what: string, columns?: string[]) =>
  Effect.try({
    try: () => readParquetFile(file, columns ? { columns } : {}),
    catch: (e) =>
      new UnitError({
        message: fs.existsSync(file)
          ? `cannot read ${displayPath(file)}: ${firstLine(e)}`
          : `${displayPath(file)} is missing (${what})`,
      }),
  })

const num = (v: unknown): number => (typeof v === "bigint" ? Number(v) : (v as number))

/** Validation perplexity of every (model, step) on `dataset`, keyed `model\0step`. */
const readValidPpl = (ctx: UnitContext, dataset: string) =>
  Effect.gen(function* () {
    const t = yield* readTable(ctx.path(CHECKPOINTS), "written by the aggregate stage", ["model", "step", "dataset", "ppl"])
    const model = t.getChild("model")!
    const step = t.getChild("step")!
    const ds = t.getChild("dataset")!
    const ppl = t.getChild("ppl")!
    const out = new Map<string, number>()
    for (let i = 0; i < t.numRows; i++) {
      const p = ppl.get(i)
      if (ds.get(i) === dataset && p !== null) out.set(`${model.get(i)}\u0000${num(step.get(i))}`, num(p))
    }
    return out
  })

/** Task metrics of every (model, step, task) from the options tables. */
const readMetrics = (ctx: UnitContext) =>
  Effect.forEach(downstreamUnits(ctx.config), ({ model, checkpoint, task }) =>
    Effect.map(
      readTable(ctx.path(downstreamPaths.options(model.name, checkpoint.step, task.name)), "written by the downstream stage"),
      (t): MetricRow => ({
        model: model.name,
        step: checkpoint.step,
        task: task.name,
        ...taskMetrics({
          exampleId: t.getChild("example_id")!.toArray() as Int32Array,
          isCorrect: Array.from(t.getChild("is_correct")!, (v) => v === true),
          logprobSum: t.getChild("logprob_sum")!.toArray() as Float64Array,
          nTokens: t.getChild("n_tokens")!.toArray() as Int32Array,
          nChars: t.getChild("n_chars")!.toArray() as Int32Array,
        }),
      }),
    ),
  )

/** Log-probs and their average ranks of one score file, the last few kept (each pair reads two). */
const scoreCache = (ctx: UnitContext, dataset: string, capacity = 6) => {
  const cache = new Map<string, { logprob: Float32Array; ranks: Float64Array }>()
  return (model: string, step: number) =>
    Effect.gen(function* () {
      const file = ctx.path(tablePaths.scores(model, step, dataset))
      const hit = cache.get(file)
      if (hit) return hit
      const t = yield* readTable(file, "written by the score stage", ["logprob"])
      const logprob = t.getChild("logprob")!.toArray() as Float32Array
      const entry = { logprob, ranks: averageRanks(logprob) }
      if (cache.size >= capacity) cache.delete(cache.keys().next().value!)
      cache.set(file, entry)
      return entry
    })
}

const run = Effect.fn("stage.correlate")(function* (_unit: { readonly id: string }, ctx: UnitContext) {
  const { config } = ctx
  const dataset = validDatasetOf(config)
  const ppl = yield* readValidPpl(ctx, dataset)
  const values = (model: string, step: number): CheckpointValues => {
    const m = config.models.find((x) => x.name === model)!
    return { step, ppl: ppl.get(`${model}\u0000${step}`) ?? Number.NaN, flops: flopsAt(m, step) }
  }
  const missing = config.models.flatMap((m) => m.checkpoints.filter((c) => !ppl.has(`${m.name}\u0000${c.step}`)).map((c) => `${m.name} step ${c.step}`))
  if (missing.length > 0) {
    return yield* new UnitError({
      message: `${CHECKPOINTS} has no validation perplexity on dataset ${dataset} for ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ` and ${missing.length - 3} more` : ""}`,
    })
  }

  const metrics = yield* readMetrics(ctx)
  yield* ctx.writeParquet(downstreamPaths.taskMetrics, taskMetricsTable(metrics))

  const xOf = (model: string, step: number): Record<CorrelationAxis, number> => {
    const m = config.models.find((x) => x.name === model)!
    return {
      log_valid_ppl: Math.log(values(model, step).ppl),
      log_flops: Math.log(flopsAt(m, step)),
      log_tokens: Math.log(tokensSeen(m, step)),
      log_step: Math.log(step),
    }
  }
  const correlations = correlationRows(metrics, config.tasks.map((t) => t.name), xOf)
  yield* ctx.writeParquet(downstreamPaths.correlations, correlationsTable(correlations))

  const scores = scoreCache(ctx, dataset)
  const sizes = modelsBySize(config)
  const pairs = sizes.flatMap((a, i) => sizes.slice(i + 1).map((b) => [a, b] as const))
  const kinds: ReadonlyArray<MatchKind> = ["ppl", "flops"]
  const rows: AgreementRow[] = []
  ctx.progress.start(pairs.length * kinds.length, "size pairs")
  for (const [a, b] of pairs) {
    const va = a.checkpoints.map((c) => values(a.name, c.step))
    const vb = b.checkpoints.map((c) => values(b.name, c.step))
    for (const kind of kinds) {
      for (const [ca, cb] of matchCheckpoints(va, vb, kind)) {
        const sa = yield* scores(a.name, ca.step)
        const sb = yield* scores(b.name, cb.step)
        if (sa.logprob.length !== sb.logprob.length) {
          return yield* new UnitError({
            message: `score files of ${a.name} step ${ca.step} and ${b.name} step ${cb.step} on dataset ${dataset} have ${sa.logprob.length} and ${sb.logprob.length} tokens; re-run the score stage`,
          })
        }
        rows.push({
          match: kind,
          dataset,
          model_a: a.name,
          step_a: ca.step,
          model_b: b.name,
          step_b: cb.step,
          ppl_a: ca.ppl,
          ppl_b: cb.ppl,
          flops_a: ca.flops,
          flops_b: cb.flops,
          pearson: pearson(sa.logprob, sb.logprob),
          spearman: pearson(sa.ranks, sb.ranks),
          n_tokens: sa.logprob.length,
        })
      }
      ctx.progress.advance(1)
    }
  }
  yield* ctx.writeParquet(downstreamPaths.agreement, agreementTable(rows))
})

export const correlateStage: Stage = {
  name: "correlate",
  version: 1,
  after: ["downstream", "aggregate", "score"],
  describe: "task metrics, what predicts accuracy (ppl, FLOPs, tokens, steps), and agreement between sizes at equal perplexity",
  plan: (config) => {
    const dataset = validDatasetOf(config)
    return [
      {
        id: "all",
        params: {
          valid_dataset: dataset,
          tasks: config.tasks.map((t) => t.name),
          models: config.models.map((m) => ({ name: m.name, params: m.params, tokens_per_step: m.tokens_per_step, steps: m.checkpoints.map((c) => c.step) })),
        },
        inputs: [
          ...downstreamUnits(config).map((u): UnitRef => ({ stage: "downstream", id: u.id })),
          aggregateUnit,
          ...config.models.flatMap((m) => m.checkpoints.map((c) => scoreUnit(m.name, c.step, dataset))),
        ],
        files: [],
        weight: Math.max(1, config.models.length * config.tasks.length),
      },
    ]
  },
  run: (unit, ctx) => run(unit, ctx),
}
