/**
 * ONNX graphs built from Hugging Face checkpoint folders (lib/onnx/hf/build.ts) against an
 * independent PyTorch implementation (tools/reference/hf_reference.py), for every architecture and
 * variant of test/fixtures/hf-variants.ts: per-token log-probs of two id sequences (batched, the
 * short one padded on the right) agree within TOL nats.
 *
 * REFERENCE was computed ONCE (Debian 12 python3-torch 1.13.1, float64) by
 *
 *   npx tsx test/fixtures/hf-variants.ts /tmp/hf-suite
 *   /usr/bin/python3 tools/reference/hf_reference.py --suite /tmp/hf-suite/suite.json > /tmp/hf-ref.json
 *
 * and pasted below (log-probs to 10 significant digits; mutations to 6 decimals). `digest` is the
 * sha256 of the variant's folder as the fixture writes it (hf-variants.ts folderDigest): the test
 * checks it first, so a change of the fixture's bytes says "recompute REFERENCE" instead of failing
 * obscurely. `mutations` are the values a builder with that typical mistake would produce
 * (hf_reference.py MUTATIONS: QKV read as [Q;K;V] blocks, inv_freq over head_dim, interleaved RoPE,
 * the other GELU, the other residual / LayerNorm wiring, OPT positions without the offset 2, tiled
 * GQA, a mean-subtracting RMSNorm, the other head): the test asserts each differs from the right
 * values — and from ONNX Runtime's — by far more than TOL, so it would catch the mistake.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ort from "onnxruntime-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DT, decodeModel, encodeModel, int, valueInfo } from "../lib/onnx/proto.ts"
import { checkpointWeights, readSafetensorsHeader } from "../lib/onnx/safetensors.ts"
import { SUPPORTED_MODEL_TYPES, buildHfGraph, isHfFolder } from "../lib/onnx/hf/build.ts"
import { readHfConfig } from "../lib/onnx/hf/config.ts"
import { HfGraph } from "../lib/onnx/hf/layers.ts"
import { SEQUENCES, VARIANTS, folderDigest } from "./fixtures/hf-variants.ts"
import { toBf16, toF16, writeRandomCheckpoint, writeSafetensors } from "./fixtures/safetensors.ts"
import { openBuilt, runBuilt } from "./fixtures/built-graph.ts"

/** Measured max |ORT − reference| is ~1.5e-6 nats (float32 graph vs float64 reference). */
const TOL = 2e-5
/** Structural mistakes move some log-prob by more than this. */
const STRUCTURAL = 1e-2
/** The two GELUs differ by at most 4.7e-4 per unit: a mistaken GELU moves log-probs by 3e-4…1e-3. */
const GELU = 10 * TOL

interface Reference {
  readonly digest: string
  readonly logprobs: ReadonlyArray<ReadonlyArray<number>>
  readonly mutations?: Readonly<Record<string, ReadonlyArray<ReadonlyArray<number>>>>
}

