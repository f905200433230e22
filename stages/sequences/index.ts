/**
 * The sequences stage: which sequences small models prefer over large ones, and how noisy text is
 * scored across sizes. Runs only when the config has a `sequences` section (resolved in pipeline/config.ts).
 *
 * Units:
 *   lambda=S_L  (one per configured (λs, λl) pair) — joint decoding between the small and the large
 *               checkpoint (generate.ts, decode.ts), then every generated sequence scored by every
 *               checkpoint of every model through the Onnx service's scorer →
 *                 sequences/lambda=S_L/generations.parquet, sequences/lambda=S_L/trajectories.parquet
 *   noise       perturbed copies of validation windows (noise.ts) scored by every checkpoint →
 *                 sequences/noise.parquet
 *   mauve       (MAUVE on: prompts from a dataset, `mauve` not false) each setting's generations
 *               and the human continuations of the same prompts embedded by one checkpoint
 *               (lib/onnx/embed.ts), MAUVE of each setting (lib/analysis/mauve.ts) →
 *                 sequences/mauve.parquet, sequences/mauve_curves.parquet
 * Every λ group is decoded with each configured decoding (`sequences.decoding`, one or a list); a
 * prompt's nucleus sample uses the same seed whatever else is configured.
 * The issue names `sequences/generations.parquet`; each λ group is its own unit, so its files sit
 * in a Hive partition `lambda=S_L/` (DuckDB: read_parquet('sequences/lambda=*' || '/generations.parquet')).
 * Tables: ./contract.ts.
 */
import type * as arrow from "apache-arrow"
import { Effect } from "effect"
import type { TableRow } from "../../lib/tables.ts"
import { Onnx, scorerOptions, sessionSettings, type NextToken, type ScoreRequest } from "../../lib/onnx/index.ts"
import { mulberry32, shuffled, streamSeed } from "../../lib/random.ts"
import { encodeIds, Tokenizers, type LoadedTokenizer } from "../../lib/tokenizer.ts"
import type { Config, ResolvedSequences } from "../../pipeline/config.ts"
import { displayPath, toUnitError } from "../../pipeline/errors.ts"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import { AGGREGATE, aggregateUnit, Checkpoints, checkpointsFile } from "../aggregate/contract.ts"
import { TOKENIZE, tokenizeUnit, windowsFile } from "../tokenize/contract.ts"
import {
  generationsFile,
  Generations,
  lambdaId,
  lambdaPairs,
  lambdaUnit,
  MAUVE_ID,
  mauveCurvesFile,
  MauveCurves,
  mauveFile,
  Mauve,
  NOISE_ID,
  noiseFile,
  Noise,
  SEQUENCES,
  trajectoriesFile,
  Trajectories,
} from "./contract.ts"
import { generateJoint } from "./generate.ts"
import { pplOf, shuffleWords, substitute } from "./noise.ts"
import { checkpointPath, checkpointPlan, DOWNLOAD } from "../download/contract.ts"
import type { Hub } from "../../lib/hub/index.ts"
import { mauve as mauveOf } from "../../lib/analysis/mauve.ts"
import { firstLine } from "../../lib/messages.ts"

/** Independent random streams of this stage (lib/random.ts streamSeed purposes). */
const STREAM = { sample: 11, promptPick: 12, windowPick: 13, substitute: 14, shuffle: 15 } as const

const fail = (message: string) => new UnitError({ message })

/** The JSON slice of a unit (paths are not in it: the tokenizer and checkpoints are `files`). */
type SequencesParams = Record<string, unknown>

