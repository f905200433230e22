/**
 * The tokenize stage: one unit per dataset (`dataset=<name>`). Reads the dataset's documents
 * (formats.ts), encodes them with the run's tokenizer.json (the Tokenizers service, lib/tokenizer.ts),
 * tags and categorises every token (categories.ts), cuts documents into windows (windows.ts) and writes
 *   tokens/dataset=D/tokens.parquet    one row per predicted token (token_index 0…N−1)
 *   windows/dataset=D/windows.parquet  one row per model input window
 * with the tables of ./contract.ts.
 *
 * `prepend` (e.g. "</s>") is encoded on its own and put in front of every document as context.
 * Documents are encoded without the tokenizer's own special tokens (`addSpecialTokens: false`):
 * what a model sees before a document is exactly `prepend`.
 * `max_tokens`: documents are read in order until that many tokens are predicted; the last
 * document is cut there.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import type { Config, Dataset } from "../../pipeline/config.ts"
import { defineStage, type InputProblem, type Progress, type UnitContext, type UnitPlan, UnitError } from "../../pipeline/stage.ts"
import { TOKENIZE, tokenizeUnit, tokensFile, windowsFile } from "./contract.ts"
import { categorizeTokens, textWords } from "./categories.ts"
import { encodeIds, Tokenizers, type Encoded, type LoadedTokenizer } from "../../lib/tokenizer.ts"
import { type Document, readDocuments } from "./formats.ts"
import { TokenTablesBuilder } from "./tables.ts"
import { displayPath, firstLine, toUnitError } from "../../pipeline/errors.ts"

export interface TokenizeOptions {
  readonly contextLength: number
  readonly stride: number
  readonly prepend?: string
  readonly maxTokens?: number
}

export interface TokenizeResult {
  readonly tokens: import("apache-arrow").Table
  readonly windows: import("apache-arrow").Table
  readonly documents: number
  /** Words of the documents read (whitespace-separated runs, or tagged words for brown). */
  readonly words: number
  /** Notices for the user (e.g. invalid UTF-8 replaced in a file), one line each. */
  readonly notes: ReadonlyArray<string>
}

const BATCH_CHARS = 1 << 20
const BATCH_DOCS = 1024

const noProgress: Progress = { start: () => {}, advance: () => {} }

/**
 * Tokenize one dataset into its tokens and windows tables (no Effect; the stage wraps it).
 * Files are read one at a time and encoded in batches of documents; the next batch is encoded by
 * the tokenizer's native threads while this one is tagged and cut into windows.
 * @throws UnitError for bad input (unreadable file, bad jsonl line, prepend too long, nothing to predict)
 */
export const tokenizeDataset = async (
  dataset: Dataset,
  tokenizer: LoadedTokenizer,
  options: TokenizeOptions,
  progress: Progress = noProgress,
  signal?: AbortSignal,
): Promise<TokenizeResult> => {
  const prepend = options.prepend !== undefined && options.prepend !== "" ? await encodeIds(tokenizer, options.prepend) : new Int32Array(0)
  if (prepend.length >= options.contextLength) {
    throw new UnitError({
      message: `prepend ${JSON.stringify(options.prepend)} is ${prepend.length} tokens; context_length (${options.contextLength}) must be larger`,
    })
  }
  const maxTokens = options.maxTokens ?? Infinity
  const notes: string[] = []
  const builder = new TokenTablesBuilder(options.contextLength, options.stride)
  const sizes = dataset.files.map((f) => {
    try {
      return fs.statSync(f).size
    } catch {
      return 0 // reading it below reports the problem
    }
  })
  progress.start(sizes.reduce((a, b) => a + b, 0), "bytes")

  let documents = 0
  let words = 0
  /** Documents waiting to be encoded, with the progress each is worth. */
  type Item = { doc: Document; bytes: number }
  const add = (items: ReadonlyArray<Item>, encoded: ReadonlyArray<Encoded>) => {
    for (let i = 0; i < items.length && builder.tokenCount < maxTokens; i++) {
      const { doc, bytes } = items[i]
      const enc = encoded[i]
      const docWords = doc.words ?? textWords(doc.text)
      const { tags, categories } = categorizeTokens(doc.text, docWords, enc.charStarts, enc.charEnds)
      const ids = new Int32Array(prepend.length + enc.ids.length)
      ids.set(prepend)
      ids.set(enc.ids, prepend.length)
      builder.add(
        { id: doc.id, ids, nPrepend: prepend.length, charStarts: enc.charStarts, charEnds: enc.charEnds, tags, categories },
        maxTokens - builder.tokenCount,
      )
      documents++
      words += docWords.starts.length
      progress.advance(bytes)
    }
  }

  let batch: Item[] = []
  let batchChars = 0
  let pending: Promise<void> = Promise.resolve()
  const flush = async () => {
    const items = batch
    batch = []
    batchChars = 0
    const encoding = tokenizer.encodeBatch(items.map((it) => it.doc.text))
    await pending // the previous batch is processed while this one is encoded
    const encoded = await encoding
    if (signal?.aborted) throw new Error("interrupted")
    pending = Promise.resolve().then(() => add(items, encoded))
    pending.catch(() => {}) // awaited by the next flush or at the end; never an unhandled rejection
  }

  for (const [fi, file] of dataset.files.entries()) {
    if (builder.tokenCount >= maxTokens) break
    const docs = readDocuments(dataset, file, (m) => notes.push(m))
    const totalChars = docs.reduce((a, d) => a + d.text.length, 0) || 1
    for (const doc of docs) {
      batch.push({ doc, bytes: (sizes[fi] * doc.text.length) / totalChars })
      batchChars += doc.text.length
      if (batchChars >= BATCH_CHARS || batch.length >= BATCH_DOCS) {
        await flush()
        if (builder.tokenCount >= maxTokens) break
      }
    }
  }
  if (batch.length > 0) await flush()
  await pending

  if (builder.tokenCount === 0) {
    throw new UnitError({
      message: `dataset ${dataset.name}: no token to predict (every document is shorter than 2 tokens)`,
    })
  }
  return { tokens: builder.tokens(), windows: builder.windows(), documents, words, notes }
}

