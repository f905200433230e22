/**
 * `trajectories` command line: run, status, report, dag. Thin: it loads the config, calls the
 * runner on the run folder's store and prints. Every user error is one line on stderr and an exit
 * code (2: config/arguments, 1: the run failed; see run-cli.ts); `--verbose` adds the cause chain
 * of each failed unit.
 *
 * The stages come from the caller (the registry in main.ts; tests pass their own), with `layer`
 * providing what their runs need (e.g. ONNX sessions, tokenizers).
 */
import * as os from "node:os"
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { clientLayer, dbFailure, stderrLogs } from "./cluster/layers.ts"
import { parseDevice } from "./cluster/pool.ts"
import { serveRunner, shownUrl } from "./cluster/serve.ts"
import { clusterExecutor } from "./cluster/submit.ts"
import { loadConfig, type Config } from "./config.ts"
import { withCleanHelp } from "./cli-help.ts"
import { dagDot, dagOf, formatDag } from "./dag.ts"
import { dryRun, dryRunLines } from "./dry-run.ts"
import { ConfigError, displayPath, firstLine, RunError } from "./errors.ts"
import { runPipeline, runStatus, type RunOptions, type RunSummary, type UnitOutcome } from "./runner.ts"
import { nodeRunStore } from "./run-store-node.ts"
import type { RunStore } from "./run-store.ts"
import type { Stage, StageName } from "./stage.ts"
import { statusLines } from "./status-lines.ts"
import { subsetConfig } from "./subset.ts"

/**
 * Extra lines after a run; they read the run's tables through the store. `current`: the stages
 * whose every unit in this run's selection ran or was up to date (absent: not known).
 */
export type CliHook = (config: Config, current?: ReadonlySet<StageName>) => Effect.Effect<ReadonlyArray<string>, unknown, RunStore>

/**
 * The stages of this run's selection (`only`; empty: every stage) whose every unit ran or was up to
 * date: the ones whose tables this run vouches for. A stage left out by --only is not among them,
 * even when its old units are still current.
 */
export const currentStages = (outcomes: ReadonlyArray<UnitOutcome>, only: ReadonlyArray<StageName> = []): Set<StageName> => {
  const ok = new Set<StageName>()
  const bad = new Set<StageName>()
  for (const o of outcomes) {
    if (only.length > 0 && !only.includes(o.stage)) continue
    if (o.outcome === "ran" || o.outcome === "up-to-date") ok.add(o.stage)
    else bad.add(o.stage)
  }
  for (const s of bad) ok.delete(s)
  return ok
}

export interface CliOptions<R> {
  /** Lines printed to stderr after a run, finished or failed (e.g. checkpoint-check warnings). */
  readonly afterRun?: CliHook
  /** Lines printed to stdout after a successful run (the summary). */
  readonly summary?: CliHook
  /** `run --dry-run`'s estimate of the work of the units that would run (`toRun`: `${stage}/${id}`). */
  readonly estimate?: (config: Config, toRun: ReadonlySet<string>) => ReadonlyArray<string>
  /** What the stages' runs need, provided once here. */
  readonly layer?: Layer.Layer<R>
  /**
   * Completes a loaded config before anything is planned (e.g. fetches a Hub tokenizer into the
   * cache and points `tokenizer` at it); runs with `layer`. Failing it fails the command (exit 1).
   */
  readonly prepare?: (config: Config) => Effect.Effect<Config, RunError, R>
  /** Name of the report stage, for `trajectories report` (default "report") and the file it writes. */
  readonly report?: { readonly stage: string; readonly file: string }
  /**
   * The registry as a module URL (it exports `stages` and `layer`: stages/registry.ts), which a
   * cluster runner's worker threads load; without it there is no `runner` command.
   */
  readonly registry?: string
}

