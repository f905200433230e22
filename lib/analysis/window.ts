/**
 * Where a threshold's window starts, and the regressors of each x-axis (pure).
 *
 * "Threshold" τ is a fraction of the FINAL STEP, everywhere in this project: the window starts at
 * the checkpoint whose step is nearest to τ·s_C (ties → the earlier checkpoint, which keeps one more
 * point). The paper's code used a fraction of the final step in one file and a fraction of the
 * checkpoint COUNT in another; with uneven spacing the two disagree.
 *
 * Worked example: steps 8, 16, 32, 64, 100, 200, …, 700 (11 checkpoints), τ = 0.3:
 *   τ·s_C = 210 → nearest step 200 → i0 = 5, window = 200…700 (6 checkpoints).
 *   (A fraction of the count would give ⌊0.3·11⌋ = 3 → step 64.)
 */
import { flopsAt, tokensSeen } from "../../pipeline/config.ts"
import type { XAxis } from "../../schemas/config.ts"

/**
 * Index of the checkpoint whose step is nearest to τ·s_C (ties → the earlier one).
 * @param steps [checkpoints] strictly increasing training steps
 * @param tau fraction of the final step, in (0, 1)
 */
export const startIndex = (steps: ArrayLike<number>, tau: number): number => {
  const target = tau * steps[steps.length - 1]
  let best = 0
  let bestDist = Infinity
  for (let c = 0; c < steps.length; c++) {
    const d = Math.abs(steps[c] - target)
    if (d < bestDist) {
      best = c
      bestDist = d
    }
  }
  return best
}

/** Points in the window i0…C−1. */
export const windowLength = (checkpoints: number, i0: number): number => checkpoints - i0

/** What an x-axis needs to know about one model. */
export interface AxisModel {
  readonly params: number
  readonly tokens_per_step: number
}

/**
 * The regressor of each checkpoint on an x-axis (natural logs):
 *   log_step       ln s
 *   log_tokens     ln(s · tokens_per_step)
 *   log_flops      ln(6 · params · s · tokens_per_step)
 *   log_valid_ppl  ln(validation perplexity) = its mean NLL (nats), given in `validNll`
 * Step 0 gives −∞, which the regression drops (with its y).
 * @param steps [checkpoints]
 * @param validNll [checkpoints] mean NLL of the validation dataset at each step (log_valid_ppl only)
 * @returns [checkpoints]
 */
export const axisValues = (
  axis: XAxis,
  model: AxisModel,
  steps: ArrayLike<number>,
  validNll?: ArrayLike<number>,
): Float64Array => {
  const out = new Float64Array(steps.length)
  for (let c = 0; c < steps.length; c++) {
    const s = steps[c]
    switch (axis) {
      case "log_step":
        out[c] = Math.log(s)
        break
      case "log_tokens":
        out[c] = Math.log(tokensSeen(model, s))
        break
      case "log_flops":
        out[c] = Math.log(flopsAt(model, s))
        break
      case "log_valid_ppl":
        if (validNll === undefined) throw new Error("axisValues: log_valid_ppl needs the validation NLL of every checkpoint")
        out[c] = validNll[c]
        break
    }
  }
  return out
}

/**
 * Window starts of every threshold, or the message of the first threshold that leaves fewer than
 * 3 checkpoints (a regression needs 3 points).
 * @param steps [checkpoints] strictly increasing
 * @param where e.g. "model s, dataset press" (starts the message)
 */
export const thresholdStarts = (
  steps: ReadonlyArray<number>,
  thresholds: ReadonlyArray<number>,
  where: string,
): { readonly starts: number[] } | { readonly error: string } => {
  const starts: number[] = []
  for (const tau of thresholds) {
    const i0 = startIndex(steps, tau)
    const n = windowLength(steps.length, i0)
    if (n < 3) {
      const have = steps.length === 0 ? "no checkpoints" : `${n} checkpoint${n === 1 ? "" : "s"} (step ${steps.slice(i0).join(", ")})`
      return {
        error: `${where}, threshold ${tau}: only ${have} from ${tau} of the final step on; a regression needs at least 3 — add checkpoints or lower the threshold`,
      }
    }
    starts.push(i0)
  }
  return { starts }
}
