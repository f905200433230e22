/**
 * The run store on this machine's disk (`outputs/<run>/`), through @effect/platform's FileSystem.
 *
 * Writes are atomic: a temporary name in the final folder (pid in the name, see atomic.ts), fsync,
 * rename, whole (writeAtomic) or piece by piece (writeStream); an interrupted write removes its
 * temporary file, and those of SIGKILLed runs are swept by `acquire`, which also takes the run's
 * lock file (lock.ts).
 */
import * as nodePath from "node:path"
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import { sweepStaleTemps, tmpNameFor } from "./atomic.ts"
import { RunError } from "./errors.ts"
import { acquireLock } from "./lock.ts"
import { RunStore, StoreError, type FileSink, type RunStoreShape } from "./run-store.ts"

const reasonOf = (e: PlatformError, fallback: StoreError["reason"]): StoreError["reason"] =>
  e._tag === "SystemError" && e.reason === "NotFound" ? "NotFound" : fallback

/** What a system error code means, for one-line messages (the code kept for searching). */
const CODES: Readonly<Record<string, string>> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EIO: "input/output error",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOTDIR: "a path component is not a folder",
  EISDIR: "is a folder",
}

const describe = (e: PlatformError): string => {
  const code = (e as { cause?: { code?: string } }).cause?.code
  if (code === undefined) return e._tag === "SystemError" ? e.reason : e.message
  return CODES[code] ? `${CODES[code]} (${code})` : code
}

/** The store of the run folder `runDir` (absolute), on a given FileSystem. */
export const makeNodeRunStore = (runDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const abs = (rel: string) => nodePath.join(runDir, rel)
    const fail = (rel: string, fallback: StoreError["reason"], verb: string) => (e: PlatformError) =>
      new StoreError({ reason: reasonOf(e, fallback), path: abs(rel), detail: `cannot ${verb}: ${describe(e)}`, cause: e })

    /** A folder of the run that is a symbolic link would send the write elsewhere: refused. */
    const noLinkBetween = (rel: string) =>
      Effect.gen(function* () {
        const parts = rel.split("/").slice(0, -1)
        for (let i = 1; i <= parts.length; i++) {
          const dir = abs(parts.slice(0, i).join("/"))
          const link = yield* fs.readLink(dir).pipe(
            Effect.map(() => true),
            Effect.catchAll(() => Effect.succeed(false)), // not a link, or not there yet
          )
          if (link) {
            return yield* Effect.fail(
              new StoreError({ reason: "Unwritable", path: abs(rel), detail: `cannot write: ${dir} is a symbolic link (a run writes only inside its own folder)` }),
            )
          }
        }
      })

    const writeAtomic = (rel: string, data: Uint8Array | string) => {
      const target = abs(rel)
      const tmp = tmpNameFor(target)
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data
      return Effect.gen(function* () {
        yield* noLinkBetween(rel)
        yield* fs.makeDirectory(nodePath.dirname(target), { recursive: true })
        yield* Effect.scoped(
          Effect.gen(function* () {
            const file = yield* fs.open(tmp, { flag: "w" })
            yield* file.writeAll(bytes)
            yield* file.sync
          }),
        )
        yield* fs.rename(tmp, target)
        return bytes.byteLength
      }).pipe(
        Effect.onError(() => fs.remove(tmp).pipe(Effect.ignore)),
        Effect.catchIf((e): e is PlatformError => e._tag !== "StoreError", (e) => Effect.fail(fail(rel, "Unwritable", "write")(e))),
      )
    }

    const writeStream = (rel: string) => {
      const target = abs(rel)
      const tmp = tmpNameFor(target)
      const mapError = <A, R>(self: Effect.Effect<A, PlatformError | StoreError, R>): Effect.Effect<A, StoreError, R> =>
        Effect.catchIf(self, (e): e is PlatformError => e._tag !== "StoreError", (e) => Effect.fail(fail(rel, "Unwritable", "write")(e)))
      return Effect.gen(function* () {
        yield* noLinkBetween(rel)
        yield* fs.makeDirectory(nodePath.dirname(target), { recursive: true })
        let committed = false
        // Finalizers run last-added first: the descriptor is closed, then the temporary file removed.
        yield* Effect.addFinalizer(() => (committed ? Effect.void : fs.remove(tmp).pipe(Effect.ignore)))
        const fileScope = yield* Effect.acquireRelease(Scope.make(), (s) => Scope.close(s, Exit.void))
        const file = yield* fs.open(tmp, { flag: "w" }).pipe(Scope.extend(fileScope))
        let bytes = 0
        const sink: FileSink = {
          write: (data) =>
            Effect.suspend(() => {
              if (committed) return Effect.die(new Error(`${rel}: written after its commit`))
              return Effect.map(file.writeAll(data), () => void (bytes += data.byteLength))
            }).pipe(mapError),
          commit: Effect.gen(function* () {
            yield* file.sync
            yield* Scope.close(fileScope, Exit.void)
            yield* fs.rename(tmp, target)
            committed = true
            return bytes
          }).pipe(mapError),
        }
        return sink
      }).pipe(mapError)
    }

    const store: RunStoreShape = {
      location: runDir,
      cacheDir: nodePath.join(runDir, ".cache"),
      readBytes: (rel) => fs.readFile(abs(rel)).pipe(Effect.mapError(fail(rel, "Unreadable", "read"))),
      writeAtomic,
      writeStream,
      size: (rel) =>
        fs.stat(abs(rel)).pipe(
          Effect.map((info) => (info.type === "File" ? Option.some(Number(info.size)) : Option.none())),
          Effect.catchIf(
            (e) => e._tag === "SystemError" && e.reason === "NotFound",
            () => Effect.succeed(Option.none<number>()),
          ),
          Effect.mapError(fail(rel, "Unreadable", "stat")),
        ),
      remove: (rel) => fs.remove(abs(rel), { force: true }).pipe(Effect.mapError(fail(rel, "Unwritable", "remove"))),
      rename: (from, to) => fs.rename(abs(from), abs(to)).pipe(Effect.mapError(fail(from, "Unwritable", `rename to ${to}`))),
      localPath: (rel) => Option.some(abs(rel)),
      acquire: Effect.gen(function* () {
        yield* fs.makeDirectory(runDir, { recursive: true }).pipe(
          Effect.flatMap(() => fs.access(runDir, { writable: true })),
          Effect.mapError((e) => new RunError({ message: `output folder ${runDir} is not writable (${(e as { cause?: { code?: string } }).cause?.code ?? describe(e)})` })),
        )
        const notices: string[] = []
        yield* Effect.acquireRelease(
          Effect.suspend(() => {
            const lock = acquireLock(runDir)
            if (lock._tag === "held") {
              return Effect.fail(
                new RunError({ message: `${runDir} is in use by another run (pid ${lock.pid}, since ${lock.since}; lock file ${lock.file}); wait for it to finish, or stop it` }),
              )
            }
            if (lock.takenOverFrom !== undefined) notices.push(`took over the lock of a run that is gone (pid ${lock.takenOverFrom})`)
            return Effect.succeed(lock)
          }),
          (lock) => Effect.sync(() => lock.release()),
        )
        const swept = sweepStaleTemps(runDir)
        if (swept.length) notices.push(`removed ${swept.length} temporary file(s) left by an interrupted run`)
        return notices
      }),
    }
    return store
  })

/** The RunStore layer of a run folder on the local disk. */
export const nodeRunStore = (runDir: string): Layer.Layer<RunStore> =>
  Layer.effect(RunStore, makeNodeRunStore(runDir)).pipe(Layer.provide(NodeFileSystem.layer))
