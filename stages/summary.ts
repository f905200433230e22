/**
 * The short summary the CLI prints after a run, read back from the run's tables (whatever exists):
 *   final validation perplexity per size,
 *   share of upward / stagnated / downward tokens at the reference threshold per size,
 *   which x-axis best predicts mean downstream accuracy.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type * as arrow from "apache-arrow"
import { modelsBySize, type Config } from "../pipeline/config.ts"
import { readParquetFile } from "../pipeline/store.ts"
import { MEAN_TASK } from "../schemas/downstream-tables.ts"

type Row = Record<string, unknown>
const rows = (t: arrow.Table): Row[] => t.toArray().map((r) => r.toJSON() as Row)
const read = (runDir: string, file: string): Row[] | undefined => {
  const p = path.join(runDir, file)
  if (!fs.existsSync(p)) return undefined
  try {
    return rows(readParquetFile(p))
  } catch {
    return undefined
  }
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))
const pct = (x: number) => `${(100 * x).toFixed(0)}%`

export const validDatasetOf = (c: Config): string => c.analysis.valid_dataset ?? c.datasets[0].name
export const referenceThresholdOf = (c: Config): number =>
  c.analysis.reference_threshold ?? (c.analysis.thresholds.includes(0.1) ? 0.1 : Math.min(...c.analysis.thresholds))

/** Lines of the summary (empty when no table exists yet). */
export const runSummaryLines = (config: Config): string[] => {
  const runDir = config.runDir
  const sizes = modelsBySize(config).map((m) => m.name)
  const valid = validDatasetOf(config)
  const tau = referenceThresholdOf(config)
  const lines: string[] = []

  const cps = read(runDir, "checkpoints.parquet")
  if (cps) {
    const finals = sizes.flatMap((m) => {
      const r = cps.filter((x) => x.model === m && x.dataset === valid && typeof x.ppl === "number").sort((a, b) => Number(b.step) - Number(a.step))[0]
      return r ? [`${m} ${fmt(Number(r.ppl))}`] : []
    })
    if (finals.length) lines.push(`final validation perplexity on ${valid}: ${finals.join(", ")}`)
  }

  const cs = read(runDir, "class_summary.parquet")
  if (cs) {
    const per = sizes.flatMap((m) => {
      const share = (k: string) => Number(cs.find((x) => x.model === m && x.dataset === valid && Math.abs(Number(x.threshold) - tau) < 1e-9 && x.class === k)?.share ?? NaN)
      const [u, s, d] = [share("upward"), share("stagnated"), share("downward")]
      return Number.isNaN(u) ? [] : [`${m} ${pct(u)}/${pct(s)}/${pct(d)}`]
    })
    if (per.length) lines.push(`tokens upward/stagnated/downward after ${pct(tau)} of training: ${per.join(", ")}`)
  }

  const corr = read(runDir, "correlations.parquet")
  if (corr) {
    const mean = corr.filter((x) => x.task === MEAN_TASK && typeof x.r2_pooled === "number")
    if (mean.length) {
      const best = [...mean].sort((a, b) => Number(b.r2_pooled) - Number(a.r2_pooled))[0]
      const others = mean
        .filter((x) => x !== best)
        .map((x) => `${x.x_axis} ${Number(x.r2_pooled).toFixed(2)}`)
        .join(", ")
      lines.push(
        `mean accuracy is best predicted by ${best.x_axis} (pooled R² ${Number(best.r2_pooled).toFixed(2)}, size effect ΔR² ${Number(best.size_effect ?? NaN).toFixed(2)}; ${others})`,
      )
    }
  }
  return lines
}
