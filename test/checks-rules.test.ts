/**
 * The pure rules of the checks stage (stages/checks/rules.ts, table.ts) on hand-made inputs whose
 * answers are worked out in the comments.
 */
import { describe, expect, it } from "vitest"
import type { Model } from "../pipeline/config.ts"
import {
  FEATURES,
  blockFeatures,
  candidateGroups,
  copiesByKey,
  equalWithin,
  identicalPredictions,
  identicalWeights,
  mayBeEqual,
  mergeRows,
  outOfOrder,
  outOfOrderRows,
  vocabSizeOf,
  worseThanUniformRows,
  type CheckRow,
} from "../stages/checks/rules.ts"
import { checkRowsOf, checksTable, checkpointKey, flaggedKeys, formatCheckWarnings, withoutFlagged } from "../stages/checks/table.ts"
import { rng } from "./fixtures/onnx.ts"

describe("copies of equal checkpoints", () => {
  it("flags every member of a group but the latest, which is kept", () => {
    // groups: a = {0, 20, 30} → 0 and 20 are copies of 30; b = {10} alone; c = {40, 50} → 40 of 50
    const items = [
      { step: 0, key: "a" },
      { step: 10, key: "b" },
      { step: 20, key: "a" },
      { step: 30, key: "a" },
      { step: 40, key: "c" },
      { step: 50, key: "c" },
    ]
    expect(copiesByKey(items)).toEqual([
      { step: 0, kept: 30 },
      { step: 20, kept: 30 },
      { step: 40, kept: 50 },
    ])
  })

  it("identical weights rows name the kept step and the digest", () => {
    const rows = identicalWeights("s", [
      { step: 100, digest: "ab".repeat(32) },
      { step: 200, digest: "cd".repeat(32) },
      { step: 300, digest: "ab".repeat(32) },
    ])
    expect(rows).toEqual([
      { model: "s", step: 100, check: "identical_weights", severity: "error", detail: "same ONNX content as step 300 (sha256 abababababab…)", related_step: 300 },
    ])
  })

  it("identical predictions are not said again for a checkpoint with identical weights", () => {
    const rows = identicalPredictions("s", [{ step: 100, kept: 300 }, { step: 200, kept: 300 }], ["a", "b"], 1e-6, new Set([100]))
    expect(rows.map((r) => [r.step, r.related_step, r.severity])).toEqual([[200, 300, "error"]])
    expect(rows[0].detail).toBe("log-probs within 0.000001 of step 300's on every token of a, b")
  })
})

describe("identical predictions: screen and exact comparison", () => {
  const featuresOf = (blocks: ReadonlyArray<Float32Array>): Float64Array => {
    const out = new Float64Array(blocks.length * FEATURES)
    let start = 0
    blocks.forEach((b, g) => {
      blockFeatures(b, start, out, g * FEATURES)
      start += b.length
    })
    return out
  }

  it("block features: sums over finite values, count of NaN/Inf", () => {
    const out = new Float64Array(FEATURES)
    blockFeatures(Float32Array.of(-1, -2, NaN, -Infinity, -0.5), 0, out, 0)
    expect(out[0]).toBe(-3.5)
    expect(out[2]).toBe(3.5)
    expect(out[3]).toBe(2)
    // the signed sum is ±1·(−1) ± 2 ± 0.5: one of the eight sign patterns
    expect([3.5, 2.5, 0.5, -0.5, 1.5, -1.5, -2.5, -3.5].map((x) => -x)).toContain(out[1])
  })

  it("never screens out a pair within the tolerance (300 random pairs, 3 blocks of 1000)", () => {
    const r = rng(7)
    const rows = [1000, 1000, 1000]
    for (let trial = 0; trial < 300; trial++) {
      const a = rows.map((n) => Float32Array.from({ length: n }, () => -10 * r()))
      // every token moved by up to ±tol, the worst case for the plain sum when all move one way
      const dir = trial % 3 === 0 ? 1 : trial % 3 === 1 ? -1 : 0
      const b = a.map((blk) => blk.map((v) => v + (dir !== 0 ? dir : r() < 0.5 ? -1 : 1) * 0.9e-6))
      expect(b.every((blk, g) => equalWithin(blk, a[g], 1e-6))).toBe(true)
      expect(mayBeEqual(featuresOf(a), featuresOf(b), rows, 1e-6)).toBe(true)
    }
  })

  it("tells different checkpoints apart, and the exact comparison catches what the screen lets through", () => {
    const r = rng(3)
    const a = Float32Array.from({ length: 500 }, () => -5 * r())
    const far = a.map((v) => v - 0.01) // mean shift of 0.01 nats: the screen drops it
    expect(mayBeEqual(featuresOf([a]), featuresOf([far]), [500], 1e-6)).toBe(false)
    const oneToken = a.slice()
    oneToken[123] += 1e-4 // Σ moves by 1e-4 < tol·n = 5e-4: the screen can't tell, the comparison does
    expect(mayBeEqual(featuresOf([a]), featuresOf([oneToken]), [500], 1e-6)).toBe(true)
    expect(equalWithin(a, oneToken, 1e-6)).toBe(false)
    expect(equalWithin(a, a.map((v) => v + 5e-7), 1e-6)).toBe(true)
  })

  it("NaN matches NaN at the same token only", () => {
    expect(equalWithin(Float32Array.of(-1, NaN), Float32Array.of(-1, NaN), 1e-6)).toBe(true)
    expect(equalWithin(Float32Array.of(-1, -Infinity), Float32Array.of(-1, -Infinity), 1e-6)).toBe(true)
    expect(equalWithin(Float32Array.of(NaN, -1), Float32Array.of(-1, NaN), 1e-6)).toBe(false)
  })

  it("candidate groups connect equal checkpoints anywhere in the order", () => {
    const r = rng(11)
    const base = Array.from({ length: 5 }, () => Float32Array.from({ length: 64 }, () => -3 * r()))
    // checkpoints 0 and 4 are the same, 1 and 3 are the same, 2 is alone
    const cps = [base[0], base[1], base[2], base[1], base[0]].map((b) => featuresOf([b]))
    expect(candidateGroups(cps, [64], 1e-6)).toEqual([[0, 4], [1, 3]])
  })
})

