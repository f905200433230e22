/**
 * ONNX Runtime sessions: the one place that sets session options and creates sessions, for the
 * scorer (scorer.ts) and the next-token path (next-token.ts) alike, and the module's error.
 *
 *   sessionOptions({ threads: 4 })
 *   // → { executionProviders: ["cpu"], intraOpNumThreads: 4, interOpNumThreads: 1, executionMode: "sequential", … }
 *
 * GPU: `executionProvider: "cuda"` needs onnxruntime-node's CUDA provider, which this
 * project's `.npmrc` (ignore-scripts) does not install: run
 * `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false` (it downloads
 * the CUDA 12 provider libraries), and put CUDA 12 and cuDNN 9 on the library path.
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
}

/** Session options: the execution provider, intra-op threads, one inter-op thread, sequential execution, all graph optimizations. */
export const sessionOptions = (o: SessionSettings): ort.InferenceSession.SessionOptions => ({
  executionProviders: [o.executionProvider ?? "cpu"],
  intraOpNumThreads: o.threads ?? Math.max(1, os.availableParallelism()),
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  // The memory pattern keeps blocks sized for the largest run from the second run on (~400 MB more
  // at batch 4 × 512 × 50k vocabulary), for no measurable speed (bench:hf).
  enableMemPattern: false,
  logSeverityLevel: 3,
})

/** Session options that load a model from bytes with its external data in `folder`. */
export const withExternalFolder = (options: ort.InferenceSession.SessionOptions, folder: string): ort.InferenceSession.SessionOptions => ({
  ...options,
  extra: { session: { model_external_initializers_file_folder_path: folder } },
})

/**
 * A session on a model file or on model bytes. A missing CUDA provider becomes a Fail saying how
 * to install it; any other error is rethrown as it is.
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
    if (/Cuda|CUDA/.test(msg) && options.executionProviders?.includes("cuda")) {
      throw new Fail(
        `${label}: execution provider "cuda" is not available (${msg}); run "ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false" and put CUDA 12 + cuDNN 9 on the library path, or use execution_provider: cpu`,
        { cause: e },
      )
    }
    throw e
  }
}
