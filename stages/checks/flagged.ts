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
import * as path from "node:path"
import { Effect, Option } from "effect"
import { displayPath, toUnitError, type UnitError } from "../../pipeline/errors.ts"
import { readParquetOption, RunStore, type StoreError } from "../../pipeline/run-store.ts"
import type { Stage, UnitContext, UnitRef } from "../../pipeline/stage.ts"
import { parseScoreUnitId, SCORE } from "../score/contract.ts"
import { CHECKS, checksFile, checksUnit, type Severity } from "./contract.ts"
import type { CheckRow } from "./rules.ts"
import { checkpointKey, checkRowsOf, flaggedKeys, formatCheckWarnings, withoutFlagged } from "./table.ts"

/** Rows of the run's checkpoint_checks.parquet through the run store; None when the run has none. */
export const readCheckRows = (): Effect.Effect<Option.Option<CheckRow[]>, StoreError | Error, RunStore> =>
  Effect.gen(function* () {
    const table = yield* readParquetOption(yield* RunStore, checksFile.path)
    if (Option.isNone(table)) return Option.none()
    return Option.some(yield* Effect.try({ try: () => checkRowsOf(table.value), catch: (e) => e as Error }))
  })

/**
 * `model/step` keys of the checkpoints flagged in the run's checkpoint_checks.parquet (of the
 * given severities; default error and warning). Fails when the file is missing: a caller asking
 * which checkpoints are flagged must not silently get none.
 */
export const flaggedCheckpoints = (severities?: ReadonlyArray<Severity>) =>
  Effect.flatMap(readCheckRows(), (rows) =>
    Option.isNone(rows) ? Effect.fail(new Error(`${checksFile.path} is missing: the checks stage has not run`)) : Effect.succeed(flaggedKeys(rows.value, severities)),
  )

/** For a stage's unit: the flagged keys when `analysis.exclude_flagged`, else an empty set. */
export const flaggedFor = (ctx: UnitContext): Effect.Effect<ReadonlySet<string>, UnitError> =>
  Effect.suspend(() => {
    if (!ctx.config.analysis.exclude_flagged) return Effect.succeed(new Set<string>())
    return Effect.flatMap(ctx.input(checksUnit).read(checksFile), (t) =>
      Effect.try({ try: () => flaggedKeys(checkRowsOf(t)), catch: (e) => toUnitError(e, checksFile.path) }),
    )
  })

/** The CLI's warning block for a finished run; [] when the run has no checks table or nothing fired. */
export const checkWarnings = (runDir: string, options: { readonly excluded?: boolean } = {}) =>
  Effect.map(readCheckRows(), (rows) =>
    Option.isNone(rows) ? [] : formatCheckWarnings(rows.value, { file: displayPath(path.join(runDir, checksFile.path)), ...options }),
  )

/**
 * `stage`, honouring `analysis.exclude_flagged`: when it is set, every unit also reads the checks
 * unit (so it re-runs when the checks change) and runs against a config whose models have lost
 * their flagged checkpoints; the unit logs which checkpoints it dropped. When it is not set, the
 * stage is unchanged (same keys, same behaviour).
 */
export const excludingFlagged = <P, R>(stage: Stage<P, R>): Stage<P, R> => ({
  ...stage,
  after: [...stage.after, CHECKS],
  plan: (config) =>
    stage.plan(config).map((u) =>
      config.analysis.exclude_flagged
        ? { ...u, params: { ...u.params, exclude_flagged: true }, inputs: [...u.inputs, checksUnit] }
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

/** A checkpoint among a unit's score inputs that was not scored, with its (first) score unit's error. */
export interface Unscored {
  readonly model: string
  readonly step: number
  readonly error: string
}

/** The checkpoints among a unit's score inputs that were not scored, each once (in input order). */
export const unscoredCheckpoints = (ctx: UnitContext, refs: ReadonlyArray<UnitRef>): Unscored[] => {
  const out = new Map<string, Unscored>()
  for (const ref of refs) {
    const id = ref.stage === SCORE ? parseScoreUnitId(ref.id) : undefined
    if (id === undefined) continue
    const input = ctx.input(ref)
    const key = checkpointKey(id.model, id.step)
    if (input.status !== "done" && !out.has(key)) out.set(key, { model: id.model, step: id.step, error: input.error ?? "it did not run" })
  }
  return [...out.values()]
}

/**
 * `stage`, run without the checkpoints that could not be scored: its units read the score units
 * as optional inputs (a failed one never blocks them), and each checkpoint whose score unit is
 * not done is left out of the config the unit sees, with one line saying so. The checks stage
 * records those checkpoints as broken (./index.ts).
 */
export const excludingUnscored = <P, R>(stage: Stage<P, R>): Stage<P, R> => ({
  ...stage,
  plan: (config) =>
    stage.plan(config).map((u) => {
      const scores = u.inputs.filter((r) => r.stage === SCORE)
      return scores.length === 0 ? u : { ...u, inputs: u.inputs.filter((r) => r.stage !== SCORE), optionalInputs: [...(u.optionalInputs ?? []), ...scores] }
    }),
  run: (unit, ctx) =>
    Effect.gen(function* () {
      const unscored = unscoredCheckpoints(ctx, unit.optionalInputs ?? [])
      if (unscored.length === 0) return yield* stage.run(unit, ctx)
      const left = new Set(unscored.map((u) => checkpointKey(u.model, u.step)))
      const models = ctx.config.models.map((m) => withoutFlagged(m, left))
      yield* ctx.log(`${stage.name} ${unit.id}: left out ${unscored.map((u) => `${u.model}@${u.step}`).join(", ")} (not scored; see the checks)`)
      return yield* stage.run(unit, { ...ctx, config: { ...ctx.config, models } })
    }),
})