const REFERENCE: Readonly<Record<string, Reference>> = {
  "neox-parallel-rot25": {
    digest: "8e78e996525a5cb447f46e86c76039517bcdb1dd055adf410a5bf5027098d131",
    logprobs: [
      [-4.494981179, -4.801219718, -5.557718729, -8.371864704, -5.020051089, -3.981593514, -5.323481677, -7.887399357, -4.552745529, -8.338874662, -5.270946369, -5.337071916, -6.621991965],
      [-3.70566467, -3.844013345, -4.66884628, -7.431308448, -3.703967878, -7.208117231],
    ],
    mutations: {
      neox_qkv_blocks: [[-4.631300, -6.571533, -5.520680, -6.522594, -4.528936, -4.715490, -5.118442, -7.085691, -5.412440, -6.830737, -7.015618, -6.420169, -4.692227], [-4.882944, -3.572427, -3.112224, -5.453254, -2.828548, -6.424788]],
      neox_invfreq_headdim: [[-4.494981, -4.835147, -5.619478, -8.426917, -4.934740, -3.600251, -5.257255, -7.992579, -4.689190, -8.242522, -5.472174, -5.952660, -6.827863], [-3.705665, -3.840564, -4.675764, -7.257550, -4.018948, -7.302758]],
      rope_interleaved: [[-4.494981, -4.818271, -5.846899, -8.631515, -4.815055, -3.300836, -5.364942, -8.301170, -5.386723, -8.144035, -5.231968, -5.421072, -6.787290], [-3.705665, -4.036018, -4.756619, -7.166910, -4.039898, -7.474740]],
      neox_gelu_tanh: [[-4.494979, -4.801160, -5.557875, -8.371741, -5.019612, -3.981496, -5.323239, -7.887463, -4.553238, -8.338740, -5.270945, -5.336923, -6.622298], [-3.705394, -3.844124, -4.668582, -7.431044, -3.704910, -7.207913]],
      neox_residual_flip: [[-4.513522, -4.842650, -6.815001, -8.531641, -3.468809, -6.138899, -5.127006, -10.421568, -3.226915, -6.925215, -7.011048, -4.423657, -6.008653], [-3.440414, -5.560337, -5.593372, -7.425669, -6.666567, -5.042785]],
      head_flip: [[-5.716863, -4.432080, -6.226434, -5.906652, -5.183769, -5.284550, -8.204771, -3.388164, -7.595836, -5.101048, -5.282082, -5.083823, -6.056075], [-7.517425, -4.338320, -5.180263, -10.053473, -5.639275, -4.924828]],
    },
  },
  "neox-sequential-rot100": {
    digest: "fbaac9476ba8b540325594c7fc3161130a8b6d565b44a0ae219c3babad7e5bc2",
    logprobs: [
      [-8.436958366, -6.803311432, -5.24290606, -6.244527991, -4.344990373, -6.366610027, -6.575130746, -5.517800977, -6.287940804, -5.843907179, -5.759627513, -4.426613894, -6.744479674],
      [-7.528680861, -8.439963627, -5.367116001, -6.288122881, -6.17497538, -6.028452382],
    ],
    mutations: {
      rope_interleaved: [[-8.436958, -6.435584, -5.918513, -5.973638, -3.590800, -5.781728, -6.260061, -5.837489, -5.015815, -4.816620, -6.694934, -4.107477, -5.841418], [-7.528681, -8.158714, -5.402702, -6.147531, -6.655389, -6.033072]],
      neox_residual_flip: [[-8.735643, -8.086656, -5.949539, -4.553245, -5.570332, -6.603566, -6.045033, -4.652221, -5.277461, -6.902311, -6.331892, -7.219179, -5.249254], [-7.468119, -7.913568, -7.342895, -9.496608, -5.373327, -7.007621]],
      neox_qkv_blocks: [[-5.362495, -6.448830, -5.343320, -7.677526, -4.663514, -4.790131, -5.628723, -1.350951, -6.656569, -4.656463, -7.862684, -7.172777, -8.333255], [-5.553314, -5.242816, -8.360801, -3.883252, -4.443261, -5.358295]],
    },
  },
  "neox-f16-sharded-tied-extras": {
    digest: "1512f4953594228c1a2182c403211045fdbfedf7ae852ed2e80eafbd07a5dee4",
    logprobs: [
      [-3.837162858, -5.5842867, -4.8598509, -4.78834906, -5.348841259, -6.647673286, -1.32496294, -6.751209914, -7.75431414, -2.841962975, -7.548766004, -6.21424581, -6.06925988],
      [-4.525093225, -3.542483849, -9.625649401, -4.703856412, -7.772144029, -5.376114799],
    ],
  },
  "neox-bf16-extras": {
    digest: "77543d9f5effe0bb913d9d7641867051b3990c2425214d01290aa776e7fa9883",
    logprobs: [
      [-7.742285059, -7.458028507, -4.937158721, -4.306552264, -6.173059135, -5.771115493, -5.70151701, -7.177734917, -8.515602192, -5.371069246, -7.288872416, -5.170934838, -4.912565728],
      [-5.097640796, -3.525654162, -5.232244709, -4.995473779, -7.626973322, -5.612123542],
    ],
  },
  "gpt2-prefix-tied": {
    digest: "af93bcdbe703fa671b1e7f90d57b5a8dab9be335034c9654d46766449e345eac",
    logprobs: [
      [-4.20721599, -3.928373932, -4.871892759, -7.750153663, -5.018357364, -4.655817321, -3.645437107, -6.303048582, -3.90549445, -7.176292652, -5.494358316, -5.594855646, -3.45871692],
      [-5.441843972, -5.516068556, -4.511105922, -5.403244335, -5.405543445, -7.514363967],
    ],
    mutations: {
      gpt2_gelu_erf: [[-4.207240, -3.928350, -4.871949, -7.750091, -5.018314, -4.655791, -3.645612, -6.303039, -3.905170, -7.176293, -5.494362, -5.594836, -3.458792], [-5.441909, -5.516158, -4.511132, -5.403188, -5.405628, -7.514233]],
      gpt2_conv_as_linear: [[-6.610809, -5.716405, -5.381686, -5.618563, -3.372429, -5.782553, -4.928546, -7.374797, -7.426720, -7.275497, -6.255856, -4.385916, -5.443955], [-4.017407, -3.834255, -6.745254, -4.485786, -4.485263, -7.163463]],
    },
  },
  "gpt2-noprefix-untied-extras": {
    digest: "1dda91bdd4fa8314b9f9b5f20376ef3bf0cbf9128a478c84e4c2d3f124c03764",
    logprobs: [
      [-5.375312021, -5.651021846, -5.076103346, -6.43579271, -6.238119016, -5.942858892, -3.125836282, -5.819501903, -4.826432425, -4.828588966, -4.507344881, -6.732025177, -5.265498922],
      [-4.67891172, -3.389595341, -6.868250293, -5.914439332, -5.546500635, -6.505695545],
    ],
    mutations: {
      head_flip: [[-5.292089, -3.951128, -4.576901, -4.778372, -6.147914, -4.512791, -4.547818, -5.455155, -6.288591, -5.265317, -4.532909, -6.637119, -3.636009], [-5.259760, -3.305155, -5.821574, -6.121533, -5.254037, -4.880147]],
    },
  },
  "gpt2-bf16-sharded": {
    digest: "9b08686565ace02300716f27ac3bb974af2ad085f90e24f8470d2e1b4740f915",
    logprobs: [
      [-4.774354567, -4.250850854, -7.493902059, -4.457134669, -4.973763286, -5.679676772, -5.923554028, -3.940703718, -4.032379729, -3.639221213, -6.966355643, -5.904757861, -2.815334508],
      [-3.996908405, -3.802901348, -6.166026411, -5.53909188, -4.814057144, -3.929097446],
    ],
  },
  "opt-preln": {
    digest: "1e6e44ad794a26b04a4134b96aeaa54a58cf7dc1c2e3687d4cda7ca19064a6db",
    logprobs: [
      [-4.649951034, -3.478920466, -4.038018488, -2.945043681, -4.444247316, -4.374215534, -3.513943939, -4.304564406, -6.544884593, -5.92259147, -4.889650494, -5.557857152, -5.418424811],
      [-6.683510775, -5.644089315, -4.502411604, -6.757357007, -4.513984097, -5.470843696],
    ],
    mutations: {
      opt_pos_offset0: [[-4.602232, -5.148193, -4.945423, -3.117241, -4.398066, -4.386147, -4.371383, -4.336812, -6.337497, -5.140109, -5.090335, -7.019969, -6.303012], [-4.226040, -4.163733, -5.942082, -5.457974, -4.520678, -5.384570]],
      opt_ln_flip: [[-4.494022, -3.395122, -3.935606, -4.583497, -4.349002, -5.092384, -3.367957, -4.019842, -5.572696, -5.464308, -6.811532, -5.505588, -5.059943], [-6.404688, -4.912710, -7.496035, -6.419339, -3.197427, -5.545303]],
    },
  },
  "opt-postln-project": {
    digest: "1c9e450e8128db7517aba8da616e1deb147d46e4128df8d7d1f5eaca0aeb1982",
    logprobs: [
      [-3.323452006, -5.919922742, -4.383945651, -4.982216081, -6.093615308, -4.103215798, -4.664387338, -6.59027221, -5.21875867, -5.163510698, -7.743695104, -6.429386078, -4.23013175],
      [-3.777421066, -4.828104477, -2.303952033, -4.270078862, -4.084109325, -6.633169179],
    ],
    mutations: {
      opt_pos_offset0: [[-3.098150, -5.477762, -4.098579, -5.345378, -6.230890, -4.575373, -5.157158, -6.583584, -4.658101, -4.589080, -7.457001, -5.949563, -5.311585], [-4.941098, -3.996344, -3.813478, -3.648453, -4.435920, -6.093836]],
      opt_ln_flip: [[-5.937595, -4.666807, -5.652901, -5.264611, -4.552962, -5.738693, -3.860339, -5.018286, -4.729486, -5.236215, -8.360226, -5.351152, -4.199779], [-3.558099, -4.400701, -5.877428, -3.602961, -5.430045, -7.690001]],
    },
  },
  "opt-untied-f16": {
    digest: "1b896b0006c051203d0fc1caf38f07e4edbd0570ab26c988b445aa0eaf29eff3",
    logprobs: [
      [-3.899338365, -4.273754166, -5.130783665, -3.454722801, -7.56598144, -5.036491017, -5.012089582, -4.591275722, -5.717386501, -5.658285606, -6.302603381, -3.957020278, -5.025441504],
      [-4.789367575, -3.897521817, -4.843868612, -5.789721809, -4.350331858, -4.283018187],
    ],
    mutations: {
      head_flip: [[-5.894398, -3.633369, -4.418086, -3.789501, -5.191179, -6.609644, -5.013548, -5.667430, -5.797548, -5.414977, -5.221505, -5.395599, -5.209266], [-5.608155, -4.774131, -4.042335, -3.516760, -4.983910, -6.594314]],
    },
  },
  "llama-gqa-tied": {
    digest: "330c19947fb4f55ea70b061e2a1a1b507869e93f85fcfdb64c57ac990ecfbd86",
    logprobs: [
      [-4.549708482, -5.760498018, -6.659034174, -4.116231279, -5.235735149, -5.367533414, -5.208945093, -5.276868615, -3.119853634, -6.036425562, -5.546811036, -3.131675125, -4.959757408],
      [-5.691728217, -5.44577958, -5.171497143, -6.600293642, -5.560280162, -3.42256206],
    ],
    mutations: {
      llama_gqa_tile: [[-4.833414, -5.318324, -5.262369, -7.419129, -5.109257, -3.275640, -5.379094, -5.926800, -4.538485, -4.992757, -4.291755, -3.757814, -6.594243], [-5.222477, -4.193501, -4.353097, -5.241249, -6.616127, -4.076425]],
      rope_interleaved: [[-4.549708, -5.604006, -6.679447, -3.744962, -6.560639, -5.647668, -5.319787, -5.258053, -3.567104, -5.024603, -5.712570, -6.175403, -5.892492], [-5.691728, -5.479291, -5.241176, -6.311463, -5.888160, -3.246028]],
      rms_mean_sub: [[-4.299251, -5.361153, -7.461807, -5.092045, -5.363853, -4.239187, -4.675844, -4.244583, -3.150521, -6.942832, -5.372371, -3.617758, -5.125165], [-5.569704, -5.361193, -5.397812, -6.971581, -6.097192, -3.063966]],
    },
  },
  "llama-mha-untied": {
    digest: "eba28ded7854cf1e687b8e0ef2ce6e6fbc97c36b42db0015759c108c078333f3",
    logprobs: [
      [-5.378923137, -4.068639516, -5.396807668, -4.102297963, -5.836861856, -5.641087198, -3.671053753, -5.719700845, -4.323728378, -6.689570993, -5.429682286, -5.715823688, -5.271319215],
      [-5.993554942, -5.896799467, -5.716829055, -6.103753646, -5.185032384, -5.30086041],
    ],
    mutations: {
      head_flip: [[-7.682105, -3.441873, -6.582748, -4.942043, -4.926019, -8.107742, -5.352671, -5.893732, -5.850370, -5.574055, -4.958287, -2.716335, -3.621275], [-4.537274, -3.610930, -4.354050, -4.629487, -3.045868, -4.893791]],
      rope_interleaved: [[-5.378923, -3.761635, -5.449230, -3.875591, -5.683344, -5.248775, -4.280925, -5.611707, -4.471302, -6.371555, -5.569715, -6.363624, -5.695503], [-5.993555, -5.893433, -5.429813, -6.190005, -5.083961, -5.295937]],
    },
  },
  "llama-bias-bf16-sharded": {
    digest: "5a4e8b939c3646587cf5f63ebb7caf1fbdef9099a10d7ece9e2dd0662f05f65f",
    logprobs: [
      [-5.663915283, -4.350154656, -6.080933518, -4.913618778, -4.688817029, -5.019331165, -5.029079341, -4.296710684, -4.370060457, -4.423654816, -5.440957066, -3.984640143, -4.944218995],
      [-6.654236599, -5.690716201, -3.539889873, -5.149780453, -5.665604661, -6.996335426],
    ],
    mutations: {
      rms_mean_sub: [[-5.348485, -4.725937, -6.320850, -4.955273, -4.421433, -4.437126, -4.922238, -4.290426, -4.300100, -3.976809, -5.271106, -4.680612, -4.552813], [-5.870897, -5.107952, -3.509272, -5.175376, -5.834770, -6.513769]],
    },
  },
}

