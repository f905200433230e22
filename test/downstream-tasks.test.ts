/**
 * The downstream stage's pure core: task formats, errors, k-shot prompts, the prompt/option
 * boundary and the task metrics.
 */
import * as fs from "node:fs"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { UnitError } from "../pipeline/stage.ts"
import { applyTruncation } from "../stages/downstream/index.ts"
import { taskMargin, taskMetrics } from "../stages/correlate/metrics.ts"
import { parentRows, withParentRows, type MetricRow } from "../stages/correlate/tables.ts"
import { buildPrompts, optionRequest, promptBoundary, sampleIndices, shotIndices, type Tokenized } from "../stages/downstream/prompts.ts"
import { STREAM, mulberry32, shuffled, streamSeed } from "../lib/random.ts"
import { parseTask, type ParsedTask, type TaskFormat } from "../stages/downstream/tasks.ts"

const parse = (format: TaskFormat, text: string, seed = 7): ParsedTask => {
  const r = parseTask(format, text, "t/task", seed)
  if (Either.isLeft(r)) throw new Error(`unexpected: ${r.left.message}`)
  return r.right
}
const parseError = (format: TaskFormat, text: string): string => {
  const r = parseTask(format, text, "t/task", 7)
  if (Either.isRight(r)) throw new Error("expected an error")
  return (r.left as UnitError).message
}
const lines = (...xs: unknown[]) => xs.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join("\n")

describe("task formats", () => {
  it("bigbench: prefixes as given, options in file order, every maximal score is correct", () => {
    const t = parse(
      "bigbench",
      JSON.stringify({
        task_prefix: "P",
        example_input_prefix: "In: ",
        example_output_prefix: "\nOut:",
        append_choices_to_input: false,
        examples: [
          { input: "x", target_scores: { a: 0, b: 1, c: 0.5 } },
          { input: "y", target_scores: { d: 1, e: 1, f: 0 }, comment: "ignored" },
        ],
      }),
    )
    expect(t.prefix).toBe("P")
    expect(t.shotSeparator).toBe("\n") // BIG-bench's default few_shot_example_separator
    expect(t.examples).toEqual([
      { id: 0, prompt: "In: x\nOut:", options: ["a", "b", "c"], correct: [1], scores: [0, 1, 0.5] },
      { id: 1, prompt: "In: y\nOut:", options: ["d", "e", "f"], correct: [0, 1], scores: [1, 1, 0] },
    ])
  })

  it("bigbench defaults: \\nQ: , \\nA: , choices appended after \\n  choice: in a seeded order", () => {
    const t = parse("bigbench", JSON.stringify({ examples: [{ input: "1+1", target_scores: { "2": 1, "3": 0, "11": 0 } }] }))
    expect(t.prefix).toBe("")
    // The order of the choices comes from tools/reference/downstream_prompts.py (seed 7, example 0).
    expect(t.examples[0].prompt).toBe("\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: ")
    expect(t.examples[0].options).toEqual(["2", "3", "11"]) // JSON key order: integer-like keys ascending
  })

  it("pairs: the two whole sentences after an empty prompt, good first; other fields and blank lines ignored", () => {
    const t = parse(
      "pairs",
      lines({ sentence_good: "The dog runs.", sentence_bad: "The dog run.", phenomenon: "agr" }, "", { sentence_bad: "Dogs runs.", sentence_good: "Dogs run." }, ""),
    )
    expect(t.shotSeparator).toBe("\n")
    expect(t.examples).toEqual([
      { id: 0, prompt: "", options: ["The dog runs.", "The dog run."], correct: [0] },
      { id: 1, prompt: "", options: ["Dogs run.", "Dogs runs."], correct: [0] },
    ])
  })

  it("jsonl: prompt, choices, answer (an index or a list of them)", () => {
    const t = parse("jsonl", lines({ prompt: "Q", choices: [" a", " b", " c"], answer: 2 }, { prompt: "", choices: ["x", "y", "z"], answer: [2, 0] }))
    expect(t.shotSeparator).toBe("\n\n")
    expect(t.examples).toEqual([
      { id: 0, prompt: "Q", options: [" a", " b", " c"], correct: [2] },
      { id: 1, prompt: "", options: ["x", "y", "z"], correct: [0, 2] },
    ])
  })
})

