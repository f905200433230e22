/**
 * The runner: plans every unit of every stage, decides which must run, runs them in DAG order,
 * and records each outcome in the manifest as soon as it is known.
 *
 * A unit runs when
 *   - it has no `done` record, or its record's key differs from the planned key, or one of its
 *     recorded files is missing or has another size, or an upstream unit was re-run since; or
 *   - an upstream unit ran in this run (everything downstream of what re-ran, re-runs); or
 *   - its stage is named by --force.
 * Otherwise it is up to date and skipped. A unit whose upstream failed (or is not done under
 * --only) is blocked: it does not run and its old record is kept. Without --keep-going the run stops
 * scheduling after the first failure; with it, every independent unit still runs.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Cause, Effect, Exit, Option } from "effect"
import { removeLiveTemps, sweepStaleTemps, writeFileAtomicSync } from "./atomic.ts"
import type { Config } from "./config.ts"
import { RunError } from "./errors.ts"
import { unitKey } from "./hash.ts"
import { acquireLock } from "./lock.ts"
import { filesIntact, readManifest, unitName, writeManifest, type FileRecord, type Manifest, type UnitRecord } from "./manifest.ts"
import { Reporter, fmtSeconds, stderrSink, type Sink } from "./progress.ts"
import { UnitError, type Stage, type StageName, type UnitContext, type UnitPlan } from "./stage.ts"
import { writeParquetFile } from "./store.ts"

export interface PlannedUnit {
  readonly stage: Stage
  readonly unit: UnitPlan
  readonly name: string
  readonly key: string
  readonly inputNames: ReadonlyArray<string>
  /** Soft inputs (Stage.softAfter): they trigger re-runs but never block. */
  readonly softNames: ReadonlyArray<string>
}

/** Stages in an order where every stage comes after the stages it reads. */
export const orderStages = (stages: ReadonlyArray<Stage>): Stage[] => {
  const byName = new Map(stages.map((s) => [s.name, s]))
  const out: Stage[] = []
  const seen = new Set<string>()
  const visit = (s: Stage, trail: string[]) => {
    if (seen.has(s.name)) return
    if (trail.includes(s.name)) throw new Error(`stage cycle: ${[...trail, s.name].join(" → ")}`)
    for (const a of s.after) {
      const up = byName.get(a)
      if (up) visit(up, [...trail, s.name])
    }
    seen.add(s.name)
    out.push(s)
  }
  for (const s of stages) visit(s, [])
  return out
}

/** Every unit of every stage with its key, in execution order. */
export const planRun = (config: Config, stages: ReadonlyArray<Stage>): PlannedUnit[] => {
  const keys = new Map<string, string>()
  const out: PlannedUnit[] = []
  for (const stage of orderStages(stages)) {
    const soft = stage.softAfter ? out.filter((p) => stage.after.includes(p.stage.name)).map((p) => p.name) : []
    for (const unit of stage.plan(config)) {
      const name = unitName(stage.name, unit.id)
      if (keys.has(name)) throw new Error(`stage ${stage.name} planned unit ${unit.id} twice`)
      const inputNames = unit.inputs.map((r) => unitName(r.stage, r.id)).filter((n) => keys.has(n))
      const softNames = soft.filter((n) => !inputNames.includes(n))
      const key = unitKey({
        stage: stage.name,
        version: stage.version,
        params: unit.params,
        inputKeys: [...inputNames, ...softNames].map((n) => `${n}=${keys.get(n)}`),
        files: unit.files,
      })
      keys.set(name, key)
      out.push({ stage, unit, name, key, inputNames, softNames })
    }
  }
  return out
}

export type UnitState = "done" | "failed" | "pending" | "stale"

export interface UnitStatus {
  readonly stage: StageName
  readonly id: string
  readonly state: UnitState
  readonly detail?: string
}

interface InputStamps {
  readonly inputs?: Record<string, string>
}

