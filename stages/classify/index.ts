/**
 * The classify stage: token classes, per-token double descent, and the tables built on them.
 *   classes/model=M/dataset=D/part-NNNNN.parquet  threshold, token_index, class, double_descent, peak_step
 *   class_summary.parquet       model, dataset, threshold, class, n_tokens, share, share_lo, share_hi
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
 * class_summary's intervals resample documents (analysis/doc-shares.ts): each block brings the
 * doc_id runs of its tokens, the tallies keep every model's class counts per document, and one
 * seeded bootstrap per dataset (`analysis.bootstrap_samples`, `analysis.bootstrap_seed`) runs on
 * this thread after the blocks.
 *
 * Classes use the log_step regression of DESIGN.md: classify recomputes it with the same
 * function and inputs as regress (analysis/blocks.ts), so a token's class always agrees with its
 * `log_step` row in regressions/ to the bit; it does not read regressions/ (decoding those rows
 * would cost more than the fit). α, δ and dd_rise come from `analysis.*`; classes are the string
 * literals of analysis/classes.ts. Group trajectories use the reference model
 * (`analysis.reference_model`, else the second-smallest) at every configured threshold.
 */
import { Effect } from "effect"
import { alignedLayout, logprobChunks } from "../../lib/analysis/aligned.ts"
import { chunkPlaces, type ClassifyTask, type ClassifyTaskModel } from "../../lib/analysis/block-tasks.ts"
import { analysisThreads, mapBlocks, prepareWorkers } from "../../lib/analysis/parallel.ts"
import { ClassTallies, MAX_CATEGORIES } from "../../lib/analysis/tallies.ts"
import { thresholdStarts } from "../../lib/analysis/window.ts"
import type { Config } from "../../pipeline/config.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { AGGREGATE, aggregateUnit, checkpointColumn, readCheckpointRows } from "../aggregate/contract.ts"
import { SCORE, scoreUnit, scoresFile } from "../score/contract.ts"
import { TOKENIZE, tokenizeUnit, tokensFile } from "../tokenize/contract.ts"
import {
  CLASSIFY,
  classCategoriesFile,
  ClassCategories,
  classesPart,
  classifyUnit,
  classSummaryFile,
  ClassSummary,
  classTransitionsFile,
  ClassTransitions,
  groupTrajectoriesFile,
  GroupTrajectories,
} from "./contract.ts"

interface ClassifyParams {
  readonly models: ReadonlyArray<{ readonly name: string; readonly params: number; readonly steps: ReadonlyArray<number> }>
  readonly datasets: ReadonlyArray<string>
  readonly thresholds: ReadonlyArray<number>
  readonly alpha: number
  readonly delta: number
  readonly dd_rise: number
  readonly reference_model: string
  readonly bootstrap_samples: number
  readonly bootstrap_seed: number
}


const plan = (config: Config): UnitPlan<ClassifyParams>[] => [
  {
    id: classifyUnit.id,
    params: {
      models: config.models.map((m) => ({ name: m.name, params: m.params, steps: m.checkpoints.map((c) => c.step) })),
      datasets: config.datasets.map((d) => d.name),
      thresholds: config.analysis.thresholds,
      alpha: config.analysis.alpha,
      delta: config.analysis.delta,
      dd_rise: config.analysis.dd_rise,
      reference_model: config.analysis.reference_model,
      bootstrap_samples: config.analysis.bootstrap_samples,
      bootstrap_seed: config.analysis.bootstrap_seed,
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
    const models = config.models
    const refIndex = models.findIndex((m) => m.name === a.reference_model)
    const ref = models[refIndex]
    const starts: number[][] = []
    for (const m of models) {
      const w = thresholdStarts(m.checkpoints.map((c) => c.step), thresholds, `model ${m.name}, dataset ${dataset}`)
      if ("error" in w) return yield* Effect.fail(new UnitError({ message: w.error }))
      starts.push(w.starts)
    }
    const what = `dataset ${dataset}`
    const checkpointRows = yield* readCheckpointRows(ctx)
    const validPpl = yield* Effect.forEach(models, (m) => checkpointColumn(checkpointRows, m, dataset, (r) => r.ppl, what))
    const inputs = models.map((m) =>
      m.checkpoints.map((cp) => ({ input: ctx.input(scoreUnit(m.name, cp.step, dataset)), file: scoresFile(m.name, cp.step, dataset) })),
    )
    // The workers read the score and tokens files themselves, from the local disk; the score
    // files at the places their footers give (read here once, see regress).
    const chunks = yield* logprobChunks(inputs, what)
    const files = chunks.map((row) => row.map((c) => c.path))
    const layout = yield* alignedLayout(chunks, what)
    const tokensPath = yield* ctx.input(tokenizeUnit(dataset)).localPath(tokensFile(dataset).path)
    const tallies = new ClassTallies(
      models.map((m) => ({ name: m.name, steps: m.checkpoints.map((c) => c.step) })),
      thresholds,
    )
    const taskModels = (g: number): ClassifyTaskModel[] =>
      models.map((m, mi) => ({ files: files[mi], places: chunkPlaces(chunks[mi], g), steps: m.checkpoints.map((c) => c.step), starts: starts[mi] }))
    const tasks: ClassifyTask[] = layout.groupRows.map((tokens, g) => ({
      models: taskModels(g),
      ref: refIndex,
      group: g,
      firstToken: layout.groupStart[g],
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
        for (const [mi, m] of models.entries()) yield* ctx.writeFile(classesPart(m.name, dataset, g).path, out.parts[mi])
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
        tallies.addDocuments(out.cls, out.docs, tasks[g].tokens)
        tallies.addTokens(tasks[g].tokens)
        ctx.progress.advance(tasks[g].tokens * models.length * thresholds.length)
      }),
    )
    const bootstrap = { samples: a.bootstrap_samples, seed: a.bootstrap_seed }
    yield* ctx.log(`classify: ${what}: class shares from ${bootstrap.samples} bootstrap resamples of its ${tallies.docs} document(s) (seed ${bootstrap.seed})`)
    out.summary.push(...tallies.summaryRows(dataset, bootstrap))
    out.transitions.push(...tallies.transitionRows(dataset))
    out.categories.push(...tallies.categoryRows(dataset, categoryNames))
    out.groups.push(...tallies.groupRows(dataset, ref.name, validPpl))
  })

const run = Effect.fn("stage.classify")(function* (_unit: UnitPlan<ClassifyParams>, ctx: UnitContext) {
  const out: Summaries = { summary: [], transitions: [], categories: [], groups: [] }
  for (const d of ctx.config.datasets) yield* classifyDataset(ctx, d.name, out)
  yield* ctx.writeParquet(classSummaryFile, ClassSummary.fromRows(out.summary))
  yield* ctx.writeParquet(classTransitionsFile, ClassTransitions.fromRows(out.transitions))
  yield* ctx.writeParquet(classCategoriesFile, ClassCategories.fromRows(out.categories))
  yield* ctx.writeParquet(groupTrajectoriesFile, GroupTrajectories.fromRows(out.groups))
})

export const classifyStage = defineStage<ClassifyParams>({
  name: CLASSIFY,
  version: 2, // 2: class_summary's share_lo, share_hi (documents resampled)
  after: [TOKENIZE, SCORE, AGGREGATE],
  describe: "token classes, per-token double descent, class shares, transitions, categories, group trajectories",
  plan,
  run,
})
