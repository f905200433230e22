/**
 * The downstream and correlate stages end to end through the real runner: task files in all three
 * formats, scored by fixture ONNX models (test/fixtures/onnx.ts) whose log-probs are computed here
 * independently (float64 forward pass over the same weights, token ids from the `tokenizers`
 * library encoding prompt and option separately); then task metrics, correlations and agreement
 * over planted validation perplexities and score files.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { DuckDBInstance } from "@duckdb/node-api"
import * as arrow from "apache-arrow"
import { Effect, Either } from "effect"
import { Tokenizer } from "tokenizers"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../pipeline/config.ts"
import type { Sink } from "../pipeline/progress.ts"
import type { RunOptions } from "../pipeline/runner.ts"
import { readParquetFile, writeParquetFile } from "../pipeline/store.ts"
import { Checkpoints, checkpointsFile } from "../stages/aggregate/contract.ts"
import { MEAN_TASK } from "../stages/correlate/contract.ts"
import { Scores, scoresFile, scoreUnit } from "../stages/score/contract.ts"
import { aggregateStage } from "../stages/aggregate/index.ts"
import { correlateStage } from "../stages/correlate/index.ts"
import { downstreamStage } from "../stages/downstream/index.ts"
import { scoreStage } from "../stages/score/index.ts"
import { tokenizeStage } from "../stages/tokenize/index.ts"
import { plantingStage } from "./fixtures/planted.ts"
import { runOnDisk } from "./fixtures/run.ts"
import { linearLogits, linearModel, linearWeights, referenceScores, saveModel, type LinearWeights } from "./fixtures/onnx.ts"
import { TEST_EOS, TEST_VOCAB_SIZE, writeTestTokenizer } from "./fixtures/tokenizer.ts"
import { wilson } from "../stages/correlate/stats.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-downstream-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const quiet = (): Sink & { text: () => string } => {
  const out: string[] = []
  return { isTTY: false, write: (s) => void out.push(s), text: () => out.join("") }
}
const run = async (cfg: string, opts: Partial<RunOptions>) => {
  const sink = quiet()
  const config = await Effect.runPromise(loadConfig(cfg))
  const result = await Effect.runPromise(Effect.either(runOnDisk(config, { stages: [downstreamStage], sink, ...opts })))
  return { result, config, log: sink.text() }
}

const lines = (...xs: unknown[]) => xs.map((x) => JSON.stringify(x)).join("\n") + "\n"

// -- The tasks -----------------------------------------------------------------------------------

/** The k-shot task of test/downstream-tasks.test.ts; its prompts (seed 7, 2 shots) are pinned there. */
const QA = lines(
  { prompt: "Q: 1+1?\nA:", choices: [" 2", " 3"], answer: 0 },
  { prompt: "Q: 2+2?\nA:", choices: [" 4", " 5"], answer: 0 },
  { prompt: "Q: 3+3?\nA:", choices: [" 5", " 6"], answer: 1 },
  { prompt: "Q: 4+4?\nA:", choices: [" 8", " 9"], answer: 0 },
)
const QA_PROMPTS = [
  "Q: 3+3?\nA: 6\n\nQ: 4+4?\nA: 8\n\nQ: 1+1?\nA:",
  "Q: 1+1?\nA: 2\n\nQ: 3+3?\nA: 6\n\nQ: 2+2?\nA:",
  "Q: 4+4?\nA: 8\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?\nA:", // max_examples: 3 samples examples 0, 1, 2 (prompts.ts sampleIndices(4, 3, 7))
]
const BB = JSON.stringify({
  append_choices_to_input: false,
  examples: [
    { input: "the cat", target_scores: { sat: 1, and: 0.5, "of the": 0 } },
    { input: "in the", target_scores: { hat: 1, mat: 1, bat: 0 } },
    { input: "a dog", target_scores: { ran: 0, barked: 1 } },
  ],
})
const PAIRS = lines(
  { sentence_good: "the cat sat.", sentence_bad: "the cat sit.", note: "x" },
  { sentence_good: "dogs run.", sentence_bad: "dogs runs." },
  { sentence_good: "a man and a dog.", sentence_bad: "a man and an dog." },
)

/** Each task as the test understands it: prompt (with shots), options, correct set. */
interface Expected {
  readonly prompt: string
  readonly options: string[]
  readonly correct: number[]
  /** Target scores (BIG-bench partial credit); default 1 / 0 for correct / incorrect. */
  readonly scores?: number[]
}
const EXPECTED: Record<string, Expected[]> = {
  qa: QA_PROMPTS.map((prompt, i) => ({ prompt, options: [[" 2", " 3"], [" 4", " 5"], [" 5", " 6"]][i], correct: [[0], [0], [1]][i] })),
  bb: [
    { prompt: "\nQ: the cat\nA: ", options: ["sat", "and", "of the"], correct: [0], scores: [1, 0.5, 0] },
    { prompt: "\nQ: in the\nA: ", options: ["hat", "mat", "bat"], correct: [0, 1] },
    { prompt: "\nQ: a dog\nA: ", options: ["ran", "barked"], correct: [1] },
  ],
  mp: [
    { prompt: "", options: ["the cat sat.", "the cat sit."], correct: [0] },
    { prompt: "", options: ["dogs run.", "dogs runs."], correct: [0] },
    { prompt: "", options: ["a man and a dog.", "a man and an dog."], correct: [0] },
  ],
}

