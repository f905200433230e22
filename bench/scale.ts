/**
 * npm run bench:scale [-- --tokens 1e6,5e7 --checkpoints 30]
 *
 * aggregate → regress → classify end to end at scale: for each N, a temp folder gets a planted
 * run of one model × one dataset — tokens/dataset=valid/tokens.parquet (the tokenize stage's
 * columns and encoding) and C checkpoints of scores/model=m/step=S/dataset=valid/scores.parquet
 * (the score stage's table, encoding and row groups of 65,536), written by bench/scale-plant.ts
 * in bounded memory — then the three stages' real run functions run on it through the real
 * UnitContext (test/fixtures/planted.ts), each stage in its own child process, so that its peak
 * RSS (process.resourceUsage().maxRSS, worker threads included) is that stage's alone.
 * One model suffices: classify's reference model (analysis.reference_model) defaults to the only
 * model, and regress fits each model on its own.
 *
 * One token-regression = one token at one threshold on one x-axis (DESIGN.md "Regression":
 * defaults 7 thresholds 0.1…0.7 × the log_step axis = 7 per token):
 *   token_regressions_per_s = N × thresholds × x_axes / regress_s
 * Targets: peak RSS of every stage at the largest N within 1.3× of the smallest N's, and
 * ≥ 2,000,000 token-regressions/s for regress at the largest N.
 *
 * Before planting it checks the free disk (fs.statfs) against an estimate of what the run
 * writes, and lowers N, saying so, when it does not fit. The temp folder is deleted at the end,
 * after a failure, and on Ctrl-C. Prints progress lines, and as its last line one JSON object.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Config } from "../pipeline/config.ts"
import type { Stage } from "../pipeline/stage.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { checkpointsFile } from "../stages/aggregate/contract.ts"
import { classifyStage } from "../stages/classify/index.ts"
import { regressStage } from "../stages/regress/index.ts"
import { scoresFile, scoreUnit } from "../stages/score/contract.ts"
import { tokenizeUnit, tokensFile } from "../stages/tokenize/contract.ts"
import { type Outputs, plantedConfig, runPlanted } from "../test/fixtures/analysis.ts"
import { checkStreamedLikeStore, writeScores, writeTokens } from "./scale-plant.ts"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const say = (s: string) => console.log(`[bench:scale] ${s}`)
const ROW_GROUP = 65_536
const MODEL = "m"
const DATASET = "valid"
const RSS_TARGET = 1.3
const THROUGHPUT_TARGET = 2_000_000

/**
 * Bytes on disk per token, measured on this bench's data (30 checkpoints, 7 thresholds, 1 axis):
 * a score file 10.4 B/token, the tokens table ~9 B, a regression row 42 B, a class row ~1.6 B.
 * Rounded up by ~10%; the folder's real size is printed after each run.
 */
const bytesPerToken = (checkpoints: number, regressions: number) => 11.5 * checkpoints + 10 + 46 * regressions + 2 * regressions
/** Left free on the disk, whatever the bench writes (other work shares it). */
const DISK_RESERVE = 4 * 2 ** 30

const configFor = (dir: string, checkpoints: number): Config =>
  plantedConfig(
    path.join(dir, "run"),
    [{ name: MODEL, params: 1e7, tokens_per_step: 4096, steps: Array.from({ length: checkpoints }, (_, c) => (c + 1) * 1000) }],
    [DATASET],
    {},
    ROW_GROUP,
    os.availableParallelism(),
  )

/** What the upstream units recorded: score and tokenize (planted), aggregate once it has run. */
const outputsFor = (config: Config): Outputs => {
  const o: Outputs = new Map()
  const abs = (rel: string) => path.join(config.runDir, rel)
  for (const cp of config.models[0].checkpoints) {
    const r = scoreUnit(MODEL, cp.step, DATASET)
    o.set(`${r.stage}/${r.id}`, [abs(scoresFile(MODEL, cp.step, DATASET).path)])
  }
  const t = tokenizeUnit(DATASET)
  o.set(`${t.stage}/${t.id}`, [abs(tokensFile(DATASET).path)])
  if (fs.existsSync(abs(checkpointsFile.path))) o.set("aggregate/all", [abs(checkpointsFile.path)])
  return o
}

// ── children ─────────────────────────────────────────────────────────────────────────────────

