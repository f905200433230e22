/**
 * The checks stage: catches duplicated, misplaced and broken checkpoints before they poison the
 * analysis, and writes `checkpoint_checks.parquet` (model, step, check, severity, detail,
 * related_step). The rules and their thresholds (`analysis.checks`) are stated in ./rules.ts.
 *
 * One unit for the whole run (id `all`), after aggregate: it reads checkpoints.parquet (mean NLL
 * per checkpoint and dataset), every score file (streamed one row group at a time) and every ONNX
 * checkpoint with its external-data files (hashed once: ./digest.ts caches digests by path, size
 * and mtime in the run's cache folder).
 *
 * What reads its output: the report (the table, flagged points on the perplexity figure), the CLI
 * (`formatCheckWarnings`, ./table.ts) and, with `analysis.exclude_flagged`, the later stages
 * (`flaggedFor` + `withoutFlagged`, ./flagged.ts).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import type { Config } from "../../pipeline/config.ts"
import { displayPath, firstLine } from "../../pipeline/errors.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { AGGREGATE, aggregateUnit, checkpointColumn, readCheckpointRows } from "../aggregate/contract.ts"
import { SCORE, scoreUnit } from "../score/contract.ts"
import { CHECKS, checksFile, checksUnit } from "./contract.ts"
import { unscoredCheckpoints } from "./flagged.ts"
import { DigestCache, checkpointDigest, weightsDigest } from "./digest.ts"
import { isWeightFile } from "../../lib/onnx/safetensors.ts"
import {
  identicalPredictions,
  identicalWeights,
  mergeRows,
  nonFiniteRow,
  outOfOrderRows,
  unscoredRow,
  vocabSizeOf,
  worseThanUniformRows,
  type CheckRow,
} from "./rules.ts"
import { predictionCopies, scanModel } from "./scan.ts"
import { checksTable, flaggedKeys } from "./table.ts"
import { checkpointPlan, DOWNLOAD, downloadUnit, readDownload } from "../download/contract.ts"

const fail = (message: string, cause?: unknown) => new UnitError({ message, cause })

interface ChecksParams {
  readonly checks: Config["analysis"]["checks"]
  readonly models: ReadonlyArray<{ readonly name: string; readonly checkpoints: ReadonlyArray<{ readonly step: number; readonly path: string }> }>

  readonly datasets: ReadonlyArray<string>
}

const plan = (config: Config): UnitPlan<ChecksParams>[] => {
  // Paths relative to the config's folder (the files' contents are in the key through `files`),
  // so a run moved together with its inputs keeps its key.
  const rel = (p: string) => path.relative(path.dirname(config.file), p).split(path.sep).join("/")
  const n = config.models.reduce((a, m) => a + m.checkpoints.length, 0)
  const sources = config.models.flatMap((m) => m.checkpoints.map((c) => checkpointPlan(m, c))) // reads each checkpoint's index or header once
  return [
    {
      id: checksUnit.id,
      params: {
        checks: config.analysis.checks,
        models: config.models.map((m) => ({
          name: m.name,
          checkpoints: m.checkpoints.map((c) => ({ step: c.step, path: c.hub === undefined ? rel(c.path) : `hub:${c.hub.repo}@${c.hub.revision}` })),
        })),
        datasets: config.datasets.map((d) => d.name),
      },
      inputs: [
        aggregateUnit,
        ...config.models.flatMap((m) => m.checkpoints.flatMap((cp) => config.datasets.map((d) => scoreUnit(m.name, cp.step, d.name)))),
      ],
      // A Hub checkpoint's weights are known by the sha256s its download recorded: read when done,
      // never blocking, and never holding a download that `download.keep: false` would release.
      optionalInputs: sources.flatMap((x) => x.inputs),
      files: [...config.tokenizerFiles, ...sources.flatMap((x) => x.files)],
      weight: n * (1 + config.datasets.length),
    },
  ]
}

/** The vocabulary size from the run's tokenizer.json (undefined when it names no vocabulary). */
const readVocabSize = (file: string) =>
  Effect.try({
    try: () => {
      const j: unknown = JSON.parse(fs.readFileSync(file, "utf8"))
      // GPT-2-style vocab.json: token → id.
      if (path.basename(file) === "vocab.json" && j !== null && typeof j === "object") return Math.max(-1, ...Object.values(j as Record<string, number>)) + 1
      return vocabSizeOf(j)
    },
    catch: (e) => fail(`checks: cannot read the tokenizer ${displayPath(file)}: ${firstLine(e)}`, e),
  })

