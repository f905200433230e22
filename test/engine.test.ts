import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { isAlive } from "../pipeline/atomic.ts"
import { loadConfig, type Config } from "../pipeline/config.ts"
import { dagDot, dagOf, formatDag } from "../pipeline/dag.ts"
import { acquireLock } from "../pipeline/lock.ts"
import type { ConfigError, RunError } from "../pipeline/errors.ts"
import { runPipeline, runStatus, type RunOptions, type RunSummary } from "../pipeline/runner.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import type { Sink } from "../pipeline/progress.ts"
import { readParquetFile } from "../pipeline/store.ts"
import type { Stage } from "../pipeline/stage.ts"
import { fakeStages, listStage, writeFakeRun } from "./fixtures/fake-stages.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-engine-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const capture = (): Sink & { text: () => string } => {
  const out: string[] = []
  return { isTTY: false, write: (s) => void out.push(s), text: () => out.join("") }
}

const run = async (cfgFile: string, opts: Partial<RunOptions<Stage>> = {}) => {
  const sink = capture()
  const result: Either.Either<RunSummary, RunError | ConfigError> = await Effect.runPromise(
    Effect.either(Effect.flatMap(loadConfig(cfgFile), (c) => runPipeline(c, { stages: fakeStages, sink, ...opts }).pipe(Effect.provide(nodeRunStore(c.runDir))))),
  )
  return { result, log: sink.text() }
}

/** Status of every planned unit, read from the run folder. */
const statusOf = async (config: Config, stages = fakeStages) => (await Effect.runPromise(runStatus(config, stages).pipe(Effect.provide(nodeRunStore(config.runDir))))).units

const ranUnits = (r: Either.Either<RunSummary, RunError | ConfigError>) =>
  Either.isRight(r) ? r.right.outcomes.filter((o) => o.outcome === "ran").map((o) => `${o.stage}/${o.id}`) : []

const listFiles = (dir: string): string[] =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()

const tsx = path.resolve("node_modules/.bin/tsx")
const fakeCli = path.resolve("test/fixtures/fake-cli.ts")