const plan = (config: Config): UnitPlan<SequencesParams>[] => {
  const r = config.sequences
  if (r === undefined) return []
  const section = r.section
  const validDataset = r.validDataset
  // Every checkpoint is read: local ones by their files, Hub ones through their download units.
  const sources = config.models.flatMap((m) => m.checkpoints.map((c) => checkpointPlan(m, c)))
  const allCheckpoints = sources.flatMap((x) => x.files)
  const downloads = sources.flatMap((x) => x.inputs)
  const nCheckpoints = config.models.reduce((n, m) => n + m.checkpoints.length, 0)
  const models = config.models.map((m) => ({ name: m.name, steps: m.checkpoints.map((c) => c.step) }))
  const common = {
    context_length: config.context_length,
    prepend: config.prepend ?? null,
    models,
    batch_size: config.scoring.batch_size,
  }
  const resolved = { small: [r.small.model.name, r.small.checkpoint.step], large: [r.large.model.name, r.large.checkpoint.step] }
  const promptInputs = "dataset" in r.prompts ? [tokenizeUnit(r.prompts.dataset)] : []
  const generation = lambdaPairs(section.lambdas).map(([s, l]) => ({
    id: lambdaId(s, l),
    params: {
      ...common,
      resolved,
      lambda: [s, l],
      decoding: r.decodings,
      top_p: section.top_p,
      max_new_tokens: section.max_new_tokens,
      seed: section.seed,
      prompts: section.prompts ?? null,
      prompts_from: r.prompts,
      valid_dataset: validDataset,
    },
    inputs: [...promptInputs, aggregateUnit, ...downloads],
    files: [...config.tokenizerFiles, ...allCheckpoints],
    weight: nCheckpoints + 2 * section.max_new_tokens,
  }))
  const noise: UnitPlan<SequencesParams> = {
    id: NOISE_ID,
    params: {
      ...common,
      valid_dataset: validDataset,
      noise_rates: section.noise_rates,
      shuffle: section.shuffle,
      noise_windows: section.noise_windows,
      seed: section.seed,
    },
    inputs: [tokenizeUnit(validDataset), ...downloads],
    files: [...config.tokenizerFiles, ...allCheckpoints],
    weight: nCheckpoints,
  }
  const m = r.mauve
  const features = m === undefined ? undefined : checkpointPlan(m.model, m.checkpoint)
  const mauve: UnitPlan<SequencesParams>[] =
    m === undefined || features === undefined
      ? []
      : [
          {
            id: MAUVE_ID,
            params: {
              context_length: config.context_length,
              prepend: config.prepend ?? null,
              prompts_from: r.prompts,
              max_new_tokens: section.max_new_tokens,
              seed: section.seed,
              features: [m.model.name, m.checkpoint.step],
              scaling: m.scaling,
              buckets: m.buckets,
              mauve_seed: m.seed,
              batch_size: config.scoring.batch_size,
            },
            inputs: [...promptInputs, ...lambdaPairs(section.lambdas).map(([s, l]) => lambdaUnit(s, l)), ...features.inputs],
            files: [...config.tokenizerFiles, ...features.files],
            weight: 2 + generation.length * r.decodings.length,
          },
        ]
  return [...generation, noise, ...mauve]
}

// ---------------------------------------------------------------------------------------------
// Inputs

const tokenizerOf = (file: string): Effect.Effect<LoadedTokenizer, UnitError, Tokenizers> =>
  Effect.flatMap(Tokenizers, (t) => t.load(file)).pipe(Effect.mapError((e) => new UnitError({ message: `tokenizer ${displayPath(file)}: ${e.reason}`, cause: e })))

interface WindowRow {
  readonly ids: Int32Array
  readonly firstTarget: number
}

/** The windows of a dataset, as the tokenize unit wrote them. */
const readWindows = (ctx: UnitContext, dataset: string): Effect.Effect<WindowRow[], UnitError> =>
  Effect.map(ctx.input(tokenizeUnit(dataset)).read(windowsFile(dataset), { columns: ["input_ids", "first_target"] }), (t) => {
    const ids = t.getChild("input_ids")!
    const ft = t.getChild("first_target")!
    return Array.from({ length: t.numRows }, (_, i) => ({ ids: Int32Array.from(ids.get(i) as arrow.Vector<arrow.Int32>), firstTarget: Number(ft.get(i)) }))
  })