describe("examples kept or skipped, with a note", () => {
  it("bigbench: generative-only examples are skipped and counted; the others keep their index in the file as id", () => {
    const t = parse(
      "bigbench",
      JSON.stringify({
        examples: [
          { input: "a", target: "b" },
          { input: "c", target_scores: { x: 1, y: 0 } },
          { input: "d", target: ["e", "f"] },
          { input: "g", target_scores: { x: 0, y: 1 } },
        ],
      }),
    )
    expect(t.examples.map((e) => [e.id, e.correct])).toEqual([[1, [0]], [3, [1]]])
    expect(t.notes).toEqual(["2 of 4 examples are generative only (a target, no target_scores): skipped"])
    // Shots name examples by id.
    const p = buildPrompts(t, { shots: 1, seed: 7 }, "t/task")
    expect(Either.isRight(p) && p.right.map((e) => e.shots)).toEqual([[3], [1]])
  })

  it("bigbench: an example that is the same JSON as an earlier one is dropped, as BIG-bench does; one that differs anywhere is kept", () => {
    const a = { input: "c", target_scores: { x: 1, y: 0 } }
    const t = parse("bigbench", JSON.stringify({ examples: [a, { input: "c", target_scores: { x: 1, y: 0.5 } }, a, { input: "c", target_scores: { x: 1, y: 0 }, comment: "c" }, a] }))
    expect(t.examples.map((e) => e.id)).toEqual([0, 1, 3])
    expect(t.notes).toEqual(["2 of 5 examples repeat an earlier one exactly: dropped, as BIG-bench does"])
  })

  it("pairs: a pair whose two sentences are the same is kept, counted, and scores as a tie (incorrect)", () => {
    const t = parse("pairs", lines({ sentence_good: "A b.", sentence_bad: "A c." }, { sentence_good: "A b.", sentence_bad: "A b." }))
    expect(t.examples[1]).toEqual({ id: 1, prompt: "", options: ["A b.", "A b."], correct: [0] })
    expect(t.notes).toEqual(["1 of 2 pairs have the same sentence twice: scored as ties, which count as incorrect"])
    expect(parse("pairs", lines({ sentence_good: "A b.", sentence_bad: "A c." })).notes).toEqual([])
    // The same text scores the same: a tie, a miss.
    const m = taskMetrics({ exampleId: [0, 0, 1, 1], isCorrect: [true, false, true, false], logprobSum: [-1, -2, -3, -3], nTokens: [2, 2, 2, 2], nChars: [4, 4, 4, 4] })
    expect(m.accuracy).toBe(1 / 2)
  })
})

describe("task file errors: one line naming the file, the example and the field", () => {
  const cases: Array<[string, TaskFormat, string, string]> = [
    ["bigbench: not JSON", "bigbench", '{"examples": [', "t/task: not valid JSON ("],
    ["bigbench: no examples list", "bigbench", '{"examples": 3}', "t/task: examples: expected a list of examples"],
    [
      "bigbench: no correct option",
      "bigbench",
      JSON.stringify({ examples: [{ input: "a", target_scores: { x: 1, y: 0 } }, { input: "b", target_scores: { x: 0, y: 0 } }] }),
      "t/task: example 1: target_scores: every option has the same score, so none is correct",
    ],
    [
      "bigbench: only generative examples",
      "bigbench",
      JSON.stringify({ examples: [{ input: "a", target: "b" }] }),
      "t/task: examples: every example is generative only (no target_scores): nothing to score as multiple choice",
    ],
    [
      "bigbench: neither target_scores nor target",
      "bigbench",
      JSON.stringify({ examples: [{ input: "a", target_scores: { x: 1, y: 0 } }, { input: "b" }] }),
      "t/task: example 1: target_scores: missing (only multiple-choice examples can be scored)",
    ],
    [
      "bigbench: empty option",
      "bigbench",
      JSON.stringify({ examples: [{ input: "a", target_scores: { x: 1, " ": 0 } }] }),
      't/task: example 0: target_scores[" "]: empty option (only whitespace: " ")',
    ],
    ["bigbench: input missing", "bigbench", JSON.stringify({ examples: [{ target_scores: { x: 1, y: 0 } }] }), "t/task: example 0: input: missing (expected a string)"],
    ["jsonl: bad line", "jsonl", lines({ prompt: "p", choices: ["a", "b"], answer: 0 }, "", "{oops"), "t/task: line 3: not valid JSON ("],
    [
      "jsonl: answer out of range",
      "jsonl",
      lines({ prompt: "p", choices: ["a", "b"], answer: 0 }, { prompt: "p", choices: ["a", "b"], answer: 2 }),
      "t/task: example 1 (line 2): answer: expected an index 0…1 (or a list of them), got 2",
    ],
    [
      "jsonl: empty option",
      "jsonl",
      lines({ prompt: "p", choices: ["a", ""], answer: 0 }),
      "t/task: example 0 (line 1): choices[1]: empty option",
    ],
    [
      "jsonl: duplicate options",
      "jsonl",
      lines("", { prompt: "p", choices: [" a", " b", " a"], answer: 1 }),
      't/task: example 0 (line 2): choices: option " a" appears twice (choices[0] and choices[2])',
    ],
    ["jsonl: one option", "jsonl", lines({ prompt: "p", choices: ["a"], answer: 0 }), "t/task: example 0 (line 1): choices: needs at least two options, got 1"],
    [
      "jsonl: every option correct",
      "jsonl",
      lines({ prompt: "p", choices: ["a", "b"], answer: [0, 1] }),
      "t/task: example 0 (line 1): choices: every option is correct, so none is wrong",
    ],
    ["pairs: empty option", "pairs", lines({ sentence_good: "A b.", sentence_bad: "" }), "t/task: example 0 (line 1): sentence_bad: empty option"],
    ["pairs: missing field", "pairs", lines({ sentence_good: "A b." }), "t/task: example 0 (line 1): sentence_bad: missing (expected a string)"],
    ["empty file", "pairs", "\n\n", "t/task: no examples"],
  ]
  for (const [name, format, text, message] of cases) {
    it(name, () => {
      const m = parseError(format, text)
      expect(m.split("\n")).toHaveLength(1)
      if (message.endsWith("(")) expect(m.startsWith(message)).toBe(true)
      else expect(m).toBe(message)
    })
  }
})

