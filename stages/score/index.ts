/**
 * The score stage: one unit per (model, checkpoint, dataset) runs the checkpoint over the dataset's
 * windows and writes `scores/model=M/step=S/dataset=D/scores.parquet` — token_index, token_id,
 * logprob (and entropy), one row per predicted token in token_index order, row groups of
 * `scoring.row_group_size` rows so that row group g holds the same tokens in every checkpoint's file.
 *
 * Memory: windows are read one Parquet row group at a time (twice: a survey for the token count,
 * the largest id and the token_index invariant, then scoring) and scored in chunks of CHUNK
 * windows. What accumulates is the output columns — token_id int32 + logprob float32
 * (+ entropy float32), 8–12 bytes per token — because the one file is encoded in one call at the
 * end (UnitContext writes whole tables; parquet-wasm's streaming writer would need a streaming
 * ctx.writeParquet). Encoding copies the columns about three times over for a moment. A dataset of
 * 10M tokens thus holds ~100 MB while it is scored; the benchmark's 95k- and 381k-token runs peak
 * at the same RSS within noise.
 */
import * as os from "node:os"
import { Effect } from "effect"
import { firstLine } from "../../pipeline/errors.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import type { RowGroupReader } from "../../pipeline/store.ts"
import { TOKENIZE, tokenizeUnit, windowsFile } from "../tokenize/contract.ts"
import { SCORE, scoresFile, scoresWriteOptions, scoreUnit } from "./contract.ts"
import { Onnx, scorerOptions, type Scorer } from "../../lib/onnx/index.ts"
import { scoresTable, targetsOf, windowsOf, type Window } from "./tables.ts"
import { checkpointPath, checkpointPlan, DOWNLOAD } from "../download/contract.ts"
import type { Hub } from "../../lib/hub/index.ts"

/** Windows per scoreAll call (sorted by length inside it). */
export const CHUNK = 1024

const WINDOW_COLUMNS = ["seq_id", "input_ids", "first_target", "first_token_index"]

const fail = (message: string) => new UnitError({ message })

export interface ScoreParams {
  readonly model: string
  readonly step: number
  readonly dataset: string
  readonly entropy: boolean
  readonly row_group_size: number
}

const readGroup = (r: RowGroupReader, g: number) =>
  Effect.tryPromise({
    try: async () => windowsOf(await r.read(g, WINDOW_COLUMNS)),
    catch: (e) => new UnitError({ message: `cannot read row group ${g} of ${r.path}: ${firstLine(e)}`, cause: e }),
  })

/** First pass: number of predicted tokens, largest token id, and the token_index invariant. */
const survey = (r: RowGroupReader, dataset: string) =>
  Effect.gen(function* () {
    let tokens = 0
    let maxId = -1
    for (let g = 0; g < r.rowGroupRows.length; g++) {
      for (const w of yield* readGroup(r, g)) {
        if (w.firstTokenIndex !== tokens) {
          return yield* Effect.fail(
            fail(`dataset ${dataset}: windows are not consecutive at seq_id ${w.seqId} (first_token_index ${w.firstTokenIndex}, expected ${tokens})`),
          )
        }
        tokens += targetsOf(w)
        for (const t of w.ids) if (t > maxId) maxId = t
      }
    }
    return { tokens, maxId }
  })

/** Second pass: score every window, writing each target at its token_index. */
const scoreWindows = (r: RowGroupReader, scorer: Scorer, ctx: UnitContext, out: { tokenId: Int32Array; logprob: Float32Array; entropy?: Float32Array }) =>
  Effect.gen(function* () {
    for (let g = 0; g < r.rowGroupRows.length; g++) {
      const windows = yield* readGroup(r, g)
      for (let c = 0; c < windows.length; c += CHUNK) {
        const chunk: Window[] = windows.slice(c, c + CHUNK)
        const results = yield* scorer.scoreAll(
          chunk.map((w) => ({ ids: w.ids, firstTarget: w.firstTarget, id: `seq_id ${w.seqId}` })),
          (n) => ctx.progress.advance(n),
        )
        chunk.forEach((w, i) => {
          out.tokenId.set(w.ids.subarray(w.firstTarget), w.firstTokenIndex)
          out.logprob.set(results[i].logprob, w.firstTokenIndex)
          if (out.entropy) out.entropy.set(results[i].entropy!, w.firstTokenIndex)
        })
      }
    }
  })

