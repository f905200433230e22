/**
 * The live line of a run on a TTY: per stage in flight a bar of its units, its throughput and its
 * ETA, then the run's ETA. Pure: the Reporter (progress.ts) keeps the counts and the clock.
 *
 *   score ███████░░░░░ 12/18 · 3.4k tokens/s · ETA 1m20s | download ██░░ 1/4 · 12.0M bytes/s · ETA 40s · run ETA ≥ 4m10s
 *
 * A stage's rate is in unit weight (UnitPlan.weight: a score unit weighs its model's params) per
 * second of wall time since its first unit began, counting the finished units and the done part of
 * those in flight; its ETA is its remaining weight over that rate. Weights of different stages are
 * not comparable, so the run's ETA adds the stages' ETAs, and is a lower bound ("≥") while a stage
 * with work left has not started.
 */

/** One stage's work as the Reporter counts it. */
export interface StageWork {
  readonly total: number
  readonly done: number
  readonly totalWeight: number
  /** Weight of the finished units plus the done fraction of each unit in flight. */
  readonly doneWeight: number
  /** Seconds since its first unit began; undefined before. */
  readonly elapsed?: number
}

/** `fraction` of `width` cells filled: `bar(0.5, 8)` → `████░░░░`. */
export const bar = (fraction: number, width = 12): string => {
  const f = Number.isFinite(fraction) ? Math.max(0, Math.min(1, fraction)) : 0
  const full = Math.round(f * width)
  return "█".repeat(full) + "░".repeat(width - full)
}

/** Seconds left in a stage at its measured rate (Infinity when nothing is measured yet, 0 when done). */
export const stageEta = (w: StageWork): number => {
  const left = Math.max(0, w.totalWeight - w.doneWeight)
  if (left === 0) return 0
  if (w.elapsed === undefined || w.elapsed <= 0 || w.doneWeight <= 0) return Infinity
  return left / (w.doneWeight / w.elapsed)
}

/** The run's ETA: the sum of the stages' ETAs over those measured; `lowerBound` when some stage with work left is not. */
export const runEta = (stages: ReadonlyArray<StageWork>): { readonly seconds: number; readonly lowerBound: boolean } => {
  let seconds = 0
  let lowerBound = false
  for (const s of stages) {
    const eta = stageEta(s)
    if (Number.isFinite(eta)) seconds += eta
    else lowerBound = true
  }
  return { seconds, lowerBound }
}

/** `score ███░░░ 12/18 · 3.4k tokens/s · ETA 1m20s` (rate: the unit in flight's, already formatted; may be empty). */
export const stageBar = (stage: string, w: StageWork, rate: string, fmtSeconds: (s: number) => string, width = 12): string => {
  const total = Math.max(w.total, w.done)
  const fraction = w.totalWeight > 0 ? w.doneWeight / w.totalWeight : total > 0 ? w.done / total : 0
  const parts = [`${stage} ${bar(fraction, width)} ${w.done}/${total}`]
  if (rate) parts.push(rate)
  parts.push(`ETA ${fmtSeconds(stageEta(w))}`)
  return parts.join(" · ")
}

/** ` · run ETA 4m10s` or ` · run ETA ≥ 4m10s`; empty when nothing is measured. */
export const runEtaText = (stages: ReadonlyArray<StageWork>, fmtSeconds: (s: number) => string): string => {
  const r = runEta(stages)
  if (r.lowerBound && r.seconds === 0) return ""
  return ` · run ETA ${r.lowerBound ? "≥ " : ""}${fmtSeconds(r.seconds)}`
}
