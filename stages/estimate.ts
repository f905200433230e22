/**
 * The work of a dry run (`run --dry-run`), from the config and the units that would run:
 *   score: checkpoints to score and tokens per checkpoint (Σ datasets' max_tokens; a dataset
 *          without max_tokens is scored whole, its size unknown until tokenized)
 *   download: Hub checkpoints to fetch and their size: not in the plan (the Hub lists it when the
 *          download starts), so an upper guess from params at 4 bytes each (fp32)
 *
 *   score: 18 unit(s) on 9 checkpoint(s) of 2 model(s); per checkpoint 3,000 tokens (press ≤ 3,000) → 27,000 tokens in all
 *   download: 4 Hub checkpoint(s) to fetch; size known when fetched (≤ 1.6 GB at 4 bytes/param)
 */
import type { Config } from "../pipeline/config.ts"
import { downloadUnit, DOWNLOAD } from "./download/contract.ts"
import { SCORE, scoreUnit } from "./score/contract.ts"

const n = (x: number) => x.toLocaleString("en-US")
const gb = (bytes: number) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`)

/** Estimate lines for the units that would run (`toRun`: `${stage}/${id}`). */
export const estimateLines = (config: Config, toRun: ReadonlySet<string>): string[] => {
  const out: string[] = []
  const scored = config.models.flatMap((m) =>
    m.checkpoints.flatMap((cp) => config.datasets.filter((d) => toRun.has(`${SCORE}/${scoreUnit(m.name, cp.step, d.name).id}`)).map((d) => ({ m, step: cp.step, d }))),
  )
  if (scored.length > 0) {
    const checkpoints = new Set(scored.map((s) => `${s.m.name}@${s.step}`))
    const models = new Set(scored.map((s) => s.m.name))
    const limited = config.datasets.filter((d) => d.max_tokens !== undefined)
    const whole = config.datasets.filter((d) => d.max_tokens === undefined)
    const perCheckpoint = limited.reduce((a, d) => a + d.max_tokens!, 0)
    const parts = [...limited.map((d) => `${d.name} ≤ ${n(d.max_tokens!)}`), ...whole.map((d) => `${d.name} whole (no max_tokens)`)]
    const total = scored.reduce((a, s) => a + (s.d.max_tokens ?? 0), 0)
    out.push(
      `score: ${scored.length} unit(s) on ${checkpoints.size} checkpoint(s) of ${models.size} model(s); per checkpoint ` +
        (whole.length === 0 ? `${n(perCheckpoint)} tokens (${parts.join(", ")}) → ${n(total)} tokens in all` : `at most ${parts.join(", ")}`),
    )
  }
  const fetched = config.models.flatMap((m) =>
    m.checkpoints.filter((cp) => cp.hub !== undefined && toRun.has(`${DOWNLOAD}/${downloadUnit(m.name, cp.step).id}`)).map(() => m),
  )
  if (fetched.length > 0) {
    const bytes = fetched.reduce((a, m) => a + 4 * m.params, 0)
    out.push(`download: ${fetched.length} Hub checkpoint(s) to fetch; size known when fetched (≤ ${gb(bytes)} at 4 bytes/param)`)
  }
  return out
}