// ---------------------------------------------------------------------------------------------

let tmp: string
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hf-graphs-"))
})
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const open = openBuilt

/** Per-token log-probs of `seqs` run as one batch padded on the right with 0: [seq][j−1] = log p(ids[j] | ids[<j]). */
const scoreBatch = async (s: ort.InferenceSession, seqs: ReadonlyArray<ReadonlyArray<number>>): Promise<number[][]> => {
  const r = await runBuilt(s, seqs)
  expect(r.dims).toEqual([seqs.length, Math.max(...seqs.map((x) => x.length)), r.dims[2]])
  return r.logprobs
}

const maxDiff = (a: ReadonlyArray<ReadonlyArray<number>>, b: ReadonlyArray<ReadonlyArray<number>>): number => {
  expect(a.map((r) => r.length)).toEqual(b.map((r) => r.length))
  return Math.max(...a.flatMap((r, i) => r.map((x, j) => Math.abs(x - b[i][j]))))
}

const measured: Record<string, number> = {}

describe("HF graphs match the PyTorch reference", () => {
  for (const v of VARIANTS) {
    it(v.name, async () => {
      const ref = REFERENCE[v.name]
      expect(ref, `no REFERENCE for ${v.name}: recompute (see the top of this file)`).toBeDefined()
      const dir = path.join(tmp, v.name)
      writeRandomCheckpoint(dir, v.spec)
      expect(folderDigest(dir), "the fixture's bytes changed: recompute REFERENCE").toBe(ref.digest)
      const built = buildHfGraph(dir)
      expect(built.modelType).toBe(v.spec.arch)
      const s = await open(built)
      try {
        const got = await scoreBatch(s, SEQUENCES)
        const d = maxDiff(got, ref.logprobs)
        measured[v.name] = d
        expect(d).toBeLessThanOrEqual(TOL)
        for (const m of v.mutations) {
          const wrong = ref.mutations?.[m]
          expect(wrong, `mutation ${m}`).toBeDefined()
          const bound = m.includes("gelu") ? GELU : STRUCTURAL
          expect(maxDiff(ref.logprobs, wrong!), `${m}: the right and the wrong reference differ`).toBeGreaterThan(bound)
          expect(maxDiff(got, wrong!), `${m}: ONNX Runtime differs from the mistake`).toBeGreaterThan(bound)
        }
      } finally {
        await s.release()
      }
    })
  }
  afterAll(() => {
    if (Object.keys(measured).length > 0) console.log(`max |ORT − reference| (nats): ${JSON.stringify(measured)}`)
  })
})

