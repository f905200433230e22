/**
 * The contract between the engine and a stage. The engine knows no stage by name: the registry
 * (stages/index.ts) hands it `Stage` values, and a stage's name is any string.
 *
 * A stage splits its work into units, planned from the resolved config alone (never from what is
 * on disk), so every unit's key is known before anything runs. The runner decides which units run
 * (see runner.ts), gives each a UnitContext, and records what it wrote in the manifest.
 *
 * Worked example: the score stage plans one unit per (model, step, dataset):
 *   { id: "model=s/step=100/dataset=press",
 *     params: { model: "s", step: 100, dataset: "press", entropy: false, row_group_size: 65536 },
 *     inputs: [{ stage: "tokenize", id: "dataset=press" }],
 *     files:  ["/abs/zoo/s/step-100.onnx"] }
 * reads its windows with `ctx.input(tokenizeUnit("press")).open(windowsFile("press"))`, and
 * writes `scoresFile("s", 100, "press")` (scores/model=s/step=100/dataset=press/scores.parquet)
 * through ctx.writeParquet. Those ids and paths are written once, in stages/tokenize/contract.ts
 * and stages/score/contract.ts.
 */
import type * as arrow from "apache-arrow"
import type { Effect, Scope } from "effect"
import type { TableDef } from "../lib/tables.ts"
import type { Config } from "./config.ts"
import type { UnitError } from "./errors.ts"
import type { RowGroupReader, WriteOptions } from "./store.ts"

export { UnitError } from "./errors.ts"

/** A stage's name: any string (the registry, stages/index.ts, says which exist). */
export type StageName = string

export interface UnitRef {
  readonly stage: StageName
  readonly id: string
}

export interface UnitPlan<P = unknown> {
  /** Unique within the stage; Hive-style when it names partitions ("model=s/step=100/dataset=press"). */
  readonly id: string
  /** The JSON-serialisable slice of the config this unit's output depends on (no absolute paths: see `files`). */
  readonly params: P
  /** Upstream units whose outputs this unit reads. Their keys enter this unit's key. */
  readonly inputs: ReadonlyArray<UnitRef>
  /**
   * Upstream units it reads when they are done: their keys enter its key and their re-running
   * re-runs it, but their failure never blocks it (correlate leaves out a task whose units failed).
   * `ctx.input(ref)` of one that is not done has no files, and its reads fail saying so.
   */
  readonly optionalInputs?: ReadonlyArray<UnitRef>
  /** External files read (absolute paths); their fingerprints, by content and path relative to the config's folder, enter the key. */
  readonly files: ReadonlyArray<string>
  /** Relative amount of work, for the ETA (default 1). */
  readonly weight?: number
}

export interface Progress {
  /** Declare the total amount of work of the current unit (e.g. tokens) and its unit name. */
  start(total: number, what: string): void
  /** Add `n` to the amount done. Cheap; rendering is throttled. */
  advance(n: number): void
}

/** A file a unit writes, as its stage's contract.ts names it: the path under the run and the table it holds. */
export interface TableFile {
  /** Relative to the run folder ("scores/model=s/step=1/dataset=d/scores.parquet"). */
  readonly path: string
  /** Its columns; a reader's file is checked against them. */
  readonly table: TableDef<any>
  /** How the writer encodes it (row groups, dictionaries); none: the store's defaults. */
  readonly writeOptions?: WriteOptions
}

/** What an upstream unit wrote, as recorded in the manifest. Every failure is a UnitError naming the unit and the file. */
export interface UnitInput {
  readonly ref: UnitRef
  /** "done", "failed" (with `error`) or "missing" (never ran, or not in this run). */
  readonly status: "done" | "failed" | "missing"
  /** The failed unit's one-line error. */
  readonly error?: string
  /** Its files, relative to the run folder, in the order written. */
  readonly files: ReadonlyArray<string>
  /** Wall time of its last run, in seconds, as the manifest recorded it (absent: never ran). */
  readonly seconds?: number
  /** Read a whole table file (optionally some columns), checked against its definition. */
  readonly read: (file: TableFile, options?: { readonly columns?: ReadonlyArray<string> }) => Effect.Effect<arrow.Table, UnitError>
  /** Open a Parquet file for row-group reads; closed with the scope. */
  readonly open: (file: TableFile | string) => Effect.Effect<RowGroupReader, UnitError, Scope.Scope>
  /** The bytes of any file it recorded. */
  readonly bytes: (rel: string) => Effect.Effect<Uint8Array, UnitError>
  /** A recorded file's path on this machine's disk (for worker threads); fails on a store without one (memory). */
  readonly localPath: (rel: string) => Effect.Effect<string, UnitError>
}

