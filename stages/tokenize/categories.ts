/**
 * Token categories (pure): punctuation | number | function | content | piece.
 *
 * The rules are data, in categories.json: Brown tags → category (after normalising the tag), and
 * the function-word list used when a dataset has no tags.
 *
 * A token is matched to the word whose span holds the token's first non-space character:
 *   - it is a `piece` when that character is not the word's first character (a word-internal BPE
 *     piece: "Atl|anta" → "anta" is a piece), or when the token before it starts at the same
 *     character (byte-level BPE splits one character into several tokens: the 2nd one is a piece);
 *   - otherwise its category is the word's: from the word's tag when the dataset has tags and the
 *     tag is known, else from the word's text (all punctuation/symbols → punctuation, digits →
 *     number, a function word → function, anything else → content);
 *   - a token of only whitespace (e.g. "Ġ" or "Ċ" in byte-level BPE) has no word: punctuation.
 * Its tag is the tag of that word (pieces included), or null when the dataset has no tags.
 *
 * Example, untagged text "The cat's." with tokens "The" "Ġc" "at" "'s" ".":
 *   words  The | cat's | .        (letters/digits with inner apostrophes, or one other character)
 *   The → function, Ġc → content (word "cat's"), at → piece, 's → piece, . → punctuation
 */
import rules from "./categories.json" with { type: "json" }

export type Category = "punctuation" | "number" | "function" | "content" | "piece"
export type WordCategory = Exclude<Category, "piece">

export const CATEGORIES: ReadonlyArray<Category> = ["punctuation", "number", "function", "content", "piece"]

/** Word spans of a document's text (UTF-16 offsets, end exclusive), in text order, with tags when the dataset has them. */
export interface Words {
  /** [words] start offsets, increasing. */
  readonly starts: Int32Array
  /** [words] end offsets (exclusive). */
  readonly ends: Int32Array
  /** [words] tags, verbatim; absent when the dataset has no tags. */
  readonly tags?: ReadonlyArray<string>
}

const exactTags = new Map<string, WordCategory>(Object.entries(rules.tags.exact) as Array<[string, WordCategory]>)
const prefixTags = rules.tags.prefix as Array<[string, WordCategory]>
const functionWords = new Set(rules.function_words)

/** `fw-nn-tl` → `nn`, `ppss+md` → `ppss`, `.-hl` → `.`, `---hl` → `--`. */
export const normalizeTag = (tag: string): string => {
  let t = tag.toLowerCase().replace(/^fw-/, "").replace(/(?:-(?:tl|hl|nc))+$/, "")
  const plus = t.indexOf("+")
  if (plus > 0) t = t.slice(0, plus)
  return t
}

const tagCache = new Map<string, WordCategory | undefined>()

/** Category of a Brown-style tag, or undefined when categories.json does not know it. */
export const categoryOfTag = (tag: string): WordCategory | undefined => {
  if (tagCache.has(tag)) return tagCache.get(tag)
  const t = normalizeTag(tag)
  let c = exactTags.get(t)
  if (c === undefined) c = prefixTags.find(([p]) => t.startsWith(p))?.[1]
  tagCache.set(tag, c)
  return c
}

const PUNCT = /^[\p{P}\p{S}]+$/u
const NUMBER = /^[+-]?\p{N}[\p{N}.,:/%-]*$/u

const textCache = new Map<string, WordCategory>()

/** Category of a word from its text alone: punctuation, number, function (categories.json list), else content. */
export const categoryOfText = (word: string): WordCategory => {
  let c = textCache.get(word)
  if (c !== undefined) return c
  const w = word.trim()
  if (w === "" || PUNCT.test(w)) c = "punctuation"
  else if (NUMBER.test(w)) c = "number"
  else if (functionWords.has(w.toLowerCase().replace(/’/g, "'"))) c = "function"
  else c = "content"
  if (textCache.size < 1_000_000) textCache.set(word, c)
  return c
}

/** Words of untagged text: runs of letters/marks/digits (inner apostrophes allowed: "don't"), or any other single non-space character. */
export const textWords = (text: string): Words => {
  const starts: number[] = []
  const ends: number[] = []
  const re = /[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*|[^\s\p{L}\p{M}\p{N}]/gu
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    starts.push(m.index)
    ends.push(m.index + m[0].length)
  }
  return { starts: Int32Array.from(starts), ends: Int32Array.from(ends) }
}

const isSpace = (code: number): boolean =>
  code === 32 || (code >= 9 && code <= 13) || (code > 127 && /\s/.test(String.fromCharCode(code)))

/**
 * Tag and category of each token of one document (prepended tokens excluded).
 * @param text       the document text
 * @param words      its word spans (and tags), see `textWords` / brown.ts
 * @param charStarts [tokens] each token's start offset in `text` (UTF-16 code units)
 * @param charEnds   [tokens] each token's end offset (exclusive)
 * @returns tags [tokens] (null when the dataset has no tags or the token is whitespace) and categories [tokens]
 */
export const categorizeTokens = (
  text: string,
  words: Words,
  charStarts: Int32Array,
  charEnds: Int32Array,
): { tags: Array<string | null>; categories: Category[] } => {
  const n = charStarts.length
  const tags = new Array<string | null>(n)
  const categories = new Array<Category>(n)
  const { starts, ends } = words
  let w = 0 // candidate word: the first word whose end is past the current character
  let prevP = -1
  for (let i = 0; i < n; i++) {
    let p = charStarts[i]
    const e = charEnds[i]
    while (p < e && isSpace(text.charCodeAt(p))) p++
    if (p >= e) {
      tags[i] = null
      categories[i] = "punctuation"
      continue
    }
    if (w > 0 && ends[w - 1] > p) w = 0 // offsets went backwards (unusual tokenizer): search again
    while (w < starts.length && ends[w] <= p) w++
    if (w >= starts.length || starts[w] > p) {
      // A non-space character outside every word (tagged data with gaps): judge the token's own text.
      tags[i] = null
      categories[i] = p === prevP ? "piece" : categoryOfText(text.slice(p, e))
    } else {
      const tag = words.tags ? words.tags[w] : null
      tags[i] = tag
      if (p > starts[w] || p === prevP) categories[i] = "piece"
      else categories[i] = (tag !== null ? categoryOfTag(tag) : undefined) ?? categoryOfText(text.slice(starts[w], ends[w]))
    }
    prevP = p
  }
  return { tags, categories }
}