/** `k` indices of 0…n−1 chosen by a seeded shuffle, ascending. */
const pick = (n: number, k: number, seed: number, purpose: number): number[] =>
  shuffled(Array.from({ length: n }, (_, i) => i), mulberry32(streamSeed(seed, purpose, 0)))
    .slice(0, k)
    .sort((a, b) => a - b)

/** Validation perplexity per "model@step" from checkpoints.parquet. */
const validPpl = (ctx: UnitContext, dataset: string): Effect.Effect<Map<string, number | null>, UnitError> =>
  Effect.flatMap(ctx.input(aggregateUnit).read(checkpointsFile), (t) =>
    Effect.try({
      try: () => new Map(Checkpoints.toRows(t).filter((r) => r.dataset === dataset).map((r) => [`${r.model}@${r.step}`, r.ppl] as const)),
      catch: (e) => toUnitError(e, checkpointsFile.path),
    }),
  )

// ---------------------------------------------------------------------------------------------
// Scoring with every checkpoint

/**
 * Score `reqs` with every checkpoint of every model; `row` gets each checkpoint's results.
 * One session per checkpoint (withScorer), all requests in one batched scoreAll.
 */
const scoreEverywhere = (
  ctx: UnitContext,
  reqs: ReadonlyArray<ScoreRequest>,
  row: (model: string, step: number, logprobs: ReadonlyArray<Float32Array>) => void,
): Effect.Effect<void, UnitError, Onnx | Hub> =>
  Effect.gen(function* () {
    const { config } = ctx
    const onnx = yield* Onnx
    for (const model of config.models) {
      for (const cp of model.checkpoints) {
        // Sequences need log-probs only.
        const options = scorerOptions(config.scoring, { cacheDir: ctx.cacheDir, label: `${model.name}@${cp.step}`, entropy: false })
        const where = yield* checkpointPath(ctx, model, cp)
        const results = yield* onnx
          .withScorer(where, options, (s) => s.scoreAll(reqs))
          .pipe(Effect.catchTag("OnnxError", (e) => Effect.fail(new UnitError({ message: e.message, cause: e }))))
        row(model.name, cp.step, results.map((r) => r.logprob))
        ctx.progress.advance(1)
      }
    }
  })

/** ids cut to their last `L` tokens, the first target moved with them (≥ 1). */
const fitContext = (ids: Int32Array, firstTarget: number, L: number): ScoreRequest => {
  if (ids.length <= L) return { ids, firstTarget }
  const cut = ids.length - L
  return { ids: ids.subarray(cut), firstTarget: Math.max(1, firstTarget - cut) }
}

// ---------------------------------------------------------------------------------------------
// Generation units

interface Prompt {
  readonly text: string
  /** Prepend + prompt ids. */
  readonly ids: Int32Array
  /** Prompts from a dataset: the window's own next tokens after the prompt, at most max_new_tokens (the human continuation). */
  readonly human?: Int32Array
}

const buildPrompts = (ctx: UnitContext, r: ResolvedSequences, tok: LoadedTokenizer, prepend: Int32Array): Effect.Effect<Prompt[], UnitError> =>
  Effect.gen(function* () {
    const p = r.prompts
    if ("texts" in p) {
      const enc = yield* Effect.tryPromise({ try: () => tok.encodeBatch(p.texts), catch: toUnitError })
      return p.texts.map((text, i) => {
        const ids = new Int32Array(prepend.length + enc[i].ids.length)
        ids.set(prepend)
        ids.set(enc[i].ids, prepend.length)
        return { text, ids }
      })
    }
    const windows = yield* readWindows(ctx, p.dataset)
    const chosen = pick(windows.length, p.n, r.section.seed, STREAM.promptPick)
    return yield* Effect.tryPromise({
      try: () =>
        Promise.all(
          chosen.map(async (w) => {
            const ids = windows[w].ids
            const body = startsWith(ids, prepend) ? ids.subarray(prepend.length) : ids
            const promptIds = body.subarray(0, p.tokens)
            const all = new Int32Array(prepend.length + promptIds.length)
            all.set(prepend)
            all.set(promptIds, prepend.length)
            const human = body.slice(p.tokens, p.tokens + r.section.max_new_tokens)
            return { text: await tok.tokenizer.decode(Array.from(promptIds), false), ids: all, human }
          }),
        ),
      catch: toUnitError,
    })
  })