describe("out of order", () => {
  it("the worked example of the doc comment", () => {
    //   L      6.0  5.0  2.0  4.0  3.5  3.0  2.6 → index 2 beats 4.0, 3.5, 3.0 by more than 0.05
    expect(outOfOrder([6.0, 5.0, 2.0, 4.0, 3.5, 3.0, 2.6], 3, 0.05)).toEqual([{ index: 2, related: 5, compared: 3 }])
  })

  it("a single later spike does not flag the checkpoint before it; a sustained rise does", () => {
    expect(outOfOrder([5.0, 4.0, 3.0, 2.9, 3.5, 2.85, 2.8], 3, 0.05)).toEqual([])
    // 2.9 then 3.5, 3.4, 3.3: every one of the next three is worse by > 0.05
    expect(outOfOrder([5.0, 4.0, 3.0, 2.9, 3.5, 3.4, 3.3], 3, 0.05)).toEqual([{ index: 3, related: 6, compared: 3 }])
  })

  it("the margin is strict, unknown values are skipped, the last checkpoint is never flagged", () => {
    // (values exact in binary, so the sums are exact)
    expect(outOfOrder([3.0, 3.5, 3.75], 3, 0.5)).toEqual([]) // 3.0 + 0.5 < 3.5 is false
    expect(outOfOrder([3.0, 3.5000001, 3.75], 3, 0.5)).toEqual([{ index: 0, related: 1, compared: 2 }])
    // nulls are not compared: index 0 is compared with 4.0, 3.9 (window 2 over known values)
    expect(outOfOrder([2.0, null, 4.0, null, 3.9, 1.0], 2, 0.05)).toEqual([{ index: 0, related: 4, compared: 2 }])
    expect(outOfOrder([5, 4, 3, 1], 3, 0.05)).toEqual([])
  })

  it("rows say the dataset, both perplexities and the margin in percent", () => {
    const rows = outOfOrderRows("m", "valid", [10, 20, 30, 40], [4, Math.log(20), 4, 3.5], 3, 0.05)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ model: "m", step: 20, check: "out_of_order", severity: "warning", related_step: 40 })
    expect(rows[0].detail).toBe(
      "valid: ppl 20.00 is more than 5.1% below each of the next 2 checkpoints' (lowest 33.12 at step 40)",
    )
  })
})

