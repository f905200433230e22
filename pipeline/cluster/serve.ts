/**
 * `trajectories runner --cluster postgres://…`: a long-lived process that owns a share of the
 * cluster's shards and runs the units that land on them, in worker threads (pool.ts), until it is
 * stopped. Start any number, on any machines that see the run folders at the same paths.
 *
 * A unit runs as the body of its workflow (job.ts): the cluster persists the workflow's result (its
 * reply), so a finished unit is answered from storage and never runs again; a runner that dies has
 * its shards, and the units on them, taken over by the others. Besides the cluster's own shard
 * locks, each unit holds a PostgreSQL advisory lock on its run folder and name while it runs
 * (released by the server when the runner's connection drops), so no two runners ever write the
 * same unit at once.
 *
 * The body is not an Activity: an activity is a second persisted message with its own stored reply
 * (about a third of a no-op unit's CPU on its runner, bench/cluster.ts), and with one step there is
 * nothing it would spare a re-run, which FINISHED below answers. A runner stopping (SIGTERM) gives
 * a running unit the cluster's grace period (entityTerminationTimeout) to finish, then interrupts
 * it in its worker; the cluster does not store an interrupted run as its reply, and the shard's
 * next owner runs the unit.
 *
 * The cluster delivers a run at least once: a runner that finished a unit but lost its shard (or
 * died) before the cluster stored the reply has the unit run again by the shard's next owner. So,
 * still inside the unit's lock, a runner records each execution it finished in a table of its own
 * (FINISHED) before it says "done"; the next owner, once it holds the lock, finds the record and
 * answers with it instead of running the unit again. A unit is thus finished once: either its record
 * is there, or its "done" line was never printed and the unit runs again.
 */
import { createHash } from "node:crypto"
import { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Layer } from "effect"
import { firstLine, RunError } from "../errors.ts"
import { Reporter, stderrSink, type UnitSlot } from "../progress.ts"
import type { UnitExecution } from "../runner.ts"
import { decodeExecution, encodeExecution, UnitWorkflow, type JobMessage } from "./job.ts"
import { dbFailure, runnerLayer, stderrLogs } from "./layers.ts"
import { makeGate, makePool, type RunnerOverrides } from "./pool.ts"

export interface RunnerOptions {
  /** postgres://user[:password]@host:port/database */
  readonly url: string
  /** The address other runners and clients reach this one at. */
  readonly host: string
  readonly port: number
  /** The address to listen on (default: host). */
  readonly listenHost?: string
  /** Shown in progress lines and the run's "units per runner" (default host:port). */
  readonly name: string
  /** Units at once (worker threads). */
  readonly jobs: number
  readonly overrides: RunnerOverrides
  /** The stage registry module (URL) the worker threads load: it exports `stages` and `layer`. */
  readonly registry: string
}

/** A database URL with its password hidden, for messages. */
export const shownUrl = (url: string): string => url.replace(/^(\w+:\/\/[^:/@]*):[^@/]*@/, "$1:***@")

/** Two int4 keys of an advisory lock on a unit of a run. */
const lockKeys = (runDir: string, name: string): [number, number] => {
  const h = createHash("sha256").update(`${runDir}\0${name}`).digest()
  return [h.readInt32BE(0), h.readInt32BE(4)]
}

/** The executions finished by some runner: execution name → its UnitExecution as JSON (job.ts). */
const FINISHED = "trajectories_finished_units"

/** Make FINISHED once (runners that start together serialise on a transaction lock). */
const ensureFinished = Effect.gen(function* () {
  const sql = yield* SqlClient
  const [a, b] = lockKeys("trajectories", FINISHED)
  yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`SELECT pg_advisory_xact_lock(${a}, ${b})`
      yield* sql.unsafe(
        `CREATE TABLE IF NOT EXISTS ${FINISHED} (execution text PRIMARY KEY, result text NOT NULL, runner text NOT NULL, finished_at timestamptz NOT NULL DEFAULT now())`,
      )
    }),
  )
})

/** An execution's name as job.ts and submit.ts make it (sha256 hex, a re-run's `…/again-<ms>`): plain enough to be a literal. */
const PLAIN_EXECUTION = /^[0-9a-f]{64}(\/again-[0-9]+)?$/

/**
 * Hold the unit's advisory lock for the scope (waiting while another runner holds it), and find
 * the record of its execution if some runner finished it. One round trip a try: the lock and the
 * look-up are two statements of one query, and the look-up, with a snapshot of its own, sees every
 * record committed before the lock was granted (a runner writes its record before it unlocks).
 * `record` writes this runner's record on the same connection, before the scope unlocks.
 */