// -- The run -------------------------------------------------------------------------------------

const MODELS = [
  { name: "s", params: 1000, tps: 10, steps: [0, 5, 20] },
  { name: "l", params: 8000, tps: 20, steps: [0, 5, 20] },
]
const CONTEXT = 24
const weights = new Map<string, LinearWeights>()

const writeRun = (dir: string, extra: { prepend?: boolean; tasks?: string[]; models?: typeof MODELS } = {}): string => {
  fs.mkdirSync(dir, { recursive: true })
  writeTestTokenizer(dir)
  fs.writeFileSync(path.join(dir, "valid.txt"), "the cat sat on the mat.\n")
  fs.writeFileSync(path.join(dir, "qa.jsonl"), QA)
  fs.writeFileSync(path.join(dir, "bb.json"), BB)
  fs.writeFileSync(path.join(dir, "mp.jsonl"), PAIRS)
  const models = extra.models ?? MODELS
  models.forEach((m, mi) =>
    m.steps.forEach((step, si) => {
      const w = linearWeights({ vocab: TEST_VOCAB_SIZE, dim: 4, seed: 100 + 10 * mi + si })
      weights.set(`${m.name}@${step}`, w)
      saveModel(linearModel(w), path.join(dir, m.name), `step-${step}.onnx`)
    }),
  )
  const yaml = [
    "run: r",
    "output: out",
    "tokenizer: tokenizer.json",
    `context_length: ${CONTEXT}`,
    ...(extra.prepend ? [`prepend: "${TEST_EOS}"`] : []),
    "scoring: { threads: 1, batch_size: 4 }",
    "models:",
    ...models.map((m) => `  - { name: ${m.name}, params: ${m.params}, tokens_per_step: ${m.tps}, checkpoints: \"${m.name}/step-{step}.onnx\" }`),
    "datasets:",
    "  - { name: valid, format: text, path: valid.txt }",
    "tasks:",
    ...(extra.tasks ?? [
      "  - { name: qa, format: jsonl, path: qa.jsonl, shots: 2, seed: 7, max_examples: 3 }",
      "  - { name: bb, format: bigbench, path: bb.json }",
      "  - { name: mp, format: pairs, path: mp.jsonl }",
    ]),
    "",
  ].join("\n")
  const file = path.join(dir, "run.yaml")
  fs.writeFileSync(file, yaml)
  return file
}

// -- Independent expectations ---------------------------------------------------------------------

let tokenizer: Tokenizer
const encode = async (text: string) => {
  if (text === "") return { ids: [] as number[], offsets: [] as number[][] }
  const e = await tokenizer.encode(text, null, { addSpecialTokens: false })
  return { ids: e.getIds(), offsets: e.getOffsets() }
}

interface ExpectedOption {
  readonly example: number
  readonly option: number
  readonly correct: boolean
  readonly score: number
  readonly sum: number
  readonly nTokens: number
  readonly nChars: number
  /** context tokens cut from the left to fit CONTEXT */
  readonly cut: number
}

/**
 * Expected rows of one options table: the prompt without its trailing spaces and the option with
 * them are encoded SEPARATELY (the texts split at a pre-tokenizer boundary, checked against the
 * joint encoding), the context cut from the left to fit CONTEXT, log-probs from the reference pass.
 */
const expectedOptions = async (w: LinearWeights, task: string, prepend: number[]): Promise<ExpectedOption[]> => {
  const out: ExpectedOption[] = []
  for (const [ei, ex] of EXPECTED[task].entries()) {
    for (const [oi, opt] of ex.options.entries()) {
      const head = ex.prompt.replace(/ +$/, "")
      const tail = ex.prompt.slice(head.length) + opt
      const p = await encode(head)
      const o = await encode(tail)
      expect((await encode(ex.prompt + opt)).ids).toEqual([...p.ids, ...o.ids])
      let context = [...prepend, ...p.ids]
      let scored = o.ids
      let nChars = tail.length
      if (context.length === 0) {
        context = scored.slice(0, 1)
        scored = scored.slice(1)
        nChars = tail.length - o.offsets[1][0]
      }
      const whole = context.length
      if (context.length + scored.length > CONTEXT) context = context.slice(context.length - (CONTEXT - scored.length))
      const cut = whole - context.length
      const ids = Int32Array.from([...context, ...scored])
      const lp = referenceScores(linearLogits(w, ids), w.vocab, ids, context.length).logprob
      out.push({ example: ei, option: oi, correct: ex.correct.includes(oi), score: ex.scores?.[oi] ?? (ex.correct.includes(oi) ? 1 : 0), sum: lp.reduce((a, b) => a + b, 0), nTokens: scored.length, nChars, cut })
    }
  }
  return out
}

