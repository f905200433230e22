/**
 * From parsed examples to scoring requests (pure): k-shot prompts, the prompt/option boundary, and
 * the token window each option is scored in.
 *
 * k-shot prompts. Example i of a task gets k other examples of the same task as demonstrations:
 *   prompt = prefix + (shot₁.prompt + shot₁.correct + sep) + … + (shot_k.prompt + shot_k.correct + sep) + example.prompt
 * where `correct` is the shot's first correct option, `prefix` the BIG-bench task_prefix and `sep`
 * the format's separator (tasks.ts: BIG-bench's few_shot_example_separator, default "\n", as BIG-bench
 * joins its shots; "\n\n" for jsonl; "\n" for pairs, whose shots are other pairs' good sentences,
 * one per line). The shots
 * are drawn without replacement from all examples of the task except i — also those that
 * `max_examples` leaves out, so an example's prompt does not change with `max_examples` — by
 * rejection sampling with mulberry32 seeded from (task seed, i) (random.ts). Here i is the
 * example's position among the task's parsed examples (tasks.ts: repeats and generative-only
 * examples are gone), which is its index in the file when nothing was dropped.
 *
 * `max_examples: N` scores a seeded random sample of N of the task's parsed examples, without
 * replacement, as BIG-bench samples (files are often ordered: causal_judgement alternates paired
 * stories, so the first N would be a biased half): the first N positions of a Fisher–Yates shuffle
 * of 0…n−1 with mulberry32(streamSeed(seed, sample, 0)) (random.ts), scored in file order. The
 * sample depends only on the parsed examples' count n, N and the task's seed (not on the shots,
 * the model or the other tasks); a larger N keeps every example of a smaller one (same shuffle,
 * longer prefix); N ≥ n keeps them all. Example ids stay the examples' indices in the file.
 * Worked example (seed 7, 10 examples, N = 4): the shuffle is 2 3 6 1 7 0 4 5 9 8, so examples
 * 1 2 3 6 are scored, in that order; N = 5 adds 7 (tools/reference/downstream_prompts.py).
 *
 * The boundary. The option's leading space belongs to the option, and so do the prompt's trailing
 * spaces: the boundary is the prompt's length less its trailing spaces (newlines stay in the
 * prompt). prompt + option is tokenized as ONE text (with character offsets), and the option's
 * tokens are those whose character span ends after the boundary — every token that starts at or
 * after it, plus a token that straddles it (it carries option characters, so it cannot be context).
 * Worked example (GPT-2 tokens):
 *   prompt "Q: 2+2?\nA:"  option " 4"   text "Q: 2+2?\nA: 4", boundary 10
 *   tokens  "Q" ":" " 2" "+" "2" "?" "\n" "A" ":" | " 4"     " 4" spans [10, 12) → the option's token
 *   prompt "Q: 2+2?\nA: " option "4"    (BIG-bench style) → the same text and boundary 10: the same
 *   split, instead of a prompt ending in a lone " " token and an option "4" the model never sees.
 *   prompt "The cat"      option "s"    "The" | " cats": " cats" [3, 8) straddles boundary 7 and is the
 *   option's token, scored given "The"; its n_chars is 5.
 * n_chars counts the characters of the text the option's scored tokens cover (here " 4": 2).
 *
 * Context. `prepend` (the config's, e.g. a BOS token "</s>") is put in front of every text, as the
 * score stage does for documents, and is never scored. An empty prompt (format `pairs`) with no
 * prepend leaves nothing to condition the first token on: the first token of the text becomes the
 * context and every later token is scored — for both sentences of a pair, so a pair is compared on
 * the same footing (n_chars then starts at the second token).
 *
 * Length. A text longer than context_length tokens loses prompt tokens from the left (after
 * `prepend`, which stays); the option is always kept whole. An option that does not fit in
 * context_length − 1 tokens is an error.
 */
import { Either } from "effect"
import { UnitError } from "../../pipeline/stage.ts"
import { STREAM, mulberry32, shuffled, streamSeed } from "../../lib/random.ts"
import type { ParsedTask, TaskExample } from "./tasks.ts"

export interface PromptOptions {
  readonly shots: number
  readonly seed: number
  readonly maxExamples?: number
}

/** An example with its full prompt (prefix and shots included). */
export interface PromptedExample extends TaskExample {
  /** Ids of the examples shown as shots, in prompt order. */
  readonly shots: ReadonlyArray<number>
}

/**
 * `k` distinct indices of 0…n−1 other than `i`, drawn in order by rejection with
 * mulberry32(streamSeed(seed, shots, i)). Requires k ≤ n − 1.
 */
export const shotIndices = (n: number, i: number, k: number, seed: number): number[] => {
  const next = mulberry32(streamSeed(seed, STREAM.shots, i))
  const out: number[] = []
  const taken = new Set<number>([i])
  while (out.length < k) {
    const j = Math.floor(next() * n)
    if (taken.has(j)) continue
    taken.add(j)
    out.push(j)
  }
  return out
}