describe("k-shot prompts", () => {
  // Expected prompts from tools/reference/downstream_prompts.py, a Python re-implementation of the
  // documented algorithm (mulberry32, stream seeds, rejection sampling, Fisher–Yates), run once.
  const JSONL = lines(
    { prompt: "Q: 1+1?\nA:", choices: [" 2", " 3"], answer: 0 },
    { prompt: "Q: 2+2?\nA:", choices: [" 4", " 5"], answer: 0 },
    { prompt: "Q: 3+3?\nA:", choices: [" 5", " 6"], answer: 1 },
    { prompt: "Q: 4+4?\nA:", choices: [" 8", " 9"], answer: 0 },
  )
  const BIGBENCH = JSON.stringify({
    task_prefix: "Sums.",
    examples: [
      { input: "1+1", target_scores: { "2": 1, "3": 0, "11": 0 } },
      { input: "2+3", target_scores: { "5": 1, "6": 0, "23": 0 } },
      { input: "4+4", target_scores: { "44": 0, "8": 1, "9": 0 } },
    ],
  })
  const prompts = (format: TaskFormat, text: string, shots: number, maxExamples?: number) => {
    const r = buildPrompts(parse(format, text), { shots, seed: 7, maxExamples }, "t/task")
    if (Either.isLeft(r)) throw new Error(r.left.message)
    return r.right
  }

  it("jsonl, 2 shots, seed 7: exact text", () => {
    const p = prompts("jsonl", JSONL, 2)
    expect(p.map((e) => e.shots)).toEqual([[2, 3], [0, 2], [3, 1], [2, 0]])
    expect(p.map((e) => e.prompt)).toEqual([
      "Q: 3+3?\nA: 6\n\nQ: 4+4?\nA: 8\n\nQ: 1+1?\nA:",
      "Q: 1+1?\nA: 2\n\nQ: 3+3?\nA: 6\n\nQ: 2+2?\nA:",
      "Q: 4+4?\nA: 8\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?\nA:",
      "Q: 3+3?\nA: 6\n\nQ: 1+1?\nA: 2\n\nQ: 4+4?\nA:",
    ])
    expect(p[2].options).toEqual([" 5", " 6"])
    expect(p[2].correct).toEqual([1])
  })

  it("bigbench, 1 shot, seed 7: task prefix once, shots with their best target joined by few_shot_example_separator (default \\n), choices shuffled", () => {
    // tools/reference/downstream_prompts.py: BIG-bench's task_prefix + separator.join(shots) + separator + prompt.
    expect(prompts("bigbench", BIGBENCH, 1).map((e) => e.prompt)).toEqual([
      "Sums.\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: 5\n\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: ",
      "Sums.\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: 2\n\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: ",
      "Sums.\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: 5\n\nQ: 4+4\n  choice: 8\n  choice: 9\n  choice: 44\nA: ",
    ])
  })

  it("bigbench, 2 shots, the task's own few_shot_example_separator", () => {
    const own = JSON.stringify({ ...JSON.parse(BIGBENCH), few_shot_example_separator: "\n\n" })
    expect(prompts("bigbench", own, 2).map((e) => e.prompt)).toEqual([
      "Sums.\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: 5\n\n\nQ: 4+4\n  choice: 8\n  choice: 9\n  choice: 44\nA: 8\n\n\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: ",
      "Sums.\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: 2\n\n\nQ: 4+4\n  choice: 8\n  choice: 9\n  choice: 44\nA: 8\n\n\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: ",
      "Sums.\nQ: 2+3\n  choice: 6\n  choice: 5\n  choice: 23\nA: 5\n\n\nQ: 1+1\n  choice: 3\n  choice: 11\n  choice: 2\nA: 2\n\n\nQ: 4+4\n  choice: 8\n  choice: 9\n  choice: 44\nA: ",
    ])
    const bad = JSON.stringify({ ...JSON.parse(BIGBENCH), few_shot_example_separator: 3 })
    expect(parseError("bigbench", bad)).toMatch(/^t\/task: few_shot_example_separator: expected a string, got 3$/)
  })

  it("0 shots is the bare prompt", () => {
    expect(prompts("jsonl", JSONL, 0).map((e) => e.prompt)).toEqual(["Q: 1+1?\nA:", "Q: 2+2?\nA:", "Q: 3+3?\nA:", "Q: 4+4?\nA:"])
  })

  it("shots are distinct, never the example itself, and depend on the seed", () => {
    for (let i = 0; i < 50; i++) {
      const s = shotIndices(50, i, 5, 1234)
      expect(new Set(s).size).toBe(5)
      expect(s).not.toContain(i)
      expect(s.every((j) => j >= 0 && j < 50)).toBe(true)
    }
    expect(shotIndices(50, 3, 5, 1)).not.toEqual(shotIndices(50, 3, 5, 2))
    expect(shotIndices(50, 3, 5, 1)).toEqual(shotIndices(50, 3, 5, 1))
  })

  it("too few examples for k shots is an error (counting every example, not the max_examples sample)", () => {
    const r = buildPrompts(parse("jsonl", JSONL), { shots: 4, seed: 7 }, "t/task")
    expect(Either.isLeft(r) && r.left.message).toBe("t/task: shots: 4 needs at least 5 examples, the file has 4")
  })
})

