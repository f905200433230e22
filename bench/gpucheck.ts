/**
 * npm run gpucheck [-- --device cuda:0 --windows 64 --dataset press --batch N --config configs/demo.yaml --verbose]
 *
 * CUDA against CPU on the demo zoo: every checkpoint of configs/demo.yaml (tiny, small, base × 26
 * steps) scores the first `windows` windows of one dataset (default: analysis.valid_dataset, else
 * the first; tokenized as the tokenize stage does) once on CUDA device K and once on CPU, through
 * the pipeline's own path (scorerOptions over the config's `scoring` section, withScorer). The
 * per-token log-probs must agree: max |cpu − cuda| over all tokens and checkpoints ≤ 1e-3 nats.
 *
 * Prints one line per checkpoint, then tokens/s per provider (scoring only: the session's opening
 * and one warm-up batch are left out), and as its last line one JSON object of the figures.
 * Exit 0: within the bound. 1: over it. 2: the check could not run, one line saying why (a missing
 * CUDA provider: what to install, session.ts cudaFailureMessage); nothing else is printed then.
 * --verbose keeps onnxruntime's own error log (it names the shared library that did not load).
 * --device cpu is the script's own dry run on a machine without a GPU: CPU against CPU (Δ = 0).
 *
 * docs/gpu.md: how to install the CUDA provider. Not yet run on a GPU in this project.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import * as ort from "onnxruntime-node"
import { parseConfig, type Config } from "../pipeline/config.ts"
import { firstLine } from "../pipeline/errors.ts"
import { loadTokenizer } from "../lib/tokenizer-load.ts"
import { scorerOptions } from "../lib/onnx/options.ts"
import { withScorer, type ScoreRequest, type ScoreResult } from "../lib/onnx/scorer.ts"
import { tokenizeDataset } from "../stages/tokenize/index.ts"
import { windowsOf } from "../stages/score/tables.ts"

/** Largest allowed |log p_cpu − log p_cuda| of one token, nats. */
const BOUND_NATS = 1e-3

/** The check could not run: a bad argument or config (any other failure ends the same way). */
class CannotRun extends Error {}

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt
}
const positive = (name: string, dflt: string): number => {
  const v = Number(arg(name, dflt))
  if (!Number.isInteger(v) || v < 1) throw new CannotRun(`--${name} must be a positive integer (got ${arg(name, dflt)})`)
  return v
}
const say = (s: string) => console.log(`[gpucheck] ${s}`)

/** The config (paths checked), the dataset's first `n` windows as requests, and the settings of both runs. */
const prepare = async () => {
  const device = arg("device", "cuda:0")
  const m = /^cuda:(\d+)$/.exec(device)
  if (m === null && device !== "cpu") throw new CannotRun(`--device must be cuda:K, K a device number, or cpu for a dry run (got ${device})`)
  const n = positive("windows", "64")
  const file = arg("config", "configs/demo.yaml")
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    throw new CannotRun(`${file}: cannot read (${firstLine(e)})`)
  }
  const parsed = parseConfig(file, text)
  if (Either.isLeft(parsed)) throw new CannotRun(parsed.left.message)
  const config: Config = parsed.right
  const name = arg("dataset", config.analysis.valid_dataset ?? config.datasets[0].name)
  const dataset = config.datasets.find((d) => d.name === name)
  if (dataset === undefined) throw new CannotRun(`${file}: no dataset ${name} (there are ${config.datasets.map((d) => d.name).join(", ")})`)
  const tokenizer = await loadTokenizer(config.tokenizer)
  const { windows } = await tokenizeDataset(dataset, tokenizer, {
    contextLength: config.context_length,
    stride: config.stride,
    prepend: config.prepend,
    maxTokens: dataset.max_tokens,
  })
  const reqs: ScoreRequest[] = windowsOf(windows)
    .slice(0, n)
    .map((w) => ({ ids: w.ids, firstTarget: w.firstTarget, id: `seq_id ${w.seqId}` }))
  const batch = positive("batch", String(config.scoring.batch_size))
  const cpu = { ...config.scoring, batch_size: batch, execution_provider: "cpu" as const }
  const cuda = m === null ? cpu : { ...cpu, execution_provider: "cuda" as const, cuda_device: Number(m[1]) }
  return { config, device, dataset: name, reqs, cpu, cuda }
}

/** The scorer's notices (e.g. a fallback to full logits), each printed once at the end. */
const notes = new Set<string>()

