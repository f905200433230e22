/**
 * checkpoint_checks.parquet as rows, and what other parts of the pipeline do with them: the CLI's
 * warning block and the set of flagged checkpoints that `analysis.exclude_flagged` drops. Pure.
 */
import type * as arrow from "apache-arrow"
import type { Model } from "../../pipeline/config.ts"
import { CHECK_NAMES, CheckpointChecks, checksFile, type CheckName, type Severity } from "./contract.ts"
import type { CheckRow } from "./rules.ts"

/** Rows → the Arrow table of checkpoint_checks.parquet (an empty table when there are none). */
export const checksTable = (rows: ReadonlyArray<CheckRow>): arrow.Table => CheckpointChecks.fromRows(rows)

/** The Arrow table read back → rows (unknown check names or severities are an error: a foreign file). */
export const checkRowsOf = (table: arrow.Table): CheckRow[] =>
  CheckpointChecks.toRows(table).map((r) => {
    const check = r.check as CheckName
    const severity = r.severity as Severity
    if (!CHECK_NAMES.includes(check)) throw new Error(`unknown check "${check}" in ${checksFile.path}`)
    if (severity !== "error" && severity !== "warning") throw new Error(`unknown severity "${severity}" in ${checksFile.path}`)
    return { ...r, check, severity }
  })

/** The key of a checkpoint in a flagged set: `model/step`. */
export const checkpointKey = (model: string, step: number): string => `${model}/${step}`

/** Keys of the checkpoints with at least one row (of the given severities; default both). */
export const flaggedKeys = (rows: ReadonlyArray<CheckRow>, severities: ReadonlyArray<Severity> = ["error", "warning"]): Set<string> =>
  new Set(rows.filter((r) => severities.includes(r.severity)).map((r) => checkpointKey(r.model, r.step)))

/** The model without its flagged checkpoints (same object when none is flagged). */
export const withoutFlagged = (model: Model, flagged: ReadonlySet<string>): Model => {
  const kept = model.checkpoints.filter((cp) => !flagged.has(checkpointKey(model.name, cp.step)))
  return kept.length === model.checkpoints.length ? model : { ...model, checkpoints: kept }
}

const CHECK_LABEL: Readonly<Record<CheckName, string>> = {
  identical_weights: "identical weights",
  identical_predictions: "identical predictions",
  out_of_order: "out of order",
  broken: "broken",
}

/**
 * The CLI's block after a run; [] when nothing was flagged. At most `limit` rows are listed.
 *
 *   checkpoint checks flagged 2 checkpoint(s) (1 error, 1 warning) — outputs/demo/checkpoint_checks.parquet:
 *     error    model s, step 1000: identical weights: same ONNX content as step 5000 (sha256 3f2a…)
 *     warning  model m, step 2000: out of order: valid: ppl 21.3 is more than 5.1% below each of …
 *   set analysis.exclude_flagged: true to leave them out of the analysis
 */
export const formatCheckWarnings = (
  rows: ReadonlyArray<CheckRow>,
  options: { readonly file?: string; readonly excluded?: boolean; readonly limit?: number } = {},
): string[] => {
  if (rows.length === 0) return []
  const limit = options.limit ?? 20
  const n = flaggedKeys(rows).size
  const errors = rows.filter((r) => r.severity === "error").length
  const warnings = rows.length - errors
  const counts = [errors ? `${errors} error${errors > 1 ? "s" : ""}` : "", warnings ? `${warnings} warning${warnings > 1 ? "s" : ""}` : ""]
    .filter(Boolean)
    .join(", ")
  const lines = [`checkpoint checks flagged ${n} checkpoint(s) (${counts}) — ${options.file ?? checksFile.path}:`]
  for (const r of rows.slice(0, limit)) {
    lines.push(`  ${r.severity.padEnd(8)} model ${r.model}, step ${r.step}: ${CHECK_LABEL[r.check]}: ${r.detail}`)
  }
  if (rows.length > limit) lines.push(`  … and ${rows.length - limit} more`)
  lines.push(
    options.excluded
      ? "  flagged checkpoints are left out of the analysis (analysis.exclude_flagged)"
      : "  set analysis.exclude_flagged: true to leave them out of the analysis",
  )
  return lines
}
