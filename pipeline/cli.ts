/**
 * `trajectories` command line: run, status, report, dag. Thin: it loads the config, calls the
 * runner on the run folder's store and prints. Every user error is one line on stderr and an exit
 * code (2: config/arguments, 1: the run failed; see run-cli.ts); `--verbose` adds the cause chain
 * of each failed unit.
 *
 * The stages come from the caller (the registry in main.ts; tests pass their own), with `layer`
 * providing what their runs need (e.g. ONNX sessions, tokenizers).
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Layer, Option } from "effect"
import { loadConfig, type Config } from "./config.ts"
import { dagDot, dagOf, formatDag } from "./dag.ts"
import { ConfigError, displayPath, firstLine, RunError } from "./errors.ts"
import { runPipeline, runStatus, type RunOptions, type RunSummary } from "./runner.ts"
import { nodeRunStore } from "./run-store-node.ts"
import type { RunStore } from "./run-store.ts"
import type { Stage, StageName } from "./stage.ts"

/** Extra lines after a run; they read the run's tables through the store. */
export type CliHook = (config: Config) => Effect.Effect<ReadonlyArray<string>, unknown, RunStore>

export interface CliOptions<R> {
  /** Lines printed to stderr after a run, finished or failed (e.g. checkpoint-check warnings). */
  readonly afterRun?: CliHook
  /** Lines printed to stdout after a successful run (the summary). */
  readonly summary?: CliHook
  /** What the stages' runs need, provided once here. */
  readonly layer?: Layer.Layer<R>
  /**
   * Completes a loaded config before anything is planned (e.g. fetches a Hub tokenizer into the
   * cache and points `tokenizer` at it); runs with `layer`. Failing it fails the command (exit 1).
   */
  readonly prepare?: (config: Config) => Effect.Effect<Config, RunError, R>
  /** Name of the report stage, for `trajectories report` (default "report") and the file it writes. */
  readonly report?: { readonly stage: string; readonly file: string }
}

