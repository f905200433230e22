/**
 * `run --dry-run`: what a run would do, from the plan and the manifest, without running anything.
 * A unit would run when it is not done with its current key (status: failed, stale or pending),
 * or its stage is forced or downstream of a forced stage; a stage left out by --only runs nothing.
 *
 *   tokenize: 2 up to date
 *   score: 18 to run, 0 up to date
 *     model=tiny/step=8/dataset=press, model=tiny/step=64/dataset=press, … (18 in all)
 *   report: not in --only
 *
 * Estimates of the work (tokens, checkpoints, bytes) are the stages' own (CliOptions.estimate).
 */
import type { UnitStatus } from "./runner.ts"
import type { Stage, StageName } from "./stage.ts"

export interface DryRunStage {
  readonly stage: StageName
  /** Left out by --only: nothing of it runs. */
  readonly skipped: boolean
  readonly toRun: ReadonlyArray<string>
  readonly upToDate: number
}

/** The stages downstream of `from` (itself included), following `after` edges. */
export const downstreamOf = (stages: ReadonlyArray<Pick<Stage<any, any>, "name" | "after">>, from: ReadonlyArray<StageName>): Set<StageName> => {
  const out = new Set<StageName>(from)
  let grew = true
  while (grew) {
    grew = false
    for (const s of stages) {
      if (!out.has(s.name) && s.after.some((a) => out.has(a))) {
        out.add(s.name)
        grew = true
      }
    }
  }
  return out
}

/** Per stage (plan order), the units a run with these flags would run and how many are up to date. */
export const dryRun = (
  units: ReadonlyArray<UnitStatus>,
  stages: ReadonlyArray<Pick<Stage<any, any>, "name" | "after">>,
  flags: { readonly only?: ReadonlyArray<StageName>; readonly force?: ReadonlyArray<StageName> } = {},
): DryRunStage[] => {
  const only = flags.only ?? []
  const forced = downstreamOf(stages, flags.force ?? [])
  const order = [...new Set(units.map((u) => u.stage))]
  return order.map((stage) => {
    const us = units.filter((u) => u.stage === stage)
    const skipped = only.length > 0 && !only.includes(stage)
    const toRun = skipped ? [] : us.filter((u) => forced.has(stage) || u.state !== "done").map((u) => u.id)
    return { stage, skipped, toRun, upToDate: skipped ? 0 : us.length - toRun.length }
  })
}

/** The lines of a dry run: per stage its counts and the first `maxIds` units it would run. */
export const dryRunLines = (plan: ReadonlyArray<DryRunStage>, maxIds = 6): string[] => {
  const out: string[] = []
  for (const s of plan) {
    if (s.skipped) {
      out.push(`${s.stage}: not in --only`)
      continue
    }
    if (s.toRun.length === 0) {
      out.push(`${s.stage}: ${s.upToDate} up to date`)
      continue
    }
    out.push(`${s.stage}: ${s.toRun.length} to run, ${s.upToDate} up to date`)
    const shown = s.toRun.slice(0, maxIds).join(", ")
    out.push(`  ${shown}${s.toRun.length > maxIds ? `, … (${s.toRun.length} in all)` : ""}`)
  }
  const n = plan.reduce((a, s) => a + s.toRun.length, 0)
  out.push(n === 0 ? "nothing to do: every unit is up to date" : `${n} unit(s) would run (dry run: nothing was run)`)
  return out
}
