/**
 * Parquet written a table at a time: the encoder (pipeline/store.ts parquetStreamEncoder), the
 * store's piecewise atomic write (RunStoreShape.writeStream) and the unit's writer
 * (UnitContext.parquetWriter, pipeline/runner.ts makeUnitContext) — the file appears only when
 * closed, with its size and CRC-32 recorded; a failure, an interruption or a SIGKILL midway leaves
 * no file under the final name, and no temporary file once the run folder is taken again.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { isAlive } from "../pipeline/atomic.ts"
import * as zlib from "node:zlib"
import { Deferred, Effect, Exit, Fiber, Option } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { col, defineTable } from "../lib/tables.ts"
import { emptyManifest } from "../pipeline/manifest.ts"
import { memoryRunStore } from "../pipeline/run-store-memory.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import { RunStore, type RunStoreShape } from "../pipeline/run-store.ts"
import { makeUnitContext } from "../pipeline/runner.ts"
import { UnitError } from "../pipeline/stage.ts"
import { decodeParquet, encodeParquet, openRowGroupsFromBytes, parquetStreamEncoder } from "../pipeline/store.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-parquet-stream-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const T = defineTable("t", { i: col.int32(), s: col.utf8({ nullable: true }), x: col.float64() })
const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, k) => ({ i: from + k, s: (from + k) % 4 === 0 ? null : `s${(from + k) % 7}`, x: (from + k) / 8 }))
const file = { path: "part/t.parquet", table: T }

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Encode `tables` one after the other with the stream encoder; the file's bytes. */
const streamed = async (tables: ReadonlyArray<ReturnType<typeof T.fromRows>>, rowGroupSize: number) => {
  const enc = parquetStreamEncoder({ rowGroupSize, schema: T.schema })
  const parts: Uint8Array[] = []
  for (const t of tables) {
    await enc.write(t)
    parts.push(...enc.take())
  }
  await enc.finish()
  parts.push(...enc.take())
  return concat(parts)
}

const rowGroups = async (bytes: Uint8Array) => {
  const r = await openRowGroupsFromBytes("t", bytes)
  try {
    return [...r.rowGroupRows]
  } finally {
    r.close()
  }
}

describe("parquetStreamEncoder", () => {
  it("tables of exactly a row group each give encodeParquet's bytes for their concatenation", async () => {
    const bytes = await streamed([T.fromRows(rows(0, 7)), T.fromRows(rows(7, 7)), T.fromRows(rows(14, 3))], 7)
    expect(Buffer.from(bytes).equals(Buffer.from(encodeParquet(T.fromRows(rows(0, 17)), { rowGroupSize: 7 })))).toBe(true)
    expect(await rowGroups(bytes)).toEqual([7, 7, 3])
  })

  it("cuts row groups across tables of any size; the values are the same", async () => {
    const bytes = await streamed([T.fromRows(rows(0, 5)), T.fromRows(rows(5, 11)), T.fromRows([]), T.fromRows(rows(16, 1))], 7)
    expect(await rowGroups(bytes)).toEqual([7, 7, 3])
    expect(T.toRows(decodeParquet(bytes))).toEqual(rows(0, 17))
  })

  it("no rows: the file of no rows with the schema; a table of other columns is refused", async () => {
    const empty = await streamed([], 7)
    const back = decodeParquet(empty)
    expect([back.numRows, back.schema.fields.map((f) => f.name)]).toEqual([0, ["i", "s", "x"]])
    const enc = parquetStreamEncoder({ rowGroupSize: 7, schema: T.schema })
    await enc.write(T.fromRows(rows(0, 3)))
    const Other = defineTable("o", { i: col.int32() })
    await expect(enc.write(Other.fromRows([{ i: 1 }]))).rejects.toThrow(/a table of other columns/)
    enc.abort()
    await expect(enc.write(T.fromRows(rows(0, 1)))).rejects.toThrow(/aborted/)
  })
})

/** A unit's context over `store`, and what it records. */
const unitContext = (store: RunStoreShape) =>
  makeUnitContext({
    config: {} as never,
    store,
    stage: "s",
    id: "u",
    manifest: emptyManifest("r"),
    allowed: [],
    progress: { start: () => {}, advance: () => {} },
    log: () => {},
  })

const diskStore = (name: string) => {
  const runDir = path.join(tmp, name)
  return { runDir, store: Effect.runSync(Effect.provide(RunStore, nodeRunStore(runDir))) }
}

const listFiles = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()
    : []

