/**
 * Session options from the config's `scoring` section: the execution provider and its CUDA device
 * reach onnxruntime as the binding expects them (a name for cpu, `{ name: "cuda", deviceId }`), and
 * the line a CUDA failure at session creation becomes.
 */
import { describe, expect, it } from "vitest"
import { scorerOptions, sessionSettings } from "../lib/onnx/options.ts"
import { cudaFailureMessage, sessionOptions, withExternalFolder } from "../lib/onnx/session.ts"

describe("sessionOptions: execution provider", () => {
  it("cuda on the configured device; cpu as the plain name", () => {
    expect(sessionOptions({ executionProvider: "cuda", cudaDevice: 2 }).executionProviders).toEqual([{ name: "cuda", deviceId: 2 }])
    expect(sessionOptions({ executionProvider: "cuda" }).executionProviders).toEqual([{ name: "cuda", deviceId: 0 }])
    expect(sessionOptions({ executionProvider: "cpu", cudaDevice: 2 }).executionProviders).toEqual(["cpu"])
    expect(sessionOptions({}).executionProviders).toEqual(["cpu"])
  })

  it("scoring.cuda_device travels through scorerOptions and sessionSettings", () => {
    const scoring = { batch_size: 4, threads: 2, execution_provider: "cuda", cuda_device: 1, entropy: false } as const
    expect(sessionSettings(scoring)).toEqual({ threads: 2, executionProvider: "cuda", cudaDevice: 1, spin: false })
    const o = scorerOptions(scoring, { cacheDir: "/tmp/c", label: "s step 1" })
    expect(sessionOptions(o).executionProviders).toEqual([{ name: "cuda", deviceId: 1 }])
    expect(sessionOptions(o).intraOpNumThreads).toBe(2)
  })
})

describe("sessionOptions: threads", () => {
  it("idle threads sleep unless scoring.spin says spin, also for a graph loaded with its external-data folder", () => {
    const spinning = (o: ReturnType<typeof sessionOptions>) => (o.extra as { session: { intra_op: { allow_spinning: string }; inter_op: { allow_spinning: string } } }).session
    expect(spinning(sessionOptions({ threads: 2 }))).toEqual({ intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } })
    expect(spinning(sessionOptions({ threads: 2, spin: true }))).toEqual({ intra_op: { allow_spinning: "1" }, inter_op: { allow_spinning: "1" } })
    expect(spinning(withExternalFolder(sessionOptions({}), "/ckpt"))).toEqual({
      intra_op: { allow_spinning: "0" },
      inter_op: { allow_spinning: "0" },
      model_external_initializers_file_folder_path: "/ckpt",
    })
    const scoring = { batch_size: 4, threads: 3, execution_provider: "cpu", cuda_device: 0, entropy: false, spin: true } as const
    expect(sessionOptions(scorerOptions(scoring, { cacheDir: "/tmp/c", label: "x" })).extra).toEqual({ session: { intra_op: { allow_spinning: "1" }, inter_op: { allow_spinning: "1" } } })
  })
})

describe("cudaFailureMessage", () => {
  it("provider libraries that do not load: how to install them", () => {
    const m = cudaFailureMessage("tiny step 8", "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library", 0)
    expect(m).toMatch(/^tiny step 8: execution provider "cuda" is not available \(.*Failed to load shared library\); run "ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false"/)
    expect(m).toMatch(/CUDA 12 \+ cuDNN 9 on the library path, or use execution_provider: cpu$/)
  })

  it("any other CUDA error names the device", () => {
    const m = cudaFailureMessage("tiny step 8", "CUDA failure 101: invalid device ordinal ; GPU=3", 3)
    expect(m).toBe(
      'tiny step 8: execution provider "cuda" failed on device 3 (CUDA failure 101: invalid device ordinal ; GPU=3); check scoring.cuda_device against the devices nvidia-smi lists, or use execution_provider: cpu',
    )
  })
})
