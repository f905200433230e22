/**
 * `outputs/<run>/manifest.json`: what every unit produced, under which key (and the parts of that
 * key), and how it ended. Rewritten atomically through the run store after every unit (a cluster
 * run's at most once a second: throttledWrites).
 */
import { Effect, Either, Option, ParseResult, Schema, type Scope } from "effect"
import type { KeyParts } from "./hash.ts"
import { readTextOption, type RunStoreShape, type StoreError } from "./run-store.ts"

export interface FileRecord {
  /** Relative to the run folder. */
  readonly path: string
  readonly bytes: number
  /** CRC-32 of the bytes written (computed from them before the write, not by reading back); absent in older manifests. */
  readonly crc32?: number
}

export interface UnitRecord {
  readonly stage: string
  readonly id: string
  readonly key: string
  /** What the key was made of (absent in manifests of older versions). */
  readonly parts?: KeyParts
  /** The unit's params as they were (so that status can say which of them changed). */
  readonly params?: unknown
  readonly status: "done" | "failed"
  readonly files: ReadonlyArray<FileRecord>
  readonly started: string
  readonly seconds: number
  readonly error?: string
  /** `started` of each upstream unit when this one ran (it re-runs when one of them re-ran since). */
  readonly inputs?: Record<string, string>
}

export interface Manifest {
  readonly version: 1
  readonly run: string
  /**
   * Given by the first run of a run folder: a folder deleted and made again is another instance, so a
   * cluster never answers its units from what it ran for the old one (pipeline/cluster/job.ts).
   */
  instance?: string
  units: Record<string, UnitRecord>
}

export const MANIFEST = "manifest.json"
export const unitName = (stage: string, id: string) => `${stage}/${id}`

export type LoadedManifest =
  | { readonly _tag: "ok"; readonly manifest: Manifest }
  | { readonly _tag: "corrupt"; readonly reason: string }

export const emptyManifest = (run: string): Manifest => ({ version: 1, run, units: {} })

/** The manifest's shape, checked when it is read: a file that is not one is moved aside like an unreadable one. */
const FileRecordSchema = Schema.Struct({ path: Schema.String, bytes: Schema.Number, crc32: Schema.optional(Schema.Number) })
const UnitRecordSchema = Schema.Struct({
  stage: Schema.String,
  id: Schema.String,
  key: Schema.String,
  status: Schema.Literal("done", "failed"),
  files: Schema.Array(FileRecordSchema),
  started: Schema.String,
  seconds: Schema.Number,
  error: Schema.optional(Schema.String),
  inputs: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  parts: Schema.optional(Schema.Unknown),
  params: Schema.optional(Schema.Unknown),
})
const ManifestSchema = Schema.Struct({
  version: Schema.Literal(1),
  run: Schema.String,
  instance: Schema.optional(Schema.String),
  units: Schema.Record({ key: Schema.String, value: UnitRecordSchema }),
})

export const parseManifest = (text: string): Manifest => {
  const decoded = Schema.decodeUnknownEither(ManifestSchema)(JSON.parse(text))
  if (Either.isLeft(decoded)) {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
    const actual = /actual (.*)$/s.exec(issue.message)?.[1]
    const what = issue.message.startsWith("is missing") ? "missing" : actual !== undefined ? `unexpected ${actual.slice(0, 40)}` : issue.message.slice(0, 80)
    throw new Error(`not a version-1 manifest (${issue.path.join(".") || "top"}: ${what})`)
  }
  return decoded.right as unknown as Manifest
}

export const readManifest = (store: RunStoreShape, run: string): Effect.Effect<LoadedManifest, StoreError> =>
  Effect.map(readTextOption(store, MANIFEST), (text) =>
    Option.match(text, {
      onNone: (): LoadedManifest => ({ _tag: "ok", manifest: emptyManifest(run) }),
      onSome: (t): LoadedManifest => {
        try {
          return { _tag: "ok", manifest: parseManifest(t) }
        } catch (e) {
          return { _tag: "corrupt", reason: (e as Error).message.split("\n")[0] }
        }
      },
    }),
  )

export const writeManifest = (store: RunStoreShape, m: Manifest): Effect.Effect<void, StoreError> =>
  Effect.asVoid(store.writeAtomic(MANIFEST, JSON.stringify(m, null, 1) + "\n"))

/** A done record whose files all exist with their recorded sizes. */
export const filesIntact = (store: RunStoreShape, r: UnitRecord): Effect.Effect<boolean, StoreError> =>
  Effect.map(
    Effect.forEach(r.files, (f) => Effect.map(store.size(f.path), (s) => Option.isSome(s) && s.value === f.bytes)),
    (ok) => ok.every(Boolean),
  )

/**
 * Throttled writes of one file (the manifest of a cluster run, whose finished units are durable in
 * the cluster): `request` writes at once when the last write began at least `everyMs` ago, and
 * otherwise once that much time has passed since it (one trailing write for every request made
 * meanwhile); `flush` writes now if a request is pending. `write` writes the state as it is when
 * it runs. A trailing write that fails fails the next `request` and `flush`.
 *
 *   everyMs 1000, requests at 0, 10, 20, 900 and 1500 ms → writes at 0, 1000 (10–900), 2000 (1500)
 *
 * Writes never overlap (`lock`). The trailing writes are fibers of the scope: close it after a
 * last `flush`.
 */
export const throttledWrites = <E>(
  write: Effect.Effect<void, E>,
  everyMs: number,
  lock: Effect.Semaphore,
): Effect.Effect<{ readonly request: Effect.Effect<void, E>; readonly flush: Effect.Effect<void, E> }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    let pending = false
    let scheduled = false
    let lastStart = -Infinity
    let failure: Option.Option<E> = Option.none()
    const flush: Effect.Effect<void, E> = lock.withPermits(1)(
      Effect.suspend(() => {
        if (Option.isSome(failure)) return Effect.fail(failure.value)
        if (!pending) return Effect.void
        pending = false
        lastStart = performance.now()
        // An interrupted write (the run stopping) leaves its state to the last flush.
        return Effect.onInterrupt(write, () => Effect.sync(() => void (pending = true)))
      }),
    )
    const trailing = Effect.suspend(() => {
      scheduled = false
      return flush
    }).pipe(Effect.catchAll((e) => Effect.sync(() => void (failure = Option.some(e)))))
    const request: Effect.Effect<void, E> = Effect.suspend(() => {
      if (Option.isSome(failure)) return Effect.fail(failure.value)
      pending = true
      if (scheduled) return Effect.void
      const wait = lastStart + everyMs - performance.now()
      if (wait <= 0) return flush
      scheduled = true
      return Effect.asVoid(Effect.forkIn(Effect.delay(trailing, Math.ceil(wait)), scope))
    })
    return { request, flush }
  })