describe("runner", () => {
  it("runs every unit once, then a re-run does no work and says so", async () => {
    const cfg = writeFakeRun(path.join(tmp, "rerun"), { a: "hello", b: "world!" })
    const first = await run(cfg)
    expect(ranUnits(first.result)).toEqual(["gen/dataset=a", "gen/dataset=b", "sum/all"])
    const sum = readParquetFile(path.join(tmp, "rerun/out/t/sum.parquet"))
    const expected = (s: string) => [...s].reduce((a, ch) => a + ch.charCodeAt(0), 0)
    expect([...sum.getChild("sum")!.toArray()]).toEqual([expected("hello"), expected("world!")])

    const second = await run(cfg)
    expect(ranUnits(second.result)).toEqual([])
    expect(second.log).toContain("nothing to do: all 3 units are up to date")

    const config = await Effect.runPromise(loadConfig(cfg))
    expect((await statusOf(config)).map((u) => u.state)).toEqual(["done", "done", "done"])
  })

  it("re-runs a unit whose input changed, and what depends on it, nothing else", async () => {
    const cfg = writeFakeRun(path.join(tmp, "change"), { a: "one", b: "two" })
    await run(cfg)
    fs.writeFileSync(path.join(tmp, "change/b.txt"), "three")
    const config = await Effect.runPromise(loadConfig(cfg))
    expect((await statusOf(config)).map((u) => `${u.id}:${u.state}`)).toEqual(["dataset=a:done", "dataset=b:stale", "all:stale"])
    expect(ranUnits((await run(cfg)).result)).toEqual(["gen/dataset=b", "sum/all"])
  })

  it("re-runs only the unit that failed, with what depends on it", async () => {
    const dir = path.join(tmp, "fail")
    const cfg = writeFakeRun(dir, { a: "x", b: "y", c: "z" })
    fs.writeFileSync(path.join(dir, "fail-b"), "")
    const first = await run(cfg, { keepGoing: true })
    expect(Either.isLeft(first.result)).toBe(true)
    if (Either.isLeft(first.result)) {
      expect(first.result.left.message).toContain("gen/dataset=b: dataset b: planted failure")
      expect(first.result.left.message).toContain("sum/all: needs gen/dataset=b, which failed")
    }
    const config = await Effect.runPromise(loadConfig(cfg))
    const st = (await statusOf(config))
    expect(st.find((u) => u.id === "dataset=b")).toMatchObject({ state: "failed", detail: "dataset b: planted failure" })
    expect(st.find((u) => u.id === "dataset=a")?.state).toBe("done")
    expect(st.find((u) => u.id === "all")?.state).toBe("pending")

    fs.rmSync(path.join(dir, "fail-b"))
    const second = await run(cfg)
    expect(ranUnits(second.result)).toEqual(["gen/dataset=b", "sum/all"])
  })

  it("stops at the first failure without --keep-going", async () => {
    const dir = path.join(tmp, "stop")
    const cfg = writeFakeRun(dir, { a: "x", b: "y", c: "z" })
    fs.writeFileSync(path.join(dir, "fail-a"), "")
    const r = await run(cfg)
    expect(Either.isLeft(r.result)).toBe(true)
    if (Either.isLeft(r.result)) expect(r.result.left.message).toContain("--keep-going")
    const config = await Effect.runPromise(loadConfig(cfg))
    expect((await statusOf(config)).map((u) => u.state)).toEqual(["failed", "pending", "pending", "pending"])
  })

  it("--force re-runs a stage and everything downstream; --only runs one stage", async () => {
    const cfg = writeFakeRun(path.join(tmp, "force"), { a: "x", b: "y" })
    await run(cfg)
    expect(ranUnits((await run(cfg, { force: ["gen"] })).result)).toEqual(["gen/dataset=a", "gen/dataset=b", "sum/all"])
    expect(ranUnits((await run(cfg, { force: ["sum"] })).result)).toEqual(["sum/all"])
    expect(ranUnits((await run(cfg, { only: ["sum"], force: ["sum"] })).result)).toEqual(["sum/all"])
  })

  it("--only refuses to run a stage whose inputs are not done", async () => {
    const cfg = writeFakeRun(path.join(tmp, "only"), { a: "x" })
    const r = await run(cfg, { only: ["sum"] })
    expect(Either.isLeft(r.result)).toBe(true)
    if (Either.isLeft(r.result)) expect(r.result.left.message).toContain("needs gen/dataset=a, which is not done (run without --only first)")
  })

  it("re-runs a unit whose output file was deleted", async () => {
    const cfg = writeFakeRun(path.join(tmp, "deleted"), { a: "x", b: "y" })
    await run(cfg)
    fs.rmSync(path.join(tmp, "deleted/out/t/gen/dataset=a/out.parquet"))
    // Early cutoff: gen writes the same bytes again, so sum (which read those bytes) stays up to date.
    expect(ranUnits((await run(cfg)).result)).toEqual(["gen/dataset=a"])
    expect(ranUnits((await run(cfg)).result)).toEqual([])
    // A changed input still re-runs what reads it.
    fs.writeFileSync(path.join(tmp, "deleted/a.txt"), "changed")
    expect(ranUnits((await run(cfg)).result)).toEqual(["gen/dataset=a", "sum/all"])
  })

  it("an output changed in place (same size) is caught when read: the reader fails once, the next run writes it again", async () => {
    const dir = path.join(tmp, "bitrot")
    const cfg = writeFakeRun(dir, { a: "alpha", b: "beta" })
    await run(cfg)
    const file = path.join(dir, "out/t/gen/dataset=a/out.parquet")
    const good = fs.readFileSync(file)
    const bad = Buffer.from(good)
    bad[Math.floor(bad.length / 2)] ^= 0xff // one flipped byte in the data, size kept
    fs.writeFileSync(file, bad)
    const config = await Effect.runPromise(loadConfig(cfg))
    expect((await statusOf(config)).map((u) => u.state)).toEqual(["done", "done", "done"]) // sizes match: not read, not known
    const read = await run(cfg, { force: ["sum"] })
    expect(Either.isLeft(read.result) && read.result.left.message).toContain(
      `sum/all: ${file}: its content is not what gen/dataset=a wrote; the next run writes it again`,
    )
    expect((await statusOf(config)).find((u) => u.id === "dataset=a")).toMatchObject({ state: "failed", detail: expect.stringMatching(/^gen\/dataset=a\/out\.parquet changed since it was written \(CRC-32 [0-9a-f]+, written [0-9a-f]+\)$/) })
    expect(ranUnits((await run(cfg)).result)).toEqual(["gen/dataset=a", "sum/all"])
    expect(fs.readFileSync(file)).toEqual(good)
  })

  it("a corrupt manifest is moved aside and the run starts afresh", async () => {
    const cfg = writeFakeRun(path.join(tmp, "corrupt"), { a: "x" })
    await run(cfg)
    fs.writeFileSync(path.join(tmp, "corrupt/out/t/manifest.json"), "{not json")
    const r = await run(cfg)
    expect(ranUnits(r.result)).toEqual(["gen/dataset=a", "sum/all"])
    expect(r.log).toMatch(/manifest.json was unreadable .*moved it to manifest.json.corrupt-\d+/)
  })

  it("a manifest of the wrong shape (units a list; a record without files) is moved aside like an unreadable one", async () => {
    const cfg = writeFakeRun(path.join(tmp, "shape"), { a: "x" })
    await run(cfg)
    const file = path.join(tmp, "shape/out/t/manifest.json")
    const good = JSON.parse(fs.readFileSync(file, "utf8"))
    fs.writeFileSync(file, JSON.stringify({ ...good, units: [] }))
    const list = await run(cfg)
    expect(ranUnits(list.result)).toEqual(["gen/dataset=a", "sum/all"])
    expect(list.log).toMatch(/^manifest.json was unreadable \(not a version-1 manifest \(units: unexpected \[\]\)\); moved it to manifest.json.corrupt-\d+ and starting afresh$/m)
    const again = JSON.parse(fs.readFileSync(file, "utf8"))
    delete again.units["gen/dataset=a"].files
    fs.writeFileSync(file, JSON.stringify(again))
    const noFiles = await run(cfg)
    expect(ranUnits(noFiles.result)).toEqual(["gen/dataset=a", "sum/all"])
    expect(noFiles.log).toMatch(/not a version-1 manifest \(units\.gen\/dataset=a\.files: missing\)/)
  })

  it("a stage name that cannot name units, or one used twice, is refused before anything runs", async () => {
    const cfg = writeFakeRun(path.join(tmp, "names"), { a: "x" })
    // (Every test here runs stages named gen, sum and list: the engine knows no stage.)
    const slash = await run(cfg, { stages: [{ ...fakeStages[0], name: "a/b" }] })
    expect(Either.isLeft(slash.result) && slash.result.left.message).toBe('cannot plan the run: stage name "a/b" is not letters, digits, "_" or "-" (it names folders and units)')
    const twice = await run(cfg, { stages: [fakeStages[0], fakeStages[0]] })
    expect(Either.isLeft(twice.result) && twice.result.left.message).toBe("cannot plan the run: two stages are named gen")
    expect(fs.existsSync(path.join(tmp, "names/out"))).toBe(false)
  })

  it("an output folder that is not writable is one clear error", async () => {
    const dir = path.join(tmp, "ro")
    const cfg = writeFakeRun(dir, { a: "x" })
    fs.writeFileSync(path.join(dir, "out"), "a file where the output folder should be")
    const r = await run(cfg)
    expect(Either.isLeft(r.result) && r.result.left.message).toMatch(/^output folder .*out\/t is not writable \(ENOTDIR\)$/)
  })
})