/**
 * The positions (0…n−1, ascending) of the examples `max_examples` scores: a seeded sample of
 * min(maxExamples, n) without replacement, the first of a Fisher–Yates shuffle with
 * mulberry32(streamSeed(seed, sample, 0)); every position when maxExamples is absent or ≥ n.
 */
export const sampleIndices = (n: number, maxExamples: number | undefined, seed: number): number[] => {
  const all = Array.from({ length: n }, (_, i) => i)
  if (maxExamples === undefined || maxExamples >= n) return all
  return shuffled(all, mulberry32(streamSeed(seed, STREAM.sample, 0)))
    .slice(0, maxExamples)
    .sort((a, b) => a - b)
}

/**
 * The examples `maxExamples` samples (sampleIndices; all without it), in file order, with their
 * k-shot prompts.
 * @returns a UnitError when the task has too few examples for k shots
 */
export const buildPrompts = (task: ParsedTask, o: PromptOptions, file: string): Either.Either<PromptedExample[], UnitError> => {
  const all = task.examples
  if (o.shots > 0 && all.length < o.shots + 1) {
    return Either.left(
      new UnitError({ message: `${file}: shots: ${o.shots} needs at least ${o.shots + 1} examples, the file has ${all.length}` }),
    )
  }
  return Either.right(
    sampleIndices(all.length, o.maxExamples, o.seed).map((i) => {
      const ex = all[i]
      const shots = o.shots > 0 ? shotIndices(all.length, i, o.shots, o.seed) : []
      const demos = shots.map((j) => all[j].prompt + all[j].options[all[j].correct[0]] + task.shotSeparator).join("")
      return { ...ex, prompt: task.prefix + demos + ex.prompt, shots: shots.map((j) => all[j].id) }
    }),
  )
}

/** Where the option starts in prompt + option: the prompt's length less its trailing spaces. */
export const promptBoundary = (prompt: string): number => {
  let b = prompt.length
  while (b > 0 && prompt.charCodeAt(b - 1) === 32) b--
  return b
}

/** A text tokenized with UTF-16 character spans (as lib/tokenizer-load.ts returns it). */
export interface Tokenized {
  /** [tokens] token ids */
  readonly ids: Int32Array
  /** [tokens] start offsets, UTF-16 code units */
  readonly charStarts: Int32Array
  /** [tokens] end offsets (exclusive), UTF-16 code units */
  readonly charEnds: Int32Array
}

/** One option's scoring request: score ids[firstTarget…] given ids[<firstTarget]. */
export interface OptionRequest {
  /** [context + option tokens] token ids, at most context_length */
  readonly ids: Int32Array
  /** ≥ 1: ids before it are context */
  readonly firstTarget: number
  /** characters of the text covered by the scored tokens */
  readonly nChars: number
  /** prompt tokens cut from the left to fit context_length (the prepend is kept) */
  readonly cut: number
}

/**
 * The request that scores the option of `text` = prompt + option (see the module comment).
 * @param text      prompt + option
 * @param boundary  promptBoundary(prompt)
 * @param enc       the tokens of `text`
 * @param prepend   token ids put in front as context (may be empty)
 * @returns the request, or a one-line reason why the option cannot be scored
 */
export const optionRequest = (
  text: string,
  boundary: number,
  enc: Tokenized,
  prepend: Int32Array,
  contextLength: number,
): OptionRequest | string => {
  const n = enc.ids.length
  let k = 0
  while (k < n && enc.charEnds[k] <= boundary) k++
  if (k === n) return "the option has no token (the tokenizer dropped its text)"
  const promptIds = enc.ids.subarray(0, k)
  let optIds = enc.ids.subarray(k)
  let nChars = text.length - enc.charStarts[k]
  let context: Int32Array
  let cut = 0
  if (prepend.length + promptIds.length === 0) {
    if (optIds.length < 2) return "the text is a single token and has no context to be scored in (set `prepend`, e.g. to a BOS token)"
    context = optIds.subarray(0, 1)
    optIds = optIds.subarray(1)
    nChars = text.length - enc.charStarts[k + 1]
  } else context = concat(prepend, promptIds)
  if (context.length + optIds.length > contextLength) {
    if (optIds.length > contextLength - 1) {
      return `the option is ${optIds.length} tokens, more than context_length − 1 = ${contextLength - 1}`
    }
    const keep = contextLength - optIds.length
    cut = context.length - keep
    context =
      prepend.length < keep && context.length > prepend.length
        ? concat(prepend, context.subarray(context.length - (keep - prepend.length)))
        : context.subarray(context.length - keep)
  }
  return { ids: concat(context, optIds), firstTarget: context.length, nChars, cut }
}

const concat = (a: Int32Array, b: Int32Array): Int32Array => {
  const out = new Int32Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}
