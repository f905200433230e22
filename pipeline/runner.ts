/**
 * The runner: plans every unit of every stage, decides which must run, runs them in DAG order,
 * and records each outcome in the manifest as soon as it is known.
 *
 * A unit runs when
 *   - it has no `done` record, or its record's key differs from the planned key, or one of its
 *     recorded files is missing or has another size, or an upstream unit was re-run since; or
 *   - an upstream unit ran in this run and changed its outputs (everything downstream of what
 *     changed, re-runs); or
 *   - its stage is named by --force (everything downstream of it re-runs too).
 * Early cutoff: a unit that ran again with the same key and wrote byte-identical files (an output
 * deleted by hand, a download made again after it was released) keeps its record's stamp, so what
 * reads it stays up to date.
 * Otherwise it is up to date and skipped. A unit whose upstream failed (or is not done under
 * --only) is blocked: it does not run and its old record is kept. Without --keep-going the run stops
 * scheduling after the first failure; with it, every independent unit still runs.
 *
 * Where a unit runs is the Executor's business (executeUnit here, or a cluster runner: see
 * pipeline/cluster/); deciding, ordering and recording are this file's, the same for both.
 */
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import * as zlib from "node:zlib"
import type * as arrow from "apache-arrow"
import { Cause, Deferred, Effect, Exit, Option } from "effect"
import type { Config } from "./config.ts"
import { causeChain, displayPath, firstLine, RunError, UnitError } from "./errors.ts"
import { crc32OfFile, explainKeyChange, Fingerprints, keyOf, paramsHash, type KeyParts } from "./hash.ts"
import { emptyManifest, filesIntact, readManifest, throttledWrites, unitName, writeManifest, type FileRecord, type Manifest, type UnitRecord } from "./manifest.ts"
import { Reporter, fmtSeconds, stderrSink, type Sink } from "./progress.ts"
import { openParquet, RunStore, writeParquetStream, type RunStoreShape, type StoreError } from "./run-store.ts"
import { decodeParquet, encodeParquet } from "./store.ts"
import type { Progress, Stage, StageName, TableFile, UnitContext, UnitInput, UnitPlan, UnitRef } from "./stage.ts"

export interface PlannedUnit {
  readonly stage: Stage<any, any>
  readonly unit: UnitPlan
  readonly name: string
  readonly key: string
  readonly parts: KeyParts
  readonly inputNames: ReadonlyArray<string>
  /** Soft inputs (Stage.softAfter): they trigger re-runs but never block. */
  readonly softNames: ReadonlyArray<string>
}

