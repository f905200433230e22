/**
 * Task files → one normalized multiple-choice form (pure: text in, examples out, no I/O).
 *
 *   bigbench  BIG-bench JSON: `examples[]` with `input` and `target_scores` (option → score; the
 *             options with the maximal score are correct). Optional top-level fields and their
 *             BIG-bench defaults: task_prefix "", example_input_prefix "\nQ: ", example_output_prefix
 *             "\nA: ", choice_prefix "\n  choice: ", append_choices_to_input true, few_shot_example_separator
 *             "\n" (between shots, and between the last shot and the example). With choices
 *             appended, they are listed sorted, then shuffled with the task's seed (BIG-bench permutes
 *             them with numpy; the order of the file must not reveal the answer). A prompt is
 *               example_input_prefix + input [+ choice_prefix + c₁ + choice_prefix + c₂ …] + example_output_prefix
 *             and the task_prefix comes once, before the shots (prompts.ts).
 *             Options (and option_id) follow the key order of JSON.parse: file order, except that
 *             integer-like keys ("8", "44") come first, ascending. JSON objects cannot hold a key
 *             twice (JSON.parse keeps the last), so duplicate BIG-bench options cannot be seen here.
 *             An example with a `target` and no `target_scores` (generative only) is skipped, and an
 *             example that is the same JSON as an earlier one is dropped (as BIG-bench does), each
 *             counted in a note; example ids stay the examples' indices in the file.
 *             A parent task (no `examples`, a task.json in each subtask's subfolder) never gets
 *             here: the config makes each subtask a task of its own (pipeline/config.ts Task).
 *   pairs     minimal-pair JSONL (BLiMP): `sentence_good`, `sentence_bad` (other fields ignored). The
 *             options are the two whole sentences after an empty prompt; the good one is correct. A
 *             pair of two identical sentences is kept and scores as a tie (incorrect), counted in a note.
 *   jsonl     one `{"prompt": …, "choices": [...], "answer": i}` per line (`answer` may also be a
 *             list of indices when several options are correct).
 * Blank lines of the JSONL formats are skipped; example ids count examples (0-based), not lines.
 *
 * Every example needs at least two options, at least one correct and one incorrect, no empty
 * (or whitespace-only) option and no option twice. A violation is one line naming the file, the
 * example and the field:
 *   tasks/qa.jsonl: example 3 (line 5): choices[1]: empty option
 *   tasks/bb.json: example 0: target_scores: every option has the same score, so none is correct
 */
import { Either } from "effect"
import { UnitError } from "../../pipeline/stage.ts"
import { STREAM, mulberry32, shuffled, streamSeed } from "../../lib/random.ts"
import { firstLine } from "../../pipeline/errors.ts"

export type TaskFormat = "bigbench" | "pairs" | "jsonl"

export interface TaskExample {
  /** 0-based index of the example in the file (BIG-bench `examples[id]`, the id-th non-blank JSONL line). */
  readonly id: number
  /** Text before the options; may end in spaces, which belong to the options (see prompts.ts). */
  readonly prompt: string
  /** The options in file order (BIG-bench: JSON.parse's key order, see above). */
  readonly options: ReadonlyArray<string>
  /** Indices into `options` of the correct ones, ascending; the first is the one shown in shots. */
  readonly correct: ReadonlyArray<number>
  /** BIG-bench's target score of each option (partial credit, e.g. 1 / 0.5 / 0); absent: 1 for a correct option, 0 else. */
  readonly scores?: ReadonlyArray<number>
}

export interface ParsedTask {
  readonly examples: ReadonlyArray<TaskExample>
  /** Text once at the start of every prompt, before the shots (BIG-bench `task_prefix`). */
  readonly prefix: string
  /** Text after each shot (`prompt + correct option`), before what follows it. */
  readonly shotSeparator: string
  /** What was done with examples that are not errors but not plain either (said once per file). */
  readonly notes: ReadonlyArray<string>
}

/** Separators between shots (BIG-bench's default few_shot_example_separator; a task file may set its own). */
const SEPARATOR: Record<TaskFormat, string> = { bigbench: "\n", jsonl: "\n\n", pairs: "\n" }

/** A problem with one example, before the file name is known to the message. */
class Bad extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(message)
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v)
const quote = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s)

