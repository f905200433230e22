/**
 * A runner's worker threads (unit-worker.ts): `jobs` of them, each running one unit at a time, so
 * the runner's main thread only talks to the cluster. A job interrupted (the runner stopping, its
 * shard moving) is cancelled in its worker; a worker that does not stop within 10 s, or that
 * dies, is replaced.
 *
 *   const pool = yield* makePool({ size: 1, registry, overrides: { threads: 4 } })
 *   const result = yield* pool.run(jobJson, () => progress, log)   // the UnitExecution as JSON
 */
import { Worker } from "node:worker_threads"
import { Deferred, Effect, Exit, FiberId, Queue, type Scope } from "effect"
import type { UnitExecution, UnitJob } from "../runner.ts"
import type { Progress } from "../stage.ts"

/** What a runner's flags change in the units it runs (never their keys: threads and device do not change scores beyond rounding). */
export interface RunnerOverrides {
  readonly threads?: number
  /** `cpu`, or `cuda` with the GPU's index. */
  readonly device?: { readonly provider: "cpu" } | { readonly provider: "cuda"; readonly index: number }
}

export const applyOverrides = (job: UnitJob, o: RunnerOverrides): UnitJob => {
  if (o.threads === undefined && o.device === undefined) return job
  const scoring = {
    ...job.config.scoring,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.device !== undefined ? { execution_provider: o.device.provider, ...(o.device.provider === "cuda" ? { cuda_device: o.device.index } : {}) } : {}),
  }
  return { ...job, config: { ...job.config, scoring } }
}

/** `cpu` or `cuda:K` (`cuda` alone is `cuda:0`); undefined when it is neither. */
export const parseDevice = (s: string): RunnerOverrides["device"] | undefined => {
  if (s === "cpu") return { provider: "cpu" }
  const m = /^cuda(?::(\d+))?$/.exec(s)
  return m ? { provider: "cuda", index: Number(m[1] ?? 0) } : undefined
}

/**
 * `permits` units at once, the others waiting in arrival order; `(self) => …` runs `self` holding
 * one. A release hands its permit to the first waiter only: Effect's Semaphore wakes every waiter
 * on each release (each checks, and all but one wait again), so the 300 units a runner is handed at
 * once cost it some 300² wake-ups (bench/cluster.ts). A waiter interrupted while it waits leaves
 * the queue, or passes on the permit it was just handed.
 */
export const makeGate = (permits: number): Effect.Effect<<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>> =>
  Effect.sync(() => {
    let free = permits
    const waiting: Array<Deferred.Deferred<void>> = []
    const release = Effect.sync(() => {
      const next = waiting.shift()
      if (next === undefined) free++
      else Deferred.unsafeDone(next, Exit.void)
    })
    const take = Effect.suspend(() => {
      if (free > 0) {
        free--
        return Effect.void
      }
      const handed = Deferred.unsafeMake<void>(FiberId.none)
      waiting.push(handed)
      return Effect.onInterrupt(Deferred.await(handed), () =>
        Effect.suspend(() => {
          const i = waiting.indexOf(handed)
          if (i < 0) return release
          waiting.splice(i, 1)
          return Effect.void
        }),
      )
    })
    return <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.uninterruptibleMask((restore) => Effect.zipRight(restore(take), Effect.ensuring(restore(self), release)))
  })

export type WorkerRequest = { readonly type: "job"; readonly id: number; readonly job: string } | { readonly type: "cancel"; readonly id: number }

export type WorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "start"; readonly id: number; readonly total: number; readonly what: string }
  | { readonly type: "advance"; readonly id: number; readonly n: number }
  | { readonly type: "log"; readonly id: number; readonly message: string }
  | { readonly type: "done"; readonly id: number; readonly result: string }
  | { readonly type: "interrupted"; readonly id: number }

export interface Pool {
  /**
   * Run a job (JobMessage JSON) in a free worker; its UnitExecution as JSON. `begin` is called when
   * a worker takes it (until then it waits for one) and gives where its progress goes.
   */
  readonly run: (job: string, begin: () => Progress, log: (m: string) => void) => Effect.Effect<string>
}

const failedJson = (message: string): string =>
  JSON.stringify({ ok: false, files: [], started: new Date().toISOString(), seconds: 0, message } satisfies UnitExecution)