/** The batch a vocabulary gets, said once per process and (vocabulary, batch). */
const batchesSaid = new Set<string>()
const sayBatch = (ctx: UnitContext, scorer: Scorer, label: string) => {
  const { scoring, context_length } = ctx.config
  const batch = scorer.batchFor(context_length)
  const key = `${scorer.vocabSize}/${batch}/${scorer.positionsOnly}`
  if (batchesSaid.has(key)) return Effect.void
  batchesSaid.add(key)
  const cut = batch < scoring.batch_size ? `, cut from scoring.batch_size ${scoring.batch_size} to fit scoring.max_memory_gb ${scoring.max_memory_gb}` : ""
  const head = scorer.positionsOnly
    ? "; output layer on the scored positions only"
    : scorer.graph === "logits"
      ? ""
      : `; output layer on every position (${scorer.everyPositionWhy ?? "not found"})`
  return ctx.log(`${label}: ${batch} window(s) of ${context_length} tokens per call (vocabulary ${scorer.vocabSize}${cut}${head})`)
}

/** The thread settings in use, said once per process (a run, or a runner's worker thread). */
let threadsSaid = ""
const sayThreads = (ctx: UnitContext) => {
  const { scoring } = ctx.config
  const line =
    scoring.execution_provider === "cuda"
      ? `scoring on cuda:${scoring.cuda_device}`
      : `scoring with ${scoring.threads} onnxruntime thread(s) (scoring.threads; default: this machine's ${os.availableParallelism()} cores), ` +
        `idle threads ${scoring.spin ? "spinning" : "sleeping"} (scoring.spin)`
  if (line === threadsSaid) return Effect.void
  threadsSaid = line
  return ctx.log(line)
}

const run = Effect.fn("stage.score")(function* (unit: UnitPlan<ScoreParams>, ctx: UnitContext) {
  const { model, step, dataset } = unit.params
  const { scoring } = ctx.config
  yield* sayThreads(ctx)
  const cp = ctx.config.models.find((m) => m.name === model)?.checkpoints.find((c) => c.step === step)
  if (cp === undefined) return yield* Effect.fail(fail(`${model} step ${step} is not in the config`))
  const label = `${model} step ${step}`

  yield* Effect.scoped(
    Effect.gen(function* () {
      const checkpoint = yield* checkpointPath(ctx, { name: model }, cp)
      const reader = yield* ctx.input(tokenizeUnit(dataset)).open(windowsFile(dataset))
      const { tokens, maxId } = yield* survey(reader, dataset)
      const notes: string[] = []
      const options = scorerOptions(scoring, { cacheDir: ctx.cacheDir, label, log: (m) => notes.push(m) })
      const onnx = yield* Onnx
      const table = yield* onnx.withScorer(checkpoint, options, (scorer) =>
        Effect.gen(function* () {
          yield* Effect.forEach(notes, (m) => ctx.log(m))
          yield* sayBatch(ctx, scorer, label)
          if (scorer.vocabSize !== undefined && maxId >= scorer.vocabSize) {
            return yield* Effect.fail(
              fail(
                `${label}: dataset ${dataset} has token id ${maxId} but the model's logits have width ${scorer.vocabSize}: tokenizer/model mismatch`,
              ),
            )
          }
          const out = {
            tokenId: new Int32Array(tokens),
            logprob: new Float32Array(tokens),
            ...(scoring.entropy ? { entropy: new Float32Array(tokens) } : {}),
          }
          ctx.progress.start(tokens, "tokens")
          yield* scoreWindows(reader, scorer, ctx, out)
          return scoresTable(out.tokenId, out.logprob, out.entropy)
        }),
      ).pipe(Effect.catchTag("OnnxError", (e) => Effect.fail(new UnitError({ message: e.message, cause: e }))))
      yield* ctx.writeParquet(scoresFile(model, step, dataset), table, scoresWriteOptions(scoring.row_group_size))
    }),
  )
})

export const scoreStage = defineStage<ScoreParams, Onnx | Hub>({
  name: SCORE,
  version: 1,
  after: [TOKENIZE, DOWNLOAD],
  describe: "per-token log-probabilities of every checkpoint on every dataset (ONNX Runtime)",
  plan: (config) =>
    config.models.flatMap((m) =>
      m.checkpoints.flatMap((cp) =>
        config.datasets.map((d) => {
          const source = checkpointPlan(m, cp) // a local checkpoint's files, or a Hub checkpoint's download unit
          return {
            id: scoreUnit(m.name, cp.step, d.name).id,
            // Only what changes the output: threads, batch size and the device (execution_provider, cuda_device) do not.
            params: { model: m.name, step: cp.step, dataset: d.name, entropy: config.scoring.entropy, row_group_size: config.scoring.row_group_size },
            inputs: [tokenizeUnit(d.name), ...source.inputs],
            files: source.files,
            weight: m.params,
          }
        }),
      ),
    ),
  run,
})