describe("keys that travel", () => {
  it("a run folder copied to another place together with its inputs is up to date there", async () => {
    const from = path.join(tmp, "moved-from")
    const cfg = writeFakeRun(from, { a: "alpha", b: "beta" })
    expect(ranUnits((await run(cfg)).result)).toHaveLength(3)
    // A plain copy: new absolute paths, new mtimes (the digest cache inside the run is keyed by them).
    const to = path.join(tmp, "elsewhere", "moved-to")
    fs.cpSync(from, to, { recursive: true })
    const copied = path.join(to, "run.yaml")
    const config = await Effect.runPromise(loadConfig(copied))
    expect((await statusOf(config)).map((u) => `${u.id}:${u.state}`)).toEqual(["dataset=a:done", "dataset=b:done", "all:done"])
    const again = await run(copied)
    expect(ranUnits(again.result)).toEqual([])
    expect(again.log).toContain("nothing to do: all 3 units are up to date")
    // The keys are the same in both manifests.
    const keys = (dir: string) => Object.values(JSON.parse(fs.readFileSync(path.join(dir, "out/t/manifest.json"), "utf8")).units).map((u) => (u as { key: string }).key)
    expect(keys(to)).toEqual(keys(from))
  })

  it("status says which part of a stale key changed: a file, the config slice, the code version, an upstream unit", async () => {
    const dir = path.join(tmp, "why")
    const cfg = writeFakeRun(dir, { a: "one", b: "two" })
    await run(cfg)
    const config = await Effect.runPromise(loadConfig(cfg))
    fs.writeFileSync(path.join(dir, "b.txt"), "changed")
    const st = await statusOf(config)
    expect(st.map((u) => `${u.id}: ${u.state}${u.detail ? ` (${u.detail})` : ""}`)).toEqual([
      "dataset=a: done",
      "dataset=b: stale (key changed: file b.txt (content))",
      "all: stale (key changed: upstream gen/dataset=b)",
    ])
    fs.writeFileSync(path.join(dir, "b.txt"), "two")
    const bumped = fakeStages.map((s) => (s.name === "sum" ? { ...s, version: 2 } : s))
    expect((await statusOf(config, bumped)).find((u) => u.id === "all")?.detail).toBe("key changed: code version (sum 1 → 2)")
    const renamed = { ...config, datasets: config.datasets.map((d) => (d.name === "b" ? { ...d, files: [path.join(dir, "a.txt")] } : d)) }
    expect((await statusOf(renamed)).find((u) => u.id === "dataset=b")?.detail).toBe("key changed: file a.txt (added); no longer reads file b.txt")
    const params = fakeStages.map((s) => (s.name === "gen" ? { ...s, plan: (c: Config) => s.plan(c).map((u) => ({ ...u, params: { ...(u.params as object), extra: 1 } })) } : s))
    expect((await statusOf(config, params)).find((u) => u.id === "dataset=a")?.detail).toBe("key changed: config slice (extra: absent → 1)")
  })
})