describe("UnitContext.parquetWriter", () => {
  for (const kind of ["disk", "memory"] as const) {
    it(`${kind}: the file appears on close, with its size and the CRC-32 of its bytes recorded`, async () => {
      const mem = memoryRunStore()
      const disk = diskStore("ok")
      const store = kind === "disk" ? disk.store : mem.store
      const { ctx, written } = unitContext(store)
      const during = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const w = yield* ctx.parquetWriter(file, { rowGroupSize: 4 })
            for (let k = 0; k < 5; k++) yield* w.write(T.fromRows(rows(3 * k, 3)))
            const seen = { final: Option.isSome(yield* store.size(file.path)), files: kind === "disk" ? listFiles(disk.runDir) : [...mem.files.keys()] }
            yield* w.close
            return seen
          }),
        ),
      )
      expect(during.final).toBe(false) // nothing under the final name while it is written
      if (kind === "disk") expect(during.files).toEqual([expect.stringMatching(/^part\/\.tmp-\d+\.[0-9a-f]{8}-[0-9a-f]{8}-t\.parquet$/)])
      else expect(during.files).toEqual([])
      const bytes = await Effect.runPromise(store.readBytes(file.path))
      expect(written).toEqual([{ path: file.path, bytes: bytes.length, crc32: zlib.crc32(bytes) }])
      expect(await rowGroups(bytes)).toEqual([4, 4, 4, 3])
      expect(T.toRows(decodeParquet(bytes))).toEqual(rows(0, 15))
      if (kind === "disk") expect(listFiles(disk.runDir)).toEqual([file.path])
    })
  }

  it("a unit failing midway leaves no file, no temporary file, and records nothing", async () => {
    const { runDir, store } = diskStore("failed")
    const { ctx, written } = unitContext(store)
    const exit = await Effect.runPromiseExit(
      Effect.scoped(
        Effect.gen(function* () {
          const w = yield* ctx.parquetWriter(file, { rowGroupSize: 4 })
          yield* w.write(T.fromRows(rows(0, 9)))
          return yield* new UnitError({ message: "bad input in the third file" })
        }),
      ),
    )
    expect(Exit.isFailure(exit)).toBe(true)
    expect(listFiles(runDir)).toEqual([])
    expect(written).toEqual([])
  })

  it("an interrupted unit (Ctrl-C) leaves no file and no temporary file", async () => {
    const { runDir, store } = diskStore("interrupted")
    const { ctx, written } = unitContext(store)
    const midway = Effect.runSync(Deferred.make<void>())
    const fiber = Effect.runFork(
      Effect.scoped(
        Effect.gen(function* () {
          const w = yield* ctx.parquetWriter(file, { rowGroupSize: 4 })
          yield* w.write(T.fromRows(rows(0, 9)))
          yield* Deferred.succeed(midway, undefined)
          yield* Effect.never
        }),
      ),
    )
    await Effect.runPromise(Deferred.await(midway))
    expect(listFiles(runDir)).toHaveLength(1) // the temporary file
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(listFiles(runDir)).toEqual([])
    expect(written).toEqual([])
  })

  it("a writer process SIGKILLed midway leaves no file under the final name; taking the run folder again removes its temporary file", async () => {
    const runDir = path.join(tmp, "killed")
    const child = spawn(path.resolve("node_modules/.bin/tsx"), [path.resolve("test/fixtures/parquet-stream-child.ts"), runDir], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: tsx runs the script in a child process of its own
    })
    let err = ""
    child.stderr.on("data", (d) => (err += String(d)))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d) => String(d).includes("written") && resolve())
      child.on("exit", () => reject(new Error(`the child ended before writing: ${err}`)))
    })
    const exited = new Promise((r) => child.on("exit", r))
    process.kill(-child.pid!, "SIGKILL")
    await exited
    const left = listFiles(runDir)
    expect(left).toEqual([expect.stringMatching(/^part\/\.tmp-\d+\./)])
    expect(fs.statSync(path.join(runDir, left[0])).size).toBeGreaterThan(0) // its first row group was written out
    // The writer is tsx's child: its group got the signal, but on a loaded machine it may take a moment to be gone.
    const writer = Number(/\.tmp-(\d+)\./.exec(left[0])![1])
    for (let i = 0; i < 200 && isAlive(writer); i++) await new Promise((r) => setTimeout(r, 50))
    const notices = await Effect.runPromise(Effect.scoped(Effect.flatMap(RunStore, (s) => s.acquire)).pipe(Effect.provide(nodeRunStore(runDir))))
    expect(notices).toContain("removed 1 temporary file(s) left by an interrupted run")
    expect(listFiles(runDir)).toEqual([])
  })
})
