/**
 * User-facing errors. Each is a tagged value with context fields that build its one-line message;
 * the CLI prints the message and exits with `exitCode` (2: bad config or arguments, 1: the run
 * failed), and with `--verbose` also the chain of causes (`causeChain`).
 *
 *   new UnitError({ message: "cannot read row group 3", path: "scores/…/scores.parquet", cause: e })
 *     .message  → "scores/…/scores.parquet: cannot read row group 3"
 *   causeChain(err) → ["scores/…: cannot read row group 3", "RuntimeError: unreachable", …]
 */
import { Data } from "effect"

export { displayPath, firstLine } from "../lib/messages.ts"
import { firstLine } from "../lib/messages.ts"

/**
 * Bad config file or field, or bad command-line arguments: exit 2, nothing created on disk. The
 * message is built from the fields:
 *   { file: "configs/demo.yaml", line: 14, field: "models[1].checkpoints", reason: "no file matches …" }
 *     → "configs/demo.yaml:14: models[1].checkpoints: no file matches …"
 *   { field: "--only nosuch", reason: "no such stage (…)" } → "--only nosuch: no such stage (…)"
 */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly reason: string
  /** The config file as messages show it. */
  readonly file?: string
  readonly line?: number
  /** The document path (`models[1].checkpoints`) or the command-line argument. */
  readonly field?: string
}> {
  get exitCode(): 2 { return 2 }
  override get message(): string {
    const where = this.file !== undefined ? `${this.file}${this.line !== undefined ? `:${this.line}` : ""}: ` : ""
    return `${where}${this.field ? `${this.field}: ` : ""}${this.reason}`
  }
}

/** The run could not start or finish (lock held, unwritable output folder, failed units): exit 1. */
export class RunError extends Data.TaggedError("RunError")<{
  readonly message: string
  /** Cause chains of the failures, one block per failed unit (printed with --verbose). */
  readonly details?: ReadonlyArray<string>
}> {
  get exitCode(): 1 { return 1 }
}

/**
 * A unit's failure that the user can act on. `message` is what happened (one line); `path` (a
 * file the unit read or wrote) is put in front of it when given; `cause` is the foreign error it
 * came from, kept for --verbose and never printed in the one-line form.
 */
export class UnitError extends Data.TaggedError("UnitError")<{
  readonly message: string
  readonly path?: string
  readonly cause?: unknown
}> {
  constructor(args: { readonly message: string; readonly path?: string; readonly cause?: unknown }) {
    const line = args.message.split("\n")[0]
    super({ ...args, message: args.path !== undefined && !line.includes(args.path) ? `${args.path}: ${line}` : line })
  }
}

/**
 * Any thrown value as a UnitError: a UnitError as it is, anything else with its first line as the
 * message (after `context`, when given) and itself as the cause.
 */
export const toUnitError = (e: unknown, context?: string): UnitError =>
  e instanceof UnitError
    ? e
    : new UnitError({ message: context !== undefined ? `${context}: ${firstLine(e)}` : firstLine(e), cause: e })

/** Lines of an error and its causes, outermost first; stacks of foreign errors included. */
export const causeChain = (e: unknown): string[] => {
  const out: string[] = []
  const seen = new Set<unknown>()
  let cur: unknown = e
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur)
    if (cur instanceof UnitError || cur instanceof RunError || cur instanceof ConfigError) out.push(`${cur._tag}: ${cur.message}`)
    else if (cur instanceof Error) out.push(cur.stack ?? `${cur.name}: ${cur.message}`)
    else out.push(String(cur))
    cur = (cur as { cause?: unknown }).cause
  }
  return out
}
