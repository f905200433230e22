/**
 * The correlate stage: one whole-run unit (`all`) that reads
 *   downstream/model=M/step=S/task=T/options.parquet   every checkpoint × task (downstream stage)
 *   checkpoints.parquet                                validation perplexity (aggregate stage)
 *   scores/model=M/step=S/dataset=V/scores.parquet     per-token log-probs on V (score stage)
 * where V = analysis.valid_dataset (default: the first dataset), and writes
 *   task_metrics.parquet   accuracy etc. per (model, step, task), and per BIG-bench parent task the
 *                          mean over its subtasks (metrics.ts, tables.ts parentRows)
 *   task_margins.parquet   per (model, step, task) the margin of the correct options over the
 *                          incorrect ones in per-token log-prob, with its interval (metrics.ts taskMargin)
 *   correlations.parquet   what predicts accuracy, with bootstrap intervals (tables.ts, stats.ts, bootstrap.ts)
 *   r2_differences.parquet how much better one x axis predicts than another, with intervals
 *   agreement.parquet      per-token agreement of matched checkpoints (match.ts)
 * Task metrics are written here, not by the downstream stage, because they need every options
 * table of the run and a unit cannot wait for units of its own stage.
 * Agreement: for every pair of sizes (smaller first, by params), each checkpoint of the smaller
 * size is paired with the larger size's checkpoint of nearest validation perplexity, and again
 * with that of nearest FLOPs; a row holds the Pearson and Spearman correlation of the two
 * checkpoints' log-probs over every token of V.
 */
import { Effect } from "effect"
import { flopsAt, modelsBySize, parentTasks, tokensSeen, type Config } from "../../pipeline/config.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { AGGREGATE, aggregateUnit, checkpointsFile, readCheckpointRows } from "../aggregate/contract.ts"
import { DOWNSTREAM, downstreamUnit, downstreamUnits, optionsFile } from "../downstream/contract.ts"
import { SCORE, scoreUnit, scoresFile } from "../score/contract.ts"
import { agreementFile, CORRELATE, correlateUnit, correlationsFile, r2DifferencesFile, TaskMargins, taskMarginsFile, taskMetricsFile, type TaskMarginRow } from "./contract.ts"
import { exampleHits, taskMargin, taskMetrics, type OptionColumns } from "./metrics.ts"
import { matchCheckpoints, type CheckpointValues, type MatchKind } from "./match.ts"
import { averageRanks, pearson } from "./stats.ts"
import {
  agreementTable,
  atChance,
  bootstrapTables,
  correlationRows,
  r2DifferencesTable,
  type PointHits,
  meanTasks,
  withParentRows,
  correlationsTable,
  taskMetricsTable,
  type AgreementRow,
  type CorrelationAxis,
  type MetricRow,
} from "./tables.ts"

/** Validation perplexity of every (model, step) on `dataset`, keyed `model\0step`. */
const readValidPpl = (ctx: UnitContext, dataset: string) =>
  Effect.map(readCheckpointRows(ctx), (rows) => {
    const out = new Map<string, number>()
    for (const r of rows) if (r.dataset === dataset && r.ppl !== null) out.set(`${r.model}\u0000${r.step}`, r.ppl)
    return out
  })

/**
 * Task metrics and per-example hits of every (model, step, task) from the options tables, for the
 * tasks whose every unit is done; each task left out is named with the first reason (a unit that failed).
 */
const readMetrics = (ctx: UnitContext) =>
  Effect.gen(function* () {
    const units = downstreamUnits(ctx.config)
    const rows: MetricRow[] = []
    const margins: TaskMarginRow[] = []
    const hits = new Map<string, PointHits>()
    const leftOut: Array<{ task: string; why: string }> = []
    for (const task of ctx.config.tasks) {
      const got = yield* Effect.either(Effect.forEach(units.filter((u) => u.task.name === task.name), metricRow(ctx)))
      if (got._tag === "Right") {
        for (const r of got.right) {
          rows.push(r.metrics)
          margins.push(r.margin)
          hits.set(hitsKey(r.metrics.task, r.metrics.model, r.metrics.step), r.hits)
        }
      } else leftOut.push({ task: task.name, why: got.left.message })
    }
    return { rows, margins, hits, leftOut }
  })