/** Stages in an order where every stage comes after the stages it reads. */
export const orderStages = <S extends Stage<any, any>>(stages: ReadonlyArray<S>): S[] => {
  const byName = new Map(stages.map((s) => [s.name, s]))
  const out: S[] = []
  const seen = new Set<string>()
  const visit = (s: S, trail: string[]) => {
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

/** A stage's name: it is the first part of its units' names (`score/model=s/…`), so it holds no "/". */
const STAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

/** The config's folder: external files are fingerprinted by their path relative to it. */
export const configBase = (config: Config): string => path.dirname(config.file)

/**
 * Every unit of every stage with its key, in execution order. `fingerprints` hashes the units'
 * external files (default: relative to the config's folder, no digest cache).
 */
export const planRun = (config: Config, stages: ReadonlyArray<Stage<any, any>>, fingerprints = new Fingerprints(configBase(config))): PlannedUnit[] => {
  const keys = new Map<string, string>()
  const out: PlannedUnit[] = []
  const names = stages.map((s) => s.name)
  const bad = names.find((n) => !STAGE_NAME.test(n))
  if (bad !== undefined) throw new Error(`stage name ${JSON.stringify(bad)} is not letters, digits, "_" or "-" (it names folders and units)`)
  const twice = names.find((n, i) => names.indexOf(n) !== i)
  if (twice !== undefined) throw new Error(`two stages are named ${twice}`)
  for (const stage of orderStages(stages)) {
    const soft = stage.softAfter ? out.filter((p) => stage.after.includes(p.stage.name)).map((p) => p.name) : []
    for (const unit of stage.plan(config)) {
      const name = unitName(stage.name, unit.id)
      if (keys.has(name)) throw new Error(`stage ${stage.name} planned unit ${unit.id} twice`)
      const inputNames = [...new Set(unit.inputs.map((r: UnitRef) => unitName(r.stage, r.id)))].filter((n) => keys.has(n))
      const optional = (unit.optionalInputs ?? []).map((r: UnitRef) => unitName(r.stage, r.id)).filter((n: string) => keys.has(n))
      const softNames = [...new Set([...soft, ...optional])].filter((n) => !inputNames.includes(n))
      const parts: KeyParts = {
        stage: stage.name,
        version: stage.version,
        params: paramsHash(unit.params),
        inputs: Object.fromEntries([...inputNames, ...softNames].map((n) => [n, keys.get(n)!])),
        files: fingerprints.of(unit.files),
      }
      const key = keyOf(parts)
      keys.set(name, key)
      out.push({ stage, unit, name, key, parts, inputNames, softNames })
    }
  }
  return out
}

/** The most often a run with a durable executor (Executor.durable: a cluster) rewrites its manifest. */
export const MANIFEST_EVERY_MS = 1000

export type UnitState = "done" | "failed" | "pending" | "stale"

export interface UnitStatus {
  readonly stage: StageName
  readonly id: string
  readonly state: UnitState
  readonly detail?: string
}

/** Is this record a valid, current output of the planned unit? `why` says what is not. */
const upToDate = (store: RunStoreShape, m: Manifest, pu: PlannedUnit): Effect.Effect<{ ok: boolean; why?: string }, StoreError> =>
  Effect.gen(function* () {
    const r = m.units[pu.name]
    if (!r) return { ok: false }
    if (r.status !== "done") return { ok: false, ...(r.error ? { why: r.error } : {}) }
    if (r.key !== pu.key) return { ok: false, why: explainKeyChange(r.parts, pu.parts, { old: r.params, now: pu.unit.params }) }
    if (!(yield* filesIntact(store, r))) return { ok: false, why: "an output file is missing or changed size" }
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
  })

const storeFailure = (e: StoreError) => new RunError({ message: `${displayPath(e.path)}: ${e.detail}` })

/** The manifest could not record a unit's outcome: the run stops; what it recorded before is kept. */
const manifestFailure = (unit: string, failure?: string) => (e: StoreError) =>
  new RunError({
    message:
      `cannot record ${unit} in ${displayPath(e.path)} (${e.detail}); the run stopped, every unit recorded before is kept` +
      (failure !== undefined ? `\n  ${unit}: ${failure}` : ""),
  })

const fingerprintsFor = (config: Config, store: RunStoreShape) => new Fingerprints(configBase(config), path.join(store.cacheDir, "fingerprints.json"))

/** done / failed (with the error) / pending / stale (with what changed) for every planned unit. Reads only (and caches file digests). */
export const runStatus = (
  config: Config,
  stages: ReadonlyArray<Stage<any, any>>,
): Effect.Effect<{ units: UnitStatus[]; manifestProblem?: string }, RunError, RunStore> =>
  Effect.gen(function* () {
    const store = yield* RunStore
    const fingerprints = fingerprintsFor(config, store)
    const plan = yield* Effect.try({ try: () => planRun(config, stages, fingerprints), catch: (e) => new RunError({ message: `cannot plan the run: ${firstLine(e)}` }) })
    fingerprints.save()
    const loaded = yield* Effect.mapError(readManifest(store, config.run), storeFailure)
    const m: Manifest = loaded._tag === "ok" ? loaded.manifest : emptyManifest(config.run)
    const units = yield* Effect.forEach(plan, (pu) =>
      Effect.gen(function* () {
        const r = m.units[pu.name]
        const base = { stage: pu.stage.name, id: pu.unit.id }
        if (!r) return { ...base, state: "pending" } satisfies UnitStatus
        const u = yield* Effect.mapError(upToDate(store, m, pu), storeFailure)
        if (u.ok) return { ...base, state: "done" } satisfies UnitStatus
        if (r.status === "failed" && r.key === pu.key) return { ...base, state: "failed", ...(r.error ? { detail: r.error } : {}) } satisfies UnitStatus
        return { ...base, state: "stale", ...(u.why ? { detail: u.why } : {}) } satisfies UnitStatus
      }),
    )
    return { units, ...(loaded._tag === "corrupt" ? { manifestProblem: loaded.reason } : {}) }
  })

export interface RunOptions<S extends Stage<any, any> = Stage<any, any>> {
  readonly only?: ReadonlyArray<StageName>
  readonly force?: ReadonlyArray<StageName>
  readonly keepGoing?: boolean
  /** Stages to plan (the CLI passes the registry, stages/index.ts). */
  readonly stages: ReadonlyArray<S>
  readonly sink?: Sink
  /** Where units run (default: this process, localExecutor). */
  readonly executor?: Executor<any>
}

export type Outcome = "ran" | "up-to-date" | "failed" | "blocked" | "not-run"

export interface UnitOutcome {
  readonly stage: StageName
  readonly id: string
  readonly outcome: Outcome
  readonly message?: string
  /** A failure's chain of causes (for --verbose). */
  readonly causes?: ReadonlyArray<string>
  readonly seconds?: number
  /** Ran with the same key and wrote byte-identical files (early cutoff: its readers need not re-run). */
  readonly unchanged?: boolean
  /** The cluster runner it ran on (absent: this process). */
  readonly where?: string
}

export interface RunSummary {
  readonly runDir: string
  readonly outcomes: ReadonlyArray<UnitOutcome>
  readonly count: (o: Outcome) => number
  readonly seconds: number
}

/** The one-line message of a failed unit, and its cause chain. */
const failureOf = (cause: Cause.Cause<unknown>): { message: string; causes: string[] } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    return { message: e instanceof UnitError ? e.message : firstLine(e), causes: causeChain(e) }
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) return { message: `internal error: ${firstLine(defect.value)}`, causes: causeChain(defect.value) }
  if (Cause.isInterruptedOnly(cause)) return { message: "interrupted", causes: [] }
  return { message: Cause.pretty(cause).split("\n")[0], causes: [Cause.pretty(cause)] }
}