describe("broken", () => {
  it("vocabulary size from tokenizer.json: BPE map with added tokens, Unigram list, none", () => {
    expect(vocabSizeOf({ model: { type: "BPE", vocab: { a: 0, b: 1, c: 7 } }, added_tokens: [{ id: 9, content: "</s>" }] })).toBe(10)
    expect(vocabSizeOf({ model: { type: "BPE", vocab: { a: 0, b: 41 } }, added_tokens: [{ id: 3 }] })).toBe(42)
    expect(vocabSizeOf({ model: { type: "Unigram", vocab: [["a", -1], ["b", -2], ["c", -3]] } })).toBe(3)
    expect(vocabSizeOf({ model: {} })).toBeUndefined()
  })

  it("worse than uniform only past the first 10% of training (the doc comment's example)", () => {
    const V = 50_277
    const steps = [0, 10_000, 20_000, 143_000]
    const nll = [Math.log(61_000), Math.log(61_000), Math.log(61_000), Math.log(20)]
    const rows = worseThanUniformRows("m", "pile", steps, nll, V, 0.1)
    expect(rows.map((r) => r.step)).toEqual([20_000])
    expect(rows[0]).toMatchObject({ check: "broken", severity: "error", related_step: null })
    expect(rows[0].detail).toBe("pile: ppl 61000 is above the uniform distribution's (50277, the vocabulary size)")
    // exactly uniform is not above it; unknown values are not checked
    expect(worseThanUniformRows("m", "pile", [100, 200], [Math.log(V), null], V, 0.1)).toEqual([])
  })
})

describe("rows and what reads them", () => {
  const rows: CheckRow[] = [
    { model: "b", step: 5, check: "out_of_order", severity: "warning", detail: "x: far below", related_step: 9 },
    { model: "a", step: 7, check: "broken", severity: "error", detail: "x: 2 of 10 log-probs are NaN or infinite", related_step: null },
    { model: "a", step: 7, check: "broken", severity: "error", detail: "y: 1 of 10 log-probs are NaN or infinite", related_step: null },
    { model: "a", step: 3, check: "out_of_order", severity: "warning", detail: "x: d", related_step: 4 },
    { model: "a", step: 3, check: "identical_weights", severity: "error", detail: "same ONNX content as step 9 (sha256 …)", related_step: 9 },
  ]

  it("merges datasets into one row per (model, step, check), ordered by config model order, step, check", () => {
    const merged = mergeRows(rows, ["b", "a"])
    expect(merged.map((r) => `${r.model}/${r.step}/${r.check}`)).toEqual(["b/5/out_of_order", "a/3/identical_weights", "a/3/out_of_order", "a/7/broken"])
    expect(merged[3].detail).toBe("x: 2 of 10 log-probs are NaN or infinite; y: 1 of 10 log-probs are NaN or infinite")
  })

  it("the Arrow table round-trips, null related_step included, and an empty table has the schema", () => {
    const merged = mergeRows(rows, ["a", "b"])
    const t = checksTable(merged)
    expect(t.schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`)).toEqual([
      "model:Utf8:false",
      "step:Int32:false",
      "check:Utf8:false",
      "severity:Utf8:false",
      "detail:Utf8:false",
      "related_step:Int32:true",
    ])
    expect(checkRowsOf(t)).toEqual(merged)
    expect(checksTable([]).numRows).toBe(0)
  })

  it("flagged keys and withoutFlagged drop exactly the flagged checkpoints", () => {
    const keys = flaggedKeys(rows)
    expect([...keys].sort()).toEqual(["a/3", "a/7", "b/5"])
    expect([...flaggedKeys(rows, ["warning"])].sort()).toEqual(["a/3", "b/5"])
    const model: Model = {
      name: "a",
      params: 1,
      tokens_per_step: 1,
      checkpoints: [3, 4, 7, 9].map((step) => ({ step, path: `/x/${step}.onnx` })),
    }
    expect(withoutFlagged(model, keys).checkpoints.map((c) => c.step)).toEqual([4, 9])
    expect(withoutFlagged(model, new Set([checkpointKey("b", 4)]))).toBe(model)
  })

  it("the CLI warning block names model, step and reason; nothing when nothing fired", () => {
    expect(formatCheckWarnings([])).toEqual([])
    const lines = formatCheckWarnings(mergeRows(rows, ["a", "b"]), { file: "out/r/checkpoint_checks.parquet", limit: 3 })
    expect(lines).toEqual([
      "checkpoint checks flagged 3 checkpoint(s) (2 errors, 2 warnings) — out/r/checkpoint_checks.parquet:",
      "  error    model a, step 3: identical weights: same ONNX content as step 9 (sha256 …)",
      "  warning  model a, step 3: out of order: x: d",
      "  error    model a, step 7: broken: x: 2 of 10 log-probs are NaN or infinite; y: 1 of 10 log-probs are NaN or infinite",
      "  … and 1 more",
      "  set analysis.exclude_flagged: true to leave them out of the analysis",
    ])
    expect(formatCheckWarnings(rows.slice(0, 1), { excluded: true }).at(-1)).toBe(
      "  flagged checkpoints are left out of the analysis (analysis.exclude_flagged)",
    )
  })
})