/** Check the options of one example; `field(i)` names option i in messages. */
const checkOptions = (options: ReadonlyArray<string>, correct: ReadonlyArray<number>, field: string, optionField: (i: number) => string) => {
  if (options.length < 2) throw new Bad(field, `needs at least two options, got ${options.length}`)
  const seen = new Map<string, number>()
  options.forEach((o, i) => {
    if (o.trim() === "") throw new Bad(optionField(i), `empty option${o === "" ? "" : ` (only whitespace: ${JSON.stringify(o)})`}`)
    const j = seen.get(o)
    if (j !== undefined) throw new Bad(field, `option ${quote(o)} appears twice (${optionField(j)} and ${optionField(i)})`)
    seen.set(o, i)
  })
  if (correct.length === 0) throw new Bad(field, "no correct option")
  if (correct.length === options.length) throw new Bad(field, "every option is correct, so none is wrong")
}

const str = (o: Record<string, unknown>, key: string, fallback?: string): string => {
  const v = o[key]
  if (v === undefined && fallback !== undefined) return fallback
  if (typeof v !== "string") throw new Bad(key, v === undefined ? "missing (expected a string)" : `expected a string, got ${JSON.stringify(v)?.slice(0, 40)}`)
  return v
}

const parseBigbench = (text: string, seed: number, at: (i: number) => string): ParsedTask => {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    throw new Bad("", `not valid JSON (${firstLine(e)})`)
  }
  if (!isObject(doc)) throw new Bad("", "expected a BIG-bench task: a JSON object with `examples`")
  if (doc.examples === undefined) {
    // A parent task (no examples, subtasks in subfolders) was expanded into its subtasks at config load (pipeline/config.ts).
    throw new Bad("examples", "missing, and no subfolder holds a task.json: neither a task nor a BIG-bench parent task with subtasks")
  }
  if (!Array.isArray(doc.examples)) throw new Bad("examples", "expected a list of examples")
  const prefix = str(doc, "task_prefix", "")
  const inputPrefix = str(doc, "example_input_prefix", "\nQ: ")
  const outputPrefix = str(doc, "example_output_prefix", "\nA: ")
  const choicePrefix = str(doc, "choice_prefix", "\n  choice: ")
  const separator = str(doc, "few_shot_example_separator", SEPARATOR.bigbench)
  const append = doc.append_choices_to_input ?? true
  if (typeof append !== "boolean") throw new Bad("append_choices_to_input", `expected true or false, got ${JSON.stringify(append)}`)
  let generative = 0
  let repeated = 0
  const seen = new Set<string>()
  const examples = doc.examples.flatMap((ex: unknown, i: number): TaskExample[] => {
    try {
      if (!isObject(ex)) throw new Bad("", "expected an object with input and target_scores")
      // BIG-bench keeps the first of examples that are the same JSON (json_task's _get_unique_examples).
      const key = JSON.stringify(ex)
      if (seen.has(key)) {
        repeated++
        return []
      }
      seen.add(key)
      const input = str(ex, "input")
      const ts = ex.target_scores
      if (ts === undefined && ex.target !== undefined) {
        generative++ // a generative example (a `target` to produce, no options to score): BIG-bench scores it otherwise
        return []
      }
      if (!isObject(ts)) {
        throw new Bad("target_scores", ts === undefined ? "missing (only multiple-choice examples can be scored)" : "expected an object option → score")
      }
      const options = Object.keys(ts)
      const scores = options.map((o) => {
        const s = ts[o]
        if (typeof s !== "number" || !Number.isFinite(s)) throw new Bad("target_scores", `score of ${quote(o)} is ${JSON.stringify(s)}, expected a number`)
        return s
      })
      const max = Math.max(...scores)
      const correct = options.length > 0 && scores.every((s) => s === max) ? [] : scores.flatMap((s, j) => (s === max ? [j] : []))
      if (options.length >= 2 && correct.length === 0) throw new Bad("target_scores", "every option has the same score, so none is correct")
      checkOptions(options, correct, "target_scores", (j) => `target_scores[${quote(options[j])}]`)
      const choices = append
        ? choicePrefix + shuffled([...options].sort(), mulberry32(streamSeed(seed, STREAM.choices, i))).join(choicePrefix)
        : ""
      return [{ id: i, prompt: inputPrefix + input + choices + outputPrefix, options, correct, scores }]
    } catch (e) {
      if (e instanceof Bad) throw new Bad(`${at(i)}${e.where ? `: ${e.where}` : ""}`, e.message)
      throw e
    }
  })
  const notes = [
    ...(repeated > 0 ? [`${repeated} of ${doc.examples.length} examples repeat an earlier one exactly: dropped, as BIG-bench does`] : []),
    ...(generative > 0 ? [`${generative} of ${doc.examples.length} examples are generative only (a target, no target_scores): skipped`] : []),
  ]
  if (examples.length === 0 && generative > 0) throw new Bad("examples", "every example is generative only (no target_scores): nothing to score as multiple choice")
  return { examples, prefix, shotSeparator: separator, notes }
}