/** Run the pipeline for `config` on the RunStore in context. Fails with RunError when the run cannot start or a unit failed. */
export const runPipeline = <S extends Stage<any, any>>(
  config: Config,
  options: RunOptions<S>,
): Effect.Effect<RunSummary, RunError, RunStore | (S extends Stage<any, infer R> ? R : never)> =>
  Effect.gen(function* () {
    const t0 = performance.now()
    const store = yield* RunStore
    const sink = options.sink ?? stderrSink()
    const executor = options.executor ?? localExecutor
    const reporter = new Reporter(sink)
    const runDir = store.location
    const fingerprints = fingerprintsFor(config, store)
    const plan = yield* Effect.try({
      try: () => planRun(config, options.stages, fingerprints),
      catch: (e) => new RunError({ message: e instanceof UnitError ? e.message : `cannot plan the run: ${firstLine(e)}` }),
    })
    for (const notice of yield* store.acquire) reporter.log(notice)
    fingerprints.save()

    const loaded = yield* Effect.mapError(readManifest(store, config.run), storeFailure)
    let manifest: Manifest
    if (loaded._tag === "corrupt") {
      const aside = `manifest.json.corrupt-${Date.now()}`
      yield* Effect.mapError(store.rename("manifest.json", aside), storeFailure)
      reporter.log(`manifest.json was unreadable (${loaded.reason}); moved it to ${aside} and starting afresh`)
      manifest = emptyManifest(config.run)
    } else manifest = loaded.manifest
    // A new run folder (or one of an older version) gets its instance, kept from now on.
    const fresh = manifest.instance === undefined
    if (fresh) manifest.instance = randomUUID()
    // A cluster names executions by the instance: it is on disk before the first one is submitted.
    if (fresh && executor.concurrent) yield* Effect.mapError(writeManifest(store, manifest), manifestFailure("the run"))
    const isUpToDate = (pu: PlannedUnit) => Effect.map(Effect.mapError(upToDate(store, manifest, pu), storeFailure), (u) => u.ok)

    const only = options.only && options.only.length ? new Set<string>(options.only) : undefined
    const force = new Set<string>(options.force ?? [])
    const ranThisRun = new Set<string>() // ran and changed its outputs
    const bad = new Set<string>() // failed or blocked this run
    const outcomes: UnitOutcome[] = []
    let stop = false
    const byName = new Map(plan.map((pu) => [pu.name, pu]))
    const manifestLock = yield* Effect.makeSemaphore(1)
    // A local run writes the manifest after every unit; a run whose executor keeps results durable
    // (a cluster) at most once every MANIFEST_EVERY_MS, and always before it ends.
    let last: { unit: string; failure?: string } = { unit: "the run" }
    const writes = executor.durable
      ? yield* throttledWrites(
          Effect.suspend(() => Effect.mapError(writeManifest(store, manifest), manifestFailure(last.unit, last.failure))),
          MANIFEST_EVERY_MS,
          manifestLock,
        )
      : undefined
    if (writes !== undefined) yield* Effect.addFinalizer(() => Effect.ignore(writes.flush))
    const record = (unit: string, failure?: string): Effect.Effect<void, RunError> =>
      writes !== undefined
        ? Effect.suspend(() => {
            last = failure === undefined ? { unit } : { unit, failure }
            return writes.request
          })
        : manifestLock.withPermits(1)(Effect.mapError(writeManifest(store, manifest), manifestFailure(unit, failure)))
    /** What is recorded so far is on disk (a no-op when every record is written at once). */
    const flushed = writes?.flush ?? Effect.void

    // A first pass says which units will (probably) run: for the stages' counts, and to find the
    // done units whose product outside the run folder is gone although a reader of theirs must run.
    // A unit's record does not change before the unit is decided (only its own run writes it), so
    // this pass's answer is the one `decide` uses.
    const current = new Map<string, boolean>()
    const stale = new Map<string, boolean>()
    for (const pu of plan) {
      const ok = yield* isUpToDate(pu)
      current.set(pu.name, ok)
      const skipped = only !== undefined && !only.has(pu.stage.name)
      stale.set(pu.name, !skipped && (force.has(pu.stage.name) || !ok || [...pu.inputNames, ...pu.softNames].some((n) => stale.get(n))))
    }
    /** The units that read each unit as a declared input. */
    const readersOf = new Map<string, PlannedUnit[]>()
    for (const pu of plan) {
      for (const n of pu.inputNames) {
        const rs = readersOf.get(n) ?? []
        readersOf.set(n, rs)
        rs.push(pu)
      }
    }
    const ownInput = (pu: PlannedUnit) => unitInput(store, manifest, { stage: pu.stage.name, id: pu.unit.id })
    const rematerialize = new Set<string>()
    for (const pu of plan) {
      const present = pu.stage.present
      if (present === undefined || stale.get(pu.name)) continue
      if (!(readersOf.get(pu.name) ?? []).some((r) => stale.get(r.name))) continue
      if (!(yield* present(pu.unit, ownInput(pu), config))) rematerialize.add(pu.name)
    }

    // Lanes: each runs its units one at a time, in an order where a unit comes after its inputs;
    // the main lane takes the units reading another lane's unit in that unit's order (the anchor),
    // so what was downloaded first is scored first, and its download can be released early.
    const laneOf = (pu: PlannedUnit) => pu.stage.lane ?? "main"
    const stageIndex = new Map(orderStages(options.stages).map((st, i) => [st.name, i]))
    const lanes = new Map<string, PlannedUnit[]>()
    const anchor = new Map<string, number>()
    for (const pu of plan) {
      const lane = lanes.get(laneOf(pu)) ?? []
      lanes.set(laneOf(pu), lane)
      anchor.set(pu.name, laneOf(pu) !== "main" ? lane.length : Math.max(-1, ...[...pu.inputNames, ...pu.softNames].map((n) => anchor.get(n) ?? -1)))
      lane.push(pu)
    }
    const planIndex = new Map(plan.map((pu, i) => [pu.name, i]))
    const main = lanes.get("main")
    if (main) {
      main.sort(
        (a, b) =>
          anchor.get(a.name)! - anchor.get(b.name)! ||
          stageIndex.get(a.stage.name)! - stageIndex.get(b.stage.name)! ||
          planIndex.get(a.name)! - planIndex.get(b.name)!,
      )
    }
    for (const stage of orderStages(options.stages)) {
      const toRun = plan.filter((pu) => pu.stage.name === stage.name && (stale.get(pu.name) || rematerialize.has(pu.name)))
      reporter.beginStage(stage.name, toRun.length, toRun.reduce((a, pu) => a + (pu.unit.weight ?? 1), 0))
    }

    const finished = new Map<string, Deferred.Deferred<void>>()
    for (const pu of plan) finished.set(pu.name, yield* Deferred.make<void>())
    /** Readers of each unit not settled yet. */
    const readers = new Map([...readersOf].map(([n, rs]) => [n, rs.length]))
    const busy = new Set<string>()
    const release = (n: string) =>
      Effect.gen(function* () {
        const pu = byName.get(n)
        if (pu?.stage.release === undefined || manifest.units[n]?.status !== "done") return
        // What is released (a download) is on disk no longer: its readers' records are, first.
        yield* flushed
        yield* pu.stage.release(pu.unit, ownInput(pu), config)
      })
    /** A unit is settled: its readers may go, and what it read may be released once no one else reads it. */
    const settle = (pu: PlannedUnit) =>
      Effect.gen(function* () {
        yield* Deferred.succeed(finished.get(pu.name)!, undefined)
        if ((readers.get(pu.name) ?? 0) === 0) yield* release(pu.name)
        for (const n of pu.inputNames) {
          const left = (readers.get(n) ?? 1) - 1
          readers.set(n, left)
          if (left === 0) yield* release(n)
        }
      })
    const admitted = (pu: PlannedUnit, lane: string) =>
      Effect.gen(function* () {
        const admit = pu.stage.admit
        if (admit === undefined) return
        while (!(yield* admit(pu.unit, config)) && [...busy].some((l) => l !== lane)) yield* Effect.sleep("250 millis")
      })

    const decide = (pu: PlannedUnit, lane: string) =>
      Effect.gen(function* () {
        const stage = pu.stage
        if (only && !only.has(stage.name)) {
          const ok = current.get(pu.name)!
          if (!ok) bad.add(pu.name)
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: ok ? "up-to-date" : "not-run" })
          return
        }
        const blockedBy = pu.inputNames.find((n) => bad.has(n))
        if (blockedBy) {
          bad.add(pu.name)
          const upFailed = manifest.units[blockedBy]?.status === "failed"
          const message = `needs ${blockedBy}, which ${upFailed ? "failed" : only ? "is not done (run without --only first)" : "did not run"}`
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "blocked", message })
          return
        }
        const must =
          force.has(stage.name) ||
          rematerialize.has(pu.name) ||
          pu.inputNames.some((n) => ranThisRun.has(n)) ||
          pu.softNames.some((n) => ranThisRun.has(n)) ||
          !current.get(pu.name)
        if (!must) {
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "up-to-date" })
          return
        }
        if (stop) {
          bad.add(pu.name)
          outcomes.push({ stage: stage.name, id: pu.unit.id, outcome: "not-run" })
          return
        }
        yield* admitted(pu, lane)
        busy.add(lane)
        const result = yield* Effect.ensuring(runUnit(config, store, pu, manifest, reporter, record, executor), Effect.sync(() => busy.delete(lane)))
        outcomes.push(result)
        if (result.outcome === "ran" && stage.recorded !== undefined) yield* stage.recorded(pu.unit, ownInput(pu), config)
        if (result.outcome === "ran") {
          // --force re-runs everything downstream, whatever the forced units wrote.
          if (!result.unchanged || force.has(stage.name)) ranThisRun.add(pu.name)
        } else {
          bad.add(pu.name)
          if (!options.keepGoing) stop = true
        }
      })

    const runLane = (lane: string, units: ReadonlyArray<PlannedUnit>) =>
      Effect.forEach(
        units,
        (pu) =>
          Effect.gen(function* () {
            for (const n of [...pu.inputNames, ...pu.softNames]) {
              const d = finished.get(n)
              if (d) yield* Deferred.await(d)
            }
            yield* decide(pu, lane)
            yield* settle(pu)
          }),
        { discard: true },
      )
    if (executor.concurrent) {
      // Every unit as soon as its inputs are settled (a unit is its own lane for `admit`).
      yield* Effect.forEach(plan, (pu) => runLane(pu.name, [pu]), { concurrency: "unbounded", discard: true })
    } else yield* Effect.forEach([...lanes], ([lane, units]) => runLane(lane, units), { concurrency: "unbounded", discard: true })
    yield* flushed
    // Outcomes in plan order, whatever order the lanes finished in.
    outcomes.sort((a, b) => planIndex.get(unitName(a.stage, a.id))! - planIndex.get(unitName(b.stage, b.id))!)

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
    const byRunner = new Map<string, number>()
    for (const o of outcomes) if (o.where !== undefined) byRunner.set(o.where, (byRunner.get(o.where) ?? 0) + 1)
    if (byRunner.size) reporter.log(`units per runner: ${[...byRunner].sort((a, b) => a[0].localeCompare(b[0])).map(([w, n]) => `${w} ${n}`).join(", ")}`)
    if (failed.length || blocked.length) {
      const lines = [...failed, ...blocked].slice(0, 20).map((o) => `  ${o.stage}/${o.id}: ${o.message}`)
      const more = failed.length + blocked.length > 20 ? [`  … and ${failed.length + blocked.length - 20} more`] : []
      const hint = failed.length && !options.keepGoing && count("not-run") ? ["  (stopped at the first failure; --keep-going runs the independent units too)"] : []
      return yield* Effect.fail(
        new RunError({
          message: [`${failed.length} unit(s) failed${blocked.length ? `, ${blocked.length} blocked` : ""}:`, ...lines, ...more, ...hint].join("\n"),
          details: failed.map((o) => [`${o.stage}/${o.id}:`, ...(o.causes ?? []).map((c) => `  ${c.split("\n").join("\n  ")}`)].join("\n")),
        }),
      )
    }
    return summary
  }).pipe(Effect.scoped) as Effect.Effect<RunSummary, RunError, RunStore | (S extends Stage<any, infer R> ? R : never)>

