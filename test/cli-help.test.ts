/**
 * The help pages of the real CLI (the registry's stages), run in this process: every option has its
 * own description and no bare type sentence, the stage list names every registered stage, and the
 * built-in options are named once (top level), not on every subcommand.
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { describe, expect, it } from "vitest"
import { dropTypeSentences, TYPE_SENTENCES } from "../pipeline/cli-help.ts"
import { makeCli } from "../pipeline/cli.ts"
import { allStages, stageNames } from "../stages/index.ts"

const cli = makeCli(allStages)
const ANSI = /\x1b\[[0-9;]*m/g

/** What `trajectories …args` prints to stdout, colours removed. */
const help = async (...args: string[]): Promise<string> => {
  const out: string[] = []
  const base = Effect.runSync(Console.consoleWith(Effect.succeed))
  const capture: Console.Console = { ...base, log: (...xs: ReadonlyArray<unknown>) => Effect.sync(() => void out.push(xs.map(String).join(" "))) }
  await Effect.runPromise(cli(["node", "trajectories", ...args]).pipe(Effect.exit, Console.withConsole(capture), Effect.provide(NodeContext.layer)))
  return out.join("\n").replace(ANSI, "")
}

/** The option blocks of a help page: heading line (`--only stage...`) → its paragraphs. */
const optionBlocks = (page: string): Map<string, string> => {
  const section = page.split(/^OPTIONS$/m)[1] ?? ""
  const blocks = new Map<string, string>()
  let current: string | undefined
  for (const line of section.split("\n")) {
    if (/^\S/.test(line)) blocks.set((current = line.trim()), "")
    else if (current !== undefined && line.trim() !== "") blocks.set(current, `${blocks.get(current)}${line.trim()}\n`)
  }
  return blocks
}

const COMMANDS = ["run", "status", "report", "dag", "runner"]
const BUILT_INS = ["--completions", "--log-level", "--wizard"]

describe("help", () => {
  it("every option of every command has its own description, with no type sentence", async () => {
    for (const c of COMMANDS) {
      const page = await help(c, "--help")
      expect(page, c).toContain("USAGE")
      for (const s of TYPE_SENTENCES) expect(page, `${c}: ${s}`).not.toContain(s)
      const blocks = optionBlocks(page)
      if (c === "run" || c === "runner") expect(blocks.size, c).toBeGreaterThan(3)
      for (const [option, text] of blocks) {
        const own = text.split("\n").filter((l) => l && !/^This (setting is optional|option may be repeated)/.test(l))
        expect(own.length, `${c} ${option}`).toBeGreaterThan(0)
        expect(own.join(" ").length, `${c} ${option}`).toBeGreaterThan(40)
      }
    }
  })

  it("optional flags show as optional in the usage line; built-ins are not repeated on subcommands", async () => {
    const run = await help("run", "--help")
    expect(run).toMatch(/\$ run \[--only stage\.\.\.\] \[--force stage\.\.\.\] .*\[--cluster URL\] \[--limit N\] \[--models a,b\] \[--steps s1,s2\] \[\(-n, --dry-run\)\] <config\.yaml>/)
    for (const c of COMMANDS) {
      const page = await help(c, "--help")
      for (const b of BUILT_INS) expect(page, `${c} ${b}`).not.toContain(b)
    }
    const top = await help("--help")
    for (const b of BUILT_INS) expect(top, b).toContain(b)
  })

  it("the stage lists name every registered stage", async () => {
    const top = await help("--help")
    const run = await help("run", "--help")
    const blocks = optionBlocks(run)
    for (const name of stageNames) {
      expect(top, name).toMatch(new RegExp(`Stages: [^.]*\\b${name}\\b`))
      expect(blocks.get("--only stage...")!, name).toMatch(new RegExp(`\\b${name}\\b`))
      expect(blocks.get("--force stage...")!, name).toMatch(new RegExp(`\\b${name}\\b`))
    }
  })

  it("dropTypeSentences removes only whole type-sentence lines and the blank line after each", () => {
    expect(dropTypeSentences("--x text\n\n  A user-defined piece of text.\n\n  what x does\n")).toBe("--x text\n\n  what x does\n")
    expect(dropTypeSentences("\x1b[0mA file.\x1b[0m\n\nrest")).toBe("rest")
    const plain = "run \"demo\": A user-defined piece of text. is quoted here\n"
    expect(dropTypeSentences(plain)).toBe(plain)
  })

  it("the real entry point prints the same page (spawned)", async () => {
    const root = path.resolve(".")
    const r = await new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const c = spawn(path.join(root, "node_modules/.bin/tsx"), [path.join(root, "pipeline/main.ts"), "run", "--help"])
      let stdout = ""
      c.stdout.on("data", (d) => (stdout += d))
      c.on("close", (status) => resolve({ status, stdout }))
    })
    expect(r.status).toBe(0)
    expect(r.stdout.replace(ANSI, "")).toContain("[--only stage...]")
    expect(r.stdout).not.toContain("A user-defined piece of text.")
  })
})
