/**
 * The classify stage: token classes, per-token double descent, and the tables built on them.
 *   classes/model=M/dataset=D/part-NNNNN.parquet  threshold, token_index, class, double_descent, peak_step
 *   class_summary.parquet       model, dataset, threshold, class, n_tokens, share
 *   class_transitions.parquet   dataset, threshold, model_from, class_from, model_to, class_to, n, share
 *   class_categories.parquet    model, dataset, threshold, class, category, n, share
 *   group_trajectories.parquet  dataset, ref_model, threshold, class, model, step, valid_ppl, group_ppl, n_tokens
 *
 * One unit for the whole run (id `all`): the four summary tables sit at the run root and hold
 * every dataset (their `dataset` column), and transitions and group trajectories need every model
 * of a dataset at once. Per dataset it streams block g = row group g of every checkpoint of EVERY
 * model (the score files of a dataset are aligned; analysis/block-tasks.ts), a few blocks in
 * flight at most (analysis/parallel.ts, on worker threads for large units), so memory is bounded
 * by the row-group size times the number of models and checkpoints, not by the number of tokens.
 * Counts are merged in block order, so the tables do not depend on the number of threads.
 *
 * Classes use the log_step regression of DESIGN.md: classify recomputes it with the same
 * function and inputs as regress (analysis/blocks.ts), so a token's class always agrees with its
 * `log_step` row in regressions/ to the bit; it does not read regressions/ (decoding those rows
 * would cost more than the fit). α, δ and dd_rise come from `analysis.*`; classes are the string
 * literals of analysis/classes.ts. Group trajectories use the reference model
 * (`analysis.reference_model`, else the second-smallest) at every configured threshold.
 */
import { Effect } from "effect"
import type { Config } from "../pipeline/config.ts"
import { UnitError, type Stage, type UnitContext, type UnitPlan } from "../pipeline/stage.ts"
import {
  analysisPaths,
  classCategoriesSchema,
  classSummarySchema,
  classTransitionsSchema,
  groupTrajectoriesSchema,
} from "../schemas/analysis-tables.ts"
import type { ClassifyTask, ClassifyTaskModel } from "./analysis/block-tasks.ts"
import { f64, f64OrNull, i32, tableOf, utf8 } from "./analysis/columns.ts"
import {
  aggregateUnit,
  checkpointColumn,
  readCheckpoints,
  referenceModel,
  scoreFiles,
  scoreUnit,
  tokenizeUnit,
  tokensFile,
  withAligned,
} from "./analysis/inputs.ts"
import { analysisThreads, mapBlocks, prepareWorkers } from "./analysis/parallel.ts"
import { ClassTallies, MAX_CATEGORIES } from "./analysis/tallies.ts"
import { thresholdStarts } from "./analysis/window.ts"

export const CLASSIFY_ID = "all"

const plan = (config: Config): UnitPlan[] => [
  {
    id: CLASSIFY_ID,
    params: {
      models: config.models.map((m) => ({ name: m.name, params: m.params, steps: m.checkpoints.map((c) => c.step) })),
      datasets: config.datasets.map((d) => d.name),
      thresholds: config.analysis.thresholds,
      alpha: config.analysis.alpha,
      delta: config.analysis.delta,
      dd_rise: config.analysis.dd_rise,
      reference_model: referenceModel(config).name,
    },
    inputs: [
      ...config.datasets.map((d) => tokenizeUnit(d.name)),
      ...config.models.flatMap((m) => m.checkpoints.flatMap((cp) => config.datasets.map((d) => scoreUnit(m.name, cp.step, d.name)))),
      aggregateUnit,
    ],
    files: [],
    weight: config.models.reduce((a, m) => a + m.checkpoints.length, 0) * config.datasets.length * config.analysis.thresholds.length,
  },
]

/** Summary rows of every dataset, accumulated for the four root tables. */
interface Summaries {
  summary: ReturnType<ClassTallies["summaryRows"]>
  transitions: ReturnType<ClassTallies["transitionRows"]>
  categories: ReturnType<ClassTallies["categoryRows"]>
  groups: ReturnType<ClassTallies["groupRows"]>
}

