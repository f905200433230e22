/**
 * How aggregate, regress and classify find and read their inputs (the I/O side of the analysis
 * stages; the math is in the pure modules next to this one).
 *
 *   score units     `model=M/step=S/dataset=D`  → scores/…/scores.parquet (logprob column)
 *   tokenize units  `dataset=D`                 → tokens/dataset=D/tokens.parquet (category column)
 *   aggregate unit  `all`                       → checkpoints.parquet
 *
 * Score files of one dataset hold the same tokens in the same row groups, so block g of a
 * (model, dataset) is row group g of every checkpoint's file; openAligned checks that from the
 * footers, and block-tasks.ts reads the blocks.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { modelsBySize, type Config, type Model } from "../../pipeline/config.ts"
import { UnitError, type UnitContext, type UnitRef } from "../../pipeline/stage.ts"
import { openRowGroups, readParquetFile, type RowGroupReader } from "../../pipeline/store.ts"
import { analysisPaths } from "../../schemas/analysis-tables.ts"
import { tablePaths } from "../../schemas/tables.ts"

/** Unit ids of the upstream stages (their stages define them; repeated here as the contract). */
export const scoreUnit = (model: string, step: number, dataset: string): UnitRef => ({
  stage: "score",
  id: `model=${model}/step=${step}/dataset=${dataset}`,
})
export const tokenizeUnit = (dataset: string): UnitRef => ({ stage: "tokenize", id: `dataset=${dataset}` })
/** The aggregate stage has one unit for the whole run. */
export const AGGREGATE_ID = "all"
export const aggregateUnit: UnitRef = { stage: "aggregate", id: AGGREGATE_ID }

const unitError = (message: string) => new UnitError({ message })

/** The file an upstream unit wrote whose path ends with `rel` (or its only Parquet file). */
const outputFile = (ctx: UnitContext, ref: UnitRef, rel: string, what: string): Effect.Effect<string, UnitError> =>
  Effect.suspend(() => {
    const files = ctx.outputsOf(ref)
    const want = ctx.path(rel)
    const parquet = files.filter((f) => f.endsWith(".parquet"))
    const file = files.find((f) => path.resolve(f) === path.resolve(want)) ?? (parquet.length === 1 ? parquet[0] : undefined)
    if (file === undefined) return Effect.fail(unitError(`${what}: no output recorded for ${ref.stage} unit ${ref.id} (expected ${want})`))
    if (!fs.existsSync(file)) return Effect.fail(unitError(`${what}: file missing: ${file}`))
    return Effect.succeed(file)
  })

/** Score file of every checkpoint of `model` on `dataset`, in step order. A missing one is a UnitError naming it. */
export const scoreFiles = (ctx: UnitContext, model: Model, dataset: string): Effect.Effect<string[], UnitError> =>
  Effect.forEach(model.checkpoints, (cp) =>
    outputFile(
      ctx,
      scoreUnit(model.name, cp.step, dataset),
      tablePaths.scores(model.name, cp.step, dataset),
      `model ${model.name}, dataset ${dataset}: score file of step ${cp.step}`,
    ),
  )

export const tokensFile = (ctx: UnitContext, dataset: string): Effect.Effect<string, UnitError> =>
  outputFile(ctx, tokenizeUnit(dataset), tablePaths.tokens(dataset), `dataset ${dataset}: tokens table`)

/** Row-group readers over the score files of one or more models, checked to be aligned. */
export interface AlignedScores {
  /** [models][checkpoints] */
  readonly readers: ReadonlyArray<ReadonlyArray<RowGroupReader>>
  /** Rows of each row group (the same in every file). */
  readonly groupRows: ReadonlyArray<number>
  /** Row where each row group starts (= token_index of its first token). */
  readonly groupStart: ReadonlyArray<number>
  readonly tokens: number
  close(): void
}

/**
 * Open every file (footers only) and check that all have the same row groups.
 * @param files [models][checkpoints] score files
 */
