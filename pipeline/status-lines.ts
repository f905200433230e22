/**
 * What `trajectories status` prints. By default one line per stage with its counts, and under it
 * the failed units with their one-line messages (a run of the demo has ~500 units; the summary
 * is a dozen lines). `--units` lists every unit as well:
 *
 *   tokenize (2 units: 2 done)
 *   score (18 units: 15 done, 1 failed, 2 pending)
 *     failed  model=tiny/step=64: model=tiny/step=64: cannot open zoo/tiny/step-64.onnx
 *   …
 *   1 failed, 2 pending: `trajectories run` runs them; `status --units` lists every unit
 */
import type { UnitState, UnitStatus } from "./runner.ts"

const ORDER: ReadonlyArray<UnitState> = ["done", "failed", "stale", "pending"]

const oneLine = (s: string) => s.split("\n")[0].trim()

/** Units grouped by stage, in the order they came (the plan's order). */
const byStage = (units: ReadonlyArray<UnitStatus>): Map<string, UnitStatus[]> => {
  const m = new Map<string, UnitStatus[]>()
  for (const u of units) {
    const list = m.get(u.stage)
    if (list) list.push(u)
    else m.set(u.stage, [u])
  }
  return m
}

/** `score (18 units: 15 done, 1 failed, 2 pending)`: the counts of the states present. */
export const stageLine = (stage: string, us: ReadonlyArray<UnitStatus>): string => {
  const counts = ORDER.map((k) => [k, us.filter((u) => u.state === k).length] as const)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`)
  return `${stage} (${us.length} units: ${counts.join(", ")})`
}

/**
 * The status lines of a run's units: per stage its counts and (`units`: false) its failed units,
 * at most `maxFailed` of them named, or (`units`: true) every unit with its state and detail;
 * then one closing line when anything is left to do.
 */
export const statusLines = (units: ReadonlyArray<UnitStatus>, opts: { readonly units?: boolean; readonly maxFailed?: number } = {}): string[] => {
  const maxFailed = opts.maxFailed ?? 20
  const out: string[] = []
  for (const [stage, us] of byStage(units)) {
    out.push(stageLine(stage, us))
    if (opts.units) {
      for (const u of us) out.push(`  ${u.state.padEnd(7)} ${u.id}${u.detail ? `  — ${u.detail}` : ""}`)
      continue
    }
    const failed = us.filter((u) => u.state === "failed")
    for (const u of failed.slice(0, maxFailed)) out.push(`  failed  ${u.id}${u.detail ? `: ${oneLine(u.detail)}` : ""}`)
    if (failed.length > maxFailed) out.push(`  … and ${failed.length - maxFailed} more failed (status --units lists them)`)
  }
  const left = ORDER.filter((k) => k !== "done")
    .map((k) => [k, units.filter((u) => u.state === k).length] as const)
    .filter(([, n]) => n > 0)
  if (left.length > 0) {
    out.push(
      `${left.map(([k, n]) => `${n} ${k}`).join(", ")}: \`trajectories run\` runs ${left.length === 1 && left[0][1] === 1 ? "it" : "them"}` +
        (opts.units ? "" : "; `status --units` lists every unit (a stale unit with what changed)"),
    )
  }
  return out
}