/** Is this record a valid, current output of the planned unit? */
const upToDate = (runDir: string, m: Manifest, pu: PlannedUnit): { ok: boolean; why?: string } => {
  const r = m.units[pu.name] as (UnitRecord & InputStamps) | undefined
  if (!r) return { ok: false }
  if (r.status !== "done") return { ok: false, why: r.error }
  if (r.key !== pu.key) return { ok: false, why: "key changed (config, code version, inputs or files)" }
  if (!filesIntact(runDir, r)) return { ok: false, why: "an output file is missing or changed size" }
  for (const n of pu.inputNames) {
    const up = m.units[n]
    if (!up || up.status !== "done" || up.started !== r.inputs?.[n]) return { ok: false, why: `upstream ${n} was re-run since` }
  }
  for (const n of pu.softNames) {
    const up = m.units[n]
    const stamp = up?.status === "done" ? up.started : ""
    if (stamp !== (r.inputs?.[n] ?? "")) return { ok: false, why: `upstream ${n} changed since` }
  }
  return { ok: true }
}

/** done / failed (with the error) / pending / stale for every planned unit. Reads only. */
export const runStatus = (config: Config, stages: ReadonlyArray<Stage>): { units: UnitStatus[]; manifestProblem?: string } => {
  const plan = planRun(config, stages)
  const loaded = readManifest(config.runDir, config.run)
  const m: Manifest = loaded._tag === "ok" ? loaded.manifest : { version: 1, run: config.run, units: {} }
  const units = plan.map((pu): UnitStatus => {
    const r = m.units[pu.name]
    const base = { stage: pu.stage.name, id: pu.unit.id }
    if (!r) return { ...base, state: "pending" }
    const u = upToDate(config.runDir, m, pu)
    if (u.ok) return { ...base, state: "done" }
    if (r.status === "failed" && r.key === pu.key) return { ...base, state: "failed", ...(r.error ? { detail: r.error } : {}) }
    return { ...base, state: "stale", ...(u.why ? { detail: u.why } : {}) }
  })
  return { units, ...(loaded._tag === "corrupt" ? { manifestProblem: loaded.reason } : {}) }
}

export interface RunOptions {
  readonly only?: ReadonlyArray<StageName>
  readonly force?: ReadonlyArray<StageName>
  readonly keepGoing?: boolean
  /** Stages to plan (default: every registered stage, see stages/index.ts). */
  readonly stages: ReadonlyArray<Stage>
  readonly sink?: Sink
}

export type Outcome = "ran" | "up-to-date" | "failed" | "blocked" | "not-run"

export interface UnitOutcome {
  readonly stage: StageName
  readonly id: string
  readonly outcome: Outcome
  readonly message?: string
  readonly seconds?: number
}

export interface RunSummary {
  readonly runDir: string
  readonly outcomes: ReadonlyArray<UnitOutcome>
  readonly count: (o: Outcome) => number
  readonly seconds: number
}

const errorLine = (cause: Cause.Cause<unknown>): { message: string; detail?: string } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    if (e instanceof UnitError) return { message: e.message }
    return { message: String((e as { message?: string })?.message ?? e) }
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    const d = defect.value as { message?: string; stack?: string }
    return { message: `internal error: ${String(d?.message ?? d).split("\n")[0]}`, ...(d?.stack ? { detail: d.stack } : {}) }
  }
  return { message: Cause.pretty(cause).split("\n")[0] }
}

