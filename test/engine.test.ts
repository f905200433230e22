import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { loadConfig } from "../pipeline/config.ts"
import type { ConfigError, RunError } from "../pipeline/errors.ts"
import { runPipeline, runStatus, type RunOptions, type RunSummary } from "../pipeline/runner.ts"
import type { Sink } from "../pipeline/progress.ts"
import { readParquetFile } from "../pipeline/store.ts"
import { fakeStages, listStage, writeFakeRun } from "./fixtures/fake-stages.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-engine-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const capture = (): Sink & { text: () => string } => {
  const out: string[] = []
  return { isTTY: false, write: (s) => void out.push(s), text: () => out.join("") }
}

const run = async (cfgFile: string, opts: Partial<RunOptions> = {}) => {
  const sink = capture()
  const result: Either.Either<RunSummary, RunError | ConfigError> = await Effect.runPromise(
    Effect.either(Effect.flatMap(loadConfig(cfgFile), (c) => runPipeline(c, { stages: fakeStages, sink, ...opts }))),
  )
  return { result, log: sink.text() }
}

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
    expect(ranUnits(first.result)).toEqual(["tokenize/dataset=a", "tokenize/dataset=b", "aggregate/all"])
    const sum = readParquetFile(path.join(tmp, "rerun/out/t/sum.parquet"))
    const expected = (s: string) => [...s].reduce((a, ch) => a + ch.charCodeAt(0), 0)
    expect([...sum.getChild("sum")!.toArray()]).toEqual([expected("hello"), expected("world!")])

    const second = await run(cfg)
    expect(ranUnits(second.result)).toEqual([])
    expect(second.log).toContain("nothing to do: all 3 units are up to date")

    const config = await Effect.runPromise(loadConfig(cfg))
    expect(runStatus(config, fakeStages).units.map((u) => u.state)).toEqual(["done", "done", "done"])
  })

  it("re-runs a unit whose input changed, and what depends on it, nothing else", async () => {
    const cfg = writeFakeRun(path.join(tmp, "change"), { a: "one", b: "two" })
    await run(cfg)
    fs.writeFileSync(path.join(tmp, "change/b.txt"), "three")
    const config = await Effect.runPromise(loadConfig(cfg))
    expect(runStatus(config, fakeStages).units.map((u) => `${u.id}:${u.state}`)).toEqual(["dataset=a:done", "dataset=b:stale", "all:stale"])
    expect(ranUnits((await run(cfg)).result)).toEqual(["tokenize/dataset=b", "aggregate/all"])
  })

  it("re-runs only the unit that failed, with what depends on it", async () => {
    const dir = path.join(tmp, "fail")
    const cfg = writeFakeRun(dir, { a: "x", b: "y", c: "z" })
    fs.writeFileSync(path.join(dir, "fail-b"), "")
    const first = await run(cfg, { keepGoing: true })
    expect(Either.isLeft(first.result)).toBe(true)
    if (Either.isLeft(first.result)) {
      expect(first.result.left.message).toContain("tokenize/dataset=b: dataset b: planted failure")
      expect(first.result.left.message).toContain("aggregate/all: needs tokenize/dataset=b, which failed")
    }
    const config = await Effect.runPromise(loadConfig(cfg))
    const st = runStatus(config, fakeStages).units
    expect(st.find((u) => u.id === "dataset=b")).toMatchObject({ state: "failed", detail: "dataset b: planted failure" })
    expect(st.find((u) => u.id === "dataset=a")?.state).toBe("done")
    expect(st.find((u) => u.id === "all")?.state).toBe("pending")

    fs.rmSync(path.join(dir, "fail-b"))
    const second = await run(cfg)
    expect(ranUnits(second.result)).toEqual(["tokenize/dataset=b", "aggregate/all"])
  })

  it("stops at the first failure without --keep-going", async () => {
    const dir = path.join(tmp, "stop")
    const cfg = writeFakeRun(dir, { a: "x", b: "y", c: "z" })
    fs.writeFileSync(path.join(dir, "fail-a"), "")
    const r = await run(cfg)
    expect(Either.isLeft(r.result)).toBe(true)
    if (Either.isLeft(r.result)) expect(r.result.left.message).toContain("--keep-going")
    const config = await Effect.runPromise(loadConfig(cfg))
    expect(runStatus(config, fakeStages).units.map((u) => u.state)).toEqual(["failed", "pending", "pending", "pending"])
  })

  it("--force re-runs a stage and everything downstream; --only runs one stage", async () => {
    const cfg = writeFakeRun(path.join(tmp, "force"), { a: "x", b: "y" })
    await run(cfg)
    expect(ranUnits((await run(cfg, { force: ["tokenize"] })).result)).toEqual(["tokenize/dataset=a", "tokenize/dataset=b", "aggregate/all"])
    expect(ranUnits((await run(cfg, { force: ["aggregate"] })).result)).toEqual(["aggregate/all"])
    expect(ranUnits((await run(cfg, { only: ["aggregate"], force: ["aggregate"] })).result)).toEqual(["aggregate/all"])
  })

  it("--only refuses to run a stage whose inputs are not done", async () => {
    const cfg = writeFakeRun(path.join(tmp, "only"), { a: "x" })
    const r = await run(cfg, { only: ["aggregate"] })
    expect(Either.isLeft(r.result)).toBe(true)
    if (Either.isLeft(r.result)) expect(r.result.left.message).toContain("needs tokenize/dataset=a, which is not done (run without --only first)")
  })

  it("re-runs a unit whose output file was deleted", async () => {
    const cfg = writeFakeRun(path.join(tmp, "deleted"), { a: "x", b: "y" })
    await run(cfg)
    fs.rmSync(path.join(tmp, "deleted/out/t/gen/dataset=a/out.parquet"))
    expect(ranUnits((await run(cfg)).result)).toEqual(["tokenize/dataset=a", "aggregate/all"])
  })

  it("a corrupt manifest is moved aside and the run starts afresh", async () => {
    const cfg = writeFakeRun(path.join(tmp, "corrupt"), { a: "x" })
    await run(cfg)
    fs.writeFileSync(path.join(tmp, "corrupt/out/t/manifest.json"), "{not json")
    const r = await run(cfg)
    expect(ranUnits(r.result)).toEqual(["tokenize/dataset=a", "aggregate/all"])
    expect(r.log).toMatch(/manifest.json was unreadable .*moved it to manifest.json.corrupt-\d+/)
  })

  it("an output folder that is not writable is one clear error", async () => {
    const dir = path.join(tmp, "ro")
    const cfg = writeFakeRun(dir, { a: "x" })
    fs.writeFileSync(path.join(dir, "out"), "a file where the output folder should be")
    const r = await run(cfg)
    expect(Either.isLeft(r.result) && r.result.left.message).toMatch(/^output folder .*out\/t is not writable \(ENOTDIR\)$/)
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
    expect(ranUnits(second.result)).toEqual(["tokenize/dataset=b", "aggregate/all", "report/report"])
    expect(fs.readFileSync(path.join(dir, "out/t/report.txt"), "utf8")).toBe("dataset=a\ndataset=b")
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual([])
    fs.writeFileSync(path.join(dir, "a.txt"), "changed")
    expect(ranUnits((await run(cfg, { stages })).result)).toEqual(["tokenize/dataset=a", "aggregate/all", "report/report"])
  })
})