const classifyDataset = (ctx: UnitContext, dataset: string, out: Summaries) =>
  Effect.gen(function* () {
    prepareWorkers()
    const config = ctx.config
    const a = config.analysis
    const thresholds = a.thresholds
    const ref = referenceModel(config)
    const models = config.models
    const refIndex = models.indexOf(ref)
    const starts: number[][] = []
    for (const m of models) {
      const w = thresholdStarts(m.checkpoints.map((c) => c.step), thresholds, `model ${m.name}, dataset ${dataset}`)
      if ("error" in w) return yield* Effect.fail(new UnitError({ message: w.error }))
      starts.push(w.starts)
    }
    const what = `dataset ${dataset}`
    const checkpointRows = yield* readCheckpoints(ctx, what)
    const validPpl = yield* Effect.forEach(models, (m) => checkpointColumn(checkpointRows, m, dataset, (r) => r.ppl, what))
    const files = yield* Effect.forEach(models, (m) => scoreFiles(ctx, m, dataset))
    const tokensPath = yield* tokensFile(ctx, dataset)
    const layout = yield* withAligned(files, what, (s) => Effect.succeed({ rows: s.groupRows, start: s.groupStart, tokens: s.tokens }))
    const tallies = new ClassTallies(
      models.map((m) => ({ name: m.name, steps: m.checkpoints.map((c) => c.step) })),
      thresholds,
    )
    const taskModels: ClassifyTaskModel[] = models.map((m, mi) => ({ files: files[mi], steps: m.checkpoints.map((c) => c.step), starts: starts[mi] }))
    const tasks: ClassifyTask[] = layout.rows.map((tokens, g) => ({
      models: taskModels,
      ref: refIndex,
      group: g,
      firstToken: layout.start[g],
      tokens,
      thresholds,
      alpha: a.alpha,
      delta: a.delta,
      ddRise: a.dd_rise,
      tokensFile: tokensPath,
    }))
    // Category names in order of first appearance over the whole dataset.
    const categoryNames: string[] = []
    const work = layout.tokens * files.reduce((n, f) => n + f.length, 0)
    ctx.progress.start(layout.tokens * models.length * thresholds.length, "token classes")
    yield* mapBlocks("classify", tasks, analysisThreads(config, work), what, (out, g) =>
      Effect.gen(function* () {
        for (const [mi, m] of models.entries()) yield* ctx.writeFile(analysisPaths.classes(m.name, dataset, g), out.parts[mi])
        const remap = out.categoryNames.map((name) => {
          let k = categoryNames.indexOf(name)
          if (k < 0) k = categoryNames.push(name) - 1
          return k
        })
        if (categoryNames.length > MAX_CATEGORIES) return yield* Effect.fail(new UnitError({ message: `${what}: more than ${MAX_CATEGORIES} token categories` }))
        const cats = out.categories.map((c) => remap[c])
        for (const mi of models.keys()) {
          tallies.addClasses(mi, out.cls[mi], cats)
          tallies.addGroupSums(mi, out.groups[mi])
        }
        tallies.addGroupSizes(out.cls[refIndex], tasks[g].tokens)
        tallies.addTransitions(out.cls, tasks[g].tokens)
        tallies.addTokens(tasks[g].tokens)
        ctx.progress.advance(tasks[g].tokens * models.length * thresholds.length)
      }),
    )
    out.summary.push(...tallies.summaryRows(dataset))
    out.transitions.push(...tallies.transitionRows(dataset))
    out.categories.push(...tallies.categoryRows(dataset, categoryNames))
    out.groups.push(...tallies.groupRows(dataset, ref.name, validPpl))
  })

const run = Effect.fn("stage.classify")(function* (_unit: UnitPlan, ctx: UnitContext) {
  const out: Summaries = { summary: [], transitions: [], categories: [], groups: [] }
  for (const d of ctx.config.datasets) yield* classifyDataset(ctx, d.name, out)
  const num = (xs: ReadonlyArray<number>) => f64(Float64Array.from(xs))
  const int = (xs: ReadonlyArray<number>) => i32(Int32Array.from(xs))
  yield* ctx.writeParquet(
    analysisPaths.classSummary,
    tableOf(classSummarySchema, {
      model: utf8(out.summary.map((r) => r.model)),
      dataset: utf8(out.summary.map((r) => r.dataset)),
      threshold: num(out.summary.map((r) => r.threshold)),
      class: utf8(out.summary.map((r) => r.class)),
      n_tokens: int(out.summary.map((r) => r.n_tokens)),
      share: num(out.summary.map((r) => r.share)),
    }),
  )
  yield* ctx.writeParquet(
    analysisPaths.classTransitions,
    tableOf(classTransitionsSchema, {
      dataset: utf8(out.transitions.map((r) => r.dataset)),
      threshold: num(out.transitions.map((r) => r.threshold)),
      model_from: utf8(out.transitions.map((r) => r.model_from)),
      class_from: utf8(out.transitions.map((r) => r.class_from)),
      model_to: utf8(out.transitions.map((r) => r.model_to)),
      class_to: utf8(out.transitions.map((r) => r.class_to)),
      n: int(out.transitions.map((r) => r.n)),
      share: num(out.transitions.map((r) => r.share)),
    }),
  )
  yield* ctx.writeParquet(
    analysisPaths.classCategories,
    tableOf(classCategoriesSchema, {
      model: utf8(out.categories.map((r) => r.model)),
      dataset: utf8(out.categories.map((r) => r.dataset)),
      threshold: num(out.categories.map((r) => r.threshold)),
      class: utf8(out.categories.map((r) => r.class)),
      category: utf8(out.categories.map((r) => r.category)),
      n: int(out.categories.map((r) => r.n)),
      share: num(out.categories.map((r) => r.share)),
    }),
  )
  yield* ctx.writeParquet(
    analysisPaths.groupTrajectories,
    tableOf(groupTrajectoriesSchema, {
      dataset: utf8(out.groups.map((r) => r.dataset)),
      ref_model: utf8(out.groups.map((r) => r.ref_model)),
      threshold: num(out.groups.map((r) => r.threshold)),
      class: utf8(out.groups.map((r) => r.class)),
      model: utf8(out.groups.map((r) => r.model)),
      step: int(out.groups.map((r) => r.step)),
      valid_ppl: f64OrNull(out.groups.map((r) => r.valid_ppl)),
      group_ppl: f64OrNull(out.groups.map((r) => r.group_ppl)),
      n_tokens: int(out.groups.map((r) => r.n_tokens)),
    }),
  )
})

export const classifyStage: Stage = {
  name: "classify",
  version: 1,
  after: ["tokenize", "score", "aggregate"],
  describe: "token classes, per-token double descent, class shares, transitions, categories, group trajectories",
  plan,
  run,
}