const startsWith = (ids: Int32Array, prefix: Int32Array): boolean =>
  prefix.length > 0 && ids.length >= prefix.length && prefix.every((v, i) => ids[i] === v)

/** Open the small and the large checkpoint (once when they are the same file), release both afterwards. */
const withPair = <A>(r: ResolvedSequences, ctx: UnitContext, use: (s: NextToken, l: NextToken) => Promise<A>): Effect.Effect<A, UnitError, Onnx | Hub> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { config } = ctx
      const onnx = yield* Onnx
      const o = { ...sessionSettings(config.scoring), cacheDir: ctx.cacheDir }
      const largeAt = yield* checkpointPath(ctx, r.large.model, r.large.checkpoint)
      const smallAt = yield* checkpointPath(ctx, r.small.model, r.small.checkpoint)
      const open = (side: ResolvedSequences["large"], where: string) =>
        onnx
          .openNextToken(where, { ...o, label: `${side.model.name}@${side.checkpoint.step}` })
          .pipe(Effect.mapError((e) => fail(e.message)))
      const large = yield* open(r.large, largeAt)
      const small = smallAt === largeAt ? large : yield* open(r.small, smallAt)
      return yield* Effect.tryPromise({ try: () => use(small, large), catch: toUnitError })
    }),
  )

const runGeneration = (unit: UnitPlan<SequencesParams>, ctx: UnitContext, r: ResolvedSequences) =>
  Effect.gen(function* () {
    const { config } = ctx
    const pair = lambdaPairs(r.section.lambdas).find(([s, l]) => lambdaId(s, l) === unit.id)
    if (pair === undefined) return yield* fail(`sequences: no λ pair for unit ${unit.id}`)
    const [lambdaS, lambdaL] = pair
    const tok = yield* tokenizerOf(config.tokenizer)
    const prepend = config.prepend ? yield* Effect.tryPromise({ try: () => encodeIds(tok, config.prepend!), catch: toUnitError }) : new Int32Array(0)
    const prompts = yield* buildPrompts(ctx, r, tok, prepend)
    if (prompts.some((p) => p.ids.length === 0)) return yield* fail("sequences: an empty prompt (and no prepend) has no next token")
    const n = r.section.max_new_tokens
    const nCheckpoints = config.models.reduce((a, m) => a + m.checkpoints.length, 0)
    ctx.progress.start(r.decodings.length * n + nCheckpoints, "steps")
    const seeds = prompts.map((_, i) => streamSeed(r.section.seed, STREAM.sample, i))
    const runs = yield* withPair(r, ctx, async (s, l) => {
      const out: Array<{ decoding: (typeof r.decodings)[number]; generated: Int32Array[]; fallbacks: number }> = []
      for (const decoding of r.decodings) {
        const gen = await generateJoint(s, l, prompts.map((p) => p.ids), {
          lambdaS,
          lambdaL,
          decoding,
          topP: r.section.top_p,
          maxNewTokens: n,
          seeds,
          contextLength: config.context_length,
          onStep: () => ctx.progress.advance(1),
        })
        out.push({ decoding, generated: gen.generated, fallbacks: gen.fallbacks })
      }
      return out
    })
    for (const g of runs) {
      if (g.fallbacks > 0) {
        yield* ctx.log(`sequences ${unit.id} (${g.decoding}): ${g.fallbacks} of ${prompts.length * n} steps had no mass left after max(λs·ps + λl·pl, 0); they used the large model's distribution`)
      }
    }
    const texts = yield* Effect.forEach(runs, (g) =>
      Effect.tryPromise({ try: () => tok.tokenizer.decodeBatch(g.generated.map((x) => Array.from(x)), false), catch: toUnitError }),
    )
    yield* ctx.writeParquet(
      generationsFile(lambdaS, lambdaL),
      Generations.fromRows(
        runs.flatMap((g, k) =>
          prompts.map((p, i) => ({
            sequence_id: i,
            prompt: p.text,
            text: texts[k][i],
            token_ids: g.generated[i],
            lambda_s: lambdaS,
            lambda_l: lambdaL,
            decoding: g.decoding,
            seed: r.section.seed,
          })),
        ),
      ),
    )

    const reqs = runs.flatMap((g) =>
      prompts.map((p, i) => {
        const ids = new Int32Array(p.ids.length + n)
        ids.set(p.ids)
        ids.set(g.generated[i], p.ids.length)
        return { ...fitContext(ids, p.ids.length, config.context_length), id: `sequence ${i} (${g.decoding})` }
      }),
    )
    const valid = yield* validPpl(ctx, r.validDataset)
    const rows: Array<TableRow<typeof Trajectories>> = []
    yield* scoreEverywhere(ctx, reqs, (model, step, lps) =>
      lps.forEach((lp, j) =>
        rows.push({
          sequence_id: j % prompts.length,
          decoding: runs[Math.floor(j / prompts.length)].decoding,
          model,
          step,
          valid_ppl: valid.get(`${model}@${step}`) ?? null,
          ppl: pplOf([lp]).ppl,
        }),
      ),
    )
    yield* ctx.writeParquet(trajectoriesFile(lambdaS, lambdaL), Trajectories.fromRows(rows))
  })