/** Metrics computed the plain way, for comparison with task_metrics.parquet. */
const plainMetrics = (rows: ExpectedOption[]) => {
  const examples = [...new Set(rows.map((r) => r.example))]
  const hit = (score: (r: ExpectedOption) => number) =>
    examples.filter((e) => {
      const rs = rows.filter((r) => r.example === e)
      return Math.max(...rs.filter((r) => r.correct).map(score)) > Math.max(...rs.filter((r) => !r.correct).map(score))
    }).length / examples.length
  const ppl = (c: boolean) => {
    const rs = rows.filter((r) => r.correct === c)
    return Math.exp(-rs.reduce((a, r) => a + r.sum, 0) / rs.reduce((a, r) => a + r.nTokens, 0))
  }
  const baseline = examples.reduce((a, e) => a + rows.filter((r) => r.example === e && r.correct).length / rows.filter((r) => r.example === e).length, 0) / examples.length
  // The chosen option (highest sum; the option sums of one example differ here) and its score.
  const grade = examples.reduce((a, e) => {
    const rs = rows.filter((r) => r.example === e)
    return a + rs.reduce((b, r) => (r.sum > b.sum ? r : b)).score
  }, 0) / examples.length
  return { n_examples: examples.length, grade, accuracy: hit((r) => r.sum), accuracy_norm: hit((r) => r.sum / r.nChars), random_baseline: baseline, correct_ppl: ppl(true), incorrect_ppl: ppl(false) }
}

const readOptions = (runDir: string, model: string, step: number, task: string) => {
  const t = readParquetFile(path.join(runDir, `downstream/model=${model}/step=${step}/task=${task}/options.parquet`))
  return t.toArray().map((r) => r.toJSON() as { example_id: number; option_id: number; is_correct: boolean; target_score: number; logprob_sum: number; n_cut: number; n_tokens: number; n_chars: number })
}

beforeAll(() => {
  writeTestTokenizer(tmp)
  tokenizer = Tokenizer.fromFile(path.join(tmp, "tokenizer.json"))
})

