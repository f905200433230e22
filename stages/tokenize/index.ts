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
 *
 * Memory is flat in the dataset's size: the tables are built and written a row group at a time
 * (tables.ts chunks, ctx.parquetWriter). Nothing in them needs the whole corpus: token_index,
 * seq_id and first_token_index are running counts, windows never cross documents, and max_tokens
 * needs only the count so far. What is held is a block of the file being read (formats.ts: a
 * text or brown file whole, jsonl 4 MiB of lines, Parquet a row group), two batches of documents
 * being encoded and cut, a chunk of each table, and the row group the encoder is filling.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as arrow from "apache-arrow"
import { Effect } from "effect"
import type { Config, Dataset } from "../../pipeline/config.ts"
import { defineStage, type InputProblem, type Progress, type TableFile, type UnitContext, type UnitPlan, UnitError } from "../../pipeline/stage.ts"
import { DEFAULT_ROW_GROUP_SIZE } from "../../pipeline/store.ts"
import { TOKENIZE, Tokens, tokenizeUnit, tokensFile, Windows, windowsFile } from "./contract.ts"
import { categorizeTokens, textWords } from "./categories.ts"
import { encodeIds, Tokenizers, type Encoded, type LoadedTokenizer } from "../../lib/tokenizer.ts"
import { type ReadDocument, streamDocuments } from "./formats.ts"
import { TokenTablesBuilder } from "./tables.ts"
import { displayPath, firstLine, toUnitError } from "../../pipeline/errors.ts"

export interface TokenizeOptions {
  readonly contextLength: number
  readonly stride: number
  readonly prepend?: string
  readonly maxTokens?: number
  /** Rows per chunk of each table (the files' row-group sizes); default Infinity: one chunk each. */
  readonly chunkRows?: { readonly tokens: number; readonly windows: number }
}

/** Tables of a dataset as they are built: chunks of `chunkRows` rows (the last ones shorter), in order. */
export interface TokenizeChunks {
  readonly tokens: ReadonlyArray<arrow.Table>
  readonly windows: ReadonlyArray<arrow.Table>
}

/** What tokenizing a dataset read. */
export interface TokenizeSummary {
  readonly documents: number
  /** Words of the documents read (whitespace-separated runs, or tagged words for brown). */
  readonly words: number
  /** Notices for the user (e.g. invalid UTF-8 replaced in a file), one line each. */
  readonly notes: ReadonlyArray<string>
}

export interface TokenizeResult extends TokenizeSummary {
  readonly tokens: arrow.Table
  readonly windows: arrow.Table
}

const BATCH_CHARS = 1 << 20
const BATCH_DOCS = 1024

const noProgress: Progress = { start: () => {}, advance: () => {} }

/**
 * Tokenize one dataset into its tokens and windows tables, chunk by chunk (no Effect; the stage
 * wraps it): each step yields the chunks sealed since the last one, and the generator returns
 * what it read. Memory holds a batch of documents and the chunks not yet yielded, never the
 * dataset's tables (with a finite `chunkRows`).
 * Files are read one at a time and encoded in batches of documents; the next batch is encoded by
 * the tokenizer's native threads while this one is tagged and cut into windows, and while the
 * caller writes the chunks it yielded.
 * @throws UnitError for bad input (unreadable file, bad jsonl line, prepend too long, nothing to predict)
 */
export async function* tokenizeChunks(
  dataset: Dataset,
  tokenizer: LoadedTokenizer,
  options: TokenizeOptions,
  progress: Progress = noProgress,
  signal?: AbortSignal,
): AsyncGenerator<TokenizeChunks, TokenizeSummary> {
  const prepend = options.prepend !== undefined && options.prepend !== "" ? await encodeIds(tokenizer, options.prepend) : new Int32Array(0)
  if (prepend.length >= options.contextLength) {
    throw new UnitError({
      message: `prepend ${JSON.stringify(options.prepend)} is ${prepend.length} tokens; context_length (${options.contextLength}) must be larger`,
    })
  }
  const maxTokens = options.maxTokens ?? Infinity
  const notes: string[] = []
  const builder = new TokenTablesBuilder(options.contextLength, options.stride, options.chunkRows)
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
  type Item = ReadDocument
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
        { id: doc.id, ids, nPrepend: prepend.length, charStarts: enc.charStarts, charEnds: enc.charEnds, text: doc.text, tags, categories },
        maxTokens - builder.tokenCount,
      )
      documents++
      words += docWords.starts.length
      progress.advance(bytes)
    }
  }
  const hasRows = (c: TokenizeChunks) => c.tokens.length > 0 || c.windows.length > 0

  let batch: Item[] = []
  let batchChars = 0
  /** The batch encoded before, waiting to be added. */
  let encodedBefore: { items: Item[]; encoded: ReadonlyArray<Encoded> } | undefined
  /** Encode the batch; meanwhile add the one before it and yield its chunks. */
  async function* flush(): AsyncGenerator<TokenizeChunks> {
    const items = batch
    batch = []
    batchChars = 0
    const encoding = tokenizer.encodeBatch(items.map((it) => it.doc.text))
    encoding.catch(() => {}) // awaited below, unless the caller stops at the yield: never an unhandled rejection
    if (encodedBefore !== undefined) {
      add(encodedBefore.items, encodedBefore.encoded)
      encodedBefore = undefined
      const chunks = builder.take()
      if (hasRows(chunks)) yield chunks
    }
    encodedBefore = { items, encoded: await encoding }
    if (signal?.aborted) throw new Error("interrupted")
  }

  for (const file of dataset.files) {
    if (builder.tokenCount >= maxTokens) break
    for await (const item of streamDocuments(dataset, file, (m) => notes.push(m))) {
      batch.push(item)
      batchChars += item.doc.text.length
      if (batchChars >= BATCH_CHARS || batch.length >= BATCH_DOCS) {
        yield* flush()
        if (builder.tokenCount >= maxTokens) break
      }
    }
  }
  if (batch.length > 0) yield* flush()
  if (encodedBefore !== undefined) add(encodedBefore.items, encodedBefore.encoded)
  encodedBefore = undefined

  if (builder.tokenCount === 0) {
    throw new UnitError({
      message: `dataset ${dataset.name}: no token to predict (every document is shorter than 2 tokens)`,
    })
  }
  const last = builder.take(true)
  if (hasRows(last)) yield last
  return { documents, words, notes }
}

