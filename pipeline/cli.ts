/**
 * `trajectories` command line: run, status, report. Thin: it loads the config, calls the runner
 * and prints. Every user error is one line on stderr and an exit code (2: config/arguments,
 * 1: the run failed); see main.ts.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { loadConfig, type Config } from "./config.ts"
import { ConfigError, RunError } from "./errors.ts"
import { runPipeline, runStatus } from "./runner.ts"
import type { Stage, StageName } from "./stage.ts"

export interface CliHooks {
  /** Lines printed to stderr after a run, finished or failed (e.g. checkpoint-check warnings). */
  readonly afterRun?: (config: Config) => ReadonlyArray<string>
  /** Lines printed to stdout after a successful run (the summary). */
  readonly summary?: (config: Config) => ReadonlyArray<string>
}

/** The CLI over a set of stages (the real registry in main.ts; tests pass their own). */
export const makeCli = (allStages: ReadonlyArray<Stage>, hooks: CliHooks = {}) => {
const stageList = () => allStages.map((s) => s.name).join(", ")

const parseStages = (flag: string, names: ReadonlyArray<string>): Effect.Effect<StageName[], ConfigError> => {
  const known = new Set<string>(allStages.map((s) => s.name))
  const bad = names.find((n) => !known.has(n))
  return bad === undefined
    ? Effect.succeed(names as StageName[])
    : Effect.fail(new ConfigError({ message: `--${flag} ${bad}: no such stage (stages: ${stageList()})` }))
}

/** Hooks print extras; a broken table must never turn a finished run into a crash. */
const safeLines = (f: () => ReadonlyArray<string> | undefined): ReadonlyArray<string> => {
  try {
    return f() ?? []
  } catch (e) {
    return [`(could not read the run's tables for the summary: ${(e as Error).message.split("\n")[0]})`]
  }
}

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

const run = Command.make("run", { config: configArg, only, force, keepGoing }, (a) =>
  Effect.gen(function* () {
    const config = yield* loadConfig(a.config)
    const onlyStages = yield* parseStages("only", a.only)
    const forceStages = yield* parseStages("force", a.force)
    const result = yield* Effect.either(
      runPipeline(config, { stages: allStages, only: onlyStages, force: forceStages, keepGoing: a.keepGoing }),
    )
    for (const line of safeLines(() => hooks.afterRun?.(config))) yield* Console.error(line)
    if (result._tag === "Left") return yield* Effect.fail(result.left)
    yield* Console.log(`tables: ${result.right.runDir}`)
    const report = path.join(result.right.runDir, "report/index.html")
    if (fs.existsSync(report)) yield* Console.log(`report: ${report}`)
    for (const line of safeLines(() => hooks.summary?.(config))) yield* Console.log(line)
  }),
).pipe(
  Command.withDescription(
    "Run the pipeline (tokenize → score → aggregate → regress → classify → downstream → correlate → report). " +
      "Finished units are skipped; a killed or failed run resumes where it stopped.",
  ),
)

const status = Command.make("status", { config: configArg }, (a) =>
  Effect.gen(function* () {
    const config = yield* loadConfig(a.config)
    const st = yield* Effect.try({
      try: () => runStatus(config, allStages),
      catch: (e) => new RunError({ message: (e as Error).message }),
    })
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
).pipe(Command.withDescription("List every stage and unit of a run: done, failed (with the error), pending, or stale (key changed)."))

const report = Command.make("report", { config: configArg }, (a) =>
  Effect.gen(function* () {
    const config = yield* loadConfig(a.config)
    if (!allStages.some((s) => s.name === "report")) {
      return yield* Effect.fail(new RunError({ message: "this build has no report stage yet" }))
    }
    const summary = yield* runPipeline(config, { stages: allStages, only: ["report"], force: ["report"] })
    yield* Console.log(`report: ${summary.runDir}/report/index.html`)
  }),
).pipe(Command.withDescription("Rebuild only the HTML report from the tables already on disk."))

const command = Command.make("trajectories").pipe(
  Command.withDescription(
    "Training trajectories of language-model checkpoint families: per-token perplexity trends, " +
      "downstream accuracy, and what predicts it. Outputs Parquet tables and an HTML report under <output>/<run>/.",
  ),
  Command.withSubcommands([run, status, report]),
)

return Command.run(command, { name: "trajectories", version: "0.1.0" })
}