describe("downstream: options scored by fixture models", () => {
  const dir = path.join(tmp, "main")
  let runDir = ""

  it("one unit per model × step × task; option log-probs, token and character counts match the independent computation", async () => {
    const cfg = writeRun(dir)
    const { result, config } = await run(cfg, {})
    runDir = config.runDir
    expect(Either.isRight(result)).toBe(true)
    if (Either.isLeft(result)) return
    expect(result.right.outcomes.map((o) => o.id)).toEqual(
      MODELS.flatMap((m) => m.steps.flatMap((s) => ["qa", "bb", "mp"].map((t) => `model=${m.name}/step=${s}/task=${t}`))),
    )
    let gaps = Infinity
    for (const m of MODELS) {
      for (const step of m.steps) {
        for (const task of ["qa", "bb", "mp"]) {
          const want = await expectedOptions(weights.get(`${m.name}@${step}`)!, task, [])
          const got = readOptions(runDir, m.name, step, task)
          expect(got.map((r) => [r.example_id, r.option_id, r.is_correct, r.target_score, r.n_tokens, r.n_chars, r.n_cut])).toEqual(
            want.map((r) => [r.example, r.option, r.correct, r.score, r.nTokens, r.nChars, r.cut]),
          )
          got.forEach((r, i) => expect(Math.abs(r.logprob_sum - want[i].sum)).toBeLessThan(1e-4))
          if (task === "qa") expect(Math.max(...got.map((r) => r.n_cut))).toBeGreaterThan(0) // 2-shot prompts do not fit CONTEXT
          for (const e of new Set(want.map((r) => r.example))) {
            const s = want.filter((r) => r.example === e).map((r) => r.sum)
            for (const a of s) for (const b of s) if (a !== b) gaps = Math.min(gaps, Math.abs(a - b))
          }
        }
      }
    }
    // No two options are so close that float32 noise could flip a comparison below.
    expect(gaps).toBeGreaterThan(1e-3)
  })

  it("the k-shot prompt was cut from the left to fit context_length; short options are whole", async () => {
    // " 2" (2 tokens) after a 2-shot prompt of > 22 tokens: exactly CONTEXT tokens were scored in.
    const p = await encode(QA_PROMPTS[0])
    expect(p.ids.length).toBeGreaterThan(CONTEXT)
    expect(readOptions(runDir, "s", 0, "qa")[0]).toMatchObject({ n_tokens: 2, n_chars: 2 })
  })

  it("DuckDB reads the options tables as one Hive-partitioned dataset", async () => {
    const db = await DuckDBInstance.create(":memory:")
    const conn = await db.connect()
    try {
      const glob = path.join(runDir, "downstream/**/*.parquet").replaceAll("'", "''")
      const rows = (
        await conn.runAndReadAll(
          `SELECT model, CAST(step AS INTEGER) AS step, task, count(*)::INTEGER AS n, sum(is_correct::INTEGER)::INTEGER AS c FROM read_parquet('${glob}', hive_partitioning = true) GROUP BY ALL ORDER BY model, step, task`,
        )
      ).getRowObjectsJS()
      expect(rows).toHaveLength(18)
      // qa: 3 examples × 2 options, bb: 3 + 3 + 2 options, mp: 3 pairs
      expect(rows.filter((r) => r.model === "s" && r.step === 5)).toEqual([
        { model: "s", step: 5, task: "bb", n: 8, c: 4 },
        { model: "s", step: 5, task: "mp", n: 6, c: 3 },
        { model: "s", step: 5, task: "qa", n: 6, c: 3 },
      ])
    } finally {
      conn.closeSync()
      db.closeSync()
    }
  })

  it("a re-run does no work", async () => {
    const { result } = await run(path.join(dir, "run.yaml"), {})
    expect(Either.isRight(result) && result.right.count("ran")).toBe(0)
  })

  it("correlate without the aggregate stage's checkpoints.parquet fails, naming the file", async () => {
    // The aggregate unit ran but wrote no table (as a stand-in): correlate names the unit and the file.
    const { result } = await run(path.join(dir, "run.yaml"), { stages: [downstreamStage, plantingStage("aggregate", [{ id: "all", files: [] }]), correlateStage] })
    expect(Either.isLeft(result) && result.left.message).toContain("correlate/all: aggregate/all recorded no checkpoints.parquet (it wrote nothing); re-run it")
  })

  it("correlate: task metrics, correlations and agreement from options, planted perplexities and score files", async () => {
    // Planted validation perplexities (falling with step, the larger model lower) and score files.
    const ppl: Record<string, number> = { "s@0": 280, "s@5": 120, "s@20": 60, "l@0": 281, "l@5": 70, "l@20": 30 }
    const rows = MODELS.flatMap((m) =>
      m.steps.map((step) => ({ model: m.name, step, tokens: step * m.tps, flops: 6 * m.params * step * m.tps, params: m.params, ppl: ppl[`${m.name}@${step}`] })),
    )
    const checkpoints = Checkpoints.fromRows(
      rows.map((r) => ({ model: r.model, step: r.step, tokens_seen: r.tokens, flops: r.flops, params: r.params, dataset: "valid", n_tokens: 10, mean_nll: Math.log(r.ppl), ppl: r.ppl })),
    )
    // Per-token log-probs: s@5 (ppl 120) is nearest to l@5 (70) on a log scale (|ln 120/70| = 0.54
    // < |ln 281/120| = 0.85); those two get the arrays of tools/reference/correlate_stats.py
    // (LP_A, LP_B), whose scipy correlations are known.
    const LP_A = [-1.0, -2.5, -0.25, -4.0, -2.5, -3.0, -0.5, -6.0, -1.0, -2.0]
    const LP_B = [-1.25, -2.0, -0.5, -3.5, -3.0, -3.0, -0.25, -5.0, -1.5, -1.75]
    const lp: Record<string, number[]> = {
      "s@0": LP_A.map((x, i) => x - 0.25 * (i % 3)),
      "s@5": LP_A,
      "s@20": LP_A.map((x) => x / 2),
      "l@0": LP_B.map((x, i) => x + 0.5 * (i % 2)),
      "l@5": LP_B,
      "l@20": LP_B.map((x) => x * 0.75),
    }
    // Stand-ins for aggregate and score: their units write the planted tables.
    const aggregate = plantingStage("aggregate", [{ id: "all", files: [[checkpointsFile, checkpoints]] }])
    const score = plantingStage(
      "score",
      rows.map((r) => {
        const v = lp[`${r.model}@${r.step}`]
        const table = Scores.fromRows(v.map((x, i) => ({ token_index: i, token_id: 5, logprob: x })))
        return { id: scoreUnit(r.model, r.step, "valid").id, files: [[scoresFile(r.model, r.step, "valid"), table] as const] }
      }),
    )
    const { result } = await run(path.join(dir, "run.yaml"), { stages: [downstreamStage, aggregate, score, correlateStage] })
    if (Either.isLeft(result)) throw new Error(result.left.message)
    expect(result.right.outcomes.filter((o) => o.outcome === "ran" && o.stage === "correlate").map((o) => `${o.stage}/${o.id}`)).toEqual(["correlate/all"])

    // task_metrics.parquet against metrics computed the plain way from the independent option sums.
    const tm = readParquetFile(path.join(runDir, "task_metrics.parquet")).toArray().map((r) => r.toJSON())
    expect(tm).toHaveLength(18)
    for (const r of tm) {
      const want = plainMetrics(await expectedOptions(weights.get(`${r.model}@${r.step}`)!, r.task as string, []))
      expect(r.n_examples).toBe(want.n_examples)
      expect(r.accuracy).toBe(want.accuracy)
      expect(r.accuracy_norm).toBe(want.accuracy_norm)
      expect(r.grade).toBeCloseTo(want.grade, 12)
      // The interval around the accuracy (its values against statsmodels: correlate-stats.test.ts).
      expect([r.acc_lo, r.acc_hi]).toEqual([...wilson(Math.round(want.accuracy * want.n_examples), want.n_examples)])
      expect(r.acc_lo as number).toBeLessThanOrEqual(r.accuracy as number)
      expect(r.acc_hi as number).toBeGreaterThanOrEqual(r.accuracy as number)
      expect(r.random_baseline).toBeCloseTo(want.random_baseline, 12)
      expect(Math.abs(Math.log(r.correct_ppl as number) - Math.log(want.correct_ppl))).toBeLessThan(1e-5)
      expect(Math.abs(Math.log(r.incorrect_ppl as number) - Math.log(want.incorrect_ppl))).toBeLessThan(1e-5)
    }
    // task_margins.parquet: one row per task_metrics row, against the margin recomputed from options.parquet.
    const margins = readParquetFile(path.join(runDir, "task_margins.parquet")).toArray().map((r) => r.toJSON())
    expect(margins.map((r) => `${r.model}@${r.step}/${r.task}`)).toEqual(tm.map((r) => `${r.model}@${r.step}/${r.task}`))
    for (const r of margins) {
      const opts = readOptions(runDir, r.model as string, r.step as number, r.task as string)
      const perExample = [...new Set(opts.map((o) => o.example_id))].flatMap((e) => {
        const mean = (c: boolean) => {
          const xs = opts.filter((o) => o.example_id === e && o.is_correct === c && o.n_tokens > 0).map((o) => o.logprob_sum / o.n_tokens)
          return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined
        }
        const [c, w] = [mean(true), mean(false)]
        return c === undefined || w === undefined ? [] : [c - w]
      })
      const n = perExample.length
      const mean = perExample.reduce((a, b) => a + b, 0) / n
      const se = Math.sqrt(perExample.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) / n)
      expect(r.n_examples).toBe(n)
      expect(r.margin as number).toBeCloseTo(mean, 12)
      expect(r.margin_lo as number).toBeCloseTo(mean - 1.959964 * se, 5)
      expect(r.margin_hi as number).toBeCloseTo(mean + 1.959964 * se, 5)
    }
    expect(tm.find((r) => r.task === "bb")!.random_baseline).toBeCloseTo((1 / 3 + 2 / 3 + 1 / 2) / 3, 12)
    expect(tm.find((r) => r.task === "mp")!.random_baseline).toBe(0.5)

    // correlations.parquet: 3 tasks + the mean, 4 axes; step 0 left out of the log axes.
    const cr = readParquetFile(path.join(runDir, "correlations.parquet")).toArray().map((r) => r.toJSON())
    expect(cr.map((r) => `${r.task}/${r.x_axis}/${r.n_points}`)).toEqual(
      ["qa", "bb", "mp", MEAN_TASK].flatMap((t) => [`${t}/log_valid_ppl/6`, `${t}/log_flops/4`, `${t}/log_tokens/4`, `${t}/log_step/4`]),
    )

    // agreement.parquet: one size pair, each small checkpoint matched once per kind.
    const ag = readParquetFile(path.join(runDir, "agreement.parquet")).toArray().map((r) => r.toJSON())
    expect(ag.map((r) => `${r.match} ${r.model_a}@${r.step_a} ${r.model_b}@${r.step_b}`)).toEqual([
      "ppl s@0 l@0",
      "ppl s@5 l@5",
      "ppl s@20 l@5", // |ln 60/70| = 0.15 < |ln 60/30| = 0.69
      "flops s@0 l@0",
      "flops s@5 l@5", // 6·1000·50 = 3e5: l@5 has 6·8000·100 = 4.8e6 (ratio 16), l@20 1.92e7, l@0 none
      "flops s@20 l@5", // 1.2e6 vs 4.8e6 (ratio 4) and 1.92e7 (ratio 16)
    ])
    const pair = ag.find((r) => r.match === "ppl" && r.step_a === 5)!
    // scipy (tools/reference/correlate_stats.py): pearsonr and spearmanr of LP_A and LP_B
    expect(pair.pearson).toBeCloseTo(0.9719810426916159, 9)
    expect(pair.spearman).toBeCloseTo(0.975539729830124, 9)
    expect(pair).toMatchObject({ dataset: "valid", ppl_a: 120, ppl_b: 70, flops_a: 3e5, flops_b: 4.8e6, n_tokens: 10 })
    // s@20 is LP_A / 2: a positive rescaling of LP_A, so its correlations with l@5 are the same.
    const scaled = ag.find((r) => r.match === "ppl" && r.step_a === 20)!
    expect(scaled.pearson).toBeCloseTo(0.9719810426916159, 9)
    expect(scaled.spearman).toBeCloseTo(0.975539729830124, 9)
  })
})