export const makePool = (options: { readonly size: number; readonly registry: string; readonly overrides: RunnerOverrides }): Effect.Effect<Pool, never, Scope.Scope> =>
  Effect.gen(function* () {
    const entry = new URL("./worker-entry.mjs", import.meta.url)
    const all = new Set<Worker>()
    const spawn = (): Promise<Worker> =>
      new Promise((resolve, reject) => {
        const w = new Worker(entry, { workerData: { registry: options.registry, overrides: options.overrides } })
        all.add(w)
        const onReady = (m: WorkerReply) => {
          if (m.type !== "ready") return
          w.off("message", onReady)
          w.off("error", reject)
          resolve(w)
        }
        w.on("message", onReady)
        w.once("error", reject)
        w.once("exit", () => all.delete(w))
      })
    yield* Effect.addFinalizer(() => Effect.promise(() => Promise.all([...all].map((w) => w.terminate()))))
    const idle = yield* Queue.unbounded<Worker | undefined>()
    // Slots, not workers: a worker is started when a slot is first used, or after one died.
    for (let i = 0; i < options.size; i++) yield* Queue.offer(idle, undefined)
    let next = 0

    /** Run `job` in `w`: its result, nothing (it was cancelled), or why the worker died. */
    const runIn = (w: Worker, id: number, job: string, progress: Progress, log: (m: string) => void) =>
      new Promise<{ result?: string; dead?: string }>((resolve) => {
        let settled = false
        const finish = (r: { result?: string; dead?: string }) => {
          if (settled) return
          settled = true
          w.off("message", onMessage)
          w.off("error", onError)
          w.off("exit", onExit)
          resolve(r)
        }
        const onMessage = (m: WorkerReply) => {
          if (!("id" in m) || m.id !== id) return
          if (m.type === "start") progress.start(m.total, m.what)
          else if (m.type === "advance") progress.advance(m.n)
          else if (m.type === "log") log(m.message)
          else if (m.type === "done") finish({ result: m.result })
          else if (m.type === "interrupted") finish({})
        }
        const onError = (e: Error) => finish({ dead: `its worker thread failed: ${e.message.split("\n")[0]}` })
        const onExit = (code: number) => finish({ dead: `its worker thread exited (code ${code})` })
        w.on("message", onMessage)
        w.once("error", onError)
        w.once("exit", onExit)
        w.postMessage({ type: "job", id, job } satisfies WorkerRequest)
      })

    const run = (job: string, begin: () => Progress, log: (m: string) => void) =>
      Effect.acquireUseRelease(
        Effect.map(Queue.take(idle), (worker) => ({ worker, pending: undefined as Promise<unknown> | undefined })),
        (slot) =>
          Effect.gen(function* () {
            if (slot.worker === undefined) {
              const w = yield* Effect.promise(() => spawn().catch((e: Error) => e))
              if (w instanceof Error) return failedJson(`cannot start a worker thread: ${w.message.split("\n")[0]}`)
              slot.worker = w
            }
            const id = ++next
            const running = runIn(slot.worker, id, job, begin(), log)
            slot.pending = running
            const r = yield* Effect.promise((signal) => {
              signal.addEventListener("abort", () => slot.worker?.postMessage({ type: "cancel", id } satisfies WorkerRequest))
              return running
            })
            if (r.dead !== undefined) {
              slot.worker = undefined
              return failedJson(r.dead)
            }
            return r.result ?? (yield* Effect.interrupt)
          }),
        // The slot goes back once its worker is free: after an interruption, once the cancelled unit
        // stopped (or its worker, not stopping within 10 s, was terminated: the slot then comes back empty).
        (slot, exit) =>
          Effect.gen(function* () {
            if (exit._tag === "Failure" && slot.worker !== undefined && slot.pending !== undefined) {
              const w = slot.worker
              const pending = slot.pending
              const stopped = yield* Effect.promise(
                () => new Promise<boolean>((resolve) => {
                  const timer = setTimeout(() => resolve(false), 10_000)
                  void pending.then((r) => {
                    clearTimeout(timer)
                    resolve((r as { dead?: string }).dead === undefined)
                  })
                }),
              )
              if (!stopped) {
                yield* Effect.promise(() => w.terminate())
                slot.worker = undefined
              }
            }
            yield* Queue.offer(idle, slot.worker)
          }),
      )
    return { run }
  })