/** The outputs of an upstream unit, as the manifest records them, read through the store. */
const unitInput = (store: RunStoreShape, manifest: Manifest, ref: UnitRef): UnitInput => {
  const name = unitName(ref.stage, ref.id)
  const record = manifest.units[name]
  const files = record?.status === "done" ? record.files.map((f) => f.path) : []
  const shown = (rel: string) => (store.location.startsWith("memory:") ? `${store.location}/${rel}` : displayPath(path.join(store.location, rel)))
  const recorded = (rel: string): Effect.Effect<string, UnitError> =>
    record?.status !== "done"
      ? Effect.fail(new UnitError({ message: `${name} is not done${record?.status === "failed" ? ` (it failed: ${record.error ?? "?"})` : ""}, so ${rel} cannot be read` }))
      : files.includes(rel)
        ? Effect.succeed(rel)
        : Effect.fail(new UnitError({ message: `${name} recorded no ${rel} (it wrote ${files.length ? files.slice(0, 3).join(", ") + (files.length > 3 ? ", …" : "") : "nothing"}); re-run it` }))
  const fromStore = (rel: string) => (e: StoreError) => new UnitError({ message: e.reason === "NotFound" ? `file missing (written by ${name}; re-run it)` : e.detail, path: shown(rel), cause: e })
  const pathOf = (file: TableFile | string) => (typeof file === "string" ? file : file.path)
  /**
   * What is read must be what the unit wrote: a file whose CRC-32 differs from the recorded one
   * fails this read, and the producing unit is marked failed in the manifest, so the next run
   * writes it again (and re-runs what depends on it).
   */
  const verify = (rel: string, crc: () => number): Effect.Effect<void, UnitError> =>
    Effect.suspend(() => {
      const want = record?.files.find((f) => f.path === rel)?.crc32
      if (want === undefined) return Effect.void
      const got = crc()
      if (got === want) return Effect.void
      const error = `${rel} changed since it was written (CRC-32 ${got.toString(16)}, written ${want.toString(16)})`
      if (record !== undefined) manifest.units[name] = { ...record, status: "failed", error }
      return Effect.fail(new UnitError({ message: `its content is not what ${name} wrote; the next run writes it again`, path: shown(rel) }))
    })
  const verifyLocal = (rel: string): Effect.Effect<void, UnitError> =>
    Option.match(store.localPath(rel), {
      onSome: (p) => verify(rel, () => crc32OfFile(p)),
      onNone: () => Effect.flatMap(Effect.mapError(store.readBytes(rel), fromStore(rel)), (b) => verify(rel, () => zlib.crc32(b))),
    })
  return {
    ref,
    status: record === undefined ? "missing" : record.status,
    ...(record?.status === "failed" && record.error !== undefined ? { error: record.error } : {}),
    ...(record !== undefined ? { seconds: record.seconds } : {}),
    files,
    read: (file, options = {}) =>
      Effect.gen(function* () {
        const rel = yield* recorded(file.path)
        const bytes = yield* Effect.mapError(store.readBytes(rel), fromStore(rel))
        yield* verify(rel, () => zlib.crc32(bytes))
        const table: arrow.Table = yield* Effect.try({
          try: () => decodeParquet(bytes, options.columns ? { columns: [...options.columns] } : {}),
          catch: (e) => new UnitError({ message: `not a readable Parquet file (${firstLine(e)}; written by ${name}; re-run it)`, path: shown(rel), cause: e }),
        })
        yield* Effect.try({
          try: () => file.table.check(table, options.columns as never),
          catch: (e) => new UnitError({ message: `${firstLine(e)} (written by ${name}; re-run it)`, path: shown(rel), cause: e }),
        })
        return table
      }),
    open: (file) =>
      Effect.flatMap(recorded(pathOf(file)), (rel) => Effect.zipRight(verifyLocal(rel), Effect.mapError(openParquet(store, rel), fromStore(rel)))),
    bytes: (rel) =>
      Effect.flatMap(recorded(rel), (r) => Effect.tap(Effect.mapError(store.readBytes(r), fromStore(r)), (b) => verify(r, () => zlib.crc32(b)))),
    localPath: (rel) =>
      Effect.flatMap(Effect.tap(recorded(rel), verifyLocal), (r) =>
        Option.match(store.localPath(r), {
          onSome: (p) => Effect.succeed(p),
          onNone: () => Effect.fail(new UnitError({ message: `needs its input files on a local disk (the run store ${store.location} has none)`, path: shown(r) })),
        }),
      ),
  }
}