describe("CLI processes", () => {
  it("a run killed with SIGKILL mid-stage resumes to the same outputs, with no temporary file left", async () => {
    const ref = writeFakeRun(path.join(tmp, "ref"), { a: "alpha", b: "beta", c: "gamma" })
    expect(spawnSync(tsx, [fakeCli, "run", ref], { encoding: "utf8" }).status).toBe(0)

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

    const resumed = spawnSync(tsx, [fakeCli, "run", cfg], { encoding: "utf8" })
    expect(resumed.status).toBe(0)
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
    const child = spawn(tsx, [fakeCli, "run", cfg], { env: { ...process.env, FAKE_SLOW_MS: "3000" }, stdio: "ignore" })
    const deadline = Date.now() + 30_000
    while (!fs.existsSync(path.join(runDir, ".lock")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    const second = spawnSync(tsx, [fakeCli, "run", cfg], { encoding: "utf8" })
    expect(second.status).toBe(1)
    expect(second.stderr.trim()).toMatch(/^error: .*concurrent\/out\/t is in use by another run \(pid \d+, since .*\); wait for it to finish, or stop it$/)
    await new Promise((r) => child.on("exit", r))
    expect(child.exitCode).toBe(0)
  })

  it("Ctrl-C (SIGINT) stops the run, keeps finished units and exits 130; the next run resumes", async () => {
    const cfg = writeFakeRun(path.join(tmp, "sigint"), { a: "x", b: "y", c: "z" })
    const runDir = path.join(tmp, "sigint/out/t")
    const child = spawn(tsx, [fakeCli, "run", cfg], { env: { ...process.env, FAKE_SLOW_MS: "1500" }, stdio: ["ignore", "ignore", "pipe"] })
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
    expect(fs.existsSync(path.join(runDir, ".lock"))).toBe(false)
    expect(listFiles(runDir).filter((f) => path.basename(f).startsWith(".tmp-"))).toEqual([])
    const resumed = spawnSync(tsx, [fakeCli, "run", cfg], { encoding: "utf8" })
    expect(resumed.status).toBe(0)
    expect(resumed.stderr).toMatch(/^3 unit\(s\) ran, 1 up to date/m)
  })

  it("bad arguments exit 2 with one line; status lists units", () => {
    const cfg = writeFakeRun(path.join(tmp, "args"), { a: "x" })
    const bad = spawnSync(tsx, [fakeCli, "run", cfg, "--only", "nosuch"], { encoding: "utf8" })
    expect(bad.status).toBe(2)
    expect(bad.stderr.trim()).toBe("error: --only nosuch: no such stage (stages: tokenize, aggregate)")
    expect(fs.existsSync(path.join(tmp, "args/out"))).toBe(false)
    const st = spawnSync(tsx, [fakeCli, "status", cfg], { encoding: "utf8" })
    expect(st.status).toBe(0)
    expect(st.stdout).toContain("tokenize (1 units: 1 pending)")
    expect(st.stdout).toContain("  pending dataset=a")
  })
})