describe("the DAG", () => {
  it("lists the stages in run order with their edges and, with a config, their unit counts", () => {
    const stages = [listStage, ...fakeStages] // registered out of order
    const dag = dagOf(stages, new Map([["gen", 2], ["sum", 1], ["list", 1]]))
    expect(dag.map((s) => [s.name, s.after, s.units])).toEqual([["gen", [], 2], ["sum", ["gen"], 1], ["list", ["gen", "sum"], 1]])
    const text = formatDag(dag, 200)
    expect(text[0]).toBe("3 stages, in run order (← the stages each one reads; ⇠ soft: read when present, never blocking)")
    expect(text[1]).toMatch(/^ {2}gen +2 units {2}← \(inputs only\) +fake: one table per dataset$/)
    expect(text[3]).toMatch(/^ {2}list +1 unit {2}⇠ gen, sum +fake: lists the tables that exist$/)
    expect(text.at(-1)).toBe("edges (3): gen → sum, gen ⇢ list, sum ⇢ list")
    expect(dagDot(dag)).toContain(`  "sum" -> "list" [style=dashed];`)
  })
})

describe("optional inputs (UnitPlan.optionalInputs)", () => {
  it("never block the unit; a failed one has no files; one that succeeds later re-runs the unit", async () => {
    const dir = path.join(tmp, "optional")
    const cfg = writeFakeRun(dir, { a: "x", b: "y" })
    const some: Stage<{ names: string[] }> = {
      name: "some",
      version: 1,
      after: ["gen"],
      describe: "fake: lists the gen units that are done",
      plan: (c) => [{ id: "all", params: { names: c.datasets.map((d) => d.name) }, inputs: [], optionalInputs: c.datasets.map((d) => ({ stage: "gen", id: `dataset=${d.name}` })), files: [] }],
      run: (unit, ctx) =>
        ctx.writeFile("some.txt", unit.params.names.filter((n) => ctx.input({ stage: "gen", id: `dataset=${n}` }).files.length > 0).join(",")),
    }
    const stages = [fakeStages[0], some]
    fs.writeFileSync(path.join(dir, "fail-b"), "")
    const first = await run(cfg, { stages, keepGoing: true })
    expect(Either.isLeft(first.result) && first.result.left.message).toContain("gen/dataset=b: dataset b: planted failure")
    expect(fs.readFileSync(path.join(dir, "out/t/some.txt"), "utf8")).toBe("a")
    fs.rmSync(path.join(dir, "fail-b"))
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual(["gen/dataset=b", "some/all"])
    expect(fs.readFileSync(path.join(dir, "out/t/some.txt"), "utf8")).toBe("a,b")
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual([])
  })
})