/** Scores of `reqs` on one checkpoint with one provider, and the seconds scoring took (after one warm-up batch). */
const scoreOn = async (file: string, scoring: Config["scoring"], reqs: ReadonlyArray<ScoreRequest>, cacheDir: string, label: string) => {
  const log = (m: string) => notes.add(`${scoring.execution_provider}: ${m}`)
  const r = await Effect.runPromise(
    Effect.either(
      withScorer(file, scorerOptions(scoring, { cacheDir, label, log, entropy: false }), (s) =>
        Effect.gen(function* () {
          yield* s.scoreAll(reqs.slice(0, scoring.batch_size))
          const t0 = performance.now()
          const results = yield* s.scoreAll(reqs)
          return { results, seconds: (performance.now() - t0) / 1000 }
        }),
      ),
    ),
  )
  if (Either.isLeft(r)) throw new CannotRun(r.left.message)
  return r.right
}

/** Largest |a − b| over every token of every request (Infinity when a value is not finite). */
const maxAbsDiff = (a: ReadonlyArray<ScoreResult>, b: ReadonlyArray<ScoreResult>): number => {
  let worst = 0
  a.forEach((r, i) =>
    r.logprob.forEach((x, j) => {
      const d = Math.abs(x - b[i].logprob[j])
      worst = Number.isFinite(d) ? Math.max(worst, d) : Infinity
    }),
  )
  return worst
}

const main = async (): Promise<number> => {
  // onnxruntime logs a provider that fails to load as well (ANSI lines on stderr); the failure's message says it once.
  if (!process.argv.includes("--verbose")) ort.env.logLevel = "fatal"
  const { config, device, dataset, reqs, cpu, cuda } = await prepare()
  const tokens = reqs.reduce((a, q) => a + q.ids.length - q.firstTarget, 0)
  const checkpoints = config.models.flatMap((m) =>
    m.checkpoints.map((c) => {
      if (c.path === undefined) throw new CannotRun(`${m.name} step ${c.step}: a Hub checkpoint; gpucheck scores local files only`)
      return { label: `${m.name} step ${c.step}`, file: c.path }
    }),
  )
  say(`${checkpoints.length} checkpoints × ${reqs.length} windows of ${dataset} (${tokens} tokens each), batch ${cpu.batch_size}, ${device} against cpu (${cpu.threads} threads)`)
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), "trajectories-gpucheck-"))
  try {
    const seconds = { cpu: 0, cuda: 0 }
    let worst = { diff: 0, label: "" }
    for (const c of checkpoints) {
      // CUDA first: a missing provider stops the check at the first checkpoint.
      const g = await scoreOn(c.file, cuda, reqs, cacheDir, c.label)
      const h = await scoreOn(c.file, cpu, reqs, cacheDir, c.label)
      seconds.cuda += g.seconds
      seconds.cpu += h.seconds
      const diff = maxAbsDiff(h.results, g.results)
      if (worst.label === "" || diff > worst.diff) worst = { diff, label: c.label }
      say(`${c.label}: max |Δ| ${diff.toExponential(2)} nats, cpu ${Math.round(tokens / h.seconds)} tokens/s, ${device} ${Math.round(tokens / g.seconds)} tokens/s`)
    }
    for (const m of notes) say(m)
    const rate = (s: number) => Math.round((tokens * checkpoints.length) / s)
    const ok = worst.diff <= BOUND_NATS
    say(`cpu ${rate(seconds.cpu)} tokens/s, ${device} ${rate(seconds.cuda)} tokens/s`)
    say(`max |Δ| ${worst.diff.toExponential(2)} nats (${worst.label}): ${ok ? "within" : "OVER"} the bound of ${BOUND_NATS} nats`)
    console.log(
      JSON.stringify({
        bench: "gpucheck",
        device,
        dataset,
        windows: reqs.length,
        tokens_per_checkpoint: tokens,
        batch_size: cpu.batch_size,
        checkpoints: checkpoints.length,
        max_abs_diff_nats: Number.isFinite(worst.diff) ? worst.diff : null,
        worst_checkpoint: worst.label,
        bound_nats: BOUND_NATS,
        cpu_tokens_per_s: rate(seconds.cpu),
        cuda_tokens_per_s: device === "cpu" ? null : rate(seconds.cuda),
        ok,
      }),
    )
    return ok ? 0 : 1
  } finally {
    fs.rmSync(cacheDir, { recursive: true, force: true })
  }
}

try {
  process.exitCode = await main()
} catch (e) {
  // One line, exit 2: the check did not run (an OnnxError's message already names the checkpoint).
  console.error(`gpucheck: ${firstLine(e)}`)
  if (process.argv.includes("--verbose") && !(e instanceof CannotRun)) console.error(e)
  process.exitCode = 2
}
