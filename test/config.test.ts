import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { spawnSync } from "node:child_process"
import { Effect, Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { loadConfig, parentTasks, parseConfig } from "../pipeline/config.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-config-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))
for (const f of ["tok.json", "a.txt", "b.txt"]) fs.writeFileSync(path.join(tmp, f), "x")
fs.mkdirSync(path.join(tmp, "ck/s"), { recursive: true })
for (const s of [0, 10, 200]) fs.writeFileSync(path.join(tmp, `ck/s/step-${s}.onnx`), "x")

const good = `run: demo
tokenizer: tok.json
context_length: 16
models:
  - name: s
    params: 1000
    tokens_per_step: 64
    checkpoints: ck/s/step-{step}.onnx
datasets:
  - name: d
    format: text
    path: "*.txt"
`

const fail = (text: string): string => {
  const r = parseConfig(path.join(tmp, "c.yaml"), text)
  if (Either.isRight(r)) throw new Error("expected a config error")
  return r.left.message.replaceAll(tmp + path.sep, "")
}

describe("config", () => {
  it("decodes, applies defaults, globs checkpoints and parses steps", () => {
    const r = parseConfig(path.join(tmp, "c.yaml"), good)
    if (Either.isLeft(r)) throw new Error(r.left.message)
    const c = r.right
    expect(c.models[0].checkpoints.map((x) => x.step)).toEqual([0, 10, 200])
    expect(c.models[0].checkpoints[2].path).toBe(path.join(tmp, "ck/s/step-200.onnx"))
    expect(c.datasets[0].files).toEqual([path.join(tmp, "a.txt"), path.join(tmp, "b.txt")])
    expect(c.stride).toBe(8)
    expect(c.runDir).toBe(path.join(tmp, "outputs/demo"))
    expect(c.analysis.thresholds).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    expect(c.scoring.batch_size).toBe(8)
    expect(c.scoring.execution_provider).toBe("cpu")
    expect(c.scoring.cuda_device).toBe(0)
  })

  it("scoring.cuda_device: a non-negative integer", () => {
    const r = parseConfig(path.join(tmp, "c.yaml"), `${good}scoring: { execution_provider: cuda, cuda_device: 2 }\n`)
    if (Either.isLeft(r)) throw new Error(r.left.message)
    expect(r.right.scoring.cuda_device).toBe(2)
    expect(fail(`${good}scoring: { cuda_device: -1 }\n`)).toMatch(/scoring\.cuda_device: expected a non-negative number, got -1$/)
  })

  it("unknown field: file, line, document path", () => {
    expect(fail(good.replace("    tokens_per_step: 64", "    tokens_per_step: 64\n    tokens_per_stp: 3"))).toBe(
      'c.yaml:8: models[0].tokens_per_stp: unknown field (expected one of "name" | "params" | "tokens_per_step" | "checkpoints" | "hub" | "revision" | "revisions" | "steps")',
    )
  })

  it("wrong type", () => {
    expect(fail(good.replace("params: 1000", 'params: "big"'))).toBe('c.yaml:6: models[0].params: expected number, got "big"')
    expect(fail(good.replace("format: text", "format: txt"))).toBe(
      'c.yaml:11: datasets[0].format: expected "text" or "jsonl" or "parquet" or "brown", got "txt"',
    )
  })

  it("missing file", () => {
    expect(fail(good.replace("tokenizer: tok.json", "tokenizer: nope.json"))).toBe(`c.yaml:2: tokenizer: file not found: nope.json`)
    // The message is built from the error's fields.
    const r = parseConfig(path.join(tmp, "c.yaml"), good.replace("tokenizer: tok.json", "tokenizer: nope.json"))
    expect(Either.isLeft(r) && { tag: r.left._tag, line: r.left.line, field: r.left.field, reason: r.left.reason.replaceAll(tmp + path.sep, "") }).toEqual({
      tag: "ConfigError",
      line: 2,
      field: "tokenizer",
      reason: "file not found: nope.json",
    })
  })

  it("a checkpoint pattern under a folder whose name has glob characters: only {step} is a wildcard", () => {
    const dir = path.join(tmp, "my run (v2) [a]")
    fs.mkdirSync(dir, { recursive: true })
    for (const s of [5, 50]) fs.writeFileSync(path.join(dir, `step-${s}.onnx`), "x")
    const r = parseConfig(path.join(tmp, "c.yaml"), good.replace("ck/s/step-{step}.onnx", '"my run (v2) [a]/step-{step}.onnx"'))
    expect(Either.isRight(r) ? r.right.models[0].checkpoints.map((c) => c.step) : r.left.message).toEqual([5, 50])
  })

  it("an alias bomb is a config error (one line), not a crash", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`), "run: *i", ""].join("\n")
    expect(fail(bomb)).toMatch(/^c\.yaml: invalid YAML: .*alias/i)
  })

  it("empty checkpoint glob", () => {
    expect(fail(good.replace("ck/s/step-{step}.onnx", "ck/m/step-{step}.onnx"))).toBe('c.yaml:8: models[0].checkpoints: no file or Hugging Face folder (with config.json) matches "ck/m/step-{step}.onnx"')
  })

  it("dataset glob matching nothing, duplicate names, invalid YAML, missing config", async () => {
    expect(fail(good.replace('"*.txt"', '"*.md"'))).toBe('c.yaml:12: datasets[0].path: no file matches "*.md"')
    expect(fail(good + "  - name: d\n    format: text\n    path: a.txt\n")).toBe('c.yaml:13: datasets[1].name: duplicate dataset name "d"')
    expect(fail("run: [x\n")).toMatch(/^c\.yaml:\d: invalid YAML: /)
    const missing = await Effect.runPromise(Effect.either(loadConfig(path.join(tmp, "none.yaml"))))
    expect(Either.isLeft(missing) && missing.left.message).toBe(`${path.join(tmp, "none.yaml")}: config file not found`)
  })

  it("the CLI prints the one line, exits 2 and creates nothing", () => {
    fs.writeFileSync(path.join(tmp, "bad.yaml"), good.replace("params: 1000", "params: -3"))
    const r = spawnSync(path.resolve("node_modules/.bin/tsx"), [path.resolve("pipeline/main.ts"), "run", path.join(tmp, "bad.yaml")], {
      encoding: "utf8",
      cwd: tmp,
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toBe("error: bad.yaml:6: models[0].params: expected a positive number, got -3\n")
    expect(fs.existsSync(path.join(tmp, "outputs"))).toBe(false)
  })
})

describe("BIG-bench parent tasks: one task per subtask", () => {
  // A copy of test/fixtures/bigbench-parent (subtasks arithmetic/ and colours/, and results/
  // without a task.json), a plain BIG-bench task folder, and variants to break.
  const bbDir = path.join(tmp, "bb")
  fs.cpSync(path.resolve("test/fixtures/bigbench-parent"), path.join(bbDir, "parent"), { recursive: true })
  fs.mkdirSync(path.join(bbDir, "plain"), { recursive: true })
  fs.writeFileSync(path.join(bbDir, "plain/task.json"), JSON.stringify({ examples: [{ input: "x", target_scores: { a: 1, b: 0 } }] }))
  const withTasks = (...entries: string[]) => `${good}tasks:\n${entries.map((e) => `  - ${e}\n`).join("")}`
  const tasksOf = (text: string) => {
    const r = parseConfig(path.join(tmp, "c.yaml"), text)
    if (Either.isLeft(r)) throw new Error(r.left.message)
    return r.right
  }

  it("a parent's folder or task.json becomes its subtasks, named <entry>.<folder>, in folder order; max_examples split N // k as BIG-bench does", () => {
    for (const where of ["bb/parent", "bb/parent/task.json"]) {
      const c = tasksOf(
        withTasks(`{ name: bb, format: bigbench, path: ${where}, shots: 1, seed: 9, max_examples: 7, truncate: skip }`, "{ name: plain, format: bigbench, path: bb/plain }"),
      )
      const common = { format: "bigbench", shots: 1, seed: 9, truncate: "skip", entry: 0, parent: "bb", max_examples: 3 }
      expect(c.tasks).toEqual([
        { ...common, name: "bb.arithmetic", path: path.join(bbDir, "parent/arithmetic/task.json") },
        { ...common, name: "bb.colours", path: path.join(bbDir, "parent/colours/task.json") },
        // A plain task's folder is its task.json.
        { name: "plain", format: "bigbench", path: path.join(bbDir, "plain/task.json"), shots: 0, seed: 1234, truncate: "left", entry: 1 },
      ])
      expect(parentTasks(c)).toEqual([{ name: "bb", subtasks: ["bb.arithmetic", "bb.colours"] }])
    }
    expect(tasksOf(withTasks("{ name: bb, format: bigbench, path: bb/parent }")).tasks.map((t) => t.max_examples)).toEqual([undefined, undefined])
  })

  it("one line naming the field for each problem", () => {
    expect(fail(withTasks("{ name: bb, format: bigbench, path: bb/parent, max_examples: 1 }"))).toBe(
      "c.yaml:14: tasks[0].max_examples: 1 is fewer than the 2 subtasks of bb/parent/task.json: a parent task's max_examples is split over its subtasks (N // 2 each, as BIG-bench does)",
    )
    expect(fail(withTasks("{ name: bb, format: bigbench, path: bb/parent }", "{ name: bb.colours, format: bigbench, path: bb/plain }"))).toBe(
      'c.yaml:15: tasks[1].name: duplicate task name "bb.colours": also the name of a subtask of tasks[0] (bb/parent/colours/task.json)',
    )
    fs.mkdirSync(path.join(bbDir, "empty"), { recursive: true })
    expect(fail(withTasks("{ name: e, format: bigbench, path: bb/empty }"))).toBe("c.yaml:14: tasks[0].path: bb/empty: a BIG-bench task folder needs a task.json, and this one has none")
    fs.cpSync(path.join(bbDir, "parent"), path.join(bbDir, "badname"), { recursive: true })
    fs.renameSync(path.join(bbDir, "badname/colours"), path.join(bbDir, "badname/no colour"))
    expect(fail(withTasks("{ name: b, format: bigbench, path: bb/badname }"))).toBe(
      "c.yaml:14: tasks[0].path: bb/badname/no colour: a subtask folder's name must be letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes part of the task name)",
    )
    fs.cpSync(path.join(bbDir, "parent"), path.join(bbDir, "badjson"), { recursive: true })
    fs.writeFileSync(path.join(bbDir, "badjson/task.json"), "{ not json")
    expect(fail(withTasks("{ name: b, format: bigbench, path: bb/badjson }"))).toMatch(/^c\.yaml:14: tasks\[0\]\.path: bb\/badjson\/task\.json: not valid JSON \(.+\)$/) // (the parser's words differ between Node versions; Node 22's have parentheses)
  })

  it("a parent's task.json that has examples is a plain task, whatever its subfolders hold (as in BIG-bench)", () => {
    fs.cpSync(path.join(bbDir, "parent"), path.join(bbDir, "both"), { recursive: true })
    fs.writeFileSync(path.join(bbDir, "both/task.json"), JSON.stringify({ examples: [{ input: "x", target_scores: { a: 1, b: 0 } }] }))
    expect(tasksOf(withTasks("{ name: b, format: bigbench, path: bb/both }")).tasks.map((t) => t.name)).toEqual(["b"])
  })
})

describe("docs/config.schema.json", () => {
  it("is the JSON Schema of schemas/config.ts (regenerate with `npx tsx tools/config-schema.ts`)", async () => {
    const { configJsonSchema } = await import("../tools/config-schema.ts")
    expect(fs.readFileSync("docs/config.schema.json", "utf8")).toBe(configJsonSchema())
    const schema = JSON.parse(configJsonSchema())
    expect(schema.required).toEqual(["run", "tokenizer", "models", "datasets"])
  })
})

describe("config: Hugging Face checkpoints", () => {
  const hubModel = (lines: string) => good.replace("    checkpoints: ck/s/step-{step}.onnx", lines)
  const ok = (text: string) => {
    const r = parseConfig(path.join(tmp, "c.yaml"), text)
    if (Either.isLeft(r)) throw new Error(r.left.message)
    return r.right
  }

  it("hub + revision pattern + steps; the default revision is step{step} (Pythia's branches)", () => {
    const c = ok(hubModel('    hub: EleutherAI/pythia-70m\n    revision: "ckpt-{step}-x"\n    steps: [2, 1]'))
    expect(c.models[0].checkpoints).toEqual([
      { step: 1, hub: { repo: "EleutherAI/pythia-70m", revision: "ckpt-1-x" } },
      { step: 2, hub: { repo: "EleutherAI/pythia-70m", revision: "ckpt-2-x" } },
    ])
    expect(ok(hubModel("    hub: a/b\n    steps: [1000]")).models[0].checkpoints).toEqual([{ step: 1000, hub: { repo: "a/b", revision: "step1000" } }])
  })

  it("hub + revisions map (OLMo's irregular names); steps picks some of them", () => {
    const c = ok(hubModel("    hub: allenai/x\n    revisions: { 1000: stage1-step1000-tokens4B, 20: s20 }\n    steps: [1000]"))
    expect(c.models[0].checkpoints).toEqual([{ step: 1000, hub: { repo: "allenai/x", revision: "stage1-step1000-tokens4B" } }])
  })

  it("a tokenizer on the Hub: resolved when the run starts, with main as the default revision", () => {
    const c = ok(good.replace("tokenizer: tok.json", "tokenizer: { hub: facebook/opt-125m }"))
    expect(c.tokenizerSource).toEqual({ hub: { repo: "facebook/opt-125m", revision: "main" } })
    expect(c.tokenizer).toBe("")
  })

  it("one line naming the field for each misuse", () => {
    expect(fail(hubModel("    hub: a/b\n    checkpoints: ck/s/step-{step}.onnx\n    steps: [1]"))).toBe(
      "c.yaml:9: models[0].checkpoints: give either checkpoints (local files) or hub (a Hub repository), not both",
    )
    expect(fail(hubModel("    hub: a/b"))).toBe('c.yaml:5: models[0].steps: with hub and revision "step{step}", list the steps to fetch')
    expect(fail(hubModel("    hub: a/b\n    revision: main\n    steps: [1, 2]"))).toBe(
      'c.yaml:9: models[0].revision: "main" has no {step}, so it names one revision, but steps lists 2; use a pattern or revisions',
    )
    expect(fail(hubModel("    hub: a/b\n    revision: x{step}\n    revisions: { 1: a }"))).toBe(
      "c.yaml:9: models[0].revision: give either revision (a pattern with {step}) or revisions (a step → revision map), not both",
    )
    expect(fail(hubModel("    hub: a/b\n    revisions: { 1: a }\n    steps: [2]"))).toBe("c.yaml:10: models[0].steps: no entry in revisions for step 2")
    expect(fail(hubModel("    hub: not-a-repo\n    steps: [1]"))).toBe('c.yaml:8: models[0].hub: expected a Hub repository id "org/name"')
    expect(fail(hubModel("    revision: main"))).toBe("c.yaml:8: models[0].revision: revisions name Hub checkpoints: give hub too, or leave it out")
    expect(fail(hubModel(""))).toBe("c.yaml:5: models[0]: expected checkpoints (local files or folders) or hub (a Hub repository)")
  })

  it("local Hugging Face folders: a {step} pattern over folders with config.json; a folder without it is not a checkpoint", () => {
    for (const s of [100, 200]) {
      fs.mkdirSync(path.join(tmp, `tr/checkpoint-${s}`), { recursive: true })
      fs.writeFileSync(path.join(tmp, `tr/checkpoint-${s}/config.json`), "{}")
    }
    fs.mkdirSync(path.join(tmp, "tr/checkpoint-300"), { recursive: true })
    const c = ok(good.replace("ck/s/step-{step}.onnx", "tr/checkpoint-{step}"))
    expect(c.models[0].checkpoints).toEqual([100, 200].map((s) => ({ step: s, path: path.join(tmp, `tr/checkpoint-${s}`) })))
    expect(fail(good.replace("    checkpoints: ck/s/step-{step}.onnx", "    checkpoints:\n      - { step: 3, path: tr/checkpoint-300 }"))).toBe(
      "c.yaml:9: models[0].checkpoints[0].path: tr/checkpoint-300 is a folder without config.json (expected an ONNX file or a Hugging Face folder)",
    )
  })
})