describe("fixture and safetensors", () => {
  it("writes byte-identical checkpoints for the same spec", () => {
    const spec = { arch: "llama", seed: 5, dtype: "BF16", shards: 2, extras: true } as const
    writeRandomCheckpoint(path.join(tmp, "same-a"), spec)
    writeRandomCheckpoint(path.join(tmp, "same-b"), spec)
    expect(folderDigest(path.join(tmp, "same-a"))).toBe(folderDigest(path.join(tmp, "same-b")))
  })

  it("rounds float32 to F16 and BF16 to nearest even", () => {
    expect(toF16(1)).toBe(0x3c00)
    expect(toF16(-2)).toBe(0xc000)
    expect(toF16(65504)).toBe(0x7bff)
    expect(toF16(1e6)).toBe(0x7c00)
    expect(toF16(1 + 2 ** -11)).toBe(0x3c00) // halfway: even
    expect(toF16(1 + 3 * 2 ** -11)).toBe(0x3c02)
    expect(toF16(2 ** -24)).toBe(0x0001) // smallest subnormal
    expect(toBf16(1)).toBe(0x3f80)
    expect(toBf16(1 + 2 ** -8)).toBe(0x3f80) // halfway: even
    expect(toBf16(1 + 3 * 2 ** -8)).toBe(0x3f82)
  })

  it("reads a header: dtypes, shapes, absolute offsets", () => {
    const file = path.join(tmp, "h.safetensors")
    writeSafetensors(file, { a: { dtype: "F16", shape: [2, 3], data: new Float32Array(6) }, b: { dtype: "I64", shape: [], data: BigInt64Array.of(7n) } }, { format: "pt" })
    const h = readSafetensorsHeader(file)
    expect(h.dataStart).toBe(8 + h.headerLength)
    expect(h.dataStart % 8).toBe(0)
    expect(h.metadata).toEqual({ format: "pt" })
    expect(h.tensors.a).toEqual({ dtype: "F16", shape: [2, 3], begin: 0, end: 12 })
    expect(h.tensors.b).toEqual({ dtype: "I64", shape: [], begin: 12, end: 20 })
    expect(fs.statSync(file).size).toBe(h.dataStart + 20)
  })

  it("references the safetensors bytes in place (no weight inside the model)", () => {
    const dir = path.join(tmp, "inplace")
    writeRandomCheckpoint(dir, { arch: "gpt_neox", dtype: "F16", shards: 2, extras: true })
    const built = buildHfGraph(dir)
    const weights = checkpointWeights(dir)
    const model = decodeModel(built.model)
    expect(built.model.length).toBeLessThan(64 * 1024)
    const ext = model.graph!.initializer!.filter((t) => t.dataLocation === 1)
    expect(ext.length).toBeGreaterThan(10)
    for (const t of ext) {
      const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]))
      const w = weights[t.name!]
      expect(path.join(built.externalFolder, kv.location!)).toBe(w.file)
      expect([Number(kv.offset), Number(kv.length)]).toEqual([w.offset, w.length])
      expect(t.dataType).toBe(DT.FLOAT16)
      expect(t.dims!.map(int)).toEqual(w.shape)
    }
    // The tied-in-name buffers are not referenced; the F16 weights are Cast in the graph.
    expect(ext.some((t) => t.name!.includes("inv_freq") || t.name!.includes("attention.bias"))).toBe(false)
    const casts = model.graph!.node!.filter((n) => n.opType === "Cast" && ext.some((t) => t.name === n.input![0]))
    expect(casts.map((n) => n.input![0]).sort()).toEqual(ext.map((t) => t.name!).sort())
    expect(built.weightFiles).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"].map((f) => fs.realpathSync(path.join(dir, f))))
  })

  it("ties the head to the embedding initializer (no duplicate); Linear weights go through Gemm / FusedMatMul with transB=1", () => {
    const dir = path.join(tmp, "tied")
    writeRandomCheckpoint(dir, { arch: "llama", tied: true })
    const model = decodeModel(buildHfGraph(dir).model)
    const users = model.graph!.node!.filter((n) => n.input!.includes("model.embed_tokens.weight")).map((n) => n.opType)
    expect(users.sort()).toEqual(["FusedMatMul", "Gather"]) // the head: FusedMatMul(x, embed, transB=1)
    expect(model.graph!.node!.some((n) => n.opType === "Transpose" && model.graph!.initializer!.some((t) => t.name === n.input![0]))).toBe(false)
    const gemms = model.graph!.node!.filter((n) => n.opType === "Gemm" || n.opType === "FusedMatMul")
    expect(gemms.every((n) => n.attribute!.some((a) => a.name === "transB" && int(a.i) === 1))).toBe(true)
  })

  it("loads from a Hugging Face cache layout (snapshot symlinks into blobs/)", async () => {
    const repo = path.join(tmp, "hub", "models--org--tiny")
    const src = path.join(tmp, "hub-src")
    writeRandomCheckpoint(src, { arch: "gpt2", prefix: false, shards: 2 })
    const snap = path.join(repo, "snapshots", "abc123")
    fs.mkdirSync(path.join(repo, "blobs"), { recursive: true })
    fs.mkdirSync(snap, { recursive: true })
    for (const f of fs.readdirSync(src)) {
      const blob = path.join(repo, "blobs", `sha-${f.length}-${f.replace(/\W/g, "")}`)
      fs.copyFileSync(path.join(src, f), blob)
      fs.symlinkSync(path.relative(snap, blob), path.join(snap, f))
    }
    expect(isHfFolder(snap)).toBe(true)
    expect(isHfFolder(path.join(snap, "config.json"))).toBe(false)
    const built = buildHfGraph(snap)
    expect(built.externalFolder).toBe(fs.realpathSync(path.join(repo, "blobs")))
    const s = await open(built)
    try {
      const lp = await scoreBatch(s, SEQUENCES)
      expect(lp.flat().every((x) => Number.isFinite(x) && x < 0)).toBe(true)
    } finally {
      await s.release()
    }
    // Shards resolving into two folders cannot be one external-data folder.
    const other = path.join(tmp, "hub-other")
    fs.mkdirSync(other)
    const shard = path.join(snap, "model-00002-of-00002.safetensors")
    fs.copyFileSync(shard, path.join(other, "x.safetensors"))
    fs.rmSync(shard)
    fs.symlinkSync(path.join(other, "x.safetensors"), shard)
    expect(() => buildHfGraph(snap)).toThrow(/resolve into 2 folders/)
  })
})

