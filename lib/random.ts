/**
 * The seeded randomness of downstream prompts: mulberry32 (a 32-bit PRNG, uniform floats in [0, 1))
 * with one independent stream per (task seed, purpose, example), so that what example i draws never
 * depends on how many other examples were drawn before it, nor on `max_examples`. Purposes taken
 * elsewhere: the sequences stage 11–15, the correlate bootstrap 21, MAUVE's k-means 0x6b6d.
 */

/** mulberry32: a small seeded PRNG returning floats in [0, 1). Same sequence on every platform. */
export const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * What a stream is for; each purpose gets its own numbers for the same seed and example.
 *   shots    the k shots of example i (prompts.ts shotIndices)
 *   choices  the order of the choices appended to BIG-bench input i (tasks.ts)
 *   sample   which examples `max_examples` scores: one stream per task, index 0 (prompts.ts sampleIndices)
 */
export const STREAM = { shots: 1, choices: 2, sample: 3 } as const

/** The seed of the stream of `purpose` for example `index` under the task's `seed` (a 32-bit mix). */
export const streamSeed = (seed: number, purpose: number, index: number): number => {
  let h = (seed ^ Math.imul(purpose, 0x85ebca6b)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0
  h = (h ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

/** Fisher–Yates shuffle of a copy of `xs` with `next` (from the last position down). */
export const shuffled = <T>(xs: ReadonlyArray<T>, next: () => number): T[] => {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}