/** Run the pipeline for `config`. Fails with RunError when the run cannot start or a unit failed. */
export const runPipeline = (config: Config, options: RunOptions): Effect.Effect<RunSummary, RunError> =>
  Effect.gen(function* () {
    const t0 = performance.now()
    const sink = options.sink ?? stderrSink()
    const reporter = new Reporter(sink)
    const runDir = config.runDir
    const plan = yield* Effect.try({
      try: () => planRun(config, options.stages),
      catch: (e) => new RunError({ message: e instanceof UnitError ? e.message : `cannot plan the run: ${(e as Error).message}` }),
    })
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(runDir, { recursive: true })
        fs.accessSync(runDir, fs.constants.W_OK)
      },
      catch: (e) =>
        new RunError({ message: `output folder ${runDir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` }),
    })
    yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const lock = acquireLock(runDir)
        if (lock._tag === "held") {
          return Effect.fail(
            new RunError({
              message: `${runDir} is in use by another run (pid ${lock.pid}, since ${lock.since}); wait for it to finish, or stop it`,
            }),
          )
        }
        if (lock.takenOverFrom !== undefined) reporter.log(`took over the lock of a run that is gone (pid ${lock.takenOverFrom})`)
        return Effect.succeed(lock)
      }),
      (lock) => Effect.sync(() => lock.release()),
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => removeLiveTemps()))
    const swept = sweepStaleTemps(runDir)
    if (swept.length) reporter.log(`removed ${swept.length} temporary file(s) left by an interrupted run`)

    const loaded = readManifest(runDir, config.run)
    let manifest: Manifest
    if (loaded._tag === "corrupt") {
      const aside = path.join(runDir, `manifest.json.corrupt-${Date.now()}`)
      fs.renameSync(path.join(runDir, "manifest.json"), aside)
      reporter.log(`manifest.json was unreadable (${loaded.reason}); moved it to ${path.basename(aside)} and starting afresh`)
      manifest = { version: 1, run: config.run, units: {} }
    } else manifest = loaded.manifest

    const only = options.only && options.only.length ? new Set<string>(options.only) : undefined
    const force = new Set<string>(options.force ?? [])
    const ranThisRun = new Set<string>()
    const bad = new Set<string>() // failed or blocked this run
    const outcomes: UnitOutcome[] = []
    let stop = false

    const stagesInOrder = orderStages(options.stages)
    for (const stage of stagesInOrder) {
      const units = plan.filter((p) => p.stage.name === stage.name)
      if (only && !only.has(stage.name)) {
        for (const pu of units) {
          if (!upToDate(runDir, manifest, pu).ok) bad.add(pu.name)
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: upToDate(runDir, manifest, pu).ok ? "up-to-date" : "not-run" })
        }
        continue
      }
      const decisions = units.map((pu) => {
        const blockedBy = pu.inputNames.find((n) => bad.has(n))
        if (blockedBy) return { pu, run: false, blockedBy }
        const must =
          force.has(stage.name) ||
          pu.inputNames.some((n) => ranThisRun.has(n)) ||
          pu.softNames.some((n) => ranThisRun.has(n)) ||
          !upToDate(runDir, manifest, pu).ok
        return { pu, run: must, blockedBy: undefined }
      })
      const toRun = decisions.filter((d) => d.run).length
      reporter.beginStage(stage.name, toRun)
      for (const d of decisions) {
        const { pu } = d
        if (d.blockedBy) {
          bad.add(pu.name)
          const upFailed = manifest.units[d.blockedBy]?.status === "failed"
          const message = `needs ${d.blockedBy}, which ${upFailed ? "failed" : only ? "is not done (run without --only first)" : "did not run"}`
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "blocked", message })
          continue
        }
        if (!d.run) {
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "up-to-date" })
          continue
        }
        if (stop) {
          bad.add(pu.name)
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "not-run" })
          continue
        }
        const result = yield* runUnit(config, pu, manifest, reporter)
        outcomes.push(result)
        if (result.outcome === "ran") ranThisRun.add(pu.name)
        else {
          bad.add(pu.name)
          if (!options.keepGoing) stop = true
        }
      }
    }

    const seconds = (performance.now() - t0) / 1000
    const count = (o: Outcome) => outcomes.filter((x) => x.outcome === o).length
    const summary: RunSummary = { runDir, outcomes, count, seconds }
    const failed = outcomes.filter((o) => o.outcome === "failed")
    const blocked = outcomes.filter((o) => o.outcome === "blocked")
    if (count("ran") === 0 && failed.length === 0 && blocked.length === 0 && count("not-run") === 0) {
      reporter.log(`nothing to do: all ${outcomes.length} units are up to date (${runDir})`)
    } else {
      reporter.log(
        `${count("ran")} unit(s) ran, ${count("up-to-date")} up to date` +
          (failed.length ? `, ${failed.length} failed` : "") +
          (blocked.length ? `, ${blocked.length} blocked` : "") +
          (count("not-run") ? `, ${count("not-run")} not run` : "") +
          ` in ${fmtSeconds(seconds)}`,
      )
    }
    if (failed.length || blocked.length) {
      const lines = [...failed, ...blocked].slice(0, 20).map((o) => `  ${o.stage}/${o.id}: ${o.message}`)
      const more = failed.length + blocked.length > 20 ? [`  … and ${failed.length + blocked.length - 20} more`] : []
      const hint = failed.length && !options.keepGoing && count("not-run") ? ["  (stopped at the first failure; --keep-going runs the independent units too)"] : []
      return yield* Effect.fail(
        new RunError({
          message: [`${failed.length} unit(s) failed${blocked.length ? `, ${blocked.length} blocked` : ""}:`, ...lines, ...more, ...hint].join("\n"),
        }),
      )
    }
    return summary
  }).pipe(Effect.scoped)

