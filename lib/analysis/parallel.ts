/**
 * Blocks of regress and classify on worker threads.
 *
 * `mapBlocks(name, inputs, threads, handle)` runs the block task `name` (block-tasks.ts) on every
 * input and hands each result to `handle` IN INPUT ORDER, so what the stage writes and sums is the
 * same whichever thread ran a block. With threads = 1 the tasks run on the stage's own thread;
 * otherwise on `threads` worker threads (worker-main.ts), with at most 2 × threads blocks computed
 * ahead of the one being handled, so memory stays bounded by the block size.
 *
 * A worker runs a bundle of worker-main.ts and the TypeScript it imports, made once per process
 * with esbuild (tsx's own compiler) and handed to the Worker as a data: URL, with the packages it
 * imports resolved to absolute file: URLs. Started that way a worker needs no loader: it is ready
 * in ~0.3 s instead of ~0.55 s, and no tsx hooks thread runs beside it. Where bundling fails the
 * workers start from worker.mjs, which registers tsx (`parallelSettings.bundle` = false forces it).
 *
 * The worker threads are started once per process and kept (unreferenced while idle, so they
 * never keep the process alive) for the next unit: a run with a regress unit per model and
 * dataset pays the start-up (~0.5 s of CPU per thread) once. After each unit the workers close
 * the score files they opened; after a failure or an interruption they are terminated.
 */
import * as os from "node:os"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { Effect } from "effect"
import type { Config } from "../../pipeline/config.ts"
import { UnitError } from "../../pipeline/stage.ts"
import { closeReaders, type TaskName, tasks } from "./block-tasks.ts"
import { firstLine } from "../../pipeline/errors.ts"

type Input<K extends TaskName> = Parameters<(typeof tasks)[K]>[0]
type Output<K extends TaskName> = Awaited<ReturnType<(typeof tasks)[K]>>

/** Work below which a unit stays on one thread (starting workers costs ~0.5 s). Tests lower it. */
export const parallelSettings = { minWork: 1 << 23, bundle: true }

/**
 * Threads for a unit of `work` = tokens × checkpoints: one below parallelSettings.minWork, else
 * `scoring.threads` (the run's thread budget, default: the number of cores).
 */
export const analysisThreads = (config: Config, work: number): number =>
  work < parallelSettings.minWork ? 1 : Math.max(1, Math.min(config.scoring.threads, os.availableParallelism()))

interface Job {
  readonly id: number
  readonly name: TaskName
  readonly input: unknown
  readonly resolve: (v: unknown) => void
  readonly reject: (e: Error) => void
}

let bundled: URL | undefined | null

/**
 * worker-main.ts bundled as one ES module (a data: URL), or null when esbuild cannot bundle it.
 * Made on first use and kept for the process.
 */
export const bundledWorker = async (): Promise<URL | null> => {
  if (bundled !== undefined) return bundled
  try {
    const esbuild = await import("esbuild")
    const result = await esbuild.build({
      entryPoints: [fileURLToPath(new URL("./worker-main.ts", import.meta.url))],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      write: false,
      logLevel: "silent",
      plugins: [
        {
          // Packages stay outside the bundle; a data: URL module has no folder to resolve them
          // from, so each import names its file (as esbuild, like Node, resolves it for "import").
          name: "packages-by-file-url",
          setup(build) {
            build.onResolve({ filter: /^[^./]/ }, async (args) => {
              if (args.pluginData === "inner") return undefined
              const r = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: "inner" })
              if (r.errors.length > 0) return { errors: r.errors }
              return { path: r.external ? r.path : pathToFileURL(r.path).href, external: true }
            })
          },
        },
      ],
    })
    bundled = new URL(`data:text/javascript;base64,${Buffer.from(result.outputFiles[0].text).toString("base64")}`)
  } catch {
    bundled = null
  }
  return bundled
}

/**
 * Start bundling the worker in the background (esbuild runs in its own process), so that a stage
 * that will need workers finds the bundle ready once it has scanned its inputs.
 */
export const prepareWorkers = (): void => {
  if (parallelSettings.bundle) void bundledWorker()
}

/** A fixed set of worker threads taking jobs from one queue. */
class Pool {
  readonly size: number
  /** The module the workers run (bundled, or worker.mjs). */
  readonly entry: URL
  private readonly idle: Worker[] = []
  private readonly busy = new Map<Worker, Job>()
  private readonly queue: Job[] = []
  private readonly workers: Worker[] = []
  private nextId = 0
  failure: Error | undefined

