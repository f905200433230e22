/**
 * The run store in memory, for tests: a stage runs against it with no temporary folder, and the
 * test reads what it wrote from `files`. Writes replace a file whole, as the disk store's atomic
 * renames do; there is no lock (nothing else can see the store).
 *
 *   const mem = memoryRunStore()
 *   yield* runPipeline(config, { stages }).pipe(Effect.provide(mem.layer))
 *   mem.files.get("checkpoints.parquet") // Uint8Array
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Option } from "effect"
import { RunStore, StoreError, type FileSink, type RunStoreShape } from "./run-store.ts"

export interface MemoryRunStore {
  readonly store: RunStoreShape
  readonly layer: Layer.Layer<RunStore>
  /** Every file of the run, by path relative to it. */
  readonly files: Map<string, Uint8Array>
}

/** A fresh empty store; `cacheDir` defaults to a new folder under the OS temporary folder. */
export const memoryRunStore = (options: { readonly name?: string; readonly cacheDir?: string } = {}): MemoryRunStore => {
  const files = new Map<string, Uint8Array>()
  const name = options.name ?? "run"
  let cacheDir = options.cacheDir
  const norm = (rel: string) => path.posix.normalize(rel.split(path.sep).join("/"))
  const store: RunStoreShape = {
    location: `memory:${name}`,
    get cacheDir() {
      cacheDir ??= fs.mkdtempSync(path.join(os.tmpdir(), "traj-memory-cache-"))
      return cacheDir
    },
    readBytes: (rel) =>
      Effect.suspend(() => {
        const b = files.get(norm(rel))
        return b === undefined
          ? Effect.fail(new StoreError({ reason: "NotFound", path: `memory:${name}/${norm(rel)}`, detail: "not found" }))
          : Effect.succeed(b)
      }),
    writeAtomic: (rel, data) =>
      Effect.sync(() => {
        const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data.slice()
        files.set(norm(rel), bytes)
        return bytes.byteLength
      }),
    // Pieces are buffered and joined on commit: the memory store holds whole files anyway.
    writeStream: (rel) =>
      Effect.sync(() => {
        const pieces: Uint8Array[] = []
        let bytes = 0
        let committed = false
        const sink: FileSink = {
          write: (data) =>
            Effect.suspend(() => {
              if (committed) return Effect.die(new Error(`${rel}: written after its commit`))
              pieces.push(data.slice())
              bytes += data.byteLength
              return Effect.void
            }),
          commit: Effect.sync(() => {
            const file = new Uint8Array(bytes)
            let o = 0
            for (const p of pieces) {
              file.set(p, o)
              o += p.byteLength
            }
            pieces.length = 0
            committed = true
            files.set(norm(rel), file)
            return bytes
          }),
        }
        return sink
      }),
    size: (rel) => Effect.sync(() => Option.fromNullable(files.get(norm(rel))).pipe(Option.map((b) => b.byteLength))),
    remove: (rel) => Effect.sync(() => void files.delete(norm(rel))),
    rename: (from, to) =>
      Effect.suspend(() => {
        const b = files.get(norm(from))
        if (b === undefined) return Effect.fail(new StoreError({ reason: "NotFound", path: `memory:${name}/${norm(from)}`, detail: "not found" }))
        files.delete(norm(from))
        files.set(norm(to), b)
        return Effect.void
      }),
    localPath: () => Option.none(),
    acquire: Effect.succeed([]),
  }
  return { store, layer: Layer.succeed(RunStore, store), files }
}
