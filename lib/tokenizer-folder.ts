/**
 * Which files a tokenizer path reads, and the tokenizer.json that a GPT-2-style vocab.json +
 * merges.txt stand for. No `tokenizers` here: tokenizer-load.ts loads what this module resolves.
 *
 * A tokenizer path is a tokenizer.json file or a Hugging Face tokenizer folder (a checkpoint
 * folder, or a Hub snapshot whose files are relative links into ../../blobs/):
 *   file                         → that file
 *   folder with tokenizer.json   → folder/tokenizer.json (its own added tokens; configs not read)
 *   folder with vocab.json + merges.txt (OPT, GPT-2, Pythia-era repos)
 *                                → a byte-level BPE built like transformers' GPT2TokenizerFast:
 *                                  BPE(vocab, merges; no unk, no dropout), ByteLevel pre-tokenizer
 *                                  (add_prefix_space from tokenizer_config.json, default false),
 *                                  ByteLevel decoder and post-processor (trim_offsets), plus the
 *                                  added and special tokens of tokenizer_config.json and
 *                                  special_tokens_map.json, so "</s>" encodes to its one id.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { firstLine } from "./messages.ts"

/** Thrown by loadTokenizer and tokenizerFiles with a one-line reason. */
export class TokenizerLoadError extends Error {}

/** Where a tokenizer comes from; every path is absolute. */
export type TokenizerSource =
  | { readonly kind: "tokenizer.json"; readonly file: string }
  | {
      readonly kind: "vocab+merges"
      readonly folder: string
      readonly vocab: string
      readonly merges: string
      /** The config files of CONFIG_FILES that the folder has, in that order. */
      readonly configs: ReadonlyArray<string>
    }

/** Read, when present, for add_prefix_space and the added and special tokens. */
export const CONFIG_FILES = ["tokenizer_config.json", "special_tokens_map.json"] as const

/**
 * Resolve a tokenizer path (file or folder, relative to the working directory).
 * @throws TokenizerLoadError: "file not found"; "<folder> has vocab.json but no merges.txt"; …
 */
export const resolveTokenizer = (p: string): TokenizerSource => {
  const abs = path.resolve(p)
  if (!fs.existsSync(abs)) throw new TokenizerLoadError("file not found")
  if (!fs.statSync(abs).isDirectory()) return { kind: "tokenizer.json", file: abs }
  const has = (name: string): boolean => {
    const file = path.join(abs, name)
    if (fs.existsSync(file)) return true
    if (isLink(file)) throw new TokenizerLoadError(`${abs}: ${name} is a link to a missing file (${fs.readlinkSync(file)})`)
    return false
  }
  if (has("tokenizer.json")) return { kind: "tokenizer.json", file: path.join(abs, "tokenizer.json") }
  const vocab = has("vocab.json")
  const merges = has("merges.txt")
  if (vocab && merges) {
    const configs = CONFIG_FILES.filter(has).map((name) => path.join(abs, name))
    return { kind: "vocab+merges", folder: abs, vocab: path.join(abs, "vocab.json"), merges: path.join(abs, "merges.txt"), configs }
  }
  if (vocab) throw new TokenizerLoadError(`${abs} has vocab.json but no merges.txt`)
  if (merges) throw new TokenizerLoadError(`${abs} has merges.txt but no vocab.json`)
  throw new TokenizerLoadError(`${abs} has no tokenizer.json and no vocab.json + merges.txt`)
}

const isLink = (file: string): boolean => {
  try {
    return fs.lstatSync(file).isSymbolicLink()
  } catch {
    return false
  }
}

/**
 * Absolute paths of the files the tokenizer at `p` reads (for fingerprints): [tokenizer.json], or
 * [vocab.json, merges.txt, …the config files present]. Links are not resolved; reading follows them.
 * @throws TokenizerLoadError as resolveTokenizer
 */
export const tokenizerFiles = (p: string): string[] => {
  const s = resolveTokenizer(p)
  return s.kind === "tokenizer.json" ? [s.file] : [s.vocab, s.merges, ...s.configs]
}

/**
 * The ByteLevel post-processor trims each token's span to exclude its leading and trailing spaces
 * ("Ġthe" in " the" spans "the", [1, 4)), as in zoo/tokenizer.json.
 * transformers' GPT2Converter sets trim_offsets=False instead ([0, 4)); the ids are the same.
 */
const TRIM_OFFSETS = true

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedToken {
  readonly id: number
  readonly content: string
  readonly single_word: boolean
  readonly lstrip: boolean
  readonly rstrip: boolean
  readonly normalized: boolean
  readonly special: boolean
}

/**
 * The tokenizer.json text for a vocab.json + merges.txt folder, and the added tokens with the ids
 * they must get (the loader checks them: `tokenizers` numbers added tokens itself).
 * @throws TokenizerLoadError naming the file at fault (not JSON, a bad merges line, …)
 */