// ---------------------------------------------------------------------------------------------
// Noise unit

export interface NoiseGroup {
  readonly kind: "substitute" | "shuffle"
  readonly rate: number
  readonly reqs: ReadonlyArray<ScoreRequest>
}

/**
 * The perturbed request groups of the chosen windows: one "substitute" group per rate (positions
 * after the prepend replaced at that rate, targets as in the window), and with `shuffle` two
 * "shuffle" groups: rate 0 (the window's text decoded and re-encoded) and rate 1 (its words
 * shuffled), both scored on every token after the prepend.
 */
export const noiseGroups = async (
  windows: ReadonlyArray<WindowRow>,
  o: { readonly rates: ReadonlyArray<number>; readonly shuffle: boolean; readonly seed: number; readonly vocab: number; readonly contextLength: number },
  tok: LoadedTokenizer,
  prepend: Int32Array,
): Promise<NoiseGroup[]> => {
  const from = (w: WindowRow) => (startsWith(w.ids, prepend) && w.firstTarget <= prepend.length ? prepend.length : 0)
  const groups: NoiseGroup[] = [...new Set(o.rates)].map((rate) => ({
    kind: "substitute",
    rate,
    reqs: windows.map((w, i) => ({
      ids: substitute(w.ids, from(w), rate, o.vocab, mulberry32(streamSeed(o.seed, STREAM.substitute, i))),
      firstTarget: w.firstTarget,
      id: `window ${i}`,
    })),
  }))
  if (o.shuffle) {
    const bodies = await tok.tokenizer.decodeBatch(windows.map((w) => Array.from(w.ids.subarray(from(w)))), false)
    for (const rate of [0, 1]) {
      const texts = bodies.map((t, i) => (rate === 0 ? t : shuffleWords(t, mulberry32(streamSeed(o.seed, STREAM.shuffle, i)))))
      const enc = await tok.encodeBatch(texts)
      const reqs: ScoreRequest[] = []
      enc.forEach((e, i) => {
        const ids = new Int32Array(prepend.length + e.ids.length)
        ids.set(prepend)
        ids.set(e.ids, prepend.length)
        const body = ids.subarray(0, o.contextLength)
        if (body.length >= 2) reqs.push({ ids: body, firstTarget: Math.max(1, prepend.length), id: `window ${i}` })
      })
      groups.push({ kind: "shuffle", rate, reqs })
    }
  }
  return groups
}