describe("activations", () => {
  it("gelu is exact erf GELU, gelu_new the tanh approximation (they differ by 4.7e-4 at x = 2.7)", async () => {
    const dir = path.join(tmp, "act")
    writeRandomCheckpoint(dir, { arch: "gpt2" })
    const m = new HfGraph(readHfConfig(path.join(dir, "config.json")), {}, "x")
    const outs = (["gelu", "gelu_new", "silu", "relu"] as const).map((a) => m.g.op("Identity", [m.act("x", a)], {}, a))
    const model = encodeModel({
      irVersion: 8,
      opsetImport: [{ domain: "", version: 17 }],
      graph: { name: "act", node: m.g.nodes, initializer: m.g.initializers, input: [valueInfo("x", DT.FLOAT, [4]), valueInfo("input_ids", DT.INT64, [1, 1])], output: outs.map((o) => valueInfo(o, DT.FLOAT, [4])) },
    })
    const s = await ort.InferenceSession.create(model)
    const x = Float32Array.of(-2.7, -1, 0.5, 2.7)
    const r = await s.run({ x: new ort.Tensor("float32", x, [4]), input_ids: new ort.Tensor("int64", BigInt64Array.of(0n), [1, 1]) })
    // float64 values at the float32 inputs, by python3's math: 0.5x(1+erf(x/√2)), 0.5x(1+tanh(√(2/π)(x+0.044715x³)))
    const erf = [-0.009360828092, -0.1586552539, 0.3457312306, 2.69063922]
    const tanh = [-0.008887593463, -0.1588080094, 0.3457140098, 2.691112454]
    const close = (a: Float32Array, b: ReadonlyArray<number>) => Math.max(...b.map((v, i) => Math.abs(a[i] - v)))
    expect(close(r.gelu.data as Float32Array, erf)).toBeLessThan(2e-6)
    expect(close(r.gelu_new.data as Float32Array, tanh)).toBeLessThan(2e-6)
    expect(close(r.gelu.data as Float32Array, tanh)).toBeGreaterThan(4e-4)
    expect(Array.from(r.relu.data as Float32Array)).toEqual([0, 0, 0.5, Math.fround(2.7)])
    await s.release()
    // Which GELU each architecture's config selects.
    expect(readHfConfig(path.join(dir, "config.json")).act).toBe("gelu_new")
    writeRandomCheckpoint(path.join(tmp, "act-neox"), { arch: "gpt_neox" })
    expect(readHfConfig(path.join(tmp, "act-neox", "config.json")).act).toBe("gelu")
  })
})