/**
 * Tokenize one dataset into its whole tokens and windows tables (tokenizeChunks, collected):
 * for tools and checks on small datasets; the stage streams.
 */
export const tokenizeDataset = async (
  dataset: Dataset,
  tokenizer: LoadedTokenizer,
  options: TokenizeOptions,
  progress: Progress = noProgress,
  signal?: AbortSignal,
): Promise<TokenizeResult> => {
  const tokens: arrow.Table[] = []
  const windows: arrow.Table[] = []
  const chunks = tokenizeChunks(dataset, tokenizer, options, progress, signal)
  let step = await chunks.next()
  for (; !step.done; step = await chunks.next()) {
    tokens.push(...step.value.tokens)
    windows.push(...step.value.windows)
  }
  const whole = (def: { schema: arrow.Schema }, ts: arrow.Table[]) => (ts.length === 1 ? ts[0] : new arrow.Table(def.schema, ts.flatMap((t) => t.batches)))
  return { ...step.value, tokens: whole(Tokens, tokens), windows: whole(Windows, windows) }
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

/** Rows per row group of a file (its writeOptions, else the store's default). */
const rowGroupOf = (file: TableFile): number => file.writeOptions?.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE

/**
 * Token ids per chunk of the windows table (4 MiB): a windows row group of 65,536 windows of 128
 * ids is 32 MiB of ids (of 2,048: 512 MiB), too much to hold and copy twice on the way into the
 * encoder, so windows are handed over in smaller chunks and the encoder cuts the row groups.
 */
const WINDOW_CHUNK_IDS = 1 << 20

/**
 * Tokenize a dataset into its two files through a unit's context, a row group at a time
 * (tokenizeChunks into ctx.parquetWriter): the stage's unit once it has its tokenizer. Row groups
 * are each file's own unless `rowGroupSize` says (tests force small ones). A tokens chunk is a
 * row group, so tokens.parquet holds the bytes one whole-table write gives; windows come in
 * chunks of ~WINDOW_CHUNK_IDS ids (options.chunkRows overrides both), which give the same row
 * groups and values, the pages inside a row group cut where the chunks fall. Neither file appears
 * unless both are complete.
 */
export const writeTokenTables = (
  ctx: UnitContext,
  dataset: Dataset,
  tokenizer: LoadedTokenizer,
  options: TokenizeOptions & { readonly rowGroupSize?: { readonly tokens: number; readonly windows: number } },
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const files = { tokens: tokensFile(dataset.name), windows: windowsFile(dataset.name) }
      const rowGroups = options.rowGroupSize ?? { tokens: rowGroupOf(files.tokens), windows: rowGroupOf(files.windows) }
      const chunkRows = options.chunkRows ?? {
        tokens: rowGroups.tokens,
        windows: Math.max(1, Math.min(rowGroups.windows, Math.floor(WINDOW_CHUNK_IDS / options.contextLength))),
      }
      const tokens = yield* ctx.parquetWriter(files.tokens, { ...files.tokens.writeOptions, rowGroupSize: rowGroups.tokens })
      const windows = yield* ctx.parquetWriter(files.windows, { ...files.windows.writeOptions, rowGroupSize: rowGroups.windows })
      const stop = new AbortController()
      const chunks = tokenizeChunks(dataset, tokenizer, { ...options, chunkRows }, ctx.progress, stop.signal)
      // Ended early (a failure, an interruption): the generator stops at its next batch and closes
      // the file it reads (finalizers run last-added first: abort, then return).
      yield* Effect.addFinalizer(() => Effect.promise(() => chunks.return({ documents: 0, words: 0, notes: [] }).catch(() => undefined)))
      yield* Effect.addFinalizer(() => Effect.sync(() => stop.abort()))
      const next = Effect.tryPromise({ try: () => chunks.next(), catch: (e) => toUnitError(e) })
      let step = yield* next
      for (; !step.done; step = yield* next) {
        for (const t of step.value.tokens) yield* tokens.write(t)
        for (const t of step.value.windows) yield* windows.write(t)
      }
      for (const note of step.value.notes) yield* ctx.log(`tokenize ${dataset.name}: ${note}`)
      yield* tokens.close
      yield* windows.close
    }),
  )

const run = Effect.fn("stage.tokenize")(function* (unit: UnitPlan<TokenizeParams>, ctx: UnitContext) {
  const { config } = ctx
  const dataset = config.datasets.find((d) => d.name === unit.params.dataset.name)
  if (dataset === undefined) return yield* new UnitError({ message: `tokenize: no dataset for unit ${unit.id}` })
  const tokenizers = yield* Tokenizers
  const tokenizer = yield* tokenizers
    .load(config.tokenizer)
    .pipe(Effect.mapError((e) => new UnitError({ message: `tokenizer ${displayPath(config.tokenizer)}: ${e.reason}`, cause: e })))
  yield* writeTokenTables(ctx, dataset, tokenizer, {
    contextLength: config.context_length,
    stride: config.stride,
    prepend: config.prepend,
    maxTokens: dataset.max_tokens,
  })
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
  version: 2, // 2: the tokens table has token_text
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