describe("soft inputs (Stage.softAfter)", () => {
  it("run even when an upstream unit failed, and re-run when one re-ran", async () => {
    const dir = path.join(tmp, "soft")
    const cfg = writeFakeRun(dir, { a: "x", b: "y" })
    const stages = [...fakeStages, listStage]
    fs.writeFileSync(path.join(dir, "fail-b"), "")
    const first = await run(cfg, { stages, keepGoing: true })
    expect(Either.isLeft(first.result)).toBe(true)
    expect(fs.readFileSync(path.join(dir, "out/t/report.txt"), "utf8")).toBe("dataset=a")
    fs.rmSync(path.join(dir, "fail-b"))
    const second = await run(cfg, { stages })
    expect(ranUnits(second.result)).toEqual(["gen/dataset=b", "sum/all", "list/report"])
    expect(fs.readFileSync(path.join(dir, "out/t/report.txt"), "utf8")).toBe("dataset=a\ndataset=b")
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual([])
    fs.writeFileSync(path.join(dir, "a.txt"), "changed")
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual(["gen/dataset=a", "sum/all", "list/report"])
  })
})

describe("lock", () => {
  it("a killed run's process that is still a zombie (not yet reaped) holds no lock", () => {
    const dir = path.join(tmp, "zombie")
    fs.mkdirSync(dir, { recursive: true })
    const child = spawn("sleep", ["30"])
    process.kill(child.pid!, "SIGKILL")
    // Busy-wait: Node reaps its children on the event loop, so until this test yields the
    // killed child stays a zombie, as a SIGKILLed run does until the machine's init reaps it.
    const t0 = Date.now()
    while (Date.now() - t0 < 200) {}
    expect(fs.readFileSync(`/proc/${child.pid}/stat`, "utf8")).toMatch(/\) Z /)
    expect(isAlive(child.pid!)).toBe(false)
    fs.writeFileSync(path.join(dir, ".lock"), JSON.stringify({ pid: child.pid, host: os.hostname(), since: "then" }))
    const lock = acquireLock(dir)
    expect(lock._tag === "acquired" && lock.takenOverFrom).toBe(child.pid)
    if (lock._tag === "acquired") lock.release()
  })
})

/**
 * A child process, awaited (not spawnSync: under load a CLI run can take most of a minute, and a
 * worker blocked that long makes vitest's worker RPC time out).
 */
const spawnAsync = (cmd: string, args: ReadonlyArray<string>): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const c = spawn(cmd, args)
    let stdout = ""
    let stderr = ""
    c.stdout.on("data", (d) => (stdout += String(d)))
    c.stderr.on("data", (d) => (stderr += String(d)))
    c.on("close", (status) => resolve({ status, stdout, stderr }))
  })