const runNoise = (ctx: UnitContext, r: ResolvedSequences) =>
  Effect.gen(function* () {
    const { config } = ctx
    const tok = yield* tokenizerOf(config.tokenizer)
    const prepend = config.prepend ? yield* Effect.tryPromise({ try: () => encodeIds(tok, config.prepend!), catch: toUnitError }) : new Int32Array(0)
    const all = yield* readWindows(ctx, r.validDataset)
    const windows = pick(all.length, r.section.noise_windows, r.section.seed, STREAM.windowPick).map((i) => all[i])
    const groups = yield* Effect.tryPromise({
      try: () =>
        noiseGroups(windows, { rates: r.section.noise_rates, shuffle: r.section.shuffle, seed: r.section.seed, vocab: tok.vocabSize, contextLength: config.context_length }, tok, prepend),
      catch: toUnitError,
    })
    ctx.progress.start(config.models.reduce((a, m) => a + m.checkpoints.length, 0), "checkpoints")
    const reqs = groups.flatMap((g) => g.reqs)
    const rows: Array<TableRow<typeof Noise>> = []
    yield* scoreEverywhere(ctx, reqs, (model, step, lps) => {
      let at = 0
      for (const g of groups) {
        const { ppl, n } = pplOf(lps.slice(at, at + g.reqs.length))
        at += g.reqs.length
        rows.push({ kind: g.kind, rate: g.rate, model, step, ppl, n_tokens: n })
      }
    })
    yield* ctx.writeParquet(noiseFile, Noise.fromRows(rows))
  })

// ---------------------------------------------------------------------------------------------
// MAUVE unit

/** The last `L` tokens of ids (a feature is the state at the last token: the end is what counts). */
const lastTokens = (ids: Int32Array, L: number): Int32Array => (ids.length <= L ? ids : ids.subarray(ids.length - L))

