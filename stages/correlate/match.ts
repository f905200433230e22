/**
 * Matching checkpoints of two sizes for "agreement at equal perplexity" (pure).
 *
 * For sizes A (smaller) and B (larger), every checkpoint a of A is paired with the checkpoint b of
 * B nearest to it on a log scale — |ln v(a) − ln v(b)| smallest, v = validation perplexity (match
 * "ppl") or training FLOPs (match "flops"); a tie goes to the smaller step. Equal values are at
 * distance 0, also 0 against 0 (two step-0 checkpoints have equal FLOPs); a value ≤ 0 is infinitely
 * far from any other, and a checkpoint with no finite distance (A's step 0 when B has none) is left
 * unpaired. So each size pair gives at most |A| rows per match kind, and b may repeat.
 *
 * Worked example: A ppl [900, 300, 150], B ppl [1000, 400, 120, 90]:
 *   900 → 1000 (|ln 0.9| = 0.105 < |ln 2.25|), 300 → 400, 150 → 120 (0.223 < |ln 0.375| = 0.98).
 */

export interface CheckpointValues {
  readonly step: number
  /** validation perplexity */
  readonly ppl: number
  /** 6 · params · tokens seen */
  readonly flops: number
}

export type MatchKind = "ppl" | "flops"

/** Distance on a log scale; see the module comment for 0 and negative values. */
export const logDistance = (u: number, v: number): number => (u === v ? 0 : u > 0 && v > 0 ? Math.abs(Math.log(u) - Math.log(v)) : Infinity)

/**
 * Pairs (a, b) of A's checkpoints with their nearest B checkpoint by `kind`.
 * @param a  checkpoints of the smaller size, any order (pairs come out in this order)
 * @param b  checkpoints of the larger size, sorted by step (ties go to the first)
 */
export const matchCheckpoints = (
  a: ReadonlyArray<CheckpointValues>,
  b: ReadonlyArray<CheckpointValues>,
  kind: MatchKind,
): Array<readonly [CheckpointValues, CheckpointValues]> =>
  a.flatMap((ca) => {
    let best: CheckpointValues | undefined
    let bestD = Infinity
    for (const cb of b) {
      const d = logDistance(ca[kind], cb[kind])
      if (d < bestD) [best, bestD] = [cb, d]
    }
    return best === undefined ? [] : [[ca, best] as const]
  })