const hitsKey = (task: string, model: string, step: number) => `${task}\u0000${model}\u0000${step}`

const metricRow =
  (ctx: UnitContext) =>
  ({ model, checkpoint, task }: ReturnType<typeof downstreamUnits>[number]) =>
    Effect.map(ctx.input(downstreamUnit(model.name, checkpoint.step, task.name)).read(optionsFile(model.name, checkpoint.step, task.name)), (t) => {
      const columns: OptionColumns = {
        exampleId: t.getChild("example_id")!.toArray() as Int32Array,
        isCorrect: Array.from(t.getChild("is_correct")!, (v) => v === true),
        logprobSum: t.getChild("logprob_sum")!.toArray() as Float64Array,
        nTokens: t.getChild("n_tokens")!.toArray() as Int32Array,
        nChars: t.getChild("n_chars")!.toArray() as Int32Array,
        targetScore: t.getChild("target_score")!.toArray() as Float64Array,
      }
      const metrics: MetricRow = { model: model.name, step: checkpoint.step, task: task.name, ...(task.parent !== undefined ? { parent: task.parent } : {}), ...taskMetrics(columns) }
      return { metrics, margin: { model: model.name, step: checkpoint.step, task: task.name, ...taskMargin(columns) }, hits: exampleHits(columns) }
    })

/** Log-probs and their average ranks of one score file, the last few kept (each pair reads two). */
const scoreCache = (ctx: UnitContext, dataset: string, capacity = 6) => {
  const cache = new Map<string, { logprob: Float32Array; ranks: Float64Array }>()
  return (model: string, step: number) =>
    Effect.gen(function* () {
      const file = scoresFile(model, step, dataset)
      const hit = cache.get(file.path)
      if (hit) return hit
      const t = yield* ctx.input(scoreUnit(model, step, dataset)).read(file, { columns: ["logprob"] })
      const logprob = t.getChild("logprob")!.toArray() as Float32Array
      const entry = { logprob, ranks: averageRanks(logprob) }
      if (cache.size >= capacity) cache.delete(cache.keys().next().value!)
      cache.set(file.path, entry)
      return entry
    })
}

interface CorrelateParams {
  readonly valid_dataset: string
  readonly tasks: ReadonlyArray<string>
  readonly parents: ReadonlyArray<{ readonly name: string; readonly subtasks: ReadonlyArray<string> }>
  readonly chance_tasks_in_mean: boolean
  readonly bootstrap_samples: number
  readonly bootstrap_seed: number
  readonly models: ReadonlyArray<{ readonly name: string; readonly params: number; readonly tokens_per_step: number; readonly steps: ReadonlyArray<number> }>
}