describe("CLI processes", () => {
  it("a run killed with SIGKILL mid-stage resumes to the same outputs, with no temporary file left", async () => {
    const ref = writeFakeRun(path.join(tmp, "ref"), { a: "alpha", b: "beta", c: "gamma" })
    expect((await spawnAsync(tsx, [fakeCli, "run", ref])).status).toBe(0)

    const cfg = writeFakeRun(path.join(tmp, "killed"), { a: "alpha", b: "beta", c: "gamma" })
    const runDir = path.join(tmp, "killed/out/t")
    const child = spawn(tsx, [fakeCli, "run", cfg], { env: { ...process.env, FAKE_SLOW_MS: "1500" }, stdio: "ignore", detached: true })
    // Wait until the first unit is recorded, then kill the whole process group mid-way through the second.
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      const m = path.join(runDir, "manifest.json")
      if (fs.existsSync(m) && Object.keys(JSON.parse(fs.readFileSync(m, "utf8")).units).length >= 1) break
      await new Promise((r) => setTimeout(r, 50))
    }
    await new Promise((r) => setTimeout(r, 400))
    process.kill(-child.pid!, "SIGKILL")
    await new Promise((r) => child.on("exit", r))
    expect(listFiles(runDir).some((f) => path.basename(f).startsWith(".tmp-"))).toBe(true) // a write was cut short
    expect(fs.existsSync(path.join(runDir, ".lock"))).toBe(true) // and the dead run's lock is still there

    const resumed = await spawnAsync(tsx, [fakeCli, "run", cfg])
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain("took over the lock of a run that is gone")
    expect(resumed.stderr).toMatch(/removed 1 temporary file\(s\) left by an interrupted run/)
    expect(resumed.stderr).toMatch(/^3 unit\(s\) ran, 1 up to date/m)

    const files = listFiles(runDir)
    expect(files.filter((f) => path.basename(f).startsWith(".tmp-"))).toEqual([])
    expect(files).not.toContain(".lock")
    for (const f of ["gen/dataset=a/out.parquet", "gen/dataset=b/out.parquet", "gen/dataset=c/out.parquet", "sum.parquet"]) {
      const a = readParquetFile(path.join(runDir, f))
      const b = readParquetFile(path.join(tmp, "ref/out/t", f))
      expect(a.toArray().map((r) => r.toJSON())).toEqual(b.toArray().map((r) => r.toJSON()))
    }
  })

  it("a second run on the same folder is refused while the first is running", async () => {
    const cfg = writeFakeRun(path.join(tmp, "concurrent"), { a: "x", b: "y" })
    const runDir = path.join(tmp, "concurrent/out/t")
    // Units slow enough that the first run still holds the lock when the second has started (a
    // second CLI start takes over 6 s on a loaded 2-core machine).
    const child = spawn(tsx, [fakeCli, "run", cfg], { env: { ...process.env, FAKE_SLOW_MS: "10000" }, stdio: "ignore" })
    const deadline = Date.now() + 30_000
    while (!fs.existsSync(path.join(runDir, ".lock")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    const second = await spawnAsync(tsx, [fakeCli, "run", cfg])
    expect(second.status).toBe(1)
    expect(second.stderr.trim()).toMatch(/^error: .*concurrent\/out\/t is in use by another run \(pid \d+, since .*\); wait for it to finish, or stop it$/)
    await new Promise((r) => child.on("exit", r))
    expect(child.exitCode).toBe(0)
  })

  it("Ctrl-C (SIGINT) stops the run, keeps finished units and exits 130; the next run resumes", async () => {
    const cfg = writeFakeRun(path.join(tmp, "sigint"), { a: "x", b: "y", c: "z" })
    const runDir = path.join(tmp, "sigint/out/t")
    const child = spawn(tsx, [fakeCli, "run", cfg, "--force", "gen"], { env: { ...process.env, FAKE_SLOW_MS: "1500" }, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr!.on("data", (d) => (stderr += d))
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      const m = path.join(runDir, "manifest.json")
      if (fs.existsSync(m) && Object.keys(JSON.parse(fs.readFileSync(m, "utf8")).units).length >= 1) break
      await new Promise((r) => setTimeout(r, 50))
    }
    await new Promise((r) => setTimeout(r, 300))
    child.kill("SIGINT")
    const code = await new Promise((r) => child.on("exit", (c) => r(c)))
    expect(code).toBe(130)
    expect(stderr).toContain("interrupted: finished units are kept")
    // The command that resumes: the same one without --force (which would start gen again).
    expect(stderr).toContain(`to resume, without --force (which would start again from zero): npx trajectories run ${cfg}\n`)
    expect(fs.existsSync(path.join(runDir, ".lock"))).toBe(false)
    expect(listFiles(runDir).filter((f) => path.basename(f).startsWith(".tmp-"))).toEqual([])
    const resumed = await spawnAsync(tsx, [fakeCli, "run", cfg])
    expect(resumed.status).toBe(0)
    expect(resumed.stderr).toMatch(/^3 unit\(s\) ran, 1 up to date/m)
  })

  it("bad arguments exit 2 with one line; status lists units", async () => {
    const cfg = writeFakeRun(path.join(tmp, "args"), { a: "x" })
    const bad = await spawnAsync(tsx, [fakeCli, "run", cfg, "--only", "nosuch"])
    expect(bad.status).toBe(2)
    expect(bad.stderr.trim()).toBe("error: --only nosuch: no such stage (stages: gen, sum)")
    expect(fs.existsSync(path.join(tmp, "args/out"))).toBe(false)
    const st = await spawnAsync(tsx, [fakeCli, "status", cfg])
    expect(st.status).toBe(0)
    expect(st.stdout).toContain("gen (1 units: 1 pending)")
    expect(st.stdout).not.toContain("  pending dataset=a")
    expect(st.stdout).toContain("2 pending: `trajectories run` runs them")
    const units = await spawnAsync(tsx, [fakeCli, "status", cfg, "--units"])
    expect(units.stdout).toContain("  pending dataset=a")
    const dag = await spawnAsync(tsx, [fakeCli, "dag", cfg])
    expect(dag.status).toBe(0)
    expect(dag.stdout).toMatch(/^ {2}gen +1 unit {2}← \(inputs only\)/m)
    expect(dag.stdout).toContain("edges (1): gen → sum")
    const help = await spawnAsync(tsx, [fakeCli, "--help"])
    expect(help.stdout).toContain("Run the pipeline (gen → sum)")
    expect(help.stdout).toMatch(/dag/)
  })

  it("a reader that stops early (| head -1) ends the command quietly", async () => {
    // Enough units that status writes past the pipe's buffer (64 KiB) after head has gone.
    const cfg = writeFakeRun(path.join(tmp, "epipe"), Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`d${i}`, "x"])))
    const r = await spawnAsync("sh", ["-c", `'${tsx}' '${fakeCli}' status --units '${cfg}' | head -1; echo "rc=\${PIPESTATUS:-done}"`])
    expect(r.stdout.split("\n")[0]).toMatch(/^run "t" in /)
    expect(r.stderr).not.toMatch(/EPIPE|Error/)
  })

  it("a failure is one line; --verbose adds its chain of causes", async () => {
    const dir = path.join(tmp, "verbose")
    const cfg = writeFakeRun(dir, { a: "x" })
    fs.writeFileSync(path.join(dir, "throw-a"), "")
    const plain = await spawnAsync(tsx, [fakeCli, "run", cfg])
    expect(plain.status).toBe(1)
    expect(plain.stderr).toMatch(/^ {2}gen\/dataset=a: dataset a: cannot parse its notes: .*JSON/m)
    expect(plain.stderr).not.toContain("causes:")
    expect(plain.stderr).not.toMatch(/^\s+at /m)
    const verbose = await spawnAsync(tsx, [fakeCli, "run", cfg, "--verbose"])
    expect(verbose.status).toBe(1)
    expect(verbose.stderr).toContain("causes:\ngen/dataset=a:\n  UnitError: dataset a: cannot parse its notes")
    expect(verbose.stderr).toMatch(/SyntaxError: .*JSON[\s\S]*\n\s+at /)
  })
})
