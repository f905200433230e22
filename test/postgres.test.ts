/**
 * The private PostgreSQL fixture (test/fixtures/postgres.ts), driven through @effect/sql-pg: one
 * server for the file, queries and concurrent writers, advisory locks across sessions, and a stop
 * that leaves neither a listening port nor a folder behind. `it.live`: the pool's timeouts need the
 * real clock.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import { startPostgres, type PrivatePostgres } from "./fixtures/postgres.ts"

let pg: PrivatePostgres
beforeAll(async () => {
  pg = await startPostgres()
}, 60_000)
afterAll(() => pg?.stop())

const client = (maxConnections?: number) => PgClient.layer({ url: Redacted.make(pg.url), ...(maxConnections ? { maxConnections } : {}) })

/**
 * A client of its own, open until `scope` closes: a pool of one session, so that every reserve
 * gets the same session (with more, an unlock could land on another session than the lock).
 */
const openClient = (scope: Scope.Scope) =>
  Effect.map(Layer.buildWithScope(client(1), scope), (ctx) => Context.get(ctx, SqlClient.SqlClient))

/** `pg_try_advisory_lock(42)` on a reserved connection of `sql`, which goes back to its pool after. */
const tryLock = (conn: { readonly execute: (sql: string, params: ReadonlyArray<unknown>, t: undefined) => Effect.Effect<ReadonlyArray<any>, unknown> }) =>
  Effect.map(conn.execute("SELECT pg_try_advisory_lock(42) AS got", [], undefined), (rows) => rows[0].got as boolean)

describe("private postgres", () => {
  it.live("answers queries on its loopback port, with its unix socket in its own folder", () =>
    Effect.gen(function* () {
      const role = process.getuid?.() === 0 ? "postgres" : os.userInfo().username
      expect(pg.url).toBe(`postgres://${role}@127.0.0.1:${pg.port}/trajectories`)
      expect(fs.existsSync(path.join(pg.dir, `.s.PGSQL.${pg.port}`))).toBe(true)
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ two: number }>`SELECT 1 + 1 AS two`
      expect(rows).toEqual([{ two: 2 }])
      const [db] = yield* sql<{ db: string; enc: string }>`SELECT current_database() AS db, pg_encoding_to_char(encoding) AS enc FROM pg_database WHERE datname = current_database()`
      expect(db).toEqual({ db: "trajectories", enc: "UTF8" })
    }).pipe(Effect.provide(client())),
  )

  it.live("two connections write at once and both writes read back", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE writes (writer int NOT NULL, i int NOT NULL, pid int NOT NULL)`
      const inserted = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      // Each writer's transaction holds its connection until both have inserted, so the two
      // transactions are open together and cannot share a connection.
      const writer = (w: 0 | 1) =>
        sql.withTransaction(
          Effect.gen(function* () {
            const [{ pid }] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
            const rows = Array.from({ length: 50 }, (_, i) => ({ writer: w, i, pid }))
            yield* sql`INSERT INTO writes ${sql.insert(rows)}`
            yield* Deferred.succeed(inserted[w], undefined)
            yield* Deferred.await(inserted[1 - w])
            return pid
          }),
        )
      const pids = yield* Effect.all([writer(0), writer(1)], { concurrency: 2 })
      expect(pids[0]).not.toBe(pids[1])
      const counts = yield* sql<{ writer: number; n: string; pids: string }>`
        SELECT writer, count(*) AS n, count(DISTINCT pid) AS pids FROM writes GROUP BY writer ORDER BY writer`
      expect(counts).toEqual([{ writer: 0, n: "50", pids: "1" }, { writer: 1, n: "50", pids: "1" }])
    }).pipe(Effect.provide(client())),
  )

  it.live("an advisory lock held on one session makes another's try fail until it is released", () =>
    Effect.gen(function* () {
      const other = yield* openClient(yield* Effect.scope)
      const otherTry = Effect.scoped(Effect.flatMap(other.reserve, tryLock))
      const otherUnlock = Effect.scoped(Effect.flatMap(other.reserve, (c) => c.execute("SELECT pg_advisory_unlock_all()", [], undefined)))

      // Released by a finalizer of the scope that reserved the connection.
      const firstScope = yield* Scope.make()
      const first = yield* openClient(firstScope)
      yield* Effect.gen(function* () {
        const conn = yield* first.reserve
        yield* Effect.addFinalizer(() => Effect.orDie(conn.execute("SELECT pg_advisory_unlock(42)", [], undefined)))
        expect(yield* tryLock(conn)).toBe(true)
        expect(yield* otherTry).toBe(false)
      }).pipe(Effect.scoped)
      expect(yield* otherTry).toBe(true)
      yield* otherUnlock

      // Not released by closing the reserve scope alone: the connection goes back to the pool with
      // its session, and the session keeps the lock until the pool closes.
      yield* Effect.scoped(Effect.flatMap(first.reserve, tryLock))
      expect(yield* otherTry).toBe(false)
      yield* Scope.close(firstScope, Exit.void)
      // The server ends the closed pool's session, and its locks, once it sees the disconnect: soon, not at once.
      let freed = false
      for (let i = 0; i < 200 && !freed; i++) {
        freed = yield* otherTry
        if (!freed) yield* Effect.sleep("50 millis")
      }
      expect(freed).toBe(true)
      yield* otherUnlock
    }).pipe(Effect.scoped),
  )

  it("stop() shuts the server and removes its folder; a second stop() does nothing", async () => {
    const { port, dir } = pg
    await pg.stop()
    await pg.stop()
    expect(fs.existsSync(dir)).toBe(false)
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(port, "127.0.0.1")
      socket.once("connect", () => (socket.destroy(), resolve("connected")))
      socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
    })
    expect(refused).toBe("ECONNREFUSED")
  })
})