/** The CLI over a set of stages. */
export const makeCli = <R>(allStages: ReadonlyArray<Stage<any, R>>, options: CliOptions<R> = {}) => {
  const names = allStages.map((s) => s.name)
  const stageList = () => names.join(", ")
  /** The runner on the run folder's disk store, with what the stages need. */
  const runOnDisk = (config: Config, run: Omit<RunOptions<Stage<any, R>>, "stages" | "executor">, cluster?: string) => {
    const local = runPipeline(config, { ...run, stages: allStages, ...(cluster !== undefined ? { executor: clusterExecutor } : {}) })
    // In a cluster run, the cluster's own logs only when something is wrong.
    const e = (cluster === undefined ? local : local.pipe(
            Effect.provide(clientLayer(cluster)),
            Effect.mapError((e) => (e instanceof RunError ? e : new RunError({ message: `the cluster's database ${shownUrl(cluster)}: ${dbFailure(e)}` }))),
            Logger.withMinimumLogLevel(LogLevel.Warning),
            Effect.provide(stderrLogs),
          )).pipe(
      Effect.provide(nodeRunStore(config.runDir)),
    )
    return (options.layer ? Effect.provide(e, options.layer) : e) as Effect.Effect<RunSummary, RunError>
  }

  /** A `--cluster` value: a PostgreSQL URL. */
  const clusterUrl = (given: Option.Option<string>): Effect.Effect<string | undefined, ConfigError> =>
    Option.match(given, {
      onNone: () => Effect.succeed(undefined),
      onSome: (u) =>
        /^postgres(ql)?:\/\/[^/]+/.test(u)
          ? Effect.succeed(u)
          : Effect.fail(new ConfigError({ field: "--cluster", reason: `expected a PostgreSQL URL like postgres://user@host:5432/trajectories, got ${JSON.stringify(shownUrl(u))}` })),
    })

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
  const hookLines = (hook: CliHook | undefined, config: Config, current?: ReadonlySet<StageName>) =>
    hook === undefined
      ? Effect.succeed([] as ReadonlyArray<string>)
      : hook(config, current).pipe(
          Effect.provide(nodeRunStore(config.runDir)),
          Effect.catchAllCause((c) => Effect.succeed([`(could not read the run's tables for the summary: ${firstLine(c)})`])),
        )

  const configArg = Args.file({ name: "config.yaml", exists: "either" }).pipe(
    Args.withDescription("The run's YAML config, e.g. configs/demo.yaml (every field: docs/config.schema.json). Its outputs go to <output>/<run>/."),
  )

  /** A stage-name option (a repeatable flag; checked against the stages by parseStages, one line if unknown). */
  const stageOption = (flag: string, description: string) =>
    Options.text(flag).pipe(Options.withPseudoName("stage"), Options.repeated, Options.withDescription(description), Options.withDefault([] as ReadonlyArray<string>))
  const only = stageOption(
    "only",
    `Run only this stage; repeat it for several (e.g. --only tokenize --only score). The units it reads must already be done. Stages: ${stageList()}. Default: every stage.`,
  )
  const force = stageOption(
    "force",
    `Re-run every unit of this stage even if it is up to date, and everything downstream of it; repeatable (e.g. --force score). Stages: ${stageList()}. Default: none (finished units are skipped).`,
  )
  const keepGoing = Options.boolean("keep-going").pipe(
    Options.withAlias("k"),
    Options.withDescription("After a unit fails, still run every unit that does not depend on it. Default: stop starting units after the first failure."),
  )
  const verbose = Options.boolean("verbose").pipe(
    Options.withAlias("v"),
    Options.withDescription("After a failure, also print the chain of causes of each failed unit (foreign errors with their stacks). Default: one line per failed unit."),
  )

  const cluster = Options.text("cluster").pipe(
    Options.withPseudoName("URL"),
    Options.optional,
    Options.withDescription(
      "Run the units on the `trajectories runner` processes that share this PostgreSQL database, e.g. --cluster postgres://me@db-host:5432/trajectories; every machine must see the config's files and the output folder at the same paths. Default: the units run in this process.",
    ),
  )

  const limit = Options.integer("limit").pipe(
    Options.withPseudoName("N"),
    Options.optional,
    Options.withDescription(
      "Smoke test: at most N tokens per dataset (max_tokens = min(its own, N)) and N examples per task (max_examples), into its own run folder <output>/<run>-limitN, e.g. --limit 500. Default: the config's sizes.",
    ),
  )
  const models = Options.text("models").pipe(
    Options.withPseudoName("a,b"),
    Options.optional,
    Options.withDescription("Run only these models of the config (comma-separated names), e.g. --models pythia-70m,pythia-160m. Default: every model."),
  )
  const steps = Options.text("steps").pipe(
    Options.withPseudoName("s1,s2"),
    Options.optional,
    Options.withDescription("Run only the checkpoints at these steps (comma-separated), of every model that has them, e.g. --steps 1000,143000. Default: every checkpoint."),
  )
  const dryRunFlag = Options.boolean("dry-run").pipe(
    Options.withAlias("n"),
    Options.withDescription(
      "Run nothing: print per stage the units that would run and how many are up to date, and an estimate of the work (tokens to score per checkpoint, checkpoints, Hub downloads). Default: run.",
    ),
  )

  /** Load the config and apply --models, --steps, --limit (the same run folder and units as that `run`). */
  const loadSubset = (a: { config: string; limit: Option.Option<number>; models: Option.Option<string>; steps: Option.Option<string> }) =>
    Effect.flatMap(load(a.config), (config) =>
      subsetConfig(config, {
        ...(Option.isSome(a.limit) ? { limit: a.limit.value } : {}),
        ...(Option.isSome(a.models) ? { models: a.models.value } : {}),
        ...(Option.isSome(a.steps) ? { steps: a.steps.value } : {}),
      }),
    )

  const printDetails = (e: RunError, on: boolean) =>
    on && e.details?.length ? Console.error(["causes:", ...e.details].join("\n")) : Effect.void

  const run = Command.make("run", { config: configArg, only, force, keepGoing, verbose, cluster, limit, models, steps, dryRun: dryRunFlag }, (a) =>
    Effect.gen(function* () {
      const url = yield* clusterUrl(a.cluster)
      const onlyStages = yield* parseStages("only", a.only)
      const forceStages = yield* parseStages("force", a.force)
      const config = yield* loadSubset(a)
      const running = onlyStages.length ? allStages.filter((s) => onlyStages.includes(s.name)) : allStages
      yield* validateInputs(config, running)
      if (a.dryRun) {
        const st = yield* runStatus(config, allStages).pipe(Effect.provide(nodeRunStore(config.runDir)))
        const plan = dryRun(st.units, allStages, { only: onlyStages, force: forceStages })
        yield* Console.log(`run "${config.run}" in ${config.runDir} (dry run)`)
        for (const line of dryRunLines(plan)) yield* Console.log(line)
        const toRun = new Set(plan.flatMap((s) => s.toRun.map((id) => `${s.stage}/${id}`)))
        for (const line of options.estimate?.(config, toRun) ?? []) yield* Console.log(line)
        return
      }
      for (const line of running.flatMap((s) => s.warnings?.(config) ?? [])) yield* Console.error(`warning: ${line}`)
      const result = yield* Effect.either(
        runOnDisk(config, { only: onlyStages, force: forceStages, keepGoing: a.keepGoing }, url),
      )
      for (const line of yield* hookLines(options.afterRun, config)) yield* Console.error(line)
      if (result._tag === "Left") {
        yield* printDetails(result.left, a.verbose)
        return yield* Effect.fail(result.left)
      }
      yield* Console.log(`tables: ${result.right.runDir}`)
      const report = options.report ?? { stage: "report", file: "report/index.html" }
      // Only what this run's selection produced or found current (not old tables left by an earlier run).
      const current = currentStages(result.right.outcomes, onlyStages)
      if (current.has(report.stage)) yield* Console.log(`report: ${result.right.runDir}/${report.file}`)
      for (const line of yield* hookLines(options.summary, config, current)) yield* Console.log(line)
    }),
  ).pipe(
    Command.withDescription(
      `Run the pipeline (${names.join(" → ")}) on a config, e.g. \`trajectories run configs/demo.yaml\`. Finished units are skipped; a killed or failed run resumes where it stopped. Prints where the tables and the report are, and a summary.`,
    ),
  )

  const unitsFlag = Options.boolean("units").pipe(
    Options.withDescription("List every unit under its stage with its state and, for a failed or stale one, why (what changed: config slice, code version, an upstream unit, a file). Default: per stage its counts and its failed units."),
  )
  const status = Command.make("status", { config: configArg, units: unitsFlag, limit, models, steps }, (a) =>
    Effect.gen(function* () {
      const config = yield* loadSubset(a)
      const st = yield* runStatus(config, allStages).pipe(Effect.provide(nodeRunStore(config.runDir)))
      if (st.manifestProblem) yield* Console.log(`warning: manifest.json is unreadable (${st.manifestProblem}); the next run starts afresh`)
      yield* Console.log(`run "${config.run}" in ${config.runDir}`)
      for (const line of statusLines(st.units, { units: a.units })) yield* Console.log(line)
    }),
  ).pipe(
    Command.withDescription(
      "Show where a run stands, e.g. `trajectories status configs/demo.yaml`: per stage how many units are done, failed, stale (their inputs, config slice or code changed) or pending, and each failed unit with its error; `--units` lists every unit. With run's --limit, --models, --steps: that run's units.",
    ),
  )

  const report = Command.make("report", { config: configArg, verbose, limit, models, steps }, (a) =>
    Effect.gen(function* () {
      const config = yield* loadSubset(a)
      const stage = options.report?.stage ?? "report"
      if (!names.includes(stage)) return yield* Effect.fail(new RunError({ message: `this build has no ${stage} stage` }))
      const summary = yield* runOnDisk(config, { only: [stage], force: [stage] }).pipe(Effect.tapError((e) => printDetails(e, a.verbose)))
      yield* Console.log(`report: ${summary.runDir}/${options.report?.file ?? "report/index.html"}`)
    }),
  ).pipe(Command.withDescription("Rebuild only the HTML report from the tables already on disk, e.g. `trajectories report configs/demo.yaml`; prints the report's path."))

  const dot = Options.boolean("dot").pipe(
    Options.withDescription("Print the DAG in Graphviz's dot language, e.g. `trajectories dag --dot | dot -Tsvg > dag.svg`. Default: a text listing."),
  )
  const optionalConfig = Args.file({ name: "config.yaml", exists: "yes" }).pipe(
    Args.withDescription("Optional: a run config (e.g. configs/demo.yaml), to show how many units each stage plans for it."),
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
  ).pipe(
    Command.withDescription(`Print the DAG of stages (${stageList()}) and their edges; with a config, how many units each plans, e.g. \`trajectories dag configs/demo.yaml\`.`),
  )

  const runnerCluster = Options.text("cluster").pipe(
    Options.withPseudoName("URL"),
    Options.withDescription(
      "Required: the cluster's PostgreSQL database, the same for every runner and every `run --cluster`, e.g. --cluster postgres://me@db-host:5432/trajectories.",
    ),
  )
  const host = Options.text("host").pipe(
    Options.withPseudoName("NAME"),
    Options.withDefault(os.hostname()),
    Options.withDescription("The name or address other runners and `run --cluster` reach this runner at, e.g. --host node17. Default: this machine's host name."),
  )
  const port = Options.integer("port").pipe(
    Options.withPseudoName("PORT"),
    Options.withDefault(34431),
    Options.withDescription("The port this runner listens on; one per runner on a machine, e.g. --port 34432. Default: 34431."),
  )
  const listenHost = Options.text("listen").pipe(
    Options.withPseudoName("ADDRESS"),
    Options.optional,
    Options.withDescription("The address to listen on, when it is not --host, e.g. --listen 0.0.0.0 in a container. Default: --host."),
  )
  const jobs = Options.integer("jobs").pipe(
    Options.withPseudoName("N"),
    Options.withDefault(1),
    Options.withDescription("Units this runner runs at once, each in its own worker thread, e.g. --jobs 4. Default: 1."),
  )
  const threads = Options.integer("threads").pipe(
    Options.withPseudoName("N"),
    Options.optional,
    Options.withDescription("onnxruntime intra-op threads for the units run here, e.g. --threads 8. Default: the config's scoring.threads."),
  )
  const device = Options.text("device").pipe(
    Options.withPseudoName("cpu|cuda:K"),
    Options.optional,
    Options.withDescription(
      "Where this runner's units score: cpu or cuda:K, e.g. --device cuda:1; cuda needs the CUDA provider files (docs/gpu.md). Default: the config's scoring.execution_provider.",
    ),
  )
  const name = Options.text("name").pipe(
    Options.withPseudoName("NAME"),
    Options.optional,
    Options.withDescription("This runner's name in progress lines, e.g. --name gpu-box. Default: host:port."),
  )
  const runner = Command.make("runner", { cluster: runnerCluster, host, port, listenHost, jobs, threads, device, name }, (a) =>
    Effect.gen(function* () {
      if (options.registry === undefined) return yield* Effect.fail(new RunError({ message: "this build has no stage registry for runners" }))
      const url = yield* clusterUrl(Option.some(a.cluster))
      const dev = Option.map(a.device, (d) => [d, parseDevice(d)] as const)
      if (Option.isSome(dev) && dev.value[1] === undefined) {
        return yield* Effect.fail(new ConfigError({ field: "--device", reason: `expected cpu or cuda:K (e.g. cuda:0), got ${JSON.stringify(dev.value[0])}` }))
      }
      if (a.jobs < 1) return yield* Effect.fail(new ConfigError({ field: "--jobs", reason: `expected at least 1, got ${a.jobs}` }))
      if (Option.isSome(a.threads) && a.threads.value < 1) return yield* Effect.fail(new ConfigError({ field: "--threads", reason: `expected at least 1, got ${a.threads.value}` }))
      const runnerName = Option.getOrElse(a.name, () => `${a.host}:${a.port}`)
      const overrides = {
        ...(Option.isSome(a.threads) ? { threads: a.threads.value } : {}),
        ...(Option.isSome(dev) && dev.value[1] !== undefined ? { device: dev.value[1] } : {}),
      }
      yield* Console.error(
        `runner ${runnerName}: ${a.jobs} unit(s) at a time` +
          (overrides.threads !== undefined ? `, ${overrides.threads} thread(s)` : "") +
          (Option.isSome(a.device) ? `, device ${a.device.value}` : "") +
          `; cluster ${shownUrl(url!)}; Ctrl-C stops it (its units move to other runners)`,
      )
      return yield* serveRunner({
        url: url!,
        host: a.host,
        port: a.port,
        ...(Option.isSome(a.listenHost) ? { listenHost: a.listenHost.value } : {}),
        name: runnerName,
        jobs: a.jobs,
        overrides,
        registry: options.registry,
      })
    }),
  ).pipe(
    Command.withDescription(
      "Serve a cluster: run the units that `trajectories run --cluster` submits, until stopped. Start any number, on machines that see the config's files and the output folder at the same paths.",
    ),
  )

  const command = Command.make("trajectories").pipe(
    Command.withDescription(
      "Training trajectories of language-model checkpoint families: per-token perplexity trends, " +
        "downstream accuracy, and what predicts it. Outputs Parquet tables and an HTML report under <output>/<run>/. " +
        `Stages: ${stageList()}. ` +
        "`trajectories <command> --help` describes a command. Every command also takes --log-level LEVEL (all, trace, debug, info, warning, error, fatal, none), " +
        "--completions sh|bash|fish|zsh (prints a completion script) and --wizard (asks for each option).",
    ),
    Command.withSubcommands([run, status, report, dag, runner]),
  )

  const cli = Command.run(command, { name: "trajectories", version: "0.1.0" })
  return (argv: ReadonlyArray<string>) => withCleanHelp(cli(argv))
}
