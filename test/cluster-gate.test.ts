/**
 * makeGate (pipeline/cluster/pool.ts): a runner's `--jobs` permits, handed out in arrival order to
 * the units the cluster delivers at once. At most `permits` hold one; a release wakes one waiter;
 * a waiter interrupted while it waits, or just as it was handed a permit, loses no permit.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { makeGate } from "../pipeline/cluster/pool.ts"

describe("makeGate", () => {
  it.live("lets `permits` units in at once, the others in arrival order", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate(2)
      const order: number[] = []
      let inside = 0
      let most = 0
      const unit = (i: number) =>
        gate(
          Effect.gen(function* () {
            inside++
            most = Math.max(most, inside)
            order.push(i)
            yield* Effect.sleep("5 millis")
            inside--
          }),
        )
      yield* Effect.forEach([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], unit, { concurrency: "unbounded", discard: true })
      expect(most).toBe(2)
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }),
  )

  it.live("a waiter interrupted while it waits, or as it is handed the permit, does not keep it", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate(1)
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(gate(Deferred.await(release)))
      yield* Effect.sleep("10 millis")
      // Waiting: interrupted, it leaves the queue.
      const left = yield* Effect.fork(gate(Effect.never))
      yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(left)
      // Handed the permit in the same tick as it is interrupted: it passes the permit on.
      const handed = yield* Effect.fork(gate(Effect.never))
      const next = yield* Effect.fork(gate(Effect.succeed("ran")))
      yield* Effect.sleep("10 millis")
      yield* Effect.all([Deferred.succeed(release, undefined), Fiber.interrupt(handed)], { concurrency: "unbounded" })
      yield* Fiber.join(holder)
      expect(yield* Fiber.join(next).pipe(Effect.timeout("2 seconds"))).toBe("ran")
      // And the gate is free again afterwards.
      expect(yield* gate(Effect.succeed(1)).pipe(Effect.timeout("1 second"))).toBe(1)
    }),
  )
})
