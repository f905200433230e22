/**
 * throttledWrites (pipeline/manifest.ts), how a cluster run writes its manifest: a request writes at
 * once when the last write is old enough, requests made meanwhile share one trailing write, `flush`
 * writes what is pending, and a failed trailing write fails what comes next.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { throttledWrites } from "../pipeline/manifest.ts"

describe("throttledWrites", () => {
  it.live("writes at once, then once per interval for the requests made meanwhile, and flushes what is pending", () =>
    Effect.scoped(
      Effect.gen(function* () {
        let state = 0
        const written: number[] = []
        const lock = yield* Effect.makeSemaphore(1)
        const w = yield* throttledWrites(
          Effect.sync(() => void written.push(state)),
          1000,
          lock,
        )
        state = 1
        yield* w.request
        expect(written).toEqual([1]) // at once: no write before
        for (state = 2; state <= 5; state++) yield* w.request
        expect(written).toEqual([1])
        yield* Effect.sleep("1300 millis")
        expect(written).toEqual([1, 6]) // one trailing write, of the state as it is when it runs
        state = 7
        yield* w.request // within a second of the trailing write: scheduled
        yield* w.flush
        expect(written).toEqual([1, 6, 7])
        yield* w.flush // nothing pending
        yield* Effect.sleep("1300 millis") // the scheduled write finds nothing pending
        expect(written).toEqual([1, 6, 7])
      }),
    ),
  )

  it.live("a failed trailing write fails the next request and the flush", () =>
    Effect.scoped(
      Effect.gen(function* () {
        let calls = 0
        const lock = yield* Effect.makeSemaphore(1)
        const w = yield* throttledWrites(
          Effect.suspend(() => (++calls === 2 ? Effect.fail("disk full") : Effect.void)),
          1000,
          lock,
        )
        yield* w.request
        yield* w.request
        yield* Effect.sleep("1300 millis")
        expect(calls).toBe(2)
        expect(yield* Effect.exit(w.request)).toEqual(Exit.fail("disk full"))
        expect(yield* Effect.exit(w.flush)).toEqual(Exit.fail("disk full"))
      }),
    ),
  )

  it.live("a write interrupted as the run stops leaves its state to the last flush", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const written: string[] = []
        let slow = true
        const lock = yield* Effect.makeSemaphore(1)
        const w = yield* throttledWrites(
          Effect.suspend(() => (slow ? Effect.never : Effect.sync(() => void written.push("written")))),
          100,
          lock,
        )
        const first = yield* Effect.fork(w.request)
        yield* Effect.sleep("20 millis")
        yield* Fiber.interrupt(first)
        slow = false
        yield* w.flush
        expect(written).toEqual(["written"])
      }),
    ),
  )
})