describe("downstream: context, errors", () => {
  it("with prepend, every token of a pair's sentences is scored after it", async () => {
    const dir = path.join(tmp, "prepend")
    const models = [{ name: "s", params: 1000, tps: 10, steps: [3] }]
    const cfg = writeRun(dir, { prepend: true, models, tasks: ["  - { name: mp, format: pairs, path: mp.jsonl }"] })
    const { result, config } = await run(cfg, {})
    expect(Either.isRight(result)).toBe(true)
    const eos = (await tokenizer.encode(TEST_EOS, null, { addSpecialTokens: false })).getIds()
    expect(eos).toHaveLength(1)
    const want = await expectedOptions(weights.get("s@3")!, "mp", eos)
    const got = readOptions(config.runDir, "s", 3, "mp")
    expect(got.map((r) => [r.n_tokens, r.n_chars])).toEqual(want.map((r) => [r.nTokens, r.nChars]))
    expect(got.map((r) => r.n_chars)).toEqual(EXPECTED.mp.flatMap((e) => e.options.map((o) => o.length)))
    got.forEach((r, i) => expect(Math.abs(r.logprob_sum - want[i].sum)).toBeLessThan(1e-4))
  })

  it("a pairs task without prepend gets a warning naming the config, the task and the fix; with prepend none", async () => {
    const dir = path.join(tmp, "warn")
    const models = [{ name: "s", params: 1000, tps: 10, steps: [3] }]
    const without = await Effect.runPromise(loadConfig(writeRun(dir, { models })))
    expect(downstreamStage.warnings!(without)).toEqual([
      expect.stringMatching(/run\.yaml: tasks\[2\] \(mp\): a pairs task without `prepend`: each sentence's first token is context only and never scored.*set prepend/),
    ])
    const withPrepend = await Effect.runPromise(loadConfig(writeRun(dir, { models, prepend: true })))
    expect(downstreamStage.warnings!(withPrepend)).toEqual([])
  })

  it("a bad task file fails its units with one line naming file, example and field; --keep-going runs the other tasks", async () => {
    const dir = path.join(tmp, "bad")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "broken.jsonl"), lines({ prompt: "Q", choices: [" a", " b"], answer: 0 }, { prompt: "Q", choices: [" a", ""], answer: 0 }))
    const models = [{ name: "s", params: 1000, tps: 10, steps: [1] }]
    const cfg = writeRun(dir, {
      models,
      tasks: ["  - { name: broken, format: jsonl, path: broken.jsonl }", "  - { name: bb, format: bigbench, path: bb.json }"],
    })
    const { result, config } = await run(cfg, { keepGoing: true })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isRight(result)) return
    const line = result.left.message.split("\n").find((l) => l.includes("task=broken"))!
    expect(line.trim()).toMatch(/^downstream\/model=s\/step=1\/task=broken: \S*broken\.jsonl: example 1 \(line 2\): choices\[1\]: empty option$/)
    expect(fs.existsSync(path.join(config.runDir, "downstream/model=s/step=1/task=bb/options.parquet"))).toBe(true)
  })

  it("a subtask's task file that does not parse is a config error under its parent's tasks[i], naming the subtask's file and the field", async () => {
    const dir = path.join(tmp, "bad-subtask")
    fs.mkdirSync(dir, { recursive: true })
    fs.cpSync(path.resolve("test/fixtures/bigbench-parent"), path.join(dir, "parent"), { recursive: true })
    const colours = path.join(dir, "parent/colours/task.json")
    fs.writeFileSync(colours, fs.readFileSync(colours, "utf8").replace('"target_scores": { " green": 1, " blue": 0 }', '"target_scores": { " green": 1, " blue": "no" }'))
    const models = [{ name: "s", params: 1000, tps: 10, steps: [1] }]
    const cfg = writeRun(dir, { models, tasks: ["  - { name: mp, format: pairs, path: mp.jsonl }", "  - { name: pt, format: bigbench, path: parent }"] })
    const config = await Effect.runPromise(loadConfig(cfg))
    expect(downstreamStage.validate!(config)).toEqual([
      { field: "tasks[1]", reason: expect.stringMatching(/^\S*parent\/colours\/task\.json: example 1: target_scores: score of " blue" is "no", expected a number$/) },
    ])
  })
})

