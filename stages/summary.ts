/**
 * The short summary the CLI prints after a run, read back from the run's tables (whatever exists):
 *   final validation perplexity per size,
 *   share of upward / stagnated / downward tokens at the reference threshold per size,
 *   which x-axis best predicts mean downstream accuracy: named only when the 95% bootstrap interval
 *   of its R² difference with the runner-up (r2_differences.parquet) excludes 0; else it says that
 *   no x-axis predicts significantly better.
 * Each line comes from one stage's table (aggregate, classify, correlate); given `current` (the
 * stages this run ran or found up to date), a line whose stage is not among them is left out: after
 * `run --only tokenize`, last week's perplexities are not this run's result.
 */
import { Effect, Option } from "effect"
import { modelsBySize, sameFraction, type Config } from "../pipeline/config.ts"
import { readParquetOption, RunStore } from "../pipeline/run-store.ts"
import type { TableFile } from "../pipeline/stage.ts"
import { AGGREGATE, checkpointsFile } from "./aggregate/contract.ts"
import { CLASSIFY, classSummaryFile } from "./classify/contract.ts"
import { CORRELATE, correlationsFile, MEAN_TASK, r2DifferencesFile, r2Lead } from "./correlate/contract.ts"

/** The rows of a run table, or undefined when it is missing or unreadable (the summary shows what exists). */
const read = (file: TableFile) =>
  Effect.flatMap(RunStore, (store) => readParquetOption(store, file.path)).pipe(
    Effect.map((t) => (Option.isNone(t) ? undefined : (file.table.toRows(t.value) as Array<Record<string, unknown>>))),
    Effect.catchAllCause(() => Effect.succeed(undefined)),
  )

  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`

  /** Lines of the summary (empty when no table exists yet), only for the `current` stages when given. */
  export const runSummaryLines = (config: Config, current?: ReadonlySet<string>): Effect.Effect<string[], never, RunStore> =>
    Effect.gen(function* () {
    const shows = (stage: string) => current === undefined || current.has(stage)
    const sizes = modelsBySize(config).map((m) => m.name)
    const valid = config.analysis.valid_dataset
    const tau = config.analysis.reference_threshold
    const lines: string[] = []

    const cps = shows(AGGREGATE) ? yield* read(checkpointsFile) : undefined
    if (cps) {
      const finals = sizes.flatMap((m) => {
        const r = cps.filter((x) => x.model === m && x.dataset === valid && typeof x.ppl === "number").sort((a, b) => Number(b.step) - Number(a.step))[0]
        return r ? [`${m} ${fmt(Number(r.ppl))}`] : []
      })
      if (finals.length) lines.push(`final validation perplexity on ${valid}: ${finals.join(", ")}`)
    }

    const cs = shows(CLASSIFY) ? yield* read(classSummaryFile) : undefined
    if (cs) {
      const per = sizes.flatMap((m) => {
        const share = (k: string) => Number(cs.find((x) => x.model === m && x.dataset === valid && sameFraction(Number(x.threshold), tau) && x.class === k)?.share ?? NaN)
        const [u, s, d] = [share("upward"), share("stagnated"), share("downward")]
        return Number.isNaN(u) ? [] : [`${m} ${pct(u)}/${pct(s)}/${pct(d)}`]
      })
      if (per.length) lines.push(`tokens upward/stagnated/downward after ${pct(tau)} of training: ${per.join(", ")}`)
    }

    const corr = shows(CORRELATE) ? yield* read(correlationsFile) : undefined
    if (corr) {
      const mean = corr.filter((x) => x.task === MEAN_TASK && typeof x.r2_pooled === "number")
      if (mean.length) {
        const [best, runnerUp] = [...mean].sort((a, b) => Number(b.r2_pooled) - Number(a.r2_pooled))
        const others = mean
          .filter((x) => x !== best)
          .map((x) => `${x.x_axis} ${Number(x.r2_pooled).toFixed(2)}`)
          .join(", ")
        const chance = [...new Set(corr.filter((x) => x.task !== MEAN_TASK && x.at_chance === true).map((x) => String(x.task)))]
        const aboveChance = new Set(corr.filter((x) => x.task !== MEAN_TASK && x.at_chance === false).map((x) => String(x.task)))
        const left = chance.length > 0 && aboveChance.size > 0 && !config.analysis.chance_tasks_in_mean ? `; left out as at chance: ${chance.join(", ")}` : ""
        const d = runnerUp ? r2Lead((yield* read(r2DifferencesFile)) ?? [], MEAN_TASK, String(best.x_axis), String(runnerUp.x_axis)) : undefined
        const ci = (lo: unknown, hi: unknown) => (typeof lo === "number" && typeof hi === "number" ? ` [${lo.toFixed(2)}, ${hi.toFixed(2)}]` : "")
        const r2 = (x: Record<string, unknown>) => `${x.x_axis} R² ${Number(x.r2_pooled).toFixed(2)}${ci(x.r2_pooled_lo, x.r2_pooled_hi)}, size effect ΔR² ${Number(x.size_effect ?? NaN).toFixed(3)}${ci(x.size_effect_lo, x.size_effect_hi)}`
        if (d) {
          const { diff, lo, hi } = d
          const significant = lo > 0
          lines.push(
            significant
              ? `mean accuracy is best predicted by ${best.x_axis}: R² ${diff.toFixed(3)} [${lo.toFixed(3)}, ${hi.toFixed(3)}] above ${runnerUp.x_axis} (95% bootstrap interval; ${r2(best)}; ${others}${left})`
              : `no x-axis predicts mean accuracy significantly better: ${best.x_axis} − ${runnerUp.x_axis} R² ${diff.toFixed(3)} [${lo.toFixed(3)}, ${hi.toFixed(3)}] covers 0 (${r2(best)}; ${r2(runnerUp)}${left})`,
          )
        } else {
          lines.push(`mean accuracy is best predicted by ${best.x_axis} (pooled R² ${Number(best.r2_pooled).toFixed(2)}, size effect ΔR² ${Number(best.size_effect ?? NaN).toFixed(2)}; ${others}${left}; no bootstrap intervals in this run)`)
        }
      }
    }
    return lines
  })
