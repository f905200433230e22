/**
 * ONNX Runtime sessions: the one place that sets session options and creates sessions, for the
 * scorer (scorer.ts) and the next-token path (next-token.ts) alike, and the module's error.
 *
 *   sessionOptions({ threads: 4 })
 *   // → { executionProviders: ["cpu"], intraOpNumThreads: 4, interOpNumThreads: 1, executionMode: "sequential", … }
 *   sessionOptions({ executionProvider: "cuda", cudaDevice: 1 })
 *   // → { executionProviders: [{ name: "cuda", deviceId: 1 }], … }
 *
 * GPU: `executionProvider: "cuda"` needs onnxruntime-node's CUDA provider, which this
 * project's `.npmrc` (ignore-scripts) does not install: run
 * `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false` (it downloads
 * the CUDA 12 provider libraries), and put CUDA 12 and cuDNN 9 on the library path (docs/gpu.md).
 */
import * as os from "node:os"
import { Data } from "effect"
import * as ort from "onnxruntime-node"
import { firstLine } from "../../pipeline/errors.ts"

/** A failure of the ONNX module, phrased for the user in one line (it names the checkpoint). */
export class OnnxError extends Data.TaggedError("OnnxError")<{
  readonly message: string
  /** The error it came from (onnxruntime's, the file system's, or a Fail's own cause), for --verbose. */
  readonly cause?: unknown
}> {}

/** A failure already phrased for the user, thrown inside the module's async code; becomes an OnnxError at its Effect boundary. */
export class Fail extends Error {}

export { firstLine } from "../../pipeline/errors.ts"

/** Our own failures carry their message; anything else (a file system error, say) gets the checkpoint's label. */
export const toOnnxError =
  (label: string) =>
  (e: unknown): OnnxError =>
    new OnnxError({ message: e instanceof Fail ? e.message : `${label}: ${firstLine(e)}`, cause: e instanceof Fail ? e.cause : e })

export interface SessionSettings {
  /** Intra-op threads (default: the number of cores). */
  readonly threads?: number
  /** Default "cpu". */
  readonly executionProvider?: "cpu" | "cuda"
  /** CUDA device id for executionProvider "cuda" (default 0); ignored on cpu. */
  readonly cudaDevice?: number
  /** Idle threads spin-wait for work (default false: they sleep; see schemas/config.ts scoring.spin). */
  readonly spin?: boolean
}

/** The one execution provider of a session: plain "cpu", or CUDA on one device. */
const providers = (o: SessionSettings): ort.InferenceSession.SessionOptions["executionProviders"] =>
  o.executionProvider === "cuda" ? [{ name: "cuda", deviceId: o.cudaDevice ?? 0 }] : ["cpu"]

/** Whether session options ask for CUDA (as a name or as an option object). */
const wantsCuda = (options: ort.InferenceSession.SessionOptions): boolean =>
  (options.executionProviders ?? []).some((p) => (typeof p === "string" ? p : p.name) === "cuda")

/** Session options: the execution provider (CUDA with its device id), intra-op threads, one inter-op thread, sequential execution, all graph optimizations. */
export const sessionOptions = (o: SessionSettings): ort.InferenceSession.SessionOptions => ({
  executionProviders: providers(o),
  intraOpNumThreads: o.threads ?? Math.max(1, os.availableParallelism()),
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  // The memory pattern keeps blocks sized for the largest run from the second run on (~400 MB more
  // at batch 4 × 512 × 50k vocabulary), for no measurable speed (bench:hf).
  enableMemPattern: false,
  logSeverityLevel: 3,
  // Spinning threads steal the cores other processes (or a runner's other units) need: on a busy
  // 2-core machine 2 spinning threads ran 1.5× slower than 1 thread, 2 sleeping ones as fast (bench:score).
  extra: { session: { intra_op: { allow_spinning: o.spin ? "1" : "0" }, inter_op: { allow_spinning: o.spin ? "1" : "0" } } },
})

/** Session options that load a model from bytes with its external data in `folder`. */
export const withExternalFolder = (options: ort.InferenceSession.SessionOptions, folder: string): ort.InferenceSession.SessionOptions => ({
  ...options,
  extra: { ...options.extra, session: { ...(options.extra as { session?: object } | undefined)?.session, model_external_initializers_file_folder_path: folder } },
})

/** The CUDA device id that session options ask for (0 when given as the plain name "cuda"). */
const cudaDeviceOf = (options: ort.InferenceSession.SessionOptions): number => {
  const p = (options.executionProviders ?? []).find((x) => typeof x !== "string" && x.name === "cuda")
  return p !== undefined && typeof p !== "string" && "deviceId" in p && typeof p.deviceId === "number" ? p.deviceId : 0
}

/**
 * The user's line for onnxruntime's CUDA error `msg` at session creation. The provider's shared
 * libraries not loading (onnxruntime-node's CUDA files not installed, or CUDA 12 / cuDNN 9 not on
 * the library path) says how to install them; any other CUDA error (e.g. "CUDA failure 101:
 * invalid device ordinal") names the device.
 */
export const cudaFailureMessage = (label: string, msg: string, device: number): string =>
  /Failed to load|shared library|cannot open shared object/i.test(msg)
    ? `${label}: execution provider "cuda" is not available (${msg}); run "ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false" and put CUDA 12 + cuDNN 9 on the library path, or use execution_provider: cpu`
    : `${label}: execution provider "cuda" failed on device ${device} (${msg}); check scoring.cuda_device against the devices nvidia-smi lists, or use execution_provider: cpu`

/**
 * A session on a model file or on model bytes. A CUDA failure becomes a Fail saying how to install
 * the provider or which device failed (cudaFailureMessage); any other error is rethrown as it is.
 */
export const createSession = async (
  src: string | Uint8Array,
  options: ort.InferenceSession.SessionOptions,
  label: string,
): Promise<ort.InferenceSession> => {
  try {
    return typeof src === "string" ? await ort.InferenceSession.create(src, options) : await ort.InferenceSession.create(src, options)
  } catch (e) {
    const msg = firstLine(e)
    if (/Cuda|CUDA/.test(msg) && wantsCuda(options)) throw new Fail(cudaFailureMessage(label, msg, cudaDeviceOf(options)), { cause: e })
    throw e
  }
}