describe("the whole chain: tokenize → score → aggregate, downstream → correlate", () => {
  it("a task whose units fail is left out and named; the other tasks' metrics and correlations are written (--keep-going)", async () => {
    const dir = path.join(tmp, "chain-bad")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "broken.jsonl"), lines({ prompt: "Q", choices: [" a", " b"], answer: 0 }, { prompt: "Q", choices: [" a", ""], answer: 0 }))
    const cfg = writeRun(dir, { tasks: ["  - { name: broken, format: jsonl, path: broken.jsonl }", "  - { name: bb, format: bigbench, path: bb.json }"] })
    fs.writeFileSync(path.join(dir, "valid.txt"), "the cat sat on the mat and the dog ran in the park. a man and a dog sat in the hat.\n")
    const stages = [tokenizeStage, scoreStage, aggregateStage, downstreamStage, correlateStage]
    const { result, config, log } = await run(cfg, { stages, keepGoing: true })
    expect(Either.isLeft(result) && result.left.message).toMatch(/^\d+ unit\(s\) failed:/) // the broken task's units
    if (Either.isRight(result)) return
    expect(result.left.message).not.toContain("correlate/all")
    expect(log).toMatch(/correlate: task broken is left out of task_metrics and correlations: downstream\/model=\S+\/task=broken is not done \(it failed: \S*broken\.jsonl: example 1/)
    const tm = readParquetFile(path.join(config.runDir, "task_metrics.parquet")).toArray().map((r) => r.toJSON())
    expect(new Set(tm.map((r) => r.task))).toEqual(new Set(["bb"]))
    expect(tm).toHaveLength(MODELS.reduce((n, m) => n + m.steps.length, 0))
    const cr = readParquetFile(path.join(config.runDir, "correlations.parquet")).toArray().map((r) => r.toJSON())
    expect([...new Set(cr.map((r) => r.task))]).toEqual(["bb", MEAN_TASK])
  })

  it("a BIG-bench parent task: a task per subtask, aggregate rows the mean of theirs, correlations of the parent, the mean over tasks over subtasks only", async () => {
    const dir = path.join(tmp, "chain-parent")
    fs.mkdirSync(dir, { recursive: true })
    fs.cpSync(path.resolve("test/fixtures/bigbench-parent"), path.join(dir, "parent"), { recursive: true })
    const cfg = writeRun(dir, { tasks: ["  - { name: pt, format: bigbench, path: parent, shots: 1, seed: 7 }", "  - { name: mp, format: pairs, path: mp.jsonl }"] })
    fs.writeFileSync(path.join(dir, "valid.txt"), "the cat sat on the mat and the dog ran in the park. a man and a dog sat in the hat.\n")
    const { result, config } = await run(cfg, { stages: [tokenizeStage, scoreStage, aggregateStage, downstreamStage, correlateStage] })
    if (Either.isLeft(result)) throw new Error(result.left.message)
    const points = MODELS.flatMap((m) => m.steps.map((step) => ({ model: m.name, step })))
    expect(result.right.outcomes.filter((o) => o.stage === "downstream").map((o) => o.id)).toEqual(
      points.flatMap((p) => ["pt.arithmetic", "pt.colours", "mp"].map((t) => `model=${p.model}/step=${p.step}/task=${t}`)),
    )
    const tm = readParquetFile(path.join(config.runDir, "task_metrics.parquet")).toArray().map((r) => r.toJSON())
    expect(tm).toHaveLength(4 * points.length)
    // task_margins: the subtasks and mp, never the parent (it has no options of its own).
    const margins = readParquetFile(path.join(config.runDir, "task_margins.parquet")).toArray().map((r) => r.toJSON())
    expect(new Set(margins.map((r) => r.task))).toEqual(new Set(["pt.arithmetic", "pt.colours", "mp"]))
    expect(margins).toHaveLength(3 * points.length)
    const at = (task: string, p: { model: string; step: number }) => tm.find((r) => r.task === task && r.model === p.model && r.step === p.step)!
    for (const p of points) {
      const [a, c, mp, agg] = ["pt.arithmetic", "pt.colours", "mp", "pt"].map((t) => at(t, p))
      expect([a.parent, a.aggregate, c.parent, c.aggregate, mp.parent, mp.aggregate]).toEqual(["pt", false, "pt", false, null, false])
      expect([a.n_examples, c.n_examples]).toEqual([4, 3])
      expect(agg).toMatchObject({ parent: null, aggregate: true, n_examples: 7, acc_lo: null, acc_hi: null, acc_norm_lo: null, acc_norm_hi: null })
      for (const k of ["accuracy", "grade", "accuracy_norm", "random_baseline", "correct_ppl", "incorrect_ppl"]) {
        expect(agg[k] as number).toBeCloseTo(((a[k] as number) + (c[k] as number)) / 2, 12)
      }
    }
    // The partial credit of the subtasks reaches grade: the arithmetic near misses score 0.5.
    expect(tm.filter((r) => r.task === "pt.arithmetic").some((r) => (r.grade as number) !== (r.accuracy as number))).toBe(true)

    // Correlations: the tasks, the parent (its aggregate accuracy; at_chance null), the mean.
    const cr = readParquetFile(path.join(config.runDir, "correlations.parquet")).toArray().map((r) => r.toJSON())
    expect([...new Set(cr.map((r) => r.task))]).toEqual(["pt.arithmetic", "pt.colours", "mp", "pt", MEAN_TASK])
    expect(cr.filter((r) => r.task === "pt").every((r) => r.at_chance === null)).toBe(true)
    const ck = readParquetFile(path.join(config.runDir, "checkpoints.parquet")).toArray().map((r) => r.toJSON())
    const lnPpl = points.map((p) => Math.log(ck.find((r) => r.model === p.model && r.step === p.step)!.ppl as number))
    const plainPearson = (x: number[], y: number[]) => {
      const mx = x.reduce((s, v) => s + v, 0) / x.length
      const my = y.reduce((s, v) => s + v, 0) / y.length
      const cxy = x.reduce((s, _, i) => s + (x[i] - mx) * (y[i] - my), 0)
      return cxy / Math.sqrt(x.reduce((s, v) => s + (v - mx) ** 2, 0) * y.reduce((s, v) => s + (v - my) ** 2, 0))
    }
    const pearsonOf = (task: string) => cr.find((r) => r.task === task && r.x_axis === "log_valid_ppl")!.pearson as number
    expect(pearsonOf("pt")).toBeCloseTo(plainPearson(lnPpl, points.map((p) => at("pt", p).accuracy as number)), 10)
    // The mean over tasks: the subtasks and mp above chance (all three when none is), never the parent.
    const leaves = ["pt.arithmetic", "pt.colours", "mp"]
    const above = leaves.filter((t) => cr.find((r) => r.task === t)!.at_chance === false)
    const inMean = above.length > 0 ? above : leaves
    const meanAcc = points.map((p) => inMean.reduce((s, t) => s + (at(t, p).accuracy as number), 0) / inMean.length)
    expect(pearsonOf(MEAN_TASK)).toBeCloseTo(plainPearson(lnPpl, meanAcc), 10)
    const r2 = readParquetFile(path.join(config.runDir, "r2_differences.parquet")).toArray().map((r) => r.toJSON())
    expect(r2.filter((r) => r.task === "pt")).toHaveLength(6)
  })

  it("agreement pairs are the nearest by perplexity / FLOPs, with the correlation of the score files' log-probs", async () => {
    const dir = path.join(tmp, "chain")
    const cfg = writeRun(dir)
    fs.writeFileSync(path.join(dir, "valid.txt"), "the cat sat on the mat and the dog ran in the park. a man and a dog sat in the hat.\n")
    const { result, config } = await run(cfg, { stages: [tokenizeStage, scoreStage, aggregateStage, downstreamStage, correlateStage] })
    if (Either.isLeft(result)) throw new Error(result.left.message)
    const ck = readParquetFile(path.join(config.runDir, "checkpoints.parquet")).toArray().map((r) => r.toJSON())
    const ppl = new Map(ck.map((r) => [`${r.model}@${r.step}`, r.ppl as number]))
    const lp = (m: string, step: number) => Array.from(readParquetFile(path.join(config.runDir, scoresFile(m, step, "valid").path)).getChild("logprob")!.toArray() as Float32Array)
    const plainPearson = (x: number[], y: number[]) => {
      const mx = x.reduce((a, b) => a + b, 0) / x.length
      const my = y.reduce((a, b) => a + b, 0) / y.length
      const c = x.reduce((a, _, i) => a + (x[i] - mx) * (y[i] - my), 0)
      return c / Math.sqrt(x.reduce((a, v) => a + (v - mx) ** 2, 0) * y.reduce((a, v) => a + (v - my) ** 2, 0))
    }
    const ag = readParquetFile(path.join(config.runDir, "agreement.parquet")).toArray().map((r) => r.toJSON())
    expect(ag).toHaveLength(2 * 3)
    for (const r of ag) {
      const [s, l] = [MODELS[0], MODELS[1]]
      expect([r.model_a, r.model_b]).toEqual(["s", "l"])
      // brute force: the l checkpoint nearest on a log scale (step 0 FLOPs: only 0 matches 0)
      const value = (m: typeof s, step: number) => (r.match === "ppl" ? ppl.get(`${m.name}@${step}`)! : 6 * m.params * m.tps * step)
      const dist = (u: number, v: number) => (u === v ? 0 : u > 0 && v > 0 ? Math.abs(Math.log(u / v)) : Infinity)
      const best = [...l.steps].sort((p, q) => dist(value(s, r.step_a), value(l, p)) - dist(value(s, r.step_a), value(l, q)) || p - q)[0]
      expect(r.step_b).toBe(best)
      expect(r.ppl_a).toBe(ppl.get(`s@${r.step_a}`))
      expect(r.ppl_b).toBe(ppl.get(`l@${r.step_b}`))
      const a = lp("s", r.step_a)
      const b = lp("l", r.step_b)
      expect(r.n_tokens).toBe(a.length)
      expect(r.pearson).toBeCloseTo(plainPearson(a, b), 10)
    }
    const cr = readParquetFile(path.join(config.runDir, "correlations.parquet")).toArray().map((r) => r.toJSON())
    expect(cr).toHaveLength(4 * 4)
  })
})