describe("max_examples: a seeded sample, scored in file order", () => {
  // Ten jsonl examples "Q: i?" (i = 0…9), so example i's prompt names it.
  const TEN = lines(...Array.from({ length: 10 }, (_, i) => ({ prompt: `Q: ${i}?\nA:`, choices: [" y", " n"], answer: i % 2 })))
  const build = (text: string, o: { shots: number; seed: number; maxExamples?: number }) => {
    const r = buildPrompts(parse("jsonl", text), o, "t/task")
    if (Either.isLeft(r)) throw new Error(r.left.message)
    return r.right
  }

  it("the positions are those of tools/reference/downstream_prompts.py (an independent re-implementation)", () => {
    // Its output: the shuffle of 0…9 with seed 7 is 2 3 6 1 7 0 4 5 9 8 (the worked example of prompts.ts).
    expect(sampleIndices(10, 4, 7)).toEqual([1, 2, 3, 6])
    expect(sampleIndices(10, 5, 7)).toEqual([1, 2, 3, 6, 7])
    expect(sampleIndices(10, 4, 8)).toEqual([4, 5, 7, 8])
    expect(sampleIndices(50, 6, 1234)).toEqual([14, 21, 31, 34, 40, 44])
  })

  it("is the first N of lib/random.ts's shuffle of 0…n−1 on stream (seed, sample, 0), ascending", () => {
    for (const [n, k, seed] of [[10, 3, 1], [37, 11, 1234], [200, 50, -5]]) {
      const expected = shuffled(Array.from({ length: n }, (_, i) => i), mulberry32(streamSeed(seed, STREAM.sample, 0))).slice(0, k).sort((a, b) => a - b)
      expect(sampleIndices(n, k, seed)).toEqual(expected)
      expect(new Set(expected).size).toBe(k)
    }
    // A purpose of its own: not the shots' stream, not the choices'.
    expect(new Set(Object.values(STREAM)).size).toBe(Object.values(STREAM).length)
  })

  it("depends on the seed, is stable, nests (a larger N keeps a smaller N's examples), and N ≥ n keeps everything", () => {
    expect(sampleIndices(100, 10, 1)).not.toEqual(sampleIndices(100, 10, 2))
    expect(sampleIndices(100, 10, 1)).toEqual(sampleIndices(100, 10, 1))
    const small = sampleIndices(100, 10, 3)
    expect(sampleIndices(100, 20, 3)).toEqual(expect.arrayContaining(small))
    expect(sampleIndices(10, 10, 7)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(sampleIndices(10, 99, 7)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(sampleIndices(10, undefined, 7)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })

  it("scores the sampled examples in file order, each with the prompt and shots it has without max_examples", () => {
    const all = build(TEN, { shots: 2, seed: 7 })
    const four = build(TEN, { shots: 2, seed: 7, maxExamples: 4 })
    expect(four.map((e) => e.id)).toEqual([1, 2, 3, 6])
    expect(four).toEqual([1, 2, 3, 6].map((i) => all[i]))
    // The shots may be examples outside the sample.
    expect(four.flatMap((e) => e.shots).some((j) => ![1, 2, 3, 6].includes(j))).toBe(true)
    expect(build(TEN, { shots: 0, seed: 7, maxExamples: 10 })).toEqual(build(TEN, { shots: 0, seed: 7 }))
  })

  it("samples among the examples kept after dropping repeats and generative ones; ids stay indices in the file", () => {
    // 12 entries: 0 generative, 5 a repeat of 4; the 10 kept have ids 1…4, 6…11 at positions 0…9.
    const exs = Array.from({ length: 11 }, (_, i) => ({ input: `q${i}`, target_scores: { a: 1, b: 0 } }))
    const text = JSON.stringify({ examples: [{ input: "g", target: "x" }, ...exs.slice(0, 4), exs[3], ...exs.slice(4, 10)] })
    const t = parse("bigbench", text)
    expect(t.examples.map((e) => e.id)).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10, 11])
    const r = buildPrompts(t, { shots: 0, seed: 7, maxExamples: 4 }, "t/task")
    // Positions 1 2 3 6 (sampleIndices(10, 4, 7)) are the examples with ids 2 3 4 8.
    expect(Either.isRight(r) && r.right.map((e) => e.id)).toEqual([2, 3, 4, 8])
  })
})

describe("the prompt/option boundary and the scoring window", () => {
  /** Tokens given as [id, start, end]. */
  const tok = (...ts: Array<[number, number, number]>): Tokenized => ({
    ids: Int32Array.from(ts, (t) => t[0]),
    charStarts: Int32Array.from(ts, (t) => t[1]),
    charEnds: Int32Array.from(ts, (t) => t[2]),
  })
  const none = new Int32Array(0)
  // "Q: 2+2?\nA: 4" as GPT-2 tokenizes it: Q : ␣2 + 2 ? \n A : ␣4
  const text = "Q: 2+2?\nA: 4"
  const enc = tok([48, 0, 1], [25, 1, 2], [362, 2, 4], [10, 4, 5], [17, 5, 6], [30, 6, 7], [198, 7, 8], [32, 8, 9], [25, 9, 10], [604, 10, 12])

  it("the option's leading space belongs to the option, wherever the file put it", () => {
    expect(promptBoundary("Q: 2+2?\nA:")).toBe(10)
    expect(promptBoundary("Q: 2+2?\nA: ")).toBe(10)
    expect(promptBoundary("x\n ")).toBe(2)
    expect(promptBoundary("x \n")).toBe(3)
    for (const prompt of ["Q: 2+2?\nA:", "Q: 2+2?\nA: "]) {
      expect(optionRequest(text, promptBoundary(prompt), enc, none, 64)).toEqual({
        ids: Int32Array.of(48, 25, 362, 10, 17, 30, 198, 32, 25, 604),
        firstTarget: 9,
        nChars: 2,
        cut: 0,
      })
    }
  })

  it("a token straddling the boundary is the option's", () => {
    // "The cat" + "s" → The | ␣cats
    const r = optionRequest("The cats", 7, tok([464, 0, 3], [11875, 3, 8]), none, 64)
    expect(r).toEqual({ ids: Int32Array.of(464, 11875), firstTarget: 1, nChars: 5, cut: 0 })
  })

  it("prepend is context; an empty prompt without it makes the first token context", () => {
    const sentence = tok([464, 0, 3], [3290, 3, 7], [4539, 7, 12], [13, 12, 13]) // "The dog runs."
    expect(optionRequest("The dog runs.", 0, sentence, Int32Array.of(2), 64)).toEqual({
      ids: Int32Array.of(2, 464, 3290, 4539, 13),
      firstTarget: 1,
      nChars: 13,
      cut: 0,
    })
    expect(optionRequest("The dog runs.", 0, sentence, none, 64)).toEqual({ ids: Int32Array.of(464, 3290, 4539, 13), firstTarget: 1, nChars: 10, cut: 0 })
    expect(optionRequest("Hi", 0, tok([17250, 0, 2]), none, 64)).toMatch(/single token .*\(set `prepend`/)
  })

  it("too long: the prompt loses tokens from the left (after prepend), the option stays whole; cut counts them", () => {
    // 9 prompt tokens + 1 option token into 4: 6 cut; with a prepend kept in front, 7.
    expect(optionRequest(text, 10, enc, none, 4)).toEqual({ ids: Int32Array.of(198, 32, 25, 604), firstTarget: 3, nChars: 2, cut: 6 })
    expect(optionRequest(text, 10, enc, Int32Array.of(2), 4)).toEqual({ ids: Int32Array.of(2, 32, 25, 604), firstTarget: 3, nChars: 2, cut: 7 })
    // The option " 2+2?\nA: 4" (boundary 2) is 8 tokens: it needs context_length ≥ 9.
    expect(optionRequest(text, 2, enc, none, 8)).toBe("the option is 8 tokens, more than context_length − 1 = 7")
    expect(optionRequest(text, 2, enc, none, 9)).toEqual({ ids: Int32Array.of(25, 362, 10, 17, 30, 198, 32, 25, 604), firstTarget: 1, nChars: 10, cut: 1 })
  })
})

describe("task metrics", () => {
  const rows = (xs: Array<[number, boolean, number, number, number]>) => ({
    exampleId: xs.map((x) => x[0]),
    isCorrect: xs.map((x) => x[1]),
    logprobSum: xs.map((x) => x[2]),
    nTokens: xs.map((x) => x[3]),
    nChars: xs.map((x) => x[4]),
  })

  it("the worked example of metrics.ts", () => {
    const m = taskMetrics(rows([[0, true, -2, 2, 4], [0, false, -3, 1, 2]]))
    // Wilson 95% of 1 hit in 1 example: statsmodels' proportion_confint(1, 1, method="wilson") = (0.2065493143772374, 1.0).
    const lo = 0.2065493143772374
    expect(m).toEqual({ n_examples: 1, accuracy: 1, acc_lo: expect.closeTo(lo, 12), acc_hi: expect.closeTo(1, 12), grade: 1, accuracy_norm: 1, acc_norm_lo: expect.closeTo(lo, 12), acc_norm_hi: expect.closeTo(1, 12), random_baseline: 0.5, correct_ppl: Math.exp(1), incorrect_ppl: Math.exp(3) })
  })

  it("the worked example of metrics.ts taskMargin; examples without an incorrect option or with an empty option do not count", () => {
    const m = taskMargin(rows([[0, true, -2, 2, 4], [0, false, -3, 1, 2], [0, false, -4, 2, 2], [1, true, -2, 1, 1], [1, false, -3, 2, 2]]))
    expect(m.n_examples).toBe(2)
    expect(m.margin).toBeCloseTo(0.5, 15)
    expect(m.margin_lo).toBeCloseTo(0.5 - 1.959963984540054, 12)
    expect(m.margin_hi).toBeCloseTo(0.5 + 1.959963984540054, 12)
    // Example 2 has correct options only, example 3's incorrect option has no tokens: one example left, no interval.
    const one = taskMargin(rows([[1, true, -2, 1, 1], [1, false, -3, 2, 2], [2, true, -1, 1, 1], [3, true, -1, 1, 1], [3, false, -1, 0, 0]]))
    expect(one).toEqual({ n_examples: 1, margin: -0.5, margin_lo: null, margin_hi: null })
    expect(taskMargin(rows([]))).toEqual({ n_examples: 0, margin: null, margin_lo: null, margin_hi: null })
  })

  it("grade: the chosen option's target score (BIG-bench's multiple_choice_grade), the lowest of tied options", () => {
    const m = taskMetrics({
      exampleId: [0, 0, 0, 1, 1, 1, 2, 2],
      isCorrect: [true, false, false, true, false, false, true, false],
      logprobSum: [-3, -1, -2, -1, -4, -1, -2, -5], // 0: picks the 0.5 option; 1: tie of 1 and 0.25 → 0.25; 2: picks the correct
      nTokens: [1, 1, 1, 1, 1, 1, 1, 1],
      nChars: [1, 1, 1, 1, 1, 1, 1, 1],
      targetScore: [1, 0.5, 0, 1, 0, 0.25, 1, 0],
    })
    expect(m.grade).toBeCloseTo((0.5 + 0.25 + 1) / 3, 15)
    expect(m.accuracy).toBe(1 / 3)
  })

  it("ties are misses, any correct option counts, per-character normalisation can flip a hit, rows in any order", () => {
    const m = taskMetrics(
      rows([
        [1, false, -6, 3, 3], // example 1: correct −4 / 8 chars = −0.5 beats −6 / 3 = −2 per char … and −4 > −6: hit, hit_norm
        [0, true, -5, 2, 10], // example 0: tie −5 vs −5: miss; per char −0.5 vs −1: hit_norm
        [0, false, -5, 1, 5],
        [1, true, -4, 2, 8],
        [2, true, -9, 3, 9], // example 2: two correct; best −1 > −2: hit; per char −1/2 = −0.5 vs −2/1 = −2: hit_norm
        [2, false, -2, 1, 1],
        [2, true, -1, 1, 2],
        [3, true, -3, 1, 3], // example 3: −3 < −2: miss; per char −1 vs −0.2: miss
        [3, false, -2, 1, 10],
      ]),
    )
    expect(m.n_examples).toBe(4)
    expect(m.accuracy).toBe(2 / 4)
    expect(m.grade).toBe(2 / 4) // 0/1 scores: the chosen option's score is the hit (the tie of example 0 earns 0)
    expect(m.accuracy_norm).toBe(3 / 4)
    // statsmodels' proportion_confint(2, 4) and (3, 4), method="wilson"
    expect([m.acc_lo, m.acc_hi].map((x) => x.toFixed(12))).toEqual([0.15003898915214947, 0.8499610108478506].map((x) => x.toFixed(12)))
    expect([m.acc_norm_lo, m.acc_norm_hi].map((x) => x.toFixed(12))).toEqual([0.30064184258240184, 0.9544127391902995].map((x) => x.toFixed(12)))
    expect(m.random_baseline).toBeCloseTo((1 / 2 + 1 / 2 + 2 / 3 + 1 / 2) / 4, 15)
    expect(m.correct_ppl).toBeCloseTo(Math.exp((5 + 4 + 9 + 1 + 3) / (2 + 2 + 3 + 1 + 1)), 12)
    expect(m.incorrect_ppl).toBeCloseTo(Math.exp((6 + 5 + 2 + 2) / (3 + 1 + 1 + 1)), 12)
  })
})

describe("truncate: left | skip | error", () => {
  const req = (exampleId: number, optionId: number, cut: number) => ({
    ids: Int32Array.of(1, 2, 3),
    firstTarget: 2,
    nChars: 1,
    cut,
    exampleId,
    optionId,
    isCorrect: optionId === 0,
    targetScore: optionId === 0 ? 1 : 0,
  })
  // Example 0 fits; example 1's second option lost 3 prompt tokens; example 2's both lost 1 and 5.
  const built = { requests: [req(0, 0, 0), req(0, 1, 0), req(1, 0, 0), req(1, 1, 3), req(2, 0, 1), req(2, 1, 5)] }

  it("left keeps every example and says how many were cut and by how much", () => {
    const r = applyTruncation(built, "left", "t/task", 24)
    if (r instanceof UnitError) throw r
    expect(r.requests).toHaveLength(6)
    expect(r.note).toBe("t/task: 2 of 3 examples (67%) lost up to 5 prompt token(s) from the left to fit context_length 24 (truncate: left; n_cut in options.parquet)")
  })

  it("skip leaves out every option of a cut example and says so; nothing cut, nothing said", () => {
    const r = applyTruncation(built, "skip", "t/task", 24)
    if (r instanceof UnitError) throw r
    expect(r.requests.map((q) => [q.exampleId, q.optionId])).toEqual([[0, 0], [0, 1]])
    expect(r.note).toBe("t/task: 2 of 3 examples (67%) have a prompt longer than context_length 24 allows: skipped (truncate: skip)")
    const none = applyTruncation({ requests: built.requests.slice(0, 2) }, "skip", "t/task", 24)
    expect(none).toEqual({ requests: built.requests.slice(0, 2) })
    expect(applyTruncation({ requests: built.requests.slice(4) }, "skip", "t/task", 24)).toBeInstanceOf(UnitError)
  })

  it("error fails with one line naming the file and the first example cut", () => {
    const r = applyTruncation(built, "error", "t/task", 24)
    expect(r).toBeInstanceOf(UnitError)
    expect((r as UnitError).message).toBe(
      "t/task: example 1: its prompt is 3 token(s) too long for context_length 24 (truncate: error; 2 of 3 examples (67%) are): use truncate: left or skip, or a longer context",
    )
  })
})

describe("BIG-bench parent tasks: each subtask a task of its own, the parent their mean", () => {
  // test/fixtures/bigbench-parent: a task.json without examples, subtasks arithmetic/ (every
  // prefix, choices appended, its own separator) and colours/ (choices not appended, the default
  // separator), both with partial credit; results/ holds no task.json and is not a subtask.
  const fixture = (sub: string) => {
    const file = `test/fixtures/bigbench-parent/${sub}/task.json`
    const r = parseTask("bigbench", fs.readFileSync(file, "utf8"), file, 7)
    if (Either.isLeft(r)) throw new Error(r.left.message)
    const p = buildPrompts(r.right, { shots: 1, seed: 7 }, file)
    if (Either.isLeft(p)) throw new Error(p.left.message)
    return p.right
  }

  it("arithmetic: task_prefix once, then the shot and the example, each example_input_prefix + input + choices + example_output_prefix, joined by its separator", () => {
    // BIG-bench's format written out: "Add the numbers.\n" + shot + "\n\n" + example, where a
    // prompt is "\nSum: " + input + "\n  option: " c₁ "\n  option: " c₂ … + "\nTotal: " and a shot
    // ends in its best target. Shots (seed 7) and the order of the choices (sorted, then shuffled
    // with seed 7) from tools/reference/downstream_prompts.py.
    const p = fixture("arithmetic")
    expect(p.map((e) => e.shots)).toEqual([[2], [0], [3], [2]])
    expect(p.map((e) => e.prompt)).toEqual([
      "Add the numbers.\n" + "\nSum: 5 + 5\n  option: 11\n  option: 55\n  option: 10\nTotal: 10" + "\n\n" + "\nSum: 2 + 2\n  option: 5\n  option: 22\n  option: 4\nTotal: ",
      "Add the numbers.\n" + "\nSum: 2 + 2\n  option: 5\n  option: 22\n  option: 4\nTotal: 4" + "\n\n" + "\nSum: 3 + 4\n  option: 8\n  option: 7\n  option: 34\nTotal: ",
      "Add the numbers.\n" + "\nSum: 1 + 8\n  option: 9\n  option: 18\n  option: 10\nTotal: 9" + "\n\n" + "\nSum: 5 + 5\n  option: 11\n  option: 55\n  option: 10\nTotal: ",
      "Add the numbers.\n" + "\nSum: 5 + 5\n  option: 11\n  option: 55\n  option: 10\nTotal: 10" + "\n\n" + "\nSum: 1 + 8\n  option: 9\n  option: 18\n  option: 10\nTotal: ",
    ])
    // Partial credit: the near miss scores 0.5 (JSON.parse puts integer-like keys first, ascending).
    expect(p[3]).toMatchObject({ options: ["9", "10", "18"], correct: [0], scores: [1, 0.5, 0] })
  })

  it("colours: no task_prefix, no choices, the default separator \\n after the shot", () => {
    const p = fixture("colours")
    expect(p.map((e) => e.shots)).toEqual([[1], [0], [1]])
    expect(p.map((e) => e.prompt)).toEqual([
      "Q: what colour is grass?\nA: green" + "\n" + "Q: what colour is the sky?\nA:",
      "Q: what colour is the sky?\nA: blue" + "\n" + "Q: what colour is grass?\nA:",
      "Q: what colour is grass?\nA: green" + "\n" + "Q: what colour is snow?\nA:",
    ])
    expect(p[2]).toMatchObject({ options: [" white", " grey", " black"], correct: [0], scores: [1, 0.25, 0] })
  })

  it("the parent's task.json itself (no examples) is no task: one line naming the file and the field", () => {
    const file = "test/fixtures/bigbench-parent/task.json"
    const r = parseTask("bigbench", fs.readFileSync(file, "utf8"), file, 7)
    expect(Either.isLeft(r) && r.left.message).toBe(
      "test/fixtures/bigbench-parent/task.json: examples: missing, and no subfolder holds a task.json: neither a task nor a BIG-bench parent task with subtasks",
    )
  })

  it("the aggregate rows: at each point every subtask has, n_examples summed, every metric the mean of the subtasks' (not pooled), no intervals", () => {
    const row = (task: string, step: number, accuracy: number, n: number, o: Partial<MetricRow> = {}): MetricRow => ({
      model: "s", step, task, parent: "p", n_examples: n, accuracy, acc_lo: 0.1, acc_hi: 0.9, grade: accuracy / 2, accuracy_norm: 1 - accuracy,
      acc_norm_lo: 0, acc_norm_hi: 1, random_baseline: 0.5, correct_ppl: 10, incorrect_ppl: 20, ...o,
    })
    const metrics = [
      row("p.a", 1, 1 / 2, 4), row("p.a", 2, 3 / 4, 4), row("p.a", 3, 1, 4),
      row("p.b", 1, 1 / 3, 3, { random_baseline: 0.25, correct_ppl: 30 }), row("p.b", 2, 2 / 3, 3), // no step 3: no aggregate there
      row("q", 1, 0, 5, { parent: null }),
    ]
    const parent = { name: "p", subtasks: ["p.a", "p.b"] }
    const agg = parentRows(metrics, parent)
    expect(agg.map((r) => r.step)).toEqual([1, 2])
    expect(agg[0]).toEqual({
      model: "s", step: 1, task: "p", parent: null, aggregate: true, n_examples: 7,
      accuracy: (1 / 2 + 1 / 3) / 2, // 5/12, not the pooled 3/7
      grade: (1 / 4 + 1 / 6) / 2, accuracy_norm: (1 / 2 + (1 - 1 / 3)) / 2, random_baseline: (0.5 + 0.25) / 2, correct_ppl: 20, incorrect_ppl: 20,
      acc_lo: null, acc_hi: null, acc_norm_lo: null, acc_norm_hi: null,
    })
    // In the table they follow the last subtask's rows; the other tasks are untouched.
    expect(withParentRows(metrics, [parent]).map((r) => `${r.task}@${r.step}`)).toEqual(["p.a@1", "p.a@2", "p.a@3", "p.b@1", "p.b@2", "p@1", "p@2", "q@1"])
  })
})
