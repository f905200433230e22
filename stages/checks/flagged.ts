/**
 * Reading checkpoint_checks.parquet back: for the stages that honour `analysis.exclude_flagged`
 * and for the CLI's warning block.
 *
 * A stage that drops flagged checkpoints lists `checksUnit` among its units' inputs (so its units
 * re-run when the checks change), "checks" in its `after`, and at run time:
 *
 *   const flagged = yield* flaggedFor(ctx)            // empty unless analysis.exclude_flagged
 *   const model = withoutFlagged(config.models[i], flagged)
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { UnitError, type Stage, type UnitContext, type UnitRef } from "../../pipeline/stage.ts"
import { readParquetFile } from "../../pipeline/store.ts"
import { checksPaths, type Severity } from "../../schemas/checks-tables.ts"
import type { CheckRow } from "./rules.ts"
import { checkpointKey, checkRowsOf, flaggedKeys, formatCheckWarnings, withoutFlagged } from "./table.ts"

/** The checks stage has one unit for the whole run. */
export const CHECKS_ID = "all"
export const checksUnit: UnitRef = { stage: "checks", id: CHECKS_ID }

/** Rows of a checkpoint_checks.parquet file (throws when it is missing or not such a table). */
export const readCheckRows = (file: string): CheckRow[] => checkRowsOf(readParquetFile(file))

/**
 * `model/step` keys of the checkpoints flagged in `<runDir>/checkpoint_checks.parquet` (of the
 * given severities; default error and warning). Throws when the file is missing: a stage asked to
 * drop flagged checkpoints must not silently keep them.
 */
export const flaggedCheckpoints = (runDir: string, severities?: ReadonlyArray<Severity>): Set<string> =>
  flaggedKeys(readCheckRows(path.join(runDir, checksPaths.checks)), severities)

/** For a stage's unit: the flagged keys when `analysis.exclude_flagged`, else an empty set. */
export const flaggedFor = (ctx: UnitContext): Effect.Effect<ReadonlySet<string>, UnitError> =>
  Effect.suspend(() => {
    if (!ctx.config.analysis.exclude_flagged) return Effect.succeed(new Set<string>())
    const want = path.resolve(ctx.path(checksPaths.checks))
    const file = ctx.outputsOf(checksUnit).find((f) => path.resolve(f) === want)
    if (file === undefined || !fs.existsSync(file)) {
      return Effect.fail(new UnitError({ message: `analysis.exclude_flagged is set but the checks stage has not written ${want}` }))
    }
    return Effect.try({
      try: () => flaggedKeys(readCheckRows(file)),
      catch: (e) => new UnitError({ message: `cannot read ${file}: ${(e as Error).message.split("\n")[0]}` }),
    })
  })

/** The CLI's warning block for a finished run; [] when the run has no checks table or nothing fired. */
export const checkWarnings = (runDir: string, options: { readonly excluded?: boolean } = {}): string[] => {
  const file = path.join(runDir, checksPaths.checks)
  if (!fs.existsSync(file)) return []
  return formatCheckWarnings(readCheckRows(file), { file, ...options })
}

/**
 * `stage`, honouring `analysis.exclude_flagged`: when it is set, every unit also reads the checks
 * unit (so it re-runs when the checks change) and runs against a config whose models have lost
 * their flagged checkpoints; the unit logs which checkpoints it dropped. When it is not set, the
 * stage is unchanged (same keys, same behaviour).
 */
export const excludingFlagged = (stage: Stage): Stage => ({
  ...stage,
  after: [...stage.after, "checks"],
  plan: (config) =>
    stage.plan(config).map((u) =>
      config.analysis.exclude_flagged
        ? { ...u, params: { ...(u.params as object), exclude_flagged: true }, inputs: [...u.inputs, checksUnit] }
        : u,
    ),
  run: (unit, ctx) =>
    Effect.gen(function* () {
      const flagged = yield* flaggedFor(ctx)
      if (flagged.size === 0) return yield* stage.run(unit, ctx)
      const models = ctx.config.models.map((m) => withoutFlagged(m, flagged))
      const dropped = ctx.config.models.flatMap((m) =>
        m.checkpoints.filter((c) => flagged.has(checkpointKey(m.name, c.step))).map((c) => `${m.name}@${c.step}`),
      )
      if (dropped.length) yield* ctx.log(`${stage.name} ${unit.id}: analysis.exclude_flagged drops ${dropped.join(", ")}`)
      return yield* stage.run(unit, { ...ctx, config: { ...ctx.config, models } })
    }),
})