/** The CLI over a set of stages. */
export const makeCli = <R>(allStages: ReadonlyArray<Stage<any, R>>, options: CliOptions<R> = {}) => {
  const names = allStages.map((s) => s.name)
  const stageList = () => names.join(", ")
  /** The runner on the run folder's disk store, with what the stages need. */
  const runOnDisk = (config: Config, run: Omit<RunOptions<Stage<any, R>>, "stages">) => {
    const e = runPipeline(config, { ...run, stages: allStages }).pipe(Effect.provide(nodeRunStore(config.runDir)))
    return (options.layer ? Effect.provide(e, options.layer) : e) as Effect.Effect<RunSummary, RunError>
  }

  /** Load a config and complete it (options.prepare). */
  const load = (file: string) =>
    Effect.flatMap(loadConfig(file), (config) => {
      if (options.prepare === undefined) return Effect.succeed(config)
      const e = options.prepare(config)
      return (options.layer ? Effect.provide(e, options.layer) : e) as Effect.Effect<Config, RunError>
    })

  const parseStages = (flag: string, given: ReadonlyArray<string>): Effect.Effect<StageName[], ConfigError> => {
    const bad = given.find((n) => !names.includes(n))
    return bad === undefined
      ? Effect.succeed([...given])
      : Effect.fail(new ConfigError({ field: `--${flag} ${bad}`, reason: `no such stage (stages: ${stageList()})` }))
  }

  /** The stages' own input checks (Stage.validate): the first problem is a ConfigError naming the file and field. */
  const validateInputs = (config: Config, stages: ReadonlyArray<Stage<any, R>>) =>
    Effect.suspend(() => {
      const problems = stages.flatMap((s) => s.validate?.(config) ?? [])
      if (problems.length === 0) return Effect.void
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : ""
      return Effect.fail(new ConfigError({ file: displayPath(config.file), field: problems[0].field, reason: problems[0].reason + more }))
    })

  /** Hooks print extras; a broken table must never turn a finished run into a crash. */
  const hookLines = (hook: CliHook | undefined, config: Config) =>
    hook === undefined
      ? Effect.succeed([] as ReadonlyArray<string>)
      : hook(config).pipe(
          Effect.provide(nodeRunStore(config.runDir)),
          Effect.catchAllCause((c) => Effect.succeed([`(could not read the run's tables for the summary: ${firstLine(c)})`])),
        )

  const configArg = Args.file({ name: "config.yaml", exists: "either" }).pipe(
    Args.withDescription("the run's YAML config (see configs/demo.yaml and docs/config.schema.json)"),
  )

  const only = Options.text("only").pipe(
    Options.repeated,
    Options.withDescription(`run only this stage (repeatable; one of ${stageList()}); its upstream units must already be done`),
  )
  const force = Options.text("force").pipe(
    Options.repeated,
    Options.withDescription(`re-run every unit of this stage even if up to date, and everything that depends on it (repeatable; one of ${stageList()})`),
  )
  const keepGoing = Options.boolean("keep-going").pipe(
    Options.withAlias("k"),
    Options.withDescription("after a unit fails, still run every unit that does not depend on it"),
  )
  const verbose = Options.boolean("verbose").pipe(
    Options.withAlias("v"),
    Options.withDescription("after a failure, also print the chain of causes of each failed unit (foreign errors with their stacks)"),
  )

  const printDetails = (e: RunError, on: boolean) =>
    on && e.details?.length ? Console.error(["causes:", ...e.details].join("\n")) : Effect.void

  const run = Command.make("run", { config: configArg, only, force, keepGoing, verbose }, (a) =>
    Effect.gen(function* () {
      const config = yield* load(a.config)
      const onlyStages = yield* parseStages("only", a.only)
      const forceStages = yield* parseStages("force", a.force)
      yield* validateInputs(config, onlyStages.length ? allStages.filter((s) => onlyStages.includes(s.name)) : allStages)
      const result = yield* Effect.either(
        runOnDisk(config, { only: onlyStages, force: forceStages, keepGoing: a.keepGoing }),
      )
      for (const line of yield* hookLines(options.afterRun, config)) yield* Console.error(line)
      if (result._tag === "Left") {
        yield* printDetails(result.left, a.verbose)
        return yield* Effect.fail(result.left)
      }
      yield* Console.log(`tables: ${result.right.runDir}`)
      const report = options.report ?? { stage: "report", file: "report/index.html" }
      const reported = result.right.outcomes.some((o) => o.stage === report.stage && (o.outcome === "ran" || o.outcome === "up-to-date"))
      if (reported) yield* Console.log(`report: ${result.right.runDir}/${report.file}`)
      for (const line of yield* hookLines(options.summary, config)) yield* Console.log(line)
    }),
  ).pipe(
    Command.withDescription(
      `Run the pipeline (${names.join(" → ")}). Finished units are skipped; a killed or failed run resumes where it stopped.`,
    ),
  )

  const status = Command.make("status", { config: configArg }, (a) =>
    Effect.gen(function* () {
      const config = yield* load(a.config)
      const st = yield* runStatus(config, allStages).pipe(Effect.provide(nodeRunStore(config.runDir)))
      if (st.manifestProblem) yield* Console.log(`warning: manifest.json is unreadable (${st.manifestProblem}); the next run starts afresh`)
      yield* Console.log(`run "${config.run}" in ${config.runDir}`)
      const stages = [...new Set(st.units.map((u) => u.stage))]
      for (const s of stages) {
        const us = st.units.filter((u) => u.stage === s)
        const counts = (["done", "failed", "stale", "pending"] as const)
          .map((k) => [k, us.filter((u) => u.state === k).length] as const)
          .filter(([, n]) => n > 0)
          .map(([k, n]) => `${n} ${k}`)
        yield* Console.log(`${s} (${us.length} units: ${counts.join(", ")})`)
        for (const u of us) yield* Console.log(`  ${u.state.padEnd(7)} ${u.id}${u.detail ? `  — ${u.detail}` : ""}`)
      }
    }),
  ).pipe(
    Command.withDescription(
      "List every stage and unit of a run: done, failed (with the error), pending, or stale (with what changed: config slice, code version, an upstream unit, which file).",
    ),
  )

  const report = Command.make("report", { config: configArg, verbose }, (a) =>
    Effect.gen(function* () {
      const config = yield* load(a.config)
      const stage = options.report?.stage ?? "report"
      if (!names.includes(stage)) return yield* Effect.fail(new RunError({ message: `this build has no ${stage} stage` }))
      const summary = yield* runOnDisk(config, { only: [stage], force: [stage] }).pipe(Effect.tapError((e) => printDetails(e, a.verbose)))
      yield* Console.log(`report: ${summary.runDir}/${options.report?.file ?? "report/index.html"}`)
    }),
  ).pipe(Command.withDescription("Rebuild only the HTML report from the tables already on disk."))

  const dot = Options.boolean("dot").pipe(Options.withDescription("print the DAG in Graphviz's dot language (e.g. `| dot -Tsvg > dag.svg`)"))
  const optionalConfig = Args.file({ name: "config.yaml", exists: "yes" }).pipe(
    Args.withDescription("optional: a run config, to show how many units each stage plans for it"),
    Args.optional,
  )
  const dag = Command.make("dag", { config: optionalConfig, dot }, (a) =>
    Effect.gen(function* () {
      let counts: Map<string, number> | undefined
      if (Option.isSome(a.config)) {
        const config = yield* loadConfig(a.config.value)
        // Plans only (no keys): fingerprinting would read every checkpoint.
        counts = yield* Effect.try({
          try: () => new Map(allStages.map((s) => [s.name, s.plan(config).length])),
          catch: (e) => new RunError({ message: `cannot plan the run: ${firstLine(e)}` }),
        })
      }
      const d = dagOf(allStages, counts)
      for (const line of a.dot ? dagDot(d) : formatDag(d, process.stdout.columns ?? 120)) yield* Console.log(line)
    }),
  ).pipe(Command.withDescription(`Print the DAG of stages (${stageList()}) and their edges; with a config, how many units each plans.`))

  const command = Command.make("trajectories").pipe(
    Command.withDescription(
      "Training trajectories of language-model checkpoint families: per-token perplexity trends, " +
        "downstream accuracy, and what predicts it. Outputs Parquet tables and an HTML report under <output>/<run>/.",
    ),
    Command.withSubcommands([run, status, report, dag]),
  )

  return Command.run(command, { name: "trajectories", version: "0.1.0" })
}
