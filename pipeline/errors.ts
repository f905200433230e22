/**
 * User-facing errors of the engine. Each carries a one-line message; the CLI prints it and exits
 * with `exitCode` (2: bad config or arguments, 1: the run failed).
 */
import { Data } from "effect"

/** Bad config file or field, or bad command-line arguments: exit 2, nothing created on disk. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly message: string
}> {
  get exitCode(): 2 { return 2 }
}

/** The run could not start or finish (lock held, unwritable output folder, failed units): exit 1. */
export class RunError extends Data.TaggedError("RunError")<{
  readonly message: string
}> {
  get exitCode(): 1 { return 1 }
}
