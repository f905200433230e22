/**
 * The downstream stage: one unit per (model, checkpoint, task), id `model=M/step=S/task=T`. It
 * parses the task file (tasks.ts), builds the k-shot prompts and one scoring request per option
 * (prompts.ts: boundary, prepend, truncation), scores them through the Onnx service (lib/onnx: batched,
 * longest first) and writes
 *   downstream/model=M/step=S/task=T/options.parquet   (./contract.ts)
 * The task metrics (accuracy, …) of every checkpoint are computed from these tables by the correlate
 * stage's whole-run unit, which writes task_metrics.parquet (metrics.ts): a unit of this stage
 * cannot wait for the other units of the same stage.
 *
 * A BIG-bench parent task (a task.json without examples, subtasks in subfolders) is one task per
 * subtask by then (pipeline/config.ts): T is `<parent>.<subtask folder>`, and its units read the
 * subtask's task.json; the parent's aggregate is the correlate stage's (task_metrics `aggregate`).
 *
 * A bad task file fails each of its units with one line naming the file, the example and the
 * field; with --keep-going the other tasks still run.
 */
import * as fs from "node:fs"
import type * as arrow from "apache-arrow"
import { Effect, Either } from "effect"
import { Onnx, scorerOptions } from "../../lib/onnx/index.ts"
import { encodeIds, Tokenizers, type LoadedTokenizer } from "../../lib/tokenizer.ts"
import { displayPath, firstLine, toUnitError } from "../../pipeline/errors.ts"
import type { Config } from "../../pipeline/config.ts"
import { defineStage, UnitError, type InputProblem, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { DOWNSTREAM, downstreamUnits, optionsFile, Options } from "./contract.ts"
import { buildPrompts, optionRequest, promptBoundary, type OptionRequest, type PromptedExample } from "./prompts.ts"
import { parseTask } from "./tasks.ts"
import { checkpointPath, checkpointPlan, DOWNLOAD } from "../download/contract.ts"
import type { Hub } from "../../lib/hub/index.ts"

export interface OptionRequests {
  /** One request per option, examples in order, options in order within each. */
  readonly requests: ReadonlyArray<
    OptionRequest & { readonly exampleId: number; readonly optionId: number; readonly isCorrect: boolean; readonly targetScore: number }
  >
}

/**
 * Tokenize prompt + option of every option and build its request (no model involved).
 * @throws UnitError naming the file, the example and the option when one cannot be scored
 */
export const buildRequests = async (
  examples: ReadonlyArray<PromptedExample>,
  tokenizer: LoadedTokenizer,
  prepend: Int32Array,
  contextLength: number,
  file: string,
): Promise<OptionRequests> => {
  const texts: string[] = []
  const at: Array<{ ex: PromptedExample; o: number; boundary: number }> = []
  for (const ex of examples) {
    const boundary = promptBoundary(ex.prompt)
    ex.options.forEach((opt, o) => {
      texts.push(ex.prompt + opt)
      at.push({ ex, o, boundary })
    })
  }
  const encoded = await tokenizer.encodeBatch(texts)
  const requests = encoded.map((enc, i) => {
    const { ex, o, boundary } = at[i]
    const r = optionRequest(texts[i], boundary, enc, prepend, contextLength)
    if (typeof r === "string") throw new UnitError({ message: `${file}: example ${ex.id}: option ${o} (${JSON.stringify(ex.options[o].slice(0, 40))}): ${r}` })
    const isCorrect = ex.correct.includes(o)
    return { ...r, exampleId: ex.id, optionId: o, isCorrect, targetScore: ex.scores?.[o] ?? (isCorrect ? 1 : 0) }
  })
  return { requests }
}

/**
 * The task's `truncate` policy over the built requests (pure). An example is cut when any of its
 * options lost prompt tokens (n_cut > 0): `left` keeps it and says how many were cut, `skip`
 * leaves it out and says how many, `error` fails naming the first one.
 */
export const applyTruncation = (
  r: OptionRequests,
  policy: "left" | "skip" | "error",
  file: string,
  contextLength: number,
): { readonly requests: OptionRequests["requests"]; readonly note?: string } | UnitError => {
  const cutOf = new Map<number, number>()
  for (const q of r.requests) cutOf.set(q.exampleId, Math.max(cutOf.get(q.exampleId) ?? 0, q.cut))
  const cut = [...cutOf].filter(([, c]) => c > 0)
  if (cut.length === 0) return { requests: r.requests }
  const most = Math.max(...cut.map(([, c]) => c))
  const share = `${cut.length} of ${cutOf.size} examples (${((100 * cut.length) / cutOf.size).toFixed(0)}%)`
  if (policy === "error") {
    const [id, c] = cut[0]
    return new UnitError({
      message: `${file}: example ${id}: its prompt is ${c} token(s) too long for context_length ${contextLength} (truncate: error; ${share} are): use truncate: left or skip, or a longer context`,
    })
  }
  if (policy === "skip") {
    const kept = r.requests.filter((q) => (cutOf.get(q.exampleId) ?? 0) === 0)
    if (kept.length === 0) return new UnitError({ message: `${file}: every example's prompt is longer than context_length ${contextLength} allows (truncate: skip)` })
    return { requests: kept, note: `${file}: ${share} have a prompt longer than context_length ${contextLength} allows: skipped (truncate: skip)` }
  }
  return { requests: r.requests, note: `${file}: ${share} lost up to ${most} prompt token(s) from the left to fit context_length ${contextLength} (truncate: left; n_cut in options.parquet)` }
}

/** The options table of scored requests; logprob[i] are the option's per-token log-probs (nats). */
export const optionsTable = (r: OptionRequests, logprobs: ReadonlyArray<Float32Array>): arrow.Table => {
  const n = r.requests.length
  const sums = new Float64Array(n)
  logprobs.forEach((lp, i) => {
    let s = 0
    for (const v of lp) s += v
    sums[i] = s
  })
  return Options.fromRows(
    r.requests.map((q, i) => ({
      example_id: q.exampleId,
      option_id: q.optionId,
      is_correct: q.isCorrect,
      target_score: q.targetScore,
      logprob_sum: sums[i],
      n_tokens: q.ids.length - q.firstTarget,
      n_chars: q.nChars,
      n_cut: q.cut,
    })),
  )
}

export interface DownstreamParams {
  readonly model: string
  readonly step: number
  readonly task: {
    readonly name: string
    readonly format: string
    readonly shots: number
    readonly max_examples: number | null
    readonly seed: number
    readonly truncate: "left" | "skip" | "error"
  }
  readonly context_length: number
  readonly prepend: string | null
}

/** Notes on a task file, said once per process (every checkpoint's unit reads the same file). */
const said = new Set<string>()
const sayOnce = (ctx: UnitContext, line: string) => {
  if (said.has(line)) return Effect.void
  said.add(line)
  return ctx.log(line)
}

const run = Effect.fn("stage.downstream")(function* (unit: UnitPlan<DownstreamParams>, ctx: UnitContext) {
  const { config } = ctx
  const target = downstreamUnits(config).find((u) => u.id === unit.id)
  if (target === undefined) return yield* new UnitError({ message: `downstream: no model, checkpoint and task for unit ${unit.id}` })
  const { model, checkpoint, task } = target
  const file = displayPath(task.path)
  const text = yield* Effect.try({
    try: () => fs.readFileSync(task.path, "utf8"),
    catch: (e) => new UnitError({ message: `${file}: cannot read task file (${(e as NodeJS.ErrnoException).code ?? firstLine(e)})`, cause: e }),
  })
  const parsed = parseTask(task.format, text, file, task.seed)
  if (Either.isLeft(parsed)) return yield* parsed.left
  yield* Effect.forEach(parsed.right.notes, (m) => sayOnce(ctx, `${file}: ${m}`))
  const prompted = buildPrompts(parsed.right, { shots: task.shots, seed: task.seed, maxExamples: task.max_examples }, file)
  if (Either.isLeft(prompted)) return yield* prompted.left
  const tokenizers = yield* Tokenizers
  const tokenizer = yield* tokenizers
    .load(config.tokenizer)
    .pipe(Effect.mapError((e) => new UnitError({ message: `tokenizer ${displayPath(config.tokenizer)}: ${e.reason}` })))
  const built = yield* Effect.tryPromise({
    try: async () => {
      const prepend = config.prepend ? await encodeIds(tokenizer, config.prepend) : new Int32Array(0)
      return buildRequests(prompted.right, tokenizer, prepend, config.context_length, file)
    },
    catch: (e) => toUnitError(e),
  })
  const requests = applyTruncation(built, task.truncate, file, config.context_length)
  if (requests instanceof UnitError) return yield* requests
  if (requests.note !== undefined) yield* sayOnce(ctx, requests.note)
  const reqs = requests.requests.map((q) => ({ ids: q.ids, firstTarget: q.firstTarget, id: `example ${q.exampleId} option ${q.optionId}` }))
  ctx.progress.start(reqs.reduce((a, q) => a + q.ids.length - q.firstTarget, 0), "tokens")
  // Options need log-probs only; notices of the open (e.g. the TypeScript fallback) are logged once it is done.
  const notes: string[] = []
  const label = `${model.name} step ${checkpoint.step}`
  const options = scorerOptions(config.scoring, { cacheDir: ctx.cacheDir, label, log: (m) => notes.push(m), entropy: false })
  const onnx = yield* Onnx
  const where = yield* checkpointPath(ctx, model, checkpoint)
  const results = yield* onnx
    .withScorer(where, options, (s) =>
      Effect.zipRight(
        Effect.forEach(notes, (m) => ctx.log(m)),
        s.scoreAll(reqs, (n) => ctx.progress.advance(n)),
      ),
    )
    .pipe(Effect.catchTag("OnnxError", (e) => Effect.fail(new UnitError({ message: e.message, cause: e }))))
  yield* ctx.writeParquet(
    optionsFile(model.name, checkpoint.step, task.name),
    optionsTable(
      requests,
      results.map((r) => r.logprob),
    ),
  )
})

/**
 * Every task file reads and parses (the prompts and scoring come later, per unit); a subtask's
 * problem names its own task.json under its parent's `tasks[i]`.
 */
const validate = (config: Config): InputProblem[] =>
  config.tasks.flatMap((task) => {
    const file = displayPath(task.path)
    let text: string
    try {
      text = fs.readFileSync(task.path, "utf8")
    } catch (e) {
      return [{ field: `tasks[${task.entry}]${task.parent === undefined ? ".path" : ""}`, reason: `${file}: cannot read task file (${(e as NodeJS.ErrnoException).code ?? firstLine(e)})` }]
    }
    const parsed = parseTask(task.format, text, file, task.seed)
    return Either.isLeft(parsed) ? [{ field: `tasks[${task.entry}]`, reason: parsed.left.message }] : []
  })

/**
 * A pairs task without `prepend`: each sentence's first token is only context (nothing precedes
 * it), so it is never scored, and some BLiMP paradigms differ exactly there.
 */
const warnings = (config: Config): string[] =>
  config.prepend !== undefined
    ? []
    : config.tasks.flatMap((task) =>
        task.format === "pairs"
          ? [
              `${displayPath(config.file)}: tasks[${task.entry}] (${task.name}): a pairs task without \`prepend\`: each sentence's first token is context only and never scored, and some minimal pairs differ exactly there; set prepend (e.g. "<|endoftext|>", or the tokenizer's BOS)`,
            ]
          : [],
      )

export const downstreamStage = defineStage<DownstreamParams, Onnx | Tokenizers | Hub>({
  name: DOWNSTREAM,
  version: 3, // 2: BIG-bench shots joined by few_shot_example_separator (they were joined by nothing); 3: max_examples samples (it kept the first N)
  after: [DOWNLOAD],
  describe: "score every option of every multiple-choice task example on every checkpoint",
  plan: (config) =>
    downstreamUnits(config).map(({ model, checkpoint, task, id }) => {
      const source = checkpointPlan(model, checkpoint)
      return {
      id,
      params: {
        model: model.name,
        step: checkpoint.step,
        task: { name: task.name, format: task.format, shots: task.shots, max_examples: task.max_examples ?? null, seed: task.seed, truncate: task.truncate },
        context_length: config.context_length,
        prepend: config.prepend ?? null,
      },
      inputs: source.inputs,
      files: [...source.files, task.path, ...config.tokenizerFiles],
      }
    }),
  validate,
  warnings,
  run,
})
