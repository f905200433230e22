/**
 * The contract between the engine and a stage.
 *
 * A stage splits its work into units, planned from the resolved config alone (never from what is
 * on disk), so every unit's key is known before anything runs. The runner decides which units run
 * (see runner.ts), gives each a UnitContext, and records what it wrote in the manifest.
 *
 * Worked example: the score stage plans one unit per (model, step, dataset):
 *   { id: "model=s/step=100/dataset=press",
 *     params: { context_length: 128, batch_size: 8, entropy: false, … },
 *     inputs: [{ stage: "tokenize", id: "dataset=press" }],
 *     files:  ["/abs/zoo/s/step-100.onnx"] }
 * and writes `scores/model=s/step=100/dataset=press/part-0.parquet` through ctx.writeParquet.
 */
import type * as arrow from "apache-arrow"
import { Data, type Effect } from "effect"
import type { Config } from "./config.ts"
import type { WriteOptions } from "./store.ts"

export type StageName =
  | "tokenize"
  | "score"
  | "aggregate"
  | "checks"
  | "regress"
  | "classify"
  | "downstream"
  | "correlate"
  | "sequences"
  | "report"

export interface UnitRef {
  readonly stage: StageName
  readonly id: string
}

export interface UnitPlan {
  /** Unique within the stage; Hive-style when it names partitions ("model=s/step=100/dataset=press"). */
  readonly id: string
  /** The JSON-serialisable slice of the config this unit's output depends on. */
  readonly params: unknown
  /** Upstream units whose outputs this unit reads. Their keys enter this unit's key. */
  readonly inputs: ReadonlyArray<UnitRef>
  /** External files read (absolute paths); their fingerprints enter the key. */
  readonly files: ReadonlyArray<string>
  /** Relative amount of work, for the ETA (default 1). */
  readonly weight?: number
}

/** A unit's failure that the user can act on: the message is printed as it is, in one line. */
export class UnitError extends Data.TaggedError("UnitError")<{
  readonly message: string
}> {}

export interface Progress {
  /** Declare the total amount of work of the current unit (e.g. tokens) and its unit name. */
  start(total: number, what: string): void
  /** Add `n` to the amount done. Cheap; rendering is throttled. */
  advance(n: number): void
}

export interface UnitContext {
  readonly config: Config
  /** Absolute path of `outputs/<run>/`. */
  readonly runDir: string
  /** Absolute path of a run-private cache folder (e.g. rewritten ONNX graphs); not part of outputs. */
  readonly cacheDir: string
  /** Absolute path of a path relative to the run folder. */
  readonly path: (rel: string) => string
  /** Write an Arrow table as Parquet under the run folder, atomically, and record it as this unit's output. */
  readonly writeParquet: (rel: string, table: arrow.Table, options?: WriteOptions) => Effect.Effect<void, UnitError>
  /** Write bytes or text under the run folder, atomically, and record it as this unit's output. */
  readonly writeFile: (rel: string, data: Uint8Array | string) => Effect.Effect<void, UnitError>
  /** Absolute paths of the files an upstream unit wrote (as recorded in the manifest). */
  readonly outputsOf: (ref: UnitRef) => ReadonlyArray<string>
  readonly progress: Progress
  /** A notice for the user (printed once, above the progress line). */
  readonly log: (message: string) => Effect.Effect<void>
}

export interface Stage {
  readonly name: StageName
  /** Bump when the stage's output for the same inputs changes: every unit re-runs. */
  readonly version: number
  /** Stages whose units this stage's units may read. */
  readonly after: ReadonlyArray<StageName>
  /**
   * Every unit of the `after` stages is a soft input of every unit of this stage: its key enters
   * this unit's key and its re-running re-runs this unit, but its failure never blocks this unit
   * (the report: it shows what exists and says what is missing).
   */
  readonly softAfter?: boolean
  readonly describe: string
  readonly plan: (config: Config) => ReadonlyArray<UnitPlan>
  readonly run: (unit: UnitPlan, ctx: UnitContext) => Effect.Effect<void, UnitError>
}