/** What makeUnitContext needs: the unit, the manifest its inputs are recorded in, where to report. */
export interface ContextArgs {
  readonly config: Config
  readonly store: RunStoreShape
  readonly stage: string
  readonly id: string
  readonly manifest: Manifest
  /** Names (`stage/id`) of the upstream units the unit may read: its inputs and soft inputs. */
  readonly allowed: ReadonlyArray<string>
  readonly progress: Progress
  readonly log: (message: string) => void
}

/**
 * The UnitContext of one unit over a run store, and the files it writes as it writes them (the
 * runner records them in the manifest when the unit succeeds). Tests and benchmarks use it to run
 * a stage's unit against planted inputs (test/fixtures/planted.ts).
 */
export const makeUnitContext = (a: ContextArgs): { readonly ctx: UnitContext; readonly written: FileRecord[] } => {
  const { config, store, manifest } = a
  const written: FileRecord[] = []
  const record = (rel: string, bytes: number, crc32: number) => {
    const i = written.findIndex((w) => w.path === rel)
    if (i >= 0) written.splice(i, 1)
    written.push({ path: rel, bytes, crc32 })
  }
  const cannotWrite = (e: StoreError) => new UnitError({ message: `${displayPath(e.path)}: ${e.detail}`, cause: e })
  /** Write and record a file with its size and its CRC-32 (of the bytes in hand: no second read). */
  const writeBytes = (rel: string, bytes: Uint8Array) =>
    Effect.map(Effect.mapError(store.writeAtomic(rel, bytes), cannotWrite), (n) => record(rel, n, zlib.crc32(bytes)))
  const allowed = new Set(a.allowed)
  const refs = a.allowed.map((n): UnitRef => ({ stage: n.slice(0, n.indexOf("/")), id: n.slice(n.indexOf("/") + 1) }))
  const inputs = new Map<string, UnitInput>()
  const self = unitName(a.stage, a.id)
  const ctx: UnitContext = {
    config,
    stage: a.stage,
    id: a.id,
    runDir: store.location,
    cacheDir: store.cacheDir,
    writeParquet: (file, table, opts) => {
      const rel = typeof file === "string" ? file : file.path
      const options = opts ?? (typeof file === "string" ? undefined : file.writeOptions)
      return Effect.flatMap(
        Effect.try({
          try: () => encodeParquet(table, options),
          catch: (e) => new UnitError({ message: `cannot encode ${rel} as Parquet: ${firstLine(e)}`, cause: e }),
        }),
        (bytes) => writeBytes(rel, bytes),
      )
    },
    parquetWriter: (file, opts) => {
      const rel = typeof file === "string" ? file : file.path
      const options = opts ?? (typeof file === "string" ? undefined : file.writeOptions)
      const schema = typeof file === "string" ? undefined : file.table.schema
      return Effect.map(Effect.mapError(writeParquetStream(store, rel, { ...options, schema }), cannotWrite), (w) => ({
        write: (table) => Effect.mapError(w.write(table), cannotWrite),
        close: Effect.map(Effect.mapError(w.close, cannotWrite), (f) => record(rel, f.bytes, f.crc32)),
      }))
    },
    writeFile: (rel, data) => writeBytes(rel, typeof data === "string" ? new TextEncoder().encode(data) : data),
    input: (ref) => {
      const name = unitName(ref.stage, ref.id)
      if (!allowed.has(name)) throw new Error(`${self} reads ${name}, which it does not declare as an input (its key would not cover it)`)
      let input = inputs.get(name)
      if (input === undefined) inputs.set(name, (input = unitInput(store, manifest, ref)))
      return input
    },
    inputs: refs,
    progress: a.progress,
    log: (m) => Effect.sync(() => a.log(m)),
  }
  return { ctx, written }
}