export const byteLevelBpeJson = (s: Extract<TokenizerSource, { kind: "vocab+merges" }>): { json: string; added: AddedToken[] } => {
  const vocab = readVocab(s.vocab)
  const merges = parseMerges(readText(s.merges), path.basename(s.merges))
  const configs = s.configs.map((file) => ({ name: path.basename(file), value: readJsonObject(file) }))
  const tokenizerConfig = configs.find((c) => c.name === "tokenizer_config.json")?.value ?? {}
  const addPrefixSpace = tokenizerConfig.add_prefix_space === true
  const added = addedTokens(vocab, configs)
  const byteLevel = { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: TRIM_OFFSETS, use_regex: true }
  const doc = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  }
  return { json: JSON.stringify(doc), added }
}

const readText = (file: string): string => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch (e) {
    throw new TokenizerLoadError(`${path.basename(file)}: cannot read (${(e as NodeJS.ErrnoException).code ?? firstLine(e)})`)
  }
}

const readJsonObject = (file: string): Record<string, unknown> => {
  let v: unknown
  try {
    v = JSON.parse(readText(file))
  } catch (e) {
    if (e instanceof TokenizerLoadError) throw e
    throw new TokenizerLoadError(`${path.basename(file)}: not valid JSON (${firstLine(e)})`)
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new TokenizerLoadError(`${path.basename(file)}: not a JSON object`)
  return v as Record<string, unknown>
}

const readVocab = (file: string): Record<string, number> => {
  const v = readJsonObject(file)
  for (const [token, id] of Object.entries(v)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new TokenizerLoadError(`vocab.json: ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`)
    }
  }
  return v as Record<string, number>
}

/**
 * merges.txt → merges in rank order. Example (GPT-2's first lines):
 *   "#version: 0.2\nĠ t\nĠ a\nh e\n"  →  [["Ġ","t"], ["Ġ","a"], ["h","e"]]
 * A first line starting "#version" is a header; empty lines are skipped (the last one, mostly).
 */
export const parseMerges = (text: string, name = "merges.txt"): [string, string][] => {
  const out: [string, string][] = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i]
    if (line === "" || (i === 0 && line.startsWith("#version"))) continue
    const parts = line.split(" ")
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new TokenizerLoadError(`${name} line ${i + 1}: expected two symbols separated by one space, got ${JSON.stringify(line.slice(0, 40))}`)
    }
    out.push([parts[0], parts[1]])
  }
  return out
}

/** transformers' special-token attributes (SPECIAL_TOKENS_ATTRIBUTES), each a token or a list of them. */
const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "additional_special_tokens"]

/**
 * The added tokens, by id: those of tokenizer_config.json's `added_tokens_decoder` with their ids,
 * then every special token the configs name (a string, or an object with `content`) that is not
 * among them, with its vocab id or, when the vocab lacks it, the next free id (as transformers
 * appends it).
 */
const addedTokens = (vocab: Record<string, number>, configs: ReadonlyArray<{ name: string; value: Record<string, unknown> }>): AddedToken[] => {
  const byContent = new Map<string, AddedToken>()
  const tokenConfig = configs.find((c) => c.name === "tokenizer_config.json")?.value
  const decoder = tokenConfig?.added_tokens_decoder
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== "object" || Array.isArray(decoder)) throw new TokenizerLoadError("tokenizer_config.json: added_tokens_decoder is not an object")
    for (const [key, value] of Object.entries(decoder)) {
      const id = Number(key)
      const t = tokenOf(value)
      if (!Number.isInteger(id) || id < 0 || t === undefined) {
        throw new TokenizerLoadError(`tokenizer_config.json: added_tokens_decoder ${JSON.stringify(key)} is not an id with a token`)
      }
      byContent.set(t.content, { ...t, id, special: t.special ?? false })
    }
  }
  let next = Object.keys(vocab).length // the next free id: past the vocab and the added tokens
  for (const id of Object.values(vocab)) next = Math.max(next, id + 1)
  for (const t of byContent.values()) next = Math.max(next, t.id + 1)
  for (const { value } of configs) {
    for (const key of SPECIAL_KEYS) {
      const v = value[key]
      for (const item of Array.isArray(v) ? v : [v]) {
        const t = tokenOf(item)
        if (t === undefined) continue
        const known = byContent.get(t.content)
        if (known !== undefined) {
          if (!known.special) byContent.set(t.content, { ...known, special: true })
          continue
        }
        const id = Object.hasOwn(vocab, t.content) ? vocab[t.content] : next++
        byContent.set(t.content, { ...t, id, special: true })
      }
    }
  }
  return [...byContent.values()].sort((a, b) => a.id - b.id)
}

/** A token of a config: "</s>", or { content: "</s>", lstrip?, rstrip?, single_word?, normalized?, special? }. */
const tokenOf = (v: unknown): (Omit<AddedToken, "id" | "special"> & { special?: boolean }) | undefined => {
  if (typeof v === "string") return v === "" ? undefined : { content: v, single_word: false, lstrip: false, rstrip: false, normalized: false }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined
  const o = v as Record<string, unknown>
  if (typeof o.content !== "string" || o.content === "") return undefined
  return {
    content: o.content,
    single_word: o.single_word === true,
    lstrip: o.lstrip === true,
    rstrip: o.rstrip === true,
    normalized: o.normalized === true,
    ...(typeof o.special === "boolean" ? { special: o.special } : {}),
  }
}
