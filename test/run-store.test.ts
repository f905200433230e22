/**
 * The RunStore contract, checked on both layers: the disk store (@effect/platform's FileSystem)
 * and the memory store give the same answers, and what is derived from them (Parquet, manifest)
 * works on either. Written with @effect/vitest: each layer is provided to its block of tests.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Option } from "effect"
import { afterAll } from "vitest"
import { col, defineTable } from "../lib/tables.ts"
import { emptyManifest, filesIntact, readManifest, writeManifest } from "../pipeline/manifest.ts"
import { sweepStaleTemps, tmpNameFor } from "../pipeline/atomic.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import { memoryRunStore } from "../pipeline/run-store-memory.ts"
import { openParquet, readParquet, readTextOption, RunStore, writeParquet } from "../pipeline/run-store.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-store-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const T = defineTable("t", { i: col.int32(), x: col.float64({ nullable: true }) })

const contract = (name: string, store: Layer.Layer<RunStore>) =>
  layer(store)(name, (it) => {
    it.effect("writes, sizes, reads back, renames and removes files by run-relative path", () =>
      Effect.gen(function* () {
        const s = yield* RunStore
        expect(yield* s.size("a/b.txt")).toEqual(Option.none())
        expect(yield* s.writeAtomic("a/b.txt", "héllo")).toBe(6)
        expect(yield* s.size("a/b.txt")).toEqual(Option.some(6))
        expect(new TextDecoder().decode(yield* s.readBytes("a/b.txt"))).toBe("héllo")
        yield* s.writeAtomic("a/b.txt", new Uint8Array([1, 2, 3]))
        expect([...(yield* s.readBytes("a/b.txt"))]).toEqual([1, 2, 3])
        yield* s.rename("a/b.txt", "c.bin")
        expect(yield* readTextOption(s, "a/b.txt")).toEqual(Option.none())
        expect(yield* s.size("c.bin")).toEqual(Option.some(3))
        yield* s.remove("c.bin")
        yield* s.remove("c.bin") // removing what is gone is no error
        expect(yield* s.size("c.bin")).toEqual(Option.none())
      }),
    )

    it.effect("writeStream: pieces appear as one file on commit; a scope closed without commit leaves nothing", () =>
      Effect.gen(function* () {
        const s = yield* RunStore
        const size = yield* Effect.scoped(
          Effect.gen(function* () {
            const sink = yield* s.writeStream("w/file.bin")
            yield* sink.write(new Uint8Array([1, 2]))
            yield* sink.write(new Uint8Array([3]))
            expect(yield* s.size("w/file.bin")).toEqual(Option.none()) // nothing under the name before the commit
            return yield* sink.commit
          }),
        )
        expect(size).toBe(3)
        expect([...(yield* s.readBytes("w/file.bin"))]).toEqual([1, 2, 3])
        const failed = yield* Effect.exit(
          Effect.scoped(
            Effect.gen(function* () {
              const sink = yield* s.writeStream("w/other.bin")
              yield* sink.write(new Uint8Array([9]))
              return yield* Effect.fail("stopped midway")
            }),
          ),
        )
        expect(Exit.isFailure(failed)).toBe(true)
        expect(yield* s.size("w/other.bin")).toEqual(Option.none())
      }),
    )

    it.effect("a missing file is a StoreError with reason NotFound naming it", () =>
      Effect.gen(function* () {
        const s = yield* RunStore
        const e = yield* Effect.flip(s.readBytes("nope/x.parquet"))
        expect(e._tag).toBe("StoreError")
        expect(e.reason).toBe("NotFound")
        expect(e.message).toMatch(/nope\/x\.parquet: not found$/)
        const open = yield* Effect.exit(Effect.scoped(openParquet(s, "nope/x.parquet")))
        expect(Exit.isFailure(open)).toBe(true)
      }),
    )

    it.effect("Parquet through the store: whole reads, row-group reads, and bytes that are not Parquet", () =>
      Effect.gen(function* () {
        const s = yield* RunStore
        const rows = Array.from({ length: 10 }, (_, i) => ({ i, x: i % 3 === 0 ? null : i / 4 }))
        yield* writeParquet(s, "t/part.parquet", T.fromRows(rows), { rowGroupSize: 4 })
        expect(T.toRows(yield* readParquet(s, "t/part.parquet"))).toEqual(rows)
        const groups = yield* Effect.scoped(
          Effect.flatMap(openParquet(s, "t/part.parquet"), (r) => Effect.promise(async () => ({ rows: r.rowGroupRows, second: (await r.read(1, ["i"])).getChild("i")!.toArray() }))),
        )
        expect(groups.rows).toEqual([4, 4, 2])
        expect([...groups.second]).toEqual([4, 5, 6, 7])
        yield* s.writeAtomic("t/bad.parquet", "not parquet")
        const bad = yield* Effect.flip(readParquet(s, "t/bad.parquet"))
        expect([bad.reason, bad.detail]).toEqual(["Corrupt", expect.stringMatching(/^not a readable Parquet file/)])
      }),
    )

    it.effect("the manifest: absent is empty, written is read back, a recorded file of another size is not intact", () =>
      Effect.gen(function* () {
        const s = yield* RunStore
        const first = yield* readManifest(s, "r")
        expect(first).toEqual({ _tag: "ok", manifest: emptyManifest("r") })
        yield* s.writeAtomic("out.txt", "12345")
        const m = emptyManifest("r")
        const rec = { stage: "x", id: "all", key: "k", status: "done" as const, files: [{ path: "out.txt", bytes: 5 }], started: "t", seconds: 1 }
        m.units["x/all"] = rec
        yield* writeManifest(s, m)
        expect(yield* readManifest(s, "r")).toEqual({ _tag: "ok", manifest: m })
        expect(yield* filesIntact(s, rec)).toBe(true)
        yield* s.writeAtomic("out.txt", "1234")
        expect(yield* filesIntact(s, rec)).toBe(false)
        yield* s.writeAtomic("manifest.json", "{ not json")
        expect((yield* readManifest(s, "r"))._tag).toBe("corrupt")
      }),
    )
  })

describe("RunStore", () => {
  contract("on disk", nodeRunStore(path.join(tmp, "run")))
  contract("in memory", memoryRunStore().layer)

  it.effect("the disk store does not write through a folder of the run that is a symbolic link", () =>
    Effect.gen(function* () {
      const runDir = path.join(tmp, "linked-run")
      const elsewhere = path.join(tmp, "elsewhere")
      fs.mkdirSync(runDir, { recursive: true })
      fs.mkdirSync(elsewhere, { recursive: true })
      fs.symlinkSync(elsewhere, path.join(runDir, "report"))
      const s = yield* Effect.provide(RunStore, nodeRunStore(runDir))
      const e = yield* Effect.flip(s.writeAtomic("report/index.html", "<html>"))
      expect(e.message).toBe(`${runDir}/report/index.html: cannot write: ${runDir}/report is a symbolic link (a run writes only inside its own folder)`)
      expect(fs.readdirSync(elsewhere)).toEqual([])
      yield* s.writeAtomic("ok/file.txt", "fine") // other folders as usual
      expect(fs.readFileSync(path.join(runDir, "ok/file.txt"), "utf8")).toBe("fine")
    }),
  )

  it("the disk store writes under the run folder and leaves no temporary file (writeStream's failed write included)", () => {
    const dir = path.join(tmp, "run")
    const names = fs.readdirSync(dir, { recursive: true }).map(String).sort()
    expect(names.filter((n) => path.basename(n).startsWith(".tmp-"))).toEqual([])
    expect(names).toContain("manifest.json")
  })
})

describe("sweepStaleTemps", () => {
  it("removes this machine's temporary files of dead writers, and another machine's only once they are a day old", () => {
    const dir = path.join(tmp, "sweep")
    fs.mkdirSync(path.join(dir, "sub"), { recursive: true })
    const ours = path.basename(tmpNameFor(path.join(dir, "x.parquet"))) // .tmp-<our pid>.<our host>-…
    const host = ours.slice(".tmp-".length).split("-")[0].split(".")[1]
    expect(host).toMatch(/^[0-9a-f]{8}$/)
    const dead = 2 ** 22 + 17 // above Linux's pid_max default: never a live process
    const files = {
      deadHere: `sub/.tmp-${dead}.${host}-aa-x.parquet`,
      legacyDead: `.tmp-${dead}-bb-y.parquet`, // the name before hosts were named: this machine's
      liveHere: `.tmp-1.${host}-cc-z.parquet`, // pid 1 is alive
      otherHostFresh: `.tmp-${dead}.0badc0de-dd-w.parquet`,
      otherHostOld: `sub/.tmp-${dead}.0badc0de-ee-v.parquet`,
    }
    for (const f of Object.values(files)) fs.writeFileSync(path.join(dir, f), "partial")
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600_000)
    fs.utimesSync(path.join(dir, files.otherHostOld), twoDaysAgo, twoDaysAgo)
    const removed = sweepStaleTemps(dir).map((p) => path.relative(dir, p)).sort()
    expect(removed).toEqual([files.legacyDead, files.deadHere, files.otherHostOld].sort())
    expect(fs.existsSync(path.join(dir, files.liveHere))).toBe(true)
    expect(fs.existsSync(path.join(dir, files.otherHostFresh))).toBe(true)
  })
})
