import * as path from "node:path"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { parseConfig } from "../pipeline/config.ts"
import { Sequences } from "../schemas/config.ts"
import { Schema } from "effect"

const base = `run: r
tokenizer: t.json
models:
  - { name: s, params: 10, tokens_per_step: 1, checkpoints: "s/step-{step}.onnx" }
datasets:
  - { name: d, format: text, path: d.txt }
`
const parse = (extra: string) => parseConfig(path.resolve("x.yaml"), base + extra, { checkPaths: false })

describe("sequences config section", () => {
  it("is optional; its defaults are the documented ones", () => {
    expect(Either.isRight(parse(""))).toBe(true)
    expect(Either.isRight(parse("sequences: {}\n"))).toBe(true)
    expect(Schema.decodeUnknownSync(Sequences)({})).toEqual({
      lambdas: [[1, -1], [1, 0], [0, 1], [-1, 1]],
      decoding: "nucleus",
      top_p: 0.9,
      max_new_tokens: 50,
      seed: 1234,
      noise_rates: [0, 0.1, 0.3],
      shuffle: true,
      noise_windows: 50,
    })
  })

  it("rejects unknown fields and bad values with the field's line", () => {
    const bad = parse("sequences:\n  lambdas: [[1, -1]]\n  bogus: 1\n")
    expect(Either.isLeft(bad) && bad.left.message).toMatch(/x\.yaml:9: sequences\.bogus: unknown field/)
    const topP = parse("sequences:\n  top_p: 1.5\n")
    expect(Either.isLeft(topP) && topP.left.message).toMatch(/sequences\.top_p/)
    const pair = parse("sequences:\n  lambdas: [[1, -1, 2]]\n")
    expect(Either.isLeft(pair)).toBe(true)
  })
})