export interface UnitContext {
  readonly config: Config
  /** This unit's stage and id (for messages). */
  readonly stage: StageName
  readonly id: string
  /** Where the run lives, for messages (the absolute run folder, or `memory:…`). */
  readonly runDir: string
  /** Absolute path of a run-private cache folder (e.g. rewritten ONNX graphs); not part of outputs. */
  readonly cacheDir: string
  /** Write an Arrow table as Parquet under the run folder, atomically, and record it as this unit's output. */
  readonly writeParquet: (rel: string | TableFile, table: arrow.Table, options?: WriteOptions) => Effect.Effect<void, UnitError>
  /**
   * Write a Parquet file a table at a time, for outputs too large to hold whole: memory holds one
   * row group (`rowGroupSize` rows, cut across the tables written), not the file. Atomic as
   * writeParquet: the writer's `close` puts the file in place and records it as this unit's output
   * (size, and CRC-32 of the bytes as written); a scope closed before (a failure, an interruption)
   * leaves neither the file nor a temporary one. Every table must have the TableFile's columns.
   *
   *   const tokens = yield* ctx.parquetWriter(tokensFile(d))   // in Effect.scoped
   *   for (const t of chunks) yield* tokens.write(t)
   *   yield* tokens.close
   */
  readonly parquetWriter: (file: string | TableFile, options?: WriteOptions) => Effect.Effect<ParquetWriter, UnitError, Scope.Scope>
  /** Write bytes or text under the run folder, atomically, and record it as this unit's output. */
  readonly writeFile: (rel: string, data: Uint8Array | string) => Effect.Effect<void, UnitError>
  /**
   * The outputs of an upstream unit this unit declares (in `inputs`, or a soft input of a
   * `softAfter` stage). Reading anything else is a defect: it would not be in the unit's key.
   */
  readonly input: (ref: UnitRef) => UnitInput
  /** Every upstream unit `input` may be asked for (declared and soft inputs), in plan order. */
  readonly inputs: ReadonlyArray<UnitRef>
  readonly progress: Progress
  /** A notice for the user (printed once, above the progress line). */
  readonly log: (message: string) => Effect.Effect<void>
}

/** A Parquet file being written by UnitContext.parquetWriter. */
export interface ParquetWriter {
  /** Encode and append the rows of `table`. */
  readonly write: (table: arrow.Table) => Effect.Effect<void, UnitError>
  /** End the file, put it in place and record it. Nothing may be written after it. */
  readonly close: Effect.Effect<void, UnitError>
}

/** A bad input found before the run: the config field that names it, and what is wrong (one line). */
export interface InputProblem {
  readonly field: string
  readonly reason: string
}

/**
 * A stage typed by its units' params `P`; `R` is what its run needs from the environment (e.g. the
 * ONNX service), provided once at the CLI's entry.
 */
export interface Stage<P = any, R = never> {
  readonly name: StageName
  /** Bump when the stage's output for the same inputs changes: every unit re-runs. */
  readonly version: number
  /** Stages whose units this stage's units may read (edges of the DAG). */
  readonly after: ReadonlyArray<StageName>
  /**
   * Every unit of the `after` stages is a soft input of every unit of this stage: its key enters
   * this unit's key and its re-running re-runs this unit, but its failure never blocks this unit
   * (the report: it shows what exists and says what is missing).
   */
  readonly softAfter?: boolean
  /** One line for `--help` and `trajectories dag`. */
  readonly describe: string
  readonly plan: (config: Config) => ReadonlyArray<UnitPlan<P>>
  /**
   * Checks of the stage's own inputs that need no upstream output (a task file parses, the
   * tokenizer is JSON), made by `trajectories run` before anything runs: any problem is a config
   * error (exit 2, nothing created), so a bad input is found in seconds, not after hours of scoring.
   */
  readonly validate?: (config: Config) => ReadonlyArray<InputProblem>
  /**
   * What in the config is allowed but probably not meant (a pairs task without `prepend`), one
   * line each: `trajectories run` prints them as warnings before it runs; nothing stops.
   */
  readonly warnings?: (config: Config) => ReadonlyArray<string>
  readonly run: (unit: UnitPlan<P>, ctx: UnitContext) => Effect.Effect<void, UnitError, R>
  /**
   * The lane its units run in (default "main"). Lanes run side by side, one unit at a time each,
   * so a download (lane "io") proceeds while the main lane scores what was downloaded before.
   */
  readonly lane?: string
  /**
   * For units whose product lives outside the run folder (a download in the Hugging Face cache):
   * whether it is still there. A done unit whose product is gone runs again when a unit reading it
   * must run; otherwise it stays done (its readers need nothing from it).
   */
  readonly present?: (unit: UnitPlan<P>, own: UnitInput, config: Config) => Effect.Effect<boolean, never, R>
  /**
   * Called once every unit of this run that reads the unit (as a declared input) has finished or
   * will not run: it may free what the unit holds outside the run folder (delete a download).
   */
  readonly release?: (unit: UnitPlan<P>, own: UnitInput, config: Config) => Effect.Effect<void, never, R>
  /**
   * Called in the process that schedules the run (the `run` command, wherever the unit ran) once
   * the unit's done record is in the manifest: what the scheduler keeps of it (the bytes a
   * download holds, for `admit`).
   */
  readonly recorded?: (unit: UnitPlan<P>, own: UnitInput, config: Config) => Effect.Effect<void, never, R>
  /**
   * Whether the unit may start now (a disk budget); asked again every 250 ms while another lane is
   * running a unit, and skipped (the unit starts) when every other lane is idle, so it cannot deadlock.
   */
  readonly admit?: (unit: UnitPlan<P>, config: Config) => Effect.Effect<boolean, never, R>
}

/** Identity with inference: `export const regressStage = defineStage<RegressParams>({ … })`. */
export const defineStage = <P, R = never>(stage: Stage<P, R>): Stage<P, R> => stage