/** What running one unit produced, wherever it ran (this process, or a cluster runner). */
export interface UnitExecution {
  readonly ok: boolean
  /** The files it wrote, in order, with their sizes and CRC-32s. */
  readonly files: ReadonlyArray<FileRecord>
  readonly started: string
  readonly seconds: number
  /** A failure's one-line message, and its chain of causes (for --verbose). */
  readonly message?: string
  readonly causes?: ReadonlyArray<string>
  /** Upstream units whose files it found changed since they were written (name → error): marked failed, so the next run writes them again. */
  readonly corrupt?: Readonly<Record<string, string>>
  /** Where it ran (a cluster runner's name); absent in this process. */
  readonly where?: string
}

/** One unit to execute: what the unit reads is given as the manifest records of its allowed inputs. */
export interface UnitJob {
  readonly config: Config
  readonly stage: Stage<any, any>
  readonly unit: UnitPlan
  /** `stage/id`. */
  readonly name: string
  /** Its key (a cluster executor names the execution by it). */
  readonly key: string
  /** Names (`stage/id`) of the upstream units it may read: its inputs and soft inputs. */
  readonly allowed: ReadonlyArray<string>
  /** The manifest records of those units (absent: not in the manifest). */
  readonly inputs: Readonly<Record<string, UnitRecord>>
  /** The unit's own record before this run (a cluster executor tells a new execution from a re-attached one by it). */
  readonly previous?: UnitRecord
  /** The run folder's instance (Manifest.instance). */
  readonly instance: string
}