/** A Hub checkpoint's digest from the sha256s its download recorded; undefined when it is not downloaded (its scores are missing too). */
const hubDigest = (ctx: UnitContext, model: string, step: number): Effect.Effect<string | undefined, UnitError> => {
  const input = ctx.input(downloadUnit(model, step))
  if (input.status !== "done") return Effect.succeed(undefined)
  return Effect.map(readDownload(input, model, step), (rows) =>
    weightsDigest(rows.filter((r) => isWeightFile(r.file)).map((r) => ({ file: path.posix.basename(r.file), sha256: r.sha256 ?? `${r.bytes}` }))),
  )
}

const run = Effect.fn("stage.checks")(function* (_unit: UnitPlan<ChecksParams>, ctx: UnitContext) {
  const config = ctx.config
  const opts = config.analysis.checks
  const datasets = config.datasets.map((d) => d.name)
  const vocab = yield* readVocabSize(config.tokenizerFiles[0] ?? config.tokenizer)
  if (vocab === undefined) yield* ctx.log(`checks: ${config.tokenizer} names no vocabulary; the perplexity-above-uniform check is skipped`)
  const table = yield* readCheckpointRows(ctx)
  const cache = new DigestCache(path.join(ctx.cacheDir, "checks", "digests.json"))
  ctx.progress.start(config.models.reduce((a, m) => a + m.checkpoints.length, 0) * (1 + datasets.length), "checkpoint files")

  const rows: CheckRow[] = []
  for (const model of config.models) {
    const steps = model.checkpoints.map((c) => c.step)
    const digests: Array<{ step: number; digest: string }> = []
    for (const cp of model.checkpoints) {
      const digest =
        cp.hub !== undefined
          ? yield* hubDigest(ctx, model.name, cp.step)
          : yield* Effect.tryPromise({
              try: () => checkpointDigest(cp.path, cache),
              catch: (e) => fail(`checks: model ${model.name}, step ${cp.step}: cannot hash ${displayPath(cp.path)}: ${firstLine(e)}`, e),
            })
      if (digest === undefined) continue
      digests.push({ step: cp.step, digest })
      ctx.progress.advance(1)
    }
    const sameWeights = identicalWeights(model.name, digests)
    rows.push(...sameWeights)

    const scan = yield* scanModel(ctx, model, datasets)
    const copies = yield* predictionCopies(ctx, model, datasets, scan, opts.prediction_tolerance)
    rows.push(...identicalPredictions(model.name, copies, datasets, opts.prediction_tolerance, new Set(sameWeights.map((r) => r.step))))

    for (const [d, dataset] of datasets.entries()) {
      const bad = scan.nonFinite[d]
      steps.forEach((s, c) => rows.push(...nonFiniteRow(model.name, s, dataset, bad[c], scan.tokens[d])))
      const meanNll = yield* checkpointColumn(table, model, dataset, (r) => r.mean_nll, "checks")
      if (vocab !== undefined) rows.push(...worseThanUniformRows(model.name, dataset, steps, meanNll, vocab, opts.uniform_after))
      // A checkpoint with NaN/Inf log-probs has a mean over the finite ones only: not comparable.
      const L = meanNll.map((l, c) => (bad[c] > 0 ? null : l))
      rows.push(...outOfOrderRows(model.name, dataset, steps, L, opts.order_window, opts.order_margin))
    }
  }
  yield* Effect.try({ try: () => cache.save(), catch: (e) => e }).pipe(
    Effect.catchAll((e) => ctx.log(`checks: cannot save the digest cache ${cache.file}: ${firstLine(e)}`)),
  )

  // Checkpoints left out because they could not be scored (excludingUnscored) are broken.
  for (const u of unscoredCheckpoints(ctx, _unit.optionalInputs ?? [])) rows.push(unscoredRow(u.model, u.step, u.error))
  const merged = mergeRows(rows, config.models.map((m) => m.name))
  yield* ctx.writeParquet(checksFile, checksTable(merged))
  if (merged.length > 0) yield* ctx.log(`checks: ${flaggedKeys(merged).size} checkpoint(s) flagged (${checksFile.path})`)
})

export const checksStage = defineStage<ChecksParams>({
  name: CHECKS,
  version: 1,
  after: [AGGREGATE, SCORE, DOWNLOAD],
  describe: "duplicated, misplaced and broken checkpoints (checkpoint_checks.parquet)",
  plan,
  run,
})