const runUnit = (
  config: Config,
  pu: PlannedUnit,
  manifest: Manifest,
  reporter: Reporter,
): Effect.Effect<UnitOutcome> =>
  Effect.gen(function* () {
    const runDir = config.runDir
    const written: FileRecord[] = []
    const record = (rel: string, bytes: number) => {
      const i = written.findIndex((w) => w.path === rel)
      if (i >= 0) written.splice(i, 1)
      written.push({ path: rel, bytes })
    }
    const writeWith = (rel: string, write: (abs: string) => number) =>
      Effect.try({
        try: () => record(rel, write(path.join(runDir, rel))),
        catch: (e) => new UnitError({ message: `cannot write ${path.join(runDir, rel)}: ${(e as Error).message.split("\n")[0]}` }),
      })
    const ctx: UnitContext = {
      config,
      runDir,
      cacheDir: path.join(runDir, ".cache"),
      path: (rel) => path.join(runDir, rel),
      writeParquet: (rel, table, opts) => writeWith(rel, (abs) => writeParquetFile(abs, table, opts)),
      writeFile: (rel, data) => writeWith(rel, (abs) => writeFileAtomicSync(abs, data)),
      outputsOf: (ref) => (manifest.units[unitName(ref.stage, ref.id)]?.files ?? []).map((f) => path.join(runDir, f.path)),
      progress: reporter.progress(),
      log: (m) => Effect.sync(() => reporter.log(m)),
    }
    const started = new Date().toISOString()
    const t0 = performance.now()
    reporter.beginUnit(pu.unit.id)
    const exit = yield* Effect.exit(Effect.suspend(() => pu.stage.run(pu.unit, ctx)))
    const seconds = (performance.now() - t0) / 1000
    const stamp = (n: string) => (manifest.units[n]?.status === "done" ? manifest.units[n].started : "")
    const inputs = Object.fromEntries([...pu.inputNames, ...pu.softNames].map((n) => [n, stamp(n)]))
    if (Exit.isSuccess(exit)) {
      const old = manifest.units[pu.name]
      const rec: UnitRecord & InputStamps = { stage: pu.stage.name, id: pu.unit.id, key: pu.key, status: "done", files: written, started, seconds, inputs }
      manifest.units[pu.name] = rec
      writeManifest(runDir, manifest)
      // Files the unit wrote last time but not this time are no longer outputs.
      for (const f of old?.files ?? []) {
        if (!written.some((w) => w.path === f.path)) fs.rmSync(path.join(runDir, f.path), { force: true })
      }
      reporter.endUnit(true, seconds)
      return { stage: pu.stage.name, id: pu.unit.id, outcome: "ran", seconds } satisfies UnitOutcome
    }
    const { message } = errorLine(exit.cause)
    const rec: UnitRecord & InputStamps = {
      stage: pu.stage.name,
      id: pu.unit.id,
      key: pu.key,
      status: "failed",
      files: written,
      started,
      seconds,
      error: message,
      inputs,
    }
    manifest.units[pu.name] = rec
    writeManifest(runDir, manifest)
    reporter.endUnit(false, seconds, message)
    return { stage: pu.stage.name, id: pu.unit.id, outcome: "failed", message, seconds } satisfies UnitOutcome
  })