/**
 * Where units run. The local executor runs each in this process, one at a time per lane; a
 * concurrent one (the cluster, pipeline/cluster/) takes every unit whose inputs are done at once.
 */
export interface Executor<R = never> {
  readonly concurrent: boolean
  /**
   * A finished unit's result is durable outside this process (the cluster's storage), and a run
   * started again after this one was killed is answered from there: the manifest is then written
   * at most once every MANIFEST_EVERY_MS while units finish (and always before the run ends),
   * not after every unit. `status` during such a run may lag by that much.
   */
  readonly durable?: boolean
  readonly execute: (job: UnitJob, store: RunStoreShape, progress: Progress, log: (m: string) => void) => Effect.Effect<UnitExecution, RunError, R>
}

/**
 * Run a unit's stage over a run store, with its inputs as recorded: the whole of a unit's work,
 * here or in a cluster runner's worker thread. Interruption propagates; every other way of ending
 * is an execution (a failure is `ok: false` with its message).
 */
export const executeUnit = (
  job: UnitJob,
  store: RunStoreShape,
  progress: Progress,
  log: (m: string) => void,
): Effect.Effect<UnitExecution, never, any> =>
  Effect.gen(function* () {
    const view: Manifest = { version: 1, run: job.config.run, units: { ...job.inputs } }
    const { ctx, written } = makeUnitContext({
      config: job.config,
      store,
      stage: job.stage.name,
      id: job.unit.id,
      manifest: view,
      allowed: job.allowed,
      progress,
      log,
    })
    const started = new Date().toISOString()
    const t0 = performance.now()
    const exit = yield* Effect.exit(Effect.suspend(() => job.stage.run(job.unit, ctx)))
    const seconds = (performance.now() - t0) / 1000
    const corrupt = Object.fromEntries(
      Object.entries(view.units)
        .filter(([n, r]) => r.status === "failed" && job.inputs[n]?.status === "done")
        .map(([n, r]) => [n, r.error ?? "changed since it was written"]),
    )
    const base = { files: [...written], started, seconds, ...(Object.keys(corrupt).length ? { corrupt } : {}) }
    if (Exit.isSuccess(exit)) return { ...base, ok: true } satisfies UnitExecution
    if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.interrupt
    const { message, causes } = failureOf(exit.cause)
    return { ...base, ok: false, message, causes } satisfies UnitExecution
  })

