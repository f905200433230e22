/**
 * The run store: where a run's files live (`outputs/<run>/` on disk, or memory in tests). Only
 * the interface, its Tag and the helpers derived from the primitives are here; the backends are
 * run-store-node.ts (@effect/platform's FileSystem) and run-store-memory.ts.
 *
 * Paths are relative to the run folder, with "/" separators ("scores/model=s/step=1/…").
 *
 *   const store = yield* RunStore
 *   yield* writeParquet(store, "checkpoints.parquet", table)
 *   const t = yield* readParquet(store, "checkpoints.parquet")
 */
import * as zlib from "node:zlib"
import type * as arrow from "apache-arrow"
import { Context, Data, Effect, Option, type Scope } from "effect"
import type { RunError } from "./errors.ts"
import {
  decodeParquet,
  encodeParquet,
  openRowGroups,
  openRowGroupsFromBytes,
  parquetStreamEncoder,
  type RowGroupReader,
  type WriteOptions,
} from "./store.ts"
import { firstLine } from "./errors.ts"

/** A store operation that failed; `reason` says how, `path` which file (relative to the run). */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly reason: "NotFound" | "Unreadable" | "Unwritable" | "Corrupt"
  readonly path: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.path}: ${this.reason === "NotFound" ? "not found" : this.detail}`
  }
}

export interface RunStoreShape {
  /** Where the run lives, for messages: the absolute run folder, or `memory:<name>`. */
  readonly location: string
  /** A folder on this machine for caches (rewritten ONNX graphs, digests); not part of the outputs. */
  readonly cacheDir: string
  readonly readBytes: (rel: string) => Effect.Effect<Uint8Array, StoreError>
  /** Write atomically: no reader ever sees a part-written file under `rel`. Returns the bytes written. */
  readonly writeAtomic: (rel: string, data: Uint8Array | string) => Effect.Effect<number, StoreError>
  /**
   * Write a file piece by piece, as atomically as writeAtomic: the pieces go to a temporary name
   * in the final folder (disk) or a buffer (memory), and the sink's `commit` puts the file under
   * `rel`. Closing the scope without a commit (a failure, an interruption) removes what was
   * written; nothing ever appears under `rel` part-written.
   */
  readonly writeStream: (rel: string) => Effect.Effect<FileSink, StoreError, Scope.Scope>
  /** Size in bytes, or None when there is no such file. */
  readonly size: (rel: string) => Effect.Effect<Option.Option<number>, StoreError>
  /** Remove a file (nothing when it does not exist). */
  readonly remove: (rel: string) => Effect.Effect<void, StoreError>
  /** Move a file to another name of the store (e.g. a corrupt manifest aside). */
  readonly rename: (from: string, to: string) => Effect.Effect<void, StoreError>
  /** The file's path on this machine's disk, for readers that need positioned reads or worker threads; None in memory. */
  readonly localPath: (rel: string) => Option.Option<string>
  /**
   * Exclusive use of the run for the scope (the disk store: a lock file, and temporary files of
   * dead runs swept). Succeeds with notices for the user; fails when another live run holds it.
   */
  readonly acquire: Effect.Effect<ReadonlyArray<string>, RunError, Scope.Scope>
}

/** A file being written by RunStoreShape.writeStream. */
export interface FileSink {
  /** Append bytes (written through: the sink keeps no reference to them on disk). */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, StoreError>
  /** Flush, sync and rename the file into place; returns its size in bytes. Once only; no write after it. */
  readonly commit: Effect.Effect<number, StoreError>
}

export class RunStore extends Context.Tag("trajectories/RunStore")<RunStore, RunStoreShape>() {}

/** The text of a file, or None when it does not exist. */
export const readTextOption = (store: RunStoreShape, rel: string): Effect.Effect<Option.Option<string>, StoreError> =>
  store.readBytes(rel).pipe(
    Effect.map((b) => Option.some(new TextDecoder().decode(b))),
    Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none<string>())),
  )

/** Encode `table` as Parquet and write it atomically; returns the file's size. */
export const writeParquet = (store: RunStoreShape, rel: string, table: arrow.Table, options?: WriteOptions): Effect.Effect<number, StoreError> =>
  Effect.flatMap(
    Effect.try({
      try: () => encodeParquet(table, options),
      catch: (e) => new StoreError({ reason: "Unwritable", path: rel, detail: `cannot encode Parquet: ${firstLine(e)}`, cause: e }),
    }),
    (bytes) => store.writeAtomic(rel, bytes),
  )

/** A Parquet file being written by writeParquetStream. */
export interface ParquetSink {
  /** Encode and append the rows of `table` (row groups of options.rowGroupSize rows, cut across tables). */
  readonly write: (table: arrow.Table) => Effect.Effect<void, StoreError>
  /** End the file and put it in place: its size and the CRC-32 of its bytes, computed as they were written. */
  readonly close: Effect.Effect<{ readonly bytes: number; readonly crc32: number }, StoreError>
}

/**
 * Write a Parquet file a table at a time (store.ts parquetStreamEncoder into store.writeStream):
 * memory holds a row group, not the file. Atomic as writeParquet: the file appears under `rel`
 * only on `close`; a scope closed before leaves no file and no temporary one. `schema`: the
 * file's columns (every table must have them; the file of no rows has them).
 */
export const writeParquetStream = (
  store: RunStoreShape,
  rel: string,
  options: WriteOptions & { readonly schema?: arrow.Schema } = {},
): Effect.Effect<ParquetSink, StoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const sink = yield* store.writeStream(rel)
    let closed = false
    const encoder = yield* Effect.acquireRelease(
      Effect.sync(() => parquetStreamEncoder(options)),
      (enc) => Effect.sync(() => closed || enc.abort()),
    )
    const cannotEncode = (e: unknown) => new StoreError({ reason: "Unwritable", path: rel, detail: `cannot encode Parquet: ${firstLine(e)}`, cause: e })
    let crc = 0
    /** Write out what the encoder has ready. */
    const drain = Effect.suspend(() =>
      Effect.forEach(encoder.take(), (bytes) => Effect.suspend(() => ((crc = zlib.crc32(bytes, crc)), sink.write(bytes))), { discard: true }),
    )
    const parquet: ParquetSink = {
      write: (table) => Effect.zipRight(Effect.tryPromise({ try: () => encoder.write(table), catch: cannotEncode }), drain),
      close: Effect.gen(function* () {
        yield* Effect.tryPromise({ try: () => encoder.finish(), catch: cannotEncode })
        yield* drain
        closed = true
        const bytes = yield* sink.commit
        return { bytes, crc32: crc }
      }),
    }
    return parquet
  })

/** Read a whole Parquet file (optionally some columns). */
export const readParquet = (store: RunStoreShape, rel: string, options: { readonly columns?: string[] } = {}): Effect.Effect<arrow.Table, StoreError> =>
  Effect.flatMap(store.readBytes(rel), (bytes) =>
    Effect.try({
      try: () => decodeParquet(bytes, options.columns ? { columns: options.columns } : {}),
      catch: (e) => new StoreError({ reason: "Corrupt", path: rel, detail: `not a readable Parquet file (${firstLine(e)})`, cause: e }),
    }),
  )

/** A whole Parquet file, or None when the run has no such file. */
export const readParquetOption = (store: RunStoreShape, rel: string): Effect.Effect<Option.Option<arrow.Table>, StoreError> =>
  Effect.flatMap(store.size(rel), (size) => (Option.isNone(size) ? Effect.succeed(Option.none()) : Effect.map(readParquet(store, rel), Option.some)))

/** A Parquet file opened for row-group reads, closed with the scope (from disk when it is there, else from its bytes). */
export const openParquet = (store: RunStoreShape, rel: string): Effect.Effect<RowGroupReader, StoreError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.flatMap(store.size(rel), (size) =>
      Option.isNone(size) ? Effect.fail(new StoreError({ reason: "NotFound", path: Option.getOrElse(store.localPath(rel), () => rel), detail: "not found" })) : Effect.void,
    ).pipe(Effect.zipRight(Option.match(store.localPath(rel), {
      onSome: (p) =>
        Effect.tryPromise({
          try: () => openRowGroups(p),
          catch: (e) => new StoreError({ reason: "Corrupt", path: rel, detail: `cannot open as Parquet (${firstLine(e)})`, cause: e }),
        }),
      onNone: () =>
        Effect.flatMap(store.readBytes(rel), (bytes) =>
          Effect.tryPromise({
            try: () => openRowGroupsFromBytes(rel, bytes),
            catch: (e) => new StoreError({ reason: "Corrupt", path: rel, detail: `cannot open as Parquet (${firstLine(e)})`, cause: e }),
          }),
        ),
    }))),
    (r) => Effect.sync(() => r.close()),
  )