export const openAligned = (files: ReadonlyArray<ReadonlyArray<string>>, what: string): Effect.Effect<AlignedScores, UnitError> =>
  Effect.acquireUseRelease(
    Effect.succeed([] as RowGroupReader[]),
    (opened) =>
      Effect.gen(function* () {
        const readers: RowGroupReader[][] = []
        for (const row of files) {
          const r: RowGroupReader[] = []
          for (const f of row) {
            const reader = yield* Effect.tryPromise({
              try: () => openRowGroups(f),
              catch: (e) => unitError(`${what}: cannot read ${f}: ${String((e as Error).message ?? e).split("\n")[0]}`),
            })
            opened.push(reader)
            r.push(reader)
          }
          readers.push(r)
        }
        const first = readers[0][0]
        for (const r of readers.flat()) {
          const same = r.rowGroupRows.length === first.rowGroupRows.length && r.rowGroupRows.every((n, g) => n === first.rowGroupRows[g])
          if (!same) {
            return yield* Effect.fail(
              unitError(
                `${what}: score files are not aligned: ${r.path} has ${r.numRows} rows in ${r.rowGroupRows.length} row groups, ` +
                  `${first.path} has ${first.numRows} in ${first.rowGroupRows.length} (were they scored with different tokens or row_group_size?)`,
              ),
            )
          }
        }
        const groupStart: number[] = []
        let acc = 0
        for (const n of first.rowGroupRows) {
          groupStart.push(acc)
          acc += n
        }
        opened.length = 0 // handed over: closed by the caller through close()
        const all = readers.flat()
        return {
          readers,
          groupRows: first.rowGroupRows,
          groupStart,
          tokens: first.numRows,
          close: () => all.forEach((r) => r.close()),
        } satisfies AlignedScores
      }),
    (opened) => Effect.sync(() => opened.forEach((r) => r.close())),
  )

/** Open aligned score files, use them, and close them whatever happens. */
export const withAligned = <A, E, R>(
  files: ReadonlyArray<ReadonlyArray<string>>,
  what: string,
  use: (scores: AlignedScores) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E | UnitError, R> =>
  Effect.acquireUseRelease(openAligned(files, what), use, (s) => Effect.sync(() => s.close()))

/** The logprob column of row group g of every file of one model: [checkpoints] arrays of [rows], nats. */
export const readLogprobs = (readers: ReadonlyArray<RowGroupReader>, g: number, what: string): Effect.Effect<Float32Array[], UnitError> =>
  Effect.forEach(readers, (r) =>
    Effect.tryPromise({
      try: async () => {
        const t = await r.read(g, ["logprob"])
        const col = t.getChild("logprob")
        if (col === null) throw new Error("no logprob column")
        const v = col.toArray()
        if (!(v instanceof Float32Array)) throw new Error(`logprob is ${col.type}, expected float32`)
        return v
      },
      catch: (e) => unitError(`${what}: cannot read row group ${g} of ${r.path}: ${String((e as Error).message ?? e).split("\n")[0]}`),
    }),
  )

/** One row of checkpoints.parquet. */
export interface CheckpointRow {
  readonly model: string
  readonly step: number
  readonly dataset: string
  readonly n_tokens: number
  readonly mean_nll: number | null
  readonly ppl: number | null
}

/** checkpoints.parquet of this run, as rows. */
export const readCheckpoints = (ctx: UnitContext, what: string): Effect.Effect<CheckpointRow[], UnitError> =>
  Effect.gen(function* () {
    const file = yield* outputFile(ctx, aggregateUnit, analysisPaths.checkpoints, `${what}: checkpoints table`)
    return yield* Effect.try({
      try: () =>
        readParquetFile(file).toArray().map((r) => ({
          model: String(r.model),
          step: Number(r.step),
          dataset: String(r.dataset),
          n_tokens: Number(r.n_tokens),
          mean_nll: r.mean_nll === null ? null : Number(r.mean_nll),
          ppl: r.ppl === null ? null : Number(r.ppl),
        })),
      catch: (e) => unitError(`${what}: cannot read ${file}: ${(e as Error).message.split("\n")[0]}`),
    })
  })

/**
 * A value of checkpoints.parquet for every checkpoint of `model` on `dataset`, in step order.
 * @returns [checkpoints]
 */
export const checkpointColumn = (
  rows: ReadonlyArray<CheckpointRow>,
  model: Model,
  dataset: string,
  pick: (r: CheckpointRow) => number | null,
  what: string,
): Effect.Effect<Array<number | null>, UnitError> =>
  Effect.suspend(() => {
    const byStep = new Map(rows.filter((r) => r.model === model.name && r.dataset === dataset).map((r) => [r.step, r]))
    const out: Array<number | null> = []
    for (const cp of model.checkpoints) {
      const r = byStep.get(cp.step)
      if (r === undefined) return Effect.fail(unitError(`${what}: checkpoints.parquet has no row for model ${model.name}, step ${cp.step}, dataset ${dataset}`))
      out.push(pick(r))
    }
    return Effect.succeed(out)
  })

/** The reference model of group trajectories: `analysis.reference_model`, else the second-smallest (or the only) model. */
export const referenceModel = (config: Config): Model => {
  const name = config.analysis.reference_model
  const bySize = modelsBySize(config)
  return (name !== undefined ? config.models.find((m) => m.name === name) : undefined) ?? bySize[Math.min(1, bySize.length - 1)]
}
