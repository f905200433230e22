/**
 * The aggregate stage's contract: one unit for the whole run (id `all`) writing the validation
 * perplexity of every checkpoint.
 *
 *   const rows = Checkpoints.toRows(yield* ctx.input(aggregateUnit).read(checkpointsFile))
 */
import { Effect } from "effect"
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { Model } from "../../pipeline/config.ts"
import { toUnitError, UnitError } from "../../pipeline/errors.ts"
import type { TableFile, UnitContext, UnitRef } from "../../pipeline/stage.ts"

export const AGGREGATE = "aggregate"
export const aggregateUnit: UnitRef = { stage: AGGREGATE, id: "all" }

/**
 * `checkpoints.parquet` (run root): one row per model × step × dataset.
 *   tokens_seen  step × tokens_per_step;  flops  6 × params × tokens_seen  (from the config)
 *   n_tokens     scored tokens with a finite log-prob
 *   mean_nll     mean −log-prob, nats (null when n_tokens = 0);  ppl = exp(mean_nll)
 */
export const Checkpoints = defineTable("checkpoints", {
  model: col.utf8(),
  step: col.int32(),
  tokens_seen: col.float64(),
  flops: col.float64(),
  params: col.float64(),
  dataset: col.utf8(),
  n_tokens: col.int32(),
  mean_nll: col.float64({ nullable: true }),
  ppl: col.float64({ nullable: true }),
})
export type CheckpointRow = TableRow<typeof Checkpoints>

export const checkpointsFile: TableFile = { path: "checkpoints.parquet", table: Checkpoints }

/**
 * A value of checkpoints.parquet for every checkpoint of `model` on `dataset`, in step order:
 * [checkpoints]; a UnitError names the first (model, step, dataset) without a row.
 */
export const checkpointColumn = (
  rows: ReadonlyArray<CheckpointRow>,
  model: Pick<Model, "name" | "checkpoints">,
  dataset: string,
  pick: (r: CheckpointRow) => number | null,
  what: string,
): Effect.Effect<Array<number | null>, UnitError> =>
  Effect.suspend(() => {
    const byStep = new Map(rows.filter((r) => r.model === model.name && r.dataset === dataset).map((r) => [r.step, r]))
    const out: Array<number | null> = []
    for (const cp of model.checkpoints) {
      const r = byStep.get(cp.step)
      if (r === undefined) return Effect.fail(new UnitError({ message: `${what}: checkpoints.parquet has no row for model ${model.name}, step ${cp.step}, dataset ${dataset}` }))
      out.push(pick(r))
    }
    return Effect.succeed(out)
  })

/** The rows of checkpoints.parquet, read through a unit's inputs (it must declare aggregateUnit). */
export const readCheckpointRows = (ctx: UnitContext): Effect.Effect<CheckpointRow[], UnitError> =>
  Effect.flatMap(ctx.input(aggregateUnit).read(checkpointsFile), (t) =>
    Effect.try({ try: () => Checkpoints.toRows(t), catch: (e) => toUnitError(e, checkpointsFile.path) }),
  )