interface TokenizeParams {
  readonly dataset: {
    readonly name: string
    readonly format: Dataset["format"]
    readonly max_tokens: number | null
    readonly text_field: string
    readonly id_field: string
  }
  readonly context_length: number
  readonly stride: number
  readonly prepend: string | null
}

const run = Effect.fn("stage.tokenize")(function* (unit: UnitPlan<TokenizeParams>, ctx: UnitContext) {
  const { config } = ctx
  const dataset = config.datasets.find((d) => d.name === unit.params.dataset.name)
  if (dataset === undefined) return yield* new UnitError({ message: `tokenize: no dataset for unit ${unit.id}` })
  const tokenizers = yield* Tokenizers
  const tokenizer = yield* tokenizers
    .load(config.tokenizer)
    .pipe(Effect.mapError((e) => new UnitError({ message: `tokenizer ${displayPath(config.tokenizer)}: ${e.reason}`, cause: e })))
  const result = yield* Effect.tryPromise({
    try: (signal) =>
      tokenizeDataset(
        dataset,
        tokenizer,
        {
          contextLength: config.context_length,
          stride: config.stride,
          prepend: config.prepend,
          maxTokens: dataset.max_tokens,
        },
        ctx.progress,
        signal,
      ),
    catch: (e) => toUnitError(e),
  })
  for (const note of result.notes) yield* ctx.log(`tokenize ${dataset.name}: ${note}`)
  yield* ctx.writeParquet(tokensFile(dataset.name), result.tokens)
  yield* ctx.writeParquet(windowsFile(dataset.name), result.windows)
})

/** The tokenizer file reads and is a JSON object (the tokenizers library says more at load time). */
const validate = (config: Config): InputProblem[] => {
  // A tokenizer.json, or a GPT-2-style folder's vocab.json: either is a JSON object.
  const first = config.tokenizerFiles[0] ?? config.tokenizer
  const file = displayPath(first)
  try {
    const v: unknown = JSON.parse(fs.readFileSync(first, "utf8"))
    return v !== null && typeof v === "object" && !Array.isArray(v) ? [] : [{ field: "tokenizer", reason: `${file}: not a ${path.basename(first)} (a JSON object)` }]
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return [{ field: "tokenizer", reason: `${file}: ${code ? `cannot read (${code})` : `not valid JSON (${firstLine(e)})`}` }]
  }
}

export const tokenizeStage = defineStage<TokenizeParams, Tokenizers>({
  name: TOKENIZE,
  version: 1,
  after: [],
  describe: "split each dataset into windows of token ids; one row per predicted token with its tag and category",
  plan: (config) =>
    config.datasets.map((d) => ({
      id: tokenizeUnit(d.name).id,
      params: {
        dataset: {
          name: d.name,
          format: d.format,
          max_tokens: d.max_tokens ?? null,
          text_field: d.text_field,
          id_field: d.id_field,
        },
        context_length: config.context_length,
        stride: config.stride,
        prepend: config.prepend ?? null,
      },
      inputs: [],
      // The tokenizer and the dataset's files enter the key by content (and path relative to the config).
      files: [...d.files, ...config.tokenizerFiles],
    })),
  validate,
  run,
})
