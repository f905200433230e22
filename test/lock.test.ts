/**
 * The run lock under racing processes: runs that start together never both hold it, with a stale
 * lock present (each sees it dead and takes it over) or on a fresh folder. The racers are plain
 * Node processes running pipeline/lock.ts bundled by esbuild (tsx would take ~0.5 s to start each).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { buildSync } from "esbuild"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-lock-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
const racer = path.join(tmp, "racer.mjs")

beforeAll(() => {
  // Each racer waits for a start file, tries once, prints the outcome and leaves a mark; the winner
  // holds the lock until every other racer has tried (or 30 s), so a racer the scheduler starts
  // late on a loaded machine still meets a held lock, as racing runs would.
  fs.writeFileSync(
    path.join(tmp, "racer-entry.ts"),
    `import * as fs from "node:fs"
import * as path from "node:path"
import { acquireLock } from ${JSON.stringify(path.resolve("pipeline/lock.ts"))}
const [dir, go, n] = process.argv.slice(2)
while (!fs.existsSync(go)) {}
const r = acquireLock(dir)
process.stdout.write(r._tag)
const marks = path.join(path.dirname(go), path.basename(go) + ".tried")
fs.mkdirSync(marks, { recursive: true })
fs.writeFileSync(path.join(marks, String(process.pid)), r._tag)
if (r._tag === "acquired") {
  const t = Date.now()
  while (fs.readdirSync(marks).length < Number(n) && Date.now() - t < 30000) {}
  r.release()
}
`,
  )
  buildSync({ entryPoints: [path.join(tmp, "racer-entry.ts")], outfile: racer, bundle: true, platform: "node", format: "esm", logLevel: "error" })
})

/** Start `n` racers on `dir`, release them at once, and return their outcomes. */
const race = async (dir: string, n: number): Promise<string[]> => {
  // The start file and the racers' marks live beside the run folder, not in it.
  const go = path.join(path.dirname(dir), `go-${path.basename(dir)}-${Math.random()}`)
  const children = Array.from({ length: n }, () => spawn(process.execPath, [racer, dir, go, String(n)], { stdio: ["ignore", "pipe", "inherit"] }))
  const outs = children.map((c) => new Promise<string>((resolve) => {
    let s = ""
    c.stdout!.on("data", (d) => (s += d))
    c.on("exit", () => resolve(s))
  }))
  await new Promise((r) => setTimeout(r, 250)) // let them all start and spin
  fs.writeFileSync(go, "")
  return Promise.all(outs)
}

describe("the run lock", () => {
  it("with a stale lock present, racing runs: exactly one takes it over", async () => {
    for (let trial = 0; trial < 12; trial++) {
      const dir = path.join(tmp, `stale-${trial}`)
      fs.mkdirSync(dir)
      fs.writeFileSync(path.join(dir, ".lock"), JSON.stringify({ pid: 2 ** 22 + 7, host: os.hostname(), since: "long ago" }))
      const outs = await race(dir, 5)
      expect(outs.filter((o) => o === "acquired"), `trial ${trial}: ${outs.join(" ")}`).toHaveLength(1)
      expect(outs.filter((o) => o === "held")).toHaveLength(4)
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(".lock"))).toEqual([]) // released, no stray files
    }
  }, 120_000)

  it("on a fresh folder, racing runs: exactly one holds it, and no one reads a half-written lock", async () => {
    for (let trial = 0; trial < 8; trial++) {
      const dir = path.join(tmp, `fresh-${trial}`)
      fs.mkdirSync(dir)
      const outs = await race(dir, 5)
      expect(outs.filter((o) => o === "acquired"), `trial ${trial}: ${outs.join(" ")}`).toHaveLength(1)
    }
  }, 120_000)
})