const concat = (a: Int32Array, b: Int32Array): Int32Array => {
  const out = new Int32Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

const runMauve = (ctx: UnitContext, r: ResolvedSequences) =>
  Effect.gen(function* () {
    const { config } = ctx
    const m = r.mauve
    if (m === undefined) return yield* fail("sequences: MAUVE is off in this config")
    const tok = yield* tokenizerOf(config.tokenizer)
    const prepend = config.prepend ? yield* Effect.tryPromise({ try: () => encodeIds(tok, config.prepend!), catch: toUnitError }) : new Int32Array(0)
    const prompts = yield* buildPrompts(ctx, r, tok, prepend)
    const L = config.context_length
    // Q: the prompts whose windows go on after them (a window cut at a document's end may not).
    const human = prompts.flatMap((p) => (p.human !== undefined && p.human.length > 0 ? [lastTokens(concat(p.ids, p.human), L)] : []))
    if (human.length < prompts.length) {
      yield* ctx.log(`sequences mauve: ${prompts.length - human.length} of ${prompts.length} prompts end their window and have no human continuation; MAUVE uses the other ${human.length}`)
    }
    const short = prompts.filter((p) => p.human !== undefined && p.human.length > 0 && p.human.length < r.section.max_new_tokens).length
    if (short > 0) yield* ctx.log(`sequences mauve: ${short} human continuation(s) are shorter than max_new_tokens (${r.section.max_new_tokens}): their window ends first`)
    if (human.length < 2) return yield* fail(`sequences mauve: ${human.length} human continuation(s); MAUVE needs at least 2 (more prompts: prompts_from.n_prompts)`)

    // P of each setting, in group then decoding order.
    const settings: Array<{ s: number; l: number; decoding: string; rows: Int32Array[] }> = []
    for (const [s, l] of lambdaPairs(r.section.lambdas)) {
      const t = yield* ctx.input(lambdaUnit(s, l)).read(generationsFile(s, l), { columns: ["sequence_id", "decoding", "token_ids"] })
      const sid = t.getChild("sequence_id")!
      const dec = t.getChild("decoding")!
      const ids = t.getChild("token_ids")!
      for (const decoding of r.decodings) {
        const rows: Int32Array[] = []
        for (let i = 0; i < t.numRows; i++) {
          if (dec.get(i) !== decoding) continue
          const p = prompts[Number(sid.get(i))]
          if (p === undefined) return yield* fail(`${generationsFile(s, l).path}: sequence_id ${sid.get(i)} has no prompt (${prompts.length} prompts)`)
          rows.push(lastTokens(concat(p.ids, Int32Array.from(ids.get(i) as arrow.Vector<arrow.Int32>)), L))
        }
        if (rows.length < 2) return yield* fail(`${generationsFile(s, l).path}: ${rows.length} ${decoding} generation(s); MAUVE needs at least 2`)
        settings.push({ s, l, decoding, rows })
      }
    }

    ctx.progress.start(settings.length + 1, "sets embedded")
    const onnx = yield* Onnx
    const where = yield* checkpointPath(ctx, m.model, m.checkpoint)
    const features = `${m.model.name}@${m.checkpoint.step}`
    const options = { ...sessionSettings(config.scoring), cacheDir: ctx.cacheDir, contextLength: L, batchSize: config.scoring.batch_size, label: features }
    const embedded = yield* onnx
      .withEmbedder(where, options, (e) =>
        Effect.tryPromise({
          try: async () => {
            const flat = (vs: Float32Array[]) => {
              const data = new Float32Array(vs.length * e.dim)
              vs.forEach((v, i) => data.set(v, i * e.dim))
              return { data, dim: e.dim }
            }
            const q = flat(await e.embed(human))
            ctx.progress.advance(1)
            const ps = []
            for (const st of settings) {
              ps.push(flat(await e.embed(st.rows)))
              ctx.progress.advance(1)
            }
            return { q, ps }
          },
          catch: (x) => x,
        }),
      )
      .pipe(Effect.mapError((e) => fail(`sequences mauve: ${firstLine(e)}`)))
    const rows: Array<TableRow<typeof Mauve>> = []
    const curves: Array<TableRow<typeof MauveCurves>> = []
    for (const [k, st] of settings.entries()) {
      const res = yield* Effect.try({
        try: () => mauveOf(embedded.ps[k], embedded.q, { scaling: m.scaling, buckets: m.buckets, seed: m.seed }),
        catch: (e) => fail(`sequences mauve (${lambdaId(st.s, st.l)}, ${st.decoding}): ${firstLine(e)}`),
      })
      rows.push({
        lambda_s: st.s,
        lambda_l: st.l,
        decoding: st.decoding,
        mauve: res.mauve,
        buckets: res.buckets,
        dims: res.dims,
        n_model: st.rows.length,
        n_human: human.length,
        scaling: m.scaling,
        seed: m.seed,
        features,
      })
      res.curve.forEach((c, point) => curves.push({ lambda_s: st.s, lambda_l: st.l, decoding: st.decoding, point, x: c.x, y: c.y }))
    }
    yield* ctx.writeParquet(mauveFile, Mauve.fromRows(rows))
    yield* ctx.writeParquet(mauveCurvesFile, MauveCurves.fromRows(curves))
  })

const run = Effect.fn("stage.sequences")(function* (unit: UnitPlan<SequencesParams>, ctx: UnitContext) {
  const r = ctx.config.sequences
  if (r === undefined) return yield* fail("sequences: the config has no sequences section")
  if (unit.id === NOISE_ID) return yield* runNoise(ctx, r)
  if (unit.id === MAUVE_ID) return yield* runMauve(ctx, r)
  return yield* runGeneration(unit, ctx, r)
})

export const sequencesStage = defineStage<SequencesParams, Onnx | Tokenizers | Hub>({
  name: SEQUENCES,
  version: 2,
  after: [TOKENIZE, AGGREGATE, DOWNLOAD],
  describe: "joint decoding between a small and a large checkpoint; perplexity of generations and noisy windows at every checkpoint; MAUVE of each decoding",
  plan,
  run,
})