/** Plant checkpoints part, part + parts, … (and, for part 0, the tokens table). */
const childPlant = async (dir: string, tokens: number, checkpoints: number, part: number, parts: number) => {
  const config = configFor(dir, checkpoints)
  const steps = config.models[0].checkpoints.map((c) => c.step)
  if (part === 0) {
    await checkStreamedLikeStore(ROW_GROUP)
    await writeTokens(path.join(config.runDir, tokensFile(DATASET).path), tokens)
  }
  for (let c = part; c < checkpoints; c += parts) {
    await writeScores(path.join(config.runDir, scoresFile(MODEL, steps[c], DATASET).path), tokens, steps, c, ROW_GROUP)
  }
  console.log(JSON.stringify({ peak_rss_mb: process.resourceUsage().maxRSS / 1024 }))
}

const STAGES: Record<string, Stage<any, any>> = { aggregate: aggregateStage, regress: regressStage, classify: classifyStage }

/** Run every unit of one stage on the planted run; report its time and this process's peak RSS. */
const childStage = async (dir: string, checkpoints: number, name: string) => {
  const config = configFor(dir, checkpoints)
  const o = outputsFor(config)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const err = await runPlanted(STAGES[name], config, o)
  if (err) throw new Error(err.message)
  const s = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  console.log(JSON.stringify({ s, cpu_s: (cpu.user + cpu.system) / 1e6, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }))
}

// ── parent ───────────────────────────────────────────────────────────────────────────────────

const self = fileURLToPath(import.meta.url)
const tsx = path.resolve(path.dirname(self), "../node_modules/.bin/tsx")
const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

const removeTemp = () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true })
  tempDirs.clear()
}

/** Run this script as a child with `args`; resolves with the JSON of its last stdout line. */
const child = (args: string[]): Promise<Record<string, number>> =>
  new Promise((resolve, reject) => {
    const p = spawn(tsx, [self, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    children.add(p)
    let out = ""
    let err = ""
    p.stdout.on("data", (b) => (out += b))
    p.stderr.on("data", (b) => (err += b))
    p.on("error", reject)
    p.on("close", (code, signal) => {
      children.delete(p)
      if (code !== 0) return reject(new Error(`child ${args.join(" ")} ${signal ? `killed by ${signal}` : `exited ${code}`}:\n${err}${out}`))
      const lines = out.trim().split("\n")
      resolve(JSON.parse(lines[lines.length - 1]))
    })
  })

/** Bytes of every file under `dir`. */
const duBytes = (dir: string): number =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true }).reduce((n, e) => (e.isFile() ? n + fs.statSync(path.join(e.parentPath, e.name)).size : n), 0)

/** N, or the largest multiple of 1M tokens (of a row group below 1M) whose run fits the free disk. */
const fitDisk = (tokens: number, checkpoints: number, regressions: number): number => {
  const st = fs.statfsSync(os.tmpdir())
  const free = st.bavail * st.bsize
  const per = bytesPerToken(checkpoints, regressions)
  const need = tokens * per
  if (need + DISK_RESERVE <= free) return tokens
  const step = tokens >= 1e6 ? 1e6 : ROW_GROUP
  const fit = Math.floor((free - DISK_RESERVE) / per / step) * step
  say(
    `${tokens.toLocaleString("en")} tokens need ~${(need / 2 ** 30).toFixed(1)} GiB on ${os.tmpdir()}, which has ${(free / 2 ** 30).toFixed(1)} GiB free ` +
      `(${(DISK_RESERVE / 2 ** 30).toFixed(0)} GiB kept free): running ${fit.toLocaleString("en")} tokens instead`,
  )
  if (fit < ROW_GROUP) throw new Error(`not enough free disk on ${os.tmpdir()} for even ${ROW_GROUP} tokens`)
  return fit
}

interface StageFigures {
  s: number
  cpu_s: number
  peak_rss_mb: number
}