const lockUnit = (runDir: string, name: string, execution: string, log: (m: string) => void) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const conn = yield* sql.reserve
    const [a, b] = lockKeys(runDir, name)
    const unlock = Effect.ignore(conn.execute("SELECT pg_advisory_unlock($1, $2)", [a, b], undefined))
    const lookUp = `SELECT result, runner FROM ${FINISHED} WHERE execution = `
    type Attempt = { readonly ok: boolean; readonly prior?: { readonly result: string; readonly runner: string } }
    const attempt: Effect.Effect<Attempt, SqlError> = PLAIN_EXECUTION.test(execution)
      ? Effect.map(
          // A look-up that fails may leave the lock granted (session locks outlive errors): undone.
          Effect.onError(conn.execute(`SELECT pg_try_advisory_lock(${a}, ${b}) AS ok; ${lookUp}'${execution}'`, [], undefined), () => unlock),
          (results) => {
            const [lock, found] = results as unknown as [ReadonlyArray<{ ok: boolean }>, ReadonlyArray<{ result: string; runner: string }>]
            return { ok: lock[0]?.ok === true, prior: found[0] }
          },
        )
      : Effect.gen(function* () {
          const lock = yield* conn.execute("SELECT pg_try_advisory_lock($1, $2) AS ok", [a, b], undefined)
          if (lock[0]?.ok !== true) return { ok: false }
          const found = yield* Effect.onError(conn.execute(`${lookUp}$1`, [execution], undefined), () => unlock)
          return { ok: true, prior: found[0] as { result: string; runner: string } | undefined }
        })
    let warned = false
    for (;;) {
      // Granted and its unlock in the scope at once: a lock never stays behind on a pooled connection.
      const got = yield* Effect.acquireRelease(attempt, (r) => (r.ok ? unlock : Effect.void))
      if (got.ok) {
        return {
          prior: got.prior,
          record: (result: string, runner: string) =>
            conn.execute(`INSERT INTO ${FINISHED} (execution, result, runner) VALUES ($1, $2, $3) ON CONFLICT (execution) DO NOTHING`, [execution, result, runner], undefined),
        }
      }
      if (!warned) log(`${name}: another runner is running it; waiting for it to stop`)
      warned = true
      yield* Effect.sleep("1 second")
    }
  })

/**
 * For the tests: hold each reply this long after the unit is recorded (TRAJECTORIES_REPLY_DELAY_MS),
 * widening the window in which a runner has finished a unit but the cluster has not stored its reply.
 */
const replyDelay = Number(process.env.TRAJECTORIES_REPLY_DELAY_MS ?? 0) || 0

const failed = (message: string, where: string): UnitExecution => ({ ok: false, files: [], started: new Date().toISOString(), seconds: 0, message, where })

/** The runner's program: serves until interrupted (SIGINT/SIGTERM), then hands its shards back. */
export const serveRunner = (o: RunnerOptions): Effect.Effect<never, RunError> => {
  const sink = stderrSink()
  const reporter = new Reporter(sink)
  const log = (m: string) => reporter.log(m)
  const workflows = Layer.unwrapScoped(
    Effect.gen(function* () {
      const pool = yield* makePool({ size: o.jobs, registry: o.registry, overrides: o.overrides })
      // A unit takes its lock (and the database connection the lock lives on) only once a worker is
      // free for it: queued units holding connections would starve the cluster's own storage of
      // them, and with every connection taken no reply could be written (a deadlock).
      const gate = yield* makeGate(o.jobs)
      yield* ensureFinished
      return UnitWorkflow.toLayer((payload) =>
        Effect.gen(function* () {
          const m = JSON.parse(payload.job) as JobMessage
          const { prior, record } = yield* lockUnit(m.config.runDir, m.name, payload.execution, log)
          if (prior !== undefined) {
            log(`${m.stage} ${m.unit.id} was finished by ${prior.runner}; its record answers (not run again)`)
            return prior.result
          }
          let slot: UnitSlot | undefined
          const begin = () => {
            // In a log file (a batch job's), a line when a unit starts, as well as when it ends.
            if (!sink.isTTY) log(`${m.stage} ${m.unit.id} started`)
            slot = reporter.beginUnit(m.stage, m.unit.id)
            return slot.progress
          }
          // Interruptible while it runs; once it has run, recorded before anything else can happen.
          return yield* Effect.uninterruptibleMask((restore) =>
            Effect.gen(function* () {
              const exec = decodeExecution(
                yield* restore(pool.run(payload.job, begin, log)).pipe(Effect.onInterrupt(() => Effect.sync(() => slot?.end(false, 0, "interrupted", true)))),
              )
              const result = encodeExecution({ ...exec, where: o.name })
              yield* record(result, o.name).pipe(Effect.tapError(() => Effect.sync(() => slot?.end(false, 0, "not recorded", true))))
              slot?.end(exec.ok, exec.seconds, exec.message)
              if (replyDelay > 0) yield* Effect.sleep(replyDelay)
              return result
            }),
          )
        }).pipe(
          Effect.scoped,
          gate,
          Effect.catchAll((e) => Effect.succeed(encodeExecution(failed(`the cluster's database failed: ${firstLine(e)}`, o.name)))),
        ),
      )
    }),
  )
  const listen = { host: o.listenHost ?? o.host, port: o.port }
  return Layer.launch(workflows.pipe(Layer.provide(runnerLayer(o.url, { host: o.host, port: o.port }, listen, o.jobs)))).pipe(
    Effect.onExit(() => Effect.sync(() => reporter.clear())),
    // The cluster's own log lines go to stderr, with the progress lines (stdout stays empty).
    Effect.provide(stderrLogs),
    Effect.catchAllCause((cause) => Effect.fail(new RunError({ message: `runner ${o.name} on ${shownUrl(o.url)}: ${dbFailure(Cause.squash(cause))}` }))),
  ) as Effect.Effect<never, RunError>
}
