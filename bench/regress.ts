/**
 * npm run bench:regress [-- --sizes 1000000,2000000 --checkpoints 30]
 *
 * regress + classify from Parquet on disk: for each size, synthetic score files (one model, N
 * tokens × C checkpoints, row groups of 65,536 as the score stage writes them) and a tokens table
 * are written to a temp folder by one child process (which also runs aggregate, untimed for the
 * target, and flushes the files to disk), then a second child process runs the regress and
 * classify stages' units on them and reports its time and peak RSS
 * (process.resourceUsage().maxRSS), so the figure is the two stages' own memory. Default
 * thresholds (0.1…0.7) and x-axis (log_step).
 *
 * One token-regression = one token at one threshold on one x-axis:
 *   token_regressions_per_s = N × thresholds × x_axes / (regress_s + classify_s)
 * Targets (2-core machine): ≥ 1,000,000 per second; peak RSS < 1.5 GB and flat in N.
 * cpu_s (all threads of the run child) and the 1-minute load average are printed too: on a
 * shared machine the wall-clock figure depends on what else runs.
 * Prints progress lines, and as its last line one JSON object of the figures.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Config } from "../pipeline/config.ts"
import { checkpointsFile } from "../stages/aggregate/contract.ts"
import { scoresFile } from "../stages/score/contract.ts"
import { tokensFile } from "../stages/tokenize/contract.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { classifyStage } from "../stages/classify/index.ts"
import { regressStage } from "../stages/regress/index.ts"
import { type Outputs, plantScores, plantTokens, plantedConfig, runPlanted } from "../test/fixtures/analysis.ts"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const say = (s: string) => console.log(`[bench:regress] ${s}`)
const ROW_GROUP = 65_536

const configFor = (dir: string, checkpoints: number): Config =>
  plantedConfig(
    path.join(dir, "run"),
    [{ name: "m", params: 1e7, tokens_per_step: 4096, steps: Array.from({ length: checkpoints }, (_, c) => (c + 1) * 1000) }],
    ["valid"],
    {},
    ROW_GROUP,
    os.availableParallelism(),
  )

/** What the upstream units of a planted run recorded (score, tokenize, aggregate). */
const outputsFor = (config: Config): Outputs => {
  const o: Outputs = new Map()
  for (const cp of config.models[0].checkpoints) {
    o.set(`score/model=m/step=${cp.step}/dataset=valid`, [path.join(config.runDir, scoresFile("m", cp.step, "valid").path)])
  }
  o.set("tokenize/dataset=valid", [path.join(config.runDir, tokensFile("valid").path)])
  o.set("aggregate/all", [path.join(config.runDir, checkpointsFile.path)])
  return o
}

/**
 * Deterministic synthetic trajectories: per token a base ln p, a trend on ln step (mostly
 * falling, some rising, some flat, a few rise-then-fall) and Gaussian noise of 0.05–0.3 nats.
 * @returns [checkpoints] arrays of [tokens] log-probs
 */
const synthesize = (tokens: number, steps: ReadonlyArray<number>): Float32Array[] => {
  let seed = 12345
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand())
  const lp = steps.map(() => new Float32Array(tokens))
  const x = steps.map((s) => Math.log(s / steps[0]))
  const xPeak = x[Math.floor(x.length * 0.6)]
  for (let i = 0; i < tokens; i++) {
    const kind = rand()
    const base = 1 + 6 * rand()
    const slope = kind < 0.55 ? -0.05 - 0.3 * rand() : kind < 0.65 ? 0.05 + 0.3 * rand() : 0
    const bump = kind > 0.96 ? 1 + rand() : 0
    const sigma = 0.05 + 0.25 * rand()
    for (let c = 0; c < steps.length; c++) {
      const L = base + slope * x[c] + bump * Math.max(0, 1 - Math.abs(x[c] - xPeak)) + sigma * gauss()
      lp[c][i] = -L
    }
  }
  return lp
}

const CATEGORY_NAMES = ["content", "function", "punctuation", "piece", "number"]