const runSize = async (requested: number, checkpoints: number, regressionsPerToken: number) => {
  const tokens = fitDisk(requested, checkpoints, regressionsPerToken)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "trajectories-bench-scale-"))
  tempDirs.add(dir)
  try {
    const parts = Math.max(1, Math.min(2, os.availableParallelism()))
    say(`${tokens.toLocaleString("en")} tokens × ${checkpoints} checkpoints: planting tokens and score files in ${dir} (${parts} processes)…`)
    const t0 = performance.now()
    const plant = await Promise.all(
      Array.from({ length: parts }, (_, part) =>
        child(["--child", "plant", "--dir", dir, "--tokens", String(tokens), "--checkpoints", String(checkpoints), "--part", String(part), "--parts", String(parts)]),
      ),
    )
    const plant_s = (performance.now() - t0) / 1000
    const planted = duBytes(dir)
    say(`  planted ${(planted / 2 ** 30).toFixed(2)} GiB in ${plant_s.toFixed(0)} s (peak RSS ${Math.max(...plant.map((p) => p.peak_rss_mb)).toFixed(0)} MB)`)
    const stages: Record<string, StageFigures> = {}
    for (const name of Object.keys(STAGES)) {
      const r = (await child(["--child", "stage", "--stage", name, "--dir", dir, "--checkpoints", String(checkpoints)])) as unknown as StageFigures
      stages[name] = r
      const extra = name === "regress" ? `, ${Math.round((tokens * regressionsPerToken) / r.s).toLocaleString("en")} token-regressions/s` : ""
      say(`  ${name.padEnd(9)} ${r.s.toFixed(1).padStart(7)} s (CPU ${r.cpu_s.toFixed(1)} s), peak RSS ${r.peak_rss_mb.toFixed(0)} MB${extra}`)
    }
    const total = duBytes(dir)
    say(`  run folder ${(total / 2 ** 30).toFixed(2)} GiB (${(total / tokens).toFixed(1)} B/token; load ${os.loadavg()[0].toFixed(1)})`)
    const round = (f: StageFigures) => ({ s: +f.s.toFixed(2), cpu_s: +f.cpu_s.toFixed(2), peak_rss_mb: Math.round(f.peak_rss_mb) })
    return {
      tokens,
      ...(tokens !== requested ? { tokens_requested: requested } : {}),
      token_regressions: tokens * regressionsPerToken,
      plant_s: +plant_s.toFixed(1),
      disk_gib: +(total / 2 ** 30).toFixed(2),
      aggregate: round(stages.aggregate),
      regress: { ...round(stages.regress), token_regressions_per_s: Math.round((tokens * regressionsPerToken) / stages.regress.s) },
      classify: round(stages.classify),
      load_avg_1m: +os.loadavg()[0].toFixed(2),
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
    tempDirs.delete(dir)
  }
}

const mode = arg("child", "")
if (mode === "plant") {
  await childPlant(arg("dir", ""), Number(arg("tokens", "0")), Number(arg("checkpoints", "30")), Number(arg("part", "0")), Number(arg("parts", "1")))
} else if (mode === "stage") {
  await childStage(arg("dir", ""), Number(arg("checkpoints", "30")), arg("stage", ""))
} else {
  const onSignal = (sig: NodeJS.Signals) => {
    say(`${sig}: stopping, removing the temp folder`)
    for (const p of children) p.kill("SIGKILL")
    removeTemp()
    process.exit(130)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  process.on("exit", removeTemp)
  const t0 = performance.now()
  const sizes = arg("tokens", "1e6,5e7").split(",").map((s) => Math.round(Number(s)))
  if (sizes.some((n) => !(n >= 1))) throw new Error(`--tokens: expected numbers like 1e6,5e7, got ${arg("tokens", "")}`)
  const checkpoints = Number(arg("checkpoints", "30"))
  const a = configFor(os.tmpdir(), checkpoints).analysis
  const perToken = a.thresholds.length * a.x_axes.length
  const runs = []
  for (const n of sizes) runs.push(await runSize(n, checkpoints, perToken))
  const first = runs[0]
  const last = runs[runs.length - 1]
  const ratios = Object.fromEntries((["aggregate", "regress", "classify"] as const).map((s) => [s, +(last[s].peak_rss_mb / first[s].peak_rss_mb).toFixed(2)]))
  const worst = Math.max(...Object.values(ratios))
  const perS = last.regress.token_regressions_per_s
  const out = {
    bench: "scale",
    checkpoints,
    thresholds: a.thresholds.length,
    x_axes: a.x_axes.length,
    row_group_size: ROW_GROUP,
    cores: os.availableParallelism(),
    sizes: runs,
    peak_rss_ratio: { of: `${last.tokens}/${first.tokens} tokens`, per_stage: ratios, value: worst, target: RSS_TARGET, met: worst <= RSS_TARGET },
    throughput: { of: `regress at ${last.tokens} tokens`, token_regressions_per_s: perS, target: THROUGHPUT_TARGET, met: perS >= THROUGHPUT_TARGET },
    wall_s: Math.round((performance.now() - t0) / 1000),
  }
  console.log(JSON.stringify(out))
}