describe("errors", () => {
  const withConfig = (name: string, spec: Parameters<typeof writeRandomCheckpoint>[1], edit: (c: Record<string, unknown>) => void): string => {
    const dir = path.join(tmp, name)
    writeRandomCheckpoint(dir, spec)
    const file = path.join(dir, "config.json")
    const c = JSON.parse(fs.readFileSync(file, "utf8"))
    edit(c)
    fs.writeFileSync(file, JSON.stringify(c))
    return dir
  }

  it("an unknown model_type names it and the supported ones", () => {
    const dir = withConfig("mistral", { arch: "llama" }, (c) => (c.model_type = "mistral"))
    let msg = ""
    try {
      buildHfGraph(dir)
    } catch (e) {
      msg = (e as Error).message
    }
    expect(msg).toContain("config.json")
    expect(msg).toContain('"mistral"')
    for (const t of SUPPORTED_MODEL_TYPES) expect(msg).toContain(t)
    expect(msg.split("\n")).toHaveLength(1)
  })

  it("a missing tensor names the tensor and the file", () => {
    const dir = path.join(tmp, "missing")
    writeRandomCheckpoint(dir, { arch: "gpt_neox" })
    const file = path.join(dir, "model.safetensors")
    const h = readSafetensorsHeader(file)
    // Rewrite the file without one tensor (its bytes kept as an unnamed gap are fine for the format).
    const json = Object.fromEntries(Object.entries(h.tensors).filter(([n]) => n !== "gpt_neox.layers.1.mlp.dense_4h_to_h.weight").map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] }]))
    const body = fs.readFileSync(file).subarray(h.dataStart)
    const head = Buffer.from(JSON.stringify(json))
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(head.length))
    fs.writeFileSync(file, Buffer.concat([len, head, body]))
    expect(() => buildHfGraph(dir)).toThrow(`${file}: tensor "gpt_neox.layers.1.mlp.dense_4h_to_h.weight" not found`)
  })

  it("an untied config without its head tensor names lm_head.weight", () => {
    const dir = withConfig("untied-nohead", { arch: "gpt2" }, (c) => (c.tie_word_embeddings = false))
    expect(() => buildHfGraph(dir)).toThrow(/tensor "lm_head.weight" not found/)
  })

  it("a truncated safetensors header or body names the file", () => {
    const dir = path.join(tmp, "trunc")
    writeRandomCheckpoint(dir, { arch: "opt" })
    const file = path.join(dir, "model.safetensors")
    const bytes = fs.readFileSync(file)
    fs.writeFileSync(file, bytes.subarray(0, 100))
    expect(() => buildHfGraph(dir)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: not a valid safetensors file: header length \\d+ does not fit`))
    fs.writeFileSync(file, bytes.subarray(0, 5))
    expect(() => buildHfGraph(dir)).toThrow(/shorter than the 8-byte header length/)
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 10))
    expect(() => buildHfGraph(dir)).toThrow(/beyond the file's \d+ bytes \(truncated\?\)/)
  })

  it("a shard listed in the index but absent, and a folder without safetensors", () => {
    const dir = path.join(tmp, "noshard")
    writeRandomCheckpoint(dir, { arch: "llama", shards: 2 })
    fs.rmSync(path.join(dir, "model-00002-of-00002.safetensors"))
    expect(() => buildHfGraph(dir)).toThrow(/model.safetensors.index.json: shard model-00002-of-00002.safetensors is missing/)
    fs.rmSync(path.join(dir, "model.safetensors.index.json"))
    fs.rmSync(path.join(dir, "model-00001-of-00002.safetensors"))
    expect(() => buildHfGraph(dir)).toThrow(/no model.safetensors and no model.safetensors.index.json/)
  })

  it("refuses settings it does not implement, naming config.json and the field", () => {
    const rope = withConfig("rope", { arch: "llama" }, (c) => (c.rope_scaling = { rope_type: "linear", factor: 2 }))
    expect(() => buildHfGraph(rope)).toThrow(/config\.json: field "rope_scaling" is .*only the default RoPE/)
    const sw = withConfig("sliding", { arch: "llama" }, (c) => (c.sliding_window = 4096))
    expect(() => buildHfGraph(sw)).toThrow(/config\.json: field "sliding_window" is 4096: a sliding attention window is not supported/)
    const act = withConfig("act", { arch: "opt" }, (c) => (c.activation_function = "mish"))
    expect(() => buildHfGraph(act)).toThrow(/field "activation_function" is "mish"; supported: gelu, gelu_new/)
    const heads = withConfig("heads", { arch: "gpt_neox" }, (c) => (c.num_attention_heads = 5))
    expect(() => buildHfGraph(heads)).toThrow(/field "num_attention_heads" \(5\) does not divide the hidden size 32/)
  })

  it("a tensor of the wrong shape names the tensor, its shape and the shape the config implies", () => {
    const dir = withConfig("shape", { arch: "llama" }, (c) => (c.intermediate_size = 48))
    expect(() => buildHfGraph(dir)).toThrow(/tensor "model.layers.0.mlp.gate_proj.weight" has shape \[64,32\], the config implies \[48,32\]/)
  })
})