/** Non-blank lines of a JSONL file as parsed objects with their 1-based line numbers. */
const jsonLines = (text: string): Array<{ line: number; value: unknown }> =>
  text.split("\n").flatMap((raw, k) => {
    if (raw.trim() === "") return []
    try {
      return [{ line: k + 1, value: JSON.parse(raw) as unknown }]
    } catch (e) {
      throw new Bad(`line ${k + 1}`, `not valid JSON (${firstLine(e)})`)
    }
  })

const parseLines = (text: string, format: "pairs" | "jsonl"): ParsedTask => {
  let ties = 0
  const examples = jsonLines(text).map(({ line, value }, i): TaskExample => {
    try {
      if (!isObject(value)) throw new Bad("", "expected a JSON object")
      if (format === "pairs") {
        const options = [str(value, "sentence_good"), str(value, "sentence_bad")]
        // Two identical sentences are scored as they are: a tie, which counts as incorrect (as in
        // lm-evaluation-harness); they are counted, not refused.
        if (options[0] === options[1] && options[0].trim() !== "") ties++
        else checkOptions(options, [0], "sentence_good", (j) => (j === 0 ? "sentence_good" : "sentence_bad"))
        return { id: i, prompt: "", options, correct: [0] }
      }
      const prompt = str(value, "prompt")
      const choices = value.choices
      if (!Array.isArray(choices)) throw new Bad("choices", "expected a list of strings")
      const options = choices.map((c, j) => {
        if (typeof c !== "string") throw new Bad(`choices[${j}]`, `expected a string, got ${JSON.stringify(c)?.slice(0, 40)}`)
        return c
      })
      const answer = value.answer
      const answers = Array.isArray(answer) ? answer : [answer]
      const ok = answers.length > 0 && answers.every((a) => Number.isInteger(a) && a >= 0 && a < options.length)
      if (!ok && options.length >= 2) {
        throw new Bad("answer", `expected an index 0…${options.length - 1} (or a list of them), got ${JSON.stringify(answer) ?? "nothing"}`)
      }
      const correct = [...new Set(answers as number[])].sort((a, b) => a - b)
      checkOptions(options, ok ? correct : [], "choices", (j) => `choices[${j}]`)
      return { id: i, prompt, options, correct }
    } catch (e) {
      if (e instanceof Bad) throw new Bad(`example ${i} (line ${line})${e.where ? `: ${e.where}` : ""}`, e.message)
      throw e
    }
  })
  const notes = ties > 0 ? [`${ties} of ${examples.length} pairs have the same sentence twice: scored as ties, which count as incorrect`] : []
  return { examples, prefix: "", shotSeparator: SEPARATOR[format], notes }
}

/**
 * Parse a task file's text.
 * @param file  the file as it should appear in messages (e.g. relative to the working folder)
 * @param seed  the task's seed (orders the choices appended to BIG-bench inputs)
 * @returns the examples in file order, or a UnitError whose one-line message names file, example and field
 */
export const parseTask = (format: TaskFormat, text: string, file: string, seed: number): Either.Either<ParsedTask, UnitError> => {
  try {
    const task = format === "bigbench" ? parseBigbench(text, seed, (i) => `example ${i}`) : parseLines(text, format)
    if (task.examples.length === 0) return Either.left(new UnitError({ message: `${file}: no examples` }))
    return Either.right(task)
  } catch (e) {
    if (e instanceof Bad) return Either.left(new UnitError({ message: `${file}: ${e.where ? `${e.where}: ` : ""}${e.message}` }))
    throw e
  }
}
