/**
 * Runs a CLI built by makeCli: the only place that starts the Effect runtime. Maps errors to exit codes:
 *   2  bad config or arguments (nothing was created)
 *   1  the run failed (finished units are kept; the next run resumes)
 *   130  interrupted (Ctrl-C); finished units are kept
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { ValidationError } from "@effect/cli"
import { Cause, Effect, Exit } from "effect"
import type { makeCli } from "./cli.ts"
import { ConfigError, RunError } from "./errors.ts"
import { resumeHint } from "./resume-hint.ts"

export const runCli = (cli: ReturnType<typeof makeCli<any>>) => {
// `trajectories dag | head`: a reader that stops early is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0)
    throw e
  })
}
const program = cli(process.argv).pipe(
  Effect.catchAll((e) =>
    Effect.sync(() => {
      if (e instanceof ConfigError || e instanceof RunError) {
        process.stderr.write(`error: ${e.message}\n`)
        process.exitCode = e.exitCode
      } else if (ValidationError.isValidationError(e)) {
        process.exitCode = ValidationError.isHelpRequested(e) ? 0 : 2 // @effect/cli already printed it
      } else {
        process.stderr.write(`error: ${String((e as Error)?.message ?? e)}\n`)
        process.exitCode = 1
      }
    }),
  ),
  Effect.provide(NodeContext.layer),
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
      process.stderr.write(`\n${resumeHint(process.argv.slice(2))}\n`)
      onExit(130)
    } else if (Exit.isFailure(exit)) {
      process.stderr.write(`internal error: ${Cause.pretty(exit.cause).split("\n")[0]}\n`)
      onExit(1)
    } else onExit(Number(process.exitCode ?? 0))
  },
})
}
