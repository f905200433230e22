/**
 * The Tokenizers service: tokenizers (tokenizer.json files or Hugging Face folders) loaded once
 * per process (per layer), for every stage that encodes text (tokenize, downstream, sequences).
 * This module holds the interface, its Tag, the error and the live Layer; loading and encoding sit
 * next to it in tokenizer-load.ts, folders in tokenizer-folder.ts.
 *
 * One cache, keyed by the absolute path, size and mtime of each file the tokenizer reads
 * (tokenizerFiles): a run loads each tokenizer once for all its units, and a file rewritten in
 * place is loaded again. A failed load is not cached.
 *
 *   const tokenizers = yield* Tokenizers
 *   const tok = yield* tokenizers.load("zoo/tokenizer.json")   // LoadedTokenizer, or TokenizerError
 *   const ids = yield* Effect.promise(() => encodeIds(tok, "</s>"))
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Data, Effect, Layer } from "effect"
import { loadTokenizer, TokenizerLoadError, tokenizerFiles, type LoadedTokenizer } from "./tokenizer-load.ts"
import { firstLine } from "../pipeline/errors.ts"

export { encodeIds, tokenizerFiles, toUtf16Offsets, type Encoded, type LoadedTokenizer, type OffsetUnit } from "./tokenizer-load.ts"

/** A tokenizer that cannot be loaded; `reason` is one line (file missing, not a tokenizer, …). */
export class TokenizerError extends Data.TaggedError("TokenizerError")<{
  /** The path as the caller gave it. */
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `tokenizer ${this.path}: ${this.reason}`
  }
}

export interface TokenizersService {
  /** The tokenizer of a tokenizer.json file or tokenizer folder, loaded on first use and shared afterwards. */
  readonly load: (file: string) => Effect.Effect<LoadedTokenizer, TokenizerError>
}

export class Tokenizers extends Context.Tag("trajectories/Tokenizers")<Tokenizers, TokenizersService>() {}


/**
 * Cache key of a tokenizer path: the absolute path, size and mtime of each file it reads (the
 * path alone when they cannot be read: the load reports why).
 */
const keyOf = (file: string): string => {
  const abs = path.resolve(file)
  try {
    return tokenizerFiles(abs)
      .map((f) => {
        const st = fs.statSync(f)
        return `${f}\0${st.size}\0${st.mtimeMs}`
      })
      .join("\0")
  } catch {
    return abs
  }
}

/** A Tokenizers service with its own, empty cache. */
export const makeTokenizers = (): TokenizersService => {
  const cache = new Map<string, Promise<LoadedTokenizer>>()
  return {
    load: (file) =>
      Effect.tryPromise({
        try: () => {
          const key = keyOf(file)
          let t = cache.get(key)
          if (t === undefined) {
            t = loadTokenizer(file)
            t.catch(() => cache.delete(key))
            cache.set(key, t)
          }
          return t
        },
        catch: (e) => new TokenizerError({ path: file, reason: e instanceof TokenizerLoadError ? e.message : firstLine(e) }),
      }),
  }
}

/** Hugging Face `tokenizers` in this process; the cache lives as long as the layer. */
export const TokenizersLive: Layer.Layer<Tokenizers> = Layer.sync(Tokenizers, makeTokenizers)