const childGen = async (dir: string, tokens: number, checkpoints: number) => {
  const config = configFor(dir, checkpoints)
  const o: Outputs = new Map()
  plantScores(config, o, "m", "valid", synthesize(tokens, config.models[0].checkpoints.map((c) => c.step)))
  plantTokens(config, o, "valid", Array.from({ length: tokens }, (_, i) => CATEGORY_NAMES[(i * 7919) % 5]))
  const t0 = performance.now()
  const err = await runPlanted(aggregateStage, config, o)
  if (err) throw new Error(err.message)
  const aggregate_s = (performance.now() - t0) / 1000
  // Flush the ~200 MB just written to disk now, so that the kernel's write-back of this fixture
  // does not run during (and get timed as part of) the stages measured next.
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue
    const fd = fs.openSync(path.join(e.parentPath, e.name), "r")
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }
  console.log(JSON.stringify({ aggregate_s }))
}

const childRun = async (dir: string, checkpoints: number) => {
  const config = configFor(dir, checkpoints)
  const o = outputsFor(config)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const e1 = await runPlanted(regressStage, config, o)
  if (e1) throw new Error(e1.message)
  const t1 = performance.now()
  const e2 = await runPlanted(classifyStage, config, o)
  if (e2) throw new Error(e2.message)
  const t2 = performance.now()
  const cpu = process.cpuUsage(cpu0)
  console.log(
    JSON.stringify({
      regress_s: (t1 - t0) / 1000,
      classify_s: (t2 - t1) / 1000,
      cpu_s: (cpu.user + cpu.system) / 1e6,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    }),
  )
}

const self = fileURLToPath(import.meta.url)
const tsx = path.resolve(path.dirname(self), "../node_modules/.bin/tsx")
const child = (args: string[]): Record<string, number> => {
  const r = spawnSync(tsx, [self, ...args], { encoding: "utf8", maxBuffer: 1 << 24 })
  if (r.status !== 0) throw new Error(`child ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`)
  const lines = r.stdout.trim().split("\n")
  return JSON.parse(lines[lines.length - 1])
}

const mode = arg("child", "")
if (mode === "gen") await childGen(arg("dir", ""), Number(arg("tokens", "0")), Number(arg("checkpoints", "30")))
else if (mode === "run") await childRun(arg("dir", ""), Number(arg("checkpoints", "30")))
else {
  const sizes = arg("sizes", "1000000,2000000").split(",").map(Number)
  const checkpoints = Number(arg("checkpoints", "30"))
  const thresholds = configFor(os.tmpdir(), checkpoints).analysis.thresholds.length
  const out: Record<string, unknown> = { bench: "regress", checkpoints, thresholds, x_axes: 1, cores: os.availableParallelism(), sizes: [] as unknown[] }
  for (const tokens of sizes) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "trajectories-bench-regress-"))
    try {
      say(`${tokens.toLocaleString("en")} tokens × ${checkpoints} checkpoints: writing score files…`)
      const gen = child(["--child", "gen", "--dir", dir, "--tokens", String(tokens), "--checkpoints", String(checkpoints)])
      say(`  aggregate ${gen.aggregate_s.toFixed(1)} s; running regress + classify…`)
      const r = child(["--child", "run", "--dir", dir, "--checkpoints", String(checkpoints)])
      const regressions = tokens * thresholds
      const perS = regressions / (r.regress_s + r.classify_s)
      say(
        `  regress ${r.regress_s.toFixed(1)} s, classify ${r.classify_s.toFixed(1)} s (CPU ${r.cpu_s.toFixed(1)} s, load ${os.loadavg()[0].toFixed(1)}) → ` +
          `${Math.round(perS).toLocaleString("en")} token-regressions/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
      )
      ;(out.sizes as unknown[]).push({
        tokens,
        token_regressions: regressions,
        regress_s: +r.regress_s.toFixed(2),
        classify_s: +r.classify_s.toFixed(2),
        aggregate_s: +gen.aggregate_s.toFixed(2),
        cpu_s: +r.cpu_s.toFixed(2),
        load_avg_1m: +os.loadavg()[0].toFixed(2),
        token_regressions_per_s: Math.round(perS),
        peak_rss_mb: Math.round(r.peak_rss_mb),
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  const s = out.sizes as Array<{ token_regressions_per_s: number; peak_rss_mb: number }>
  out.token_regressions_per_s = s[0].token_regressions_per_s
  out.peak_rss_mb = Math.max(...s.map((x) => x.peak_rss_mb))
  if (s.length > 1) out.peak_rss_ratio_largest_to_smallest = +(s[s.length - 1].peak_rss_mb / s[0].peak_rss_mb).toFixed(2)
  console.log(JSON.stringify(out))
}
