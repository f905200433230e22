/**
 * Help pages without @effect/cli's filler. @effect/cli prints, above each option's own
 * description, a sentence naming its value type ("A user-defined piece of text.", "A true or false
 * value.", "An integer.", "A file."), which says nothing our descriptions do not; and it repeats
 * its built-in options (--completions, --log-level, --wizard) on every subcommand. `withCleanHelp`
 * hides the built-ins (CliConfig's `showBuiltIns: false`; the top-level description names them)
 * and drops those sentences from what the CLI prints.
 *
 *   --cluster text              --cluster URL
 *                                 run the units on …   (the type sentence is gone)
 *     A user-defined piece of text.
 *
 *     run the units on …
 */
import { CliConfig } from "@effect/cli"
import { Console, Effect } from "effect"

/** @effect/cli's sentences for a value's type (Primitive's help), kept out of our help pages. */
export const TYPE_SENTENCES: ReadonlyArray<string> = [
  "A user-defined piece of text.",
  "A true or false value.",
  "An integer.",
  "A floating point number.",
  "A file.",
  "An existing file.",
  "A directory.",
  "An existing directory.",
  "A file or directory.",
  "An existing file or directory.",
]

const ANSI = /\x1b\[[0-9;]*m/g

/**
 * `text` with every line that is only a type sentence removed, with the blank line after it.
 * Text without one (every line our commands print) comes back unchanged.
 */
export const dropTypeSentences = (text: string): string => {
  if (!TYPE_SENTENCES.some((s) => text.includes(s))) return text
  const lines = text.split("\n")
  const out: string[] = []
  for (let i = 0; i < lines.length; i++) {
    if (TYPE_SENTENCES.includes(lines[i].replace(ANSI, "").trim())) {
      if (i + 1 < lines.length && lines[i + 1].replace(ANSI, "").trim() === "") i++
      continue
    }
    out.push(lines[i])
  }
  return out.join("\n")
}

/** Runs a CLI program with built-ins hidden from help pages and the type sentences dropped. */
export const withCleanHelp = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((console) =>
    program.pipe(
      Console.withConsole({
        ...console,
        log: (...args: ReadonlyArray<any>) => console.log(...args.map((a) => (typeof a === "string" ? dropTypeSentences(a) : a))),
      }),
      Effect.provide(CliConfig.layer({ showBuiltIns: false })),
    ),
  )