  constructor(threads: number, entry: URL) {
    this.size = threads
    this.entry = entry
    for (let t = 0; t < threads; t++) {
      // Not the process's execArgv: under tsx it loads tsx's preflight and loader into every
      // worker (~0.3 s of start-up each), which neither entry needs (worker.mjs registers tsx).
      const w = new Worker(entry, { execArgv: [] })
      w.unref()
      w.on("message", (msg: { id: number; result?: unknown; error?: string }) => {
        const job = this.busy.get(w)
        this.busy.delete(w)
        this.idle.push(w)
        w.unref()
        if (job && job.id === msg.id) {
          if (msg.error !== undefined) job.reject(new Error(msg.error))
          else job.resolve(msg.result)
        }
        this.pump()
      })
      const fail = (e: Error) => {
        this.failure ??= e
        const job = this.busy.get(w)
        this.busy.delete(w)
        job?.reject(e)
        for (const j of this.queue.splice(0)) j.reject(e)
      }
      w.on("error", fail)
      w.on("exit", (code) => {
        if (this.workers.includes(w)) fail(new Error(`analysis worker thread exited with code ${code}`))
      })
      this.workers.push(w)
      this.idle.push(w)
    }
  }

  /** Every worker closes the files it opened (call when no job is in flight). */
  closeReaders(): Promise<void> {
    return Promise.all(this.workers.map(() => this.run("closeReaders", undefined))).then(() => {})
  }

  run<K extends TaskName>(name: K, input: Input<K>): Promise<Output<K>> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure)
      this.queue.push({ id: this.nextId++, name, input, resolve: resolve as (v: unknown) => void, reject })
      this.pump()
    })
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!
      const job = this.queue.shift()!
      this.busy.set(w, job)
      w.ref() // a job in flight keeps the process alive until its answer arrives
      w.postMessage({ id: job.id, name: job.name, input: job.input })
    }
  }

  async close(): Promise<void> {
    const all = this.workers.splice(0)
    await Promise.all(all.map((w) => w.terminate()))
  }
}

let shared: Pool | undefined

/** The process's pool of `threads` workers, started on first use (and again after a failure). */
const poolOf = async (threads: number): Promise<Pool> => {
  const entry = (parallelSettings.bundle ? await bundledWorker() : null) ?? new URL("./worker.mjs", import.meta.url)
  if (shared === undefined || shared.size !== threads || shared.failure !== undefined || shared.entry.href !== entry.href) {
    void shared?.close()
    shared = new Pool(threads, entry)
  }
  return shared
}

/** Terminate the process's worker threads (they are started again when needed). */
export const stopWorkers = (): Promise<void> => {
  const p = shared
  shared = undefined
  return p ? p.close() : Promise.resolve()
}

const taskError = (what: string) => (e: unknown) =>
  new UnitError({ message: `${what}: ${firstLine(e)}`, cause: e })

/**
 * Run block task `name` over `inputs` on `threads` threads and hand each result to `handle` in
 * input order. A task's error fails the whole map with a UnitError starting with `what`.
 */
export const mapBlocks = <K extends TaskName, E>(
  name: K,
  inputs: ReadonlyArray<Input<K>>,
  threads: number,
  what: string,
  handle: (out: Output<K>, index: number) => Effect.Effect<void, E>,
): Effect.Effect<void, E | UnitError> => {
  const task = tasks[name] as (input: Input<K>) => Promise<Output<K>>
  if (threads <= 1 || inputs.length <= 1) {
    return Effect.forEach(
      inputs,
      (input, i) => Effect.flatMap(Effect.tryPromise({ try: () => task(input), catch: taskError(what) }), (out) => handle(out, i)),
      { discard: true },
    ).pipe(Effect.ensuring(Effect.promise(closeReaders)))
  }
  return Effect.acquireUseRelease(
    Effect.promise(() => poolOf(threads)),
    (pool) =>
      Effect.gen(function* () {
        const pending = new Map<number, Promise<Output<K>>>()
        let launched = 0
        for (let i = 0; i < inputs.length; i++) {
          while (launched < inputs.length && launched < i + 2 * threads) {
            const p = pool.run(name, inputs[launched])
            p.catch(() => {}) // awaited in order below; a later failure must not go unhandled meanwhile
            pending.set(launched++, p)
          }
          const out = yield* Effect.tryPromise({ try: () => pending.get(i)!, catch: taskError(what) })
          pending.delete(i)
          yield* handle(out, i)
        }
      }),
    (pool, exit) =>
      Effect.promise(() =>
        exit._tag === "Success"
          ? pool.closeReaders().catch(() => stopWorkers())
          : stopWorkers(), // a failed or interrupted unit may leave jobs running: start afresh
      ),
  )
}