const run = Effect.fn("stage.correlate")(function* (_unit: UnitPlan<CorrelateParams>, ctx: UnitContext) {
  const { config } = ctx
  const dataset = config.analysis.valid_dataset
  const ppl = yield* readValidPpl(ctx, dataset)
  const values = (model: string, step: number): CheckpointValues => {
    const m = config.models.find((x) => x.name === model)!
    return { step, ppl: ppl.get(`${model}\u0000${step}`) ?? Number.NaN, flops: flopsAt(m, step) }
  }
  const missing = config.models.flatMap((m) => m.checkpoints.filter((c) => !ppl.has(`${m.name}\u0000${c.step}`)).map((c) => `${m.name} step ${c.step}`))
  if (missing.length > 0) {
    return yield* new UnitError({
      message: `${checkpointsFile.path} has no validation perplexity on dataset ${dataset} for ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ` and ${missing.length - 3} more` : ""}`,
    })
  }

  const { rows: taskRows, margins, hits, leftOut } = yield* readMetrics(ctx)
  for (const { task, why } of leftOut) yield* ctx.log(`correlate: task ${task} is left out of task_metrics and correlations: ${why}`)
  // A parent task is aggregated only when every one of its subtasks is there.
  const lost = (p: { readonly subtasks: ReadonlyArray<string> }) => p.subtasks.filter((t) => leftOut.some((l) => l.task === t))
  const parents = parentTasks(config).filter((p) => lost(p).length === 0)
  for (const p of parentTasks(config).filter((q) => lost(q).length > 0)) {
    yield* ctx.log(`correlate: parent task ${p.name} has no aggregate rows and correlations: its subtask(s) ${lost(p).join(", ")} are left out`)
  }
  const metrics = withParentRows(taskRows, parents)
  yield* ctx.writeParquet(taskMetricsFile, taskMetricsTable(metrics))
  yield* ctx.writeParquet(taskMarginsFile, TaskMargins.fromRows(margins))

  const xOf = (model: string, step: number): Record<CorrelationAxis, number> => {
    const m = config.models.find((x) => x.name === model)!
    return {
      log_valid_ppl: Math.log(values(model, step).ppl),
      log_flops: Math.log(flopsAt(m, step)),
      log_tokens: Math.log(tokensSeen(m, step)),
      log_step: Math.log(step),
    }
  }
  const done = config.tasks.map((t) => t.name).filter((t) => !leftOut.some((l) => l.task === t))
  const chance = new Set(done.filter((t) => atChance(metrics.filter((m) => m.task === t))))
  const inMean = meanTasks(done, chance, config.analysis.chance_tasks_in_mean)
  if (chance.size > 0) {
    const which = [...chance].join(", ")
    yield* ctx.log(
      inMean.length === done.length
        ? `correlate: ${chance.size === done.length ? "every task is" : `task(s) ${which}`} at chance at every checkpoint (the 95% interval of accuracy covers the random baseline); kept in the mean over tasks${config.analysis.chance_tasks_in_mean ? " (analysis.chance_tasks_in_mean)" : ", since no task is above chance"}`
        : `correlate: task(s) ${which} at chance at every checkpoint (the 95% interval of accuracy covers the random baseline): left out of the mean over tasks (analysis.chance_tasks_in_mean: true keeps them)`,
    )
  }
  const points = config.models.flatMap((m) => m.checkpoints.map((c) => ({ model: m.name, step: c.step })))
  const { samples, seed } = { samples: config.analysis.bootstrap_samples, seed: config.analysis.bootstrap_seed }
  yield* ctx.log(`correlate: ${samples} bootstrap resamples of each task's examples (seed ${seed})`)
  const boot = bootstrapTables(points, done, (t, m, s) => hits.get(hitsKey(t, m, s))!, xOf, inMean, { samples, seed }, parents)
  const correlations = correlationRows(metrics, [...done, ...parents.map((p) => p.name)], xOf, inMean, boot.intervals)
  yield* ctx.writeParquet(correlationsFile, correlationsTable(correlations))
  yield* ctx.writeParquet(r2DifferencesFile, r2DifferencesTable(boot.differences))

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
  yield* ctx.writeParquet(agreementFile, agreementTable(rows))
})

export const correlateStage = defineStage<CorrelateParams>({
  name: CORRELATE,
  // 2: Wilson intervals, grade, tasks at chance; 3: bootstrap intervals, r2_differences.parquet;
  // 4: task_metrics parent, aggregate (BIG-bench parent tasks); 5: task_margins.parquet
  version: 5,
  after: [DOWNSTREAM, AGGREGATE, SCORE],
  describe: "task metrics, what predicts accuracy (ppl, FLOPs, tokens, steps), and agreement between sizes at equal perplexity",
  plan: (config) => {
    const dataset = config.analysis.valid_dataset
    return [
      {
        id: correlateUnit.id,
        params: {
          valid_dataset: dataset,
          tasks: config.tasks.map((t) => t.name),
          parents: parentTasks(config),
          chance_tasks_in_mean: config.analysis.chance_tasks_in_mean,
          bootstrap_samples: config.analysis.bootstrap_samples,
          bootstrap_seed: config.analysis.bootstrap_seed,
          models: config.models.map((m) => ({ name: m.name, params: m.params, tokens_per_step: m.tokens_per_step, steps: m.checkpoints.map((c) => c.step) })),
        },
        inputs: [aggregateUnit, ...config.models.flatMap((m) => m.checkpoints.map((c) => scoreUnit(m.name, c.step, dataset)))],
        // A task whose units failed is left out (and named); the others' metrics are still written.
        optionalInputs: downstreamUnits(config).map((u) => downstreamUnit(u.model.name, u.checkpoint.step, u.task.name)),
        files: [],
        weight: Math.max(1, config.models.length * config.tasks.length),
      },
    ]
  },
  run,
})