/** Runs every unit in this process. */
export const localExecutor: Executor<any> = { concurrent: false, execute: executeUnit }

const runUnit = (
  config: Config,
  store: RunStoreShape,
  pu: PlannedUnit,
  manifest: Manifest,
  reporter: Reporter,
  record: (unit: string, failure?: string) => Effect.Effect<void, RunError>,
  executor: Executor<any>,
): Effect.Effect<UnitOutcome, RunError, any> =>
  Effect.gen(function* () {
    const slot = reporter.beginUnit(pu.stage.name, pu.unit.id, pu.unit.weight ?? 1)
    const allowed = [...pu.inputNames, ...pu.softNames]
    const inputs = Object.fromEntries(allowed.flatMap((n) => (manifest.units[n] ? [[n, manifest.units[n]] as const] : [])))
    const job: UnitJob = {
      config,
      stage: pu.stage,
      unit: pu.unit,
      name: pu.name,
      key: pu.key,
      allowed,
      inputs,
      instance: manifest.instance ?? "",
      ...(manifest.units[pu.name] ? { previous: manifest.units[pu.name] } : {}),
    }
    const exec = yield* executor.execute(job, store, slot.progress, (m) => reporter.log(m)).pipe(
      Effect.onInterrupt(() => Effect.sync(() => slot.end(false, 0, "interrupted", true))),
    )
    // An input whose file changed since it was written is marked failed: the next run writes it again.
    for (const [n, error] of Object.entries(exec.corrupt ?? {})) {
      const r = manifest.units[n]
      if (r !== undefined) manifest.units[n] = { ...r, status: "failed", error }
    }
    const stamp = (n: string) => (manifest.units[n]?.status === "done" ? manifest.units[n].started : "")
    const stamps = Object.fromEntries(allowed.map((n) => [n, stamp(n)]))
    // Params round-tripped through JSON, as the manifest will hold them.
    const params: unknown = JSON.parse(JSON.stringify(pu.unit.params ?? null))
    const written = exec.files
    const { seconds, started } = exec
    const base = { stage: pu.stage.name, id: pu.unit.id, key: pu.key, parts: pu.parts, params, files: [...written], started, seconds, inputs: stamps }
    if (exec.ok) {
      const old = manifest.units[pu.name]
      // Early cutoff: the same key and byte-identical outputs (a download made again after it was
      // released) change nothing downstream, so the record keeps its stamp and readers stay done.
      const unchanged =
        old?.status === "done" &&
        old.key === pu.key &&
        old.files.length === written.length &&
        written.every((w) => old.files.some((f) => f.path === w.path && f.bytes === w.bytes && f.crc32 === w.crc32))
      manifest.units[pu.name] = { ...base, ...(unchanged ? { started: old.started } : {}), status: "done" } satisfies UnitRecord
      yield* record(pu.name)
      // Files the unit wrote last time but not this time are no longer outputs.
      for (const f of old?.files ?? []) {
        if (!written.some((w) => w.path === f.path)) yield* Effect.ignore(store.remove(f.path))
      }
      slot.end(true, seconds, undefined, false, exec.where)
      return { stage: pu.stage.name, id: pu.unit.id, outcome: "ran", seconds, ...(unchanged ? { unchanged } : {}), ...(exec.where ? { where: exec.where } : {}) } satisfies UnitOutcome
    }
    const message = exec.message ?? "failed"
    manifest.units[pu.name] = { ...base, status: "failed", error: message } satisfies UnitRecord
    yield* record(pu.name, message)
    slot.end(false, seconds, message, false, exec.where)
    return { stage: pu.stage.name, id: pu.unit.id, outcome: "failed", message, causes: [...(exec.causes ?? [])], seconds, ...(exec.where ? { where: exec.where } : {}) } satisfies UnitOutcome
  })
