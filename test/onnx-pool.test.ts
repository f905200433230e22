/**
 * The scoring-session pool (lib/onnx/pool.ts): calls on the same checkpoint and settings share one
 * session; entropy, a changed file, other settings and the memory budget decide when they do not.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { makeScorerPool } from "../lib/onnx/pool.ts"
import { sessionPoolBytes } from "../lib/onnx/index.ts"
import type { ScoreRequest, ScorerOptions } from "../lib/onnx/scorer.ts"
import { linearLogits, linearModel, linearWeights, referenceScores, saveModel } from "./fixtures/onnx.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-pool-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const base: ScorerOptions = { threads: 1, batchSize: 2, cacheDir: path.join(tmp, "cache") }
const reqs: ScoreRequest[] = [
  { ids: Int32Array.of(1, 2, 3, 4), firstTarget: 1 },
  { ids: Int32Array.of(5, 0, 7), firstTarget: 2 },
]
const lw = linearWeights({ vocab: 12, dim: 4, seed: 11 })
const other = linearWeights({ vocab: 12, dim: 4, seed: 12 })

const run = (pool: ReturnType<typeof makeScorerPool>, file: string, o: Partial<ScorerOptions> = {}) =>
  Effect.runPromise(pool.withScorer(file, { ...base, ...o }, (s) => s.scoreAll(reqs)))

const expectScores = (results: ReadonlyArray<{ logprob: Float32Array; entropy?: Float32Array }>, w: typeof lw, entropy: boolean) =>
  reqs.forEach((r, i) => {
    const want = referenceScores(linearLogits(w, r.ids), w.vocab, r.ids, r.firstTarget)
    want.logprob.forEach((x, k) => expect(Math.abs(results[i].logprob[k] - x)).toBeLessThan(1e-5))
    expect(results[i].entropy !== undefined).toBe(entropy)
  })

describe("scorer pool", () => {
  it("shares a session between calls on one checkpoint; a log-prob call may use an entropy session, not the other way round", async () => {
    const f = saveModel(linearModel(lw), tmp, "a.onnx")
    const pool = makeScorerPool({ budgetBytes: 1e9 })
    expectScores(await run(pool, f), lw, false)
    expectScores(await run(pool, f, { batchSize: 1, label: "another unit" }), lw, false)
    expect(pool.stats()).toEqual({ opened: 1, reused: 1, open: 1 })
    expectScores(await run(pool, f, { entropy: true }), lw, true) // needs entropies: a session of its own
    expectScores(await run(pool, f, { entropy: false }), lw, false) // either serves it
    expect(pool.stats()).toMatchObject({ opened: 2, reused: 2 })
    expectScores(await run(pool, f, { threads: 2 }), lw, false) // other settings: another session
    expect(pool.stats()).toMatchObject({ opened: 3, open: 3 })
    await pool.releaseAll()
    expect(pool.stats().open).toBe(0)
  })

  it("a checkpoint replaced on disk is opened again and scored with its new weights", async () => {
    const f = saveModel(linearModel(lw), tmp, "b.onnx")
    const pool = makeScorerPool({ budgetBytes: 1e9 })
    expectScores(await run(pool, f), lw, false)
    saveModel(linearModel(other), tmp, "b.onnx")
    fs.utimesSync(f, new Date(), new Date(Date.now() + 5000))
    expectScores(await run(pool, f), other, false)
    expect(pool.stats()).toEqual({ opened: 2, reused: 0, open: 1 })
    await pool.releaseAll()
  })

  it("keeps idle sessions within the budget, least recently used released first; never one in use", async () => {
    const files = ["c1", "c2", "c3"].map((n) => saveModel(linearModel(lw), tmp, `${n}.onnx`))
    const size = fs.statSync(files[0]).size
    const pool = makeScorerPool({ budgetBytes: 2 * size })
    for (const f of files) await run(pool, f)
    expect(pool.stats()).toEqual({ opened: 3, reused: 0, open: 2 }) // c1 went
    await run(pool, files[1]) // c2 is the most recent now
    await run(pool, files[0]) // c1 again: c3 goes
    expect(pool.stats()).toEqual({ opened: 4, reused: 1, open: 2 })
    await run(pool, files[1])
    expect(pool.stats().reused).toBe(2)
    // Budget 0: nothing is kept, yet two nested calls each hold their own session while in use.
    const none = makeScorerPool({ budgetBytes: 0 })
    const open = await Effect.runPromise(
      none.withScorer(files[0], base, () => none.withScorer(files[1], base, () => Effect.sync(() => none.stats().open))),
    )
    expect(open).toBe(2)
    expect(none.stats()).toEqual({ opened: 2, reused: 0, open: 0 })
    await pool.releaseAll()
  })

  it("a call that fails gives its session back; a checkpoint that does not open is not kept", async () => {
    const f = saveModel(linearModel(lw), tmp, "d.onnx")
    const pool = makeScorerPool({ budgetBytes: 1e9 })
    const failed = await Effect.runPromise(Effect.either(pool.withScorer(f, base, () => Effect.fail("boom"))))
    expect(Either.isLeft(failed) && failed.left).toBe("boom")
    expectScores(await run(pool, f), lw, false)
    expect(pool.stats()).toEqual({ opened: 1, reused: 1, open: 1 })
    const missing = await Effect.runPromise(Effect.either(pool.withScorer(path.join(tmp, "nope.onnx"), base, (s) => s.scoreAll(reqs))))
    expect(Either.isLeft(missing) && (missing.left as { message: string }).message).toMatch(/checkpoint file not found/)
    expect(pool.stats().open).toBe(1)
    await pool.releaseAll()
  })

  it("takes its budget from TRAJECTORIES_SESSION_POOL_GB (0: none), else 1/8 of the memory", () => {
    const dflt = Math.floor(os.totalmem() / 8)
    expect(sessionPoolBytes({ TRAJECTORIES_SESSION_POOL_GB: "0" })).toBe(0)
    expect(sessionPoolBytes({ TRAJECTORIES_SESSION_POOL_GB: "2.5" })).toBe(2.5e9)
    for (const v of [undefined, "", "lots", "-1"]) expect(sessionPoolBytes({ TRAJECTORIES_SESSION_POOL_GB: v })).toBe(dflt)
  })
})
