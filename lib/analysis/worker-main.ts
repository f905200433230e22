/**
 * The body of an analysis worker thread (parallel.ts): runs block tasks (block-tasks.ts) by name
 * and posts their results back, transferring typed-array buffers.
 *
 * parallel.ts starts workers from an esbuild bundle of this module (plain JavaScript, no loader
 * in the worker), or, where bundling is not possible, from worker.mjs, which registers tsx and
 * imports this file.
 */
import { parentPort } from "node:worker_threads"
import { tasks } from "./block-tasks.ts"

/** Buffers of the typed arrays in a result that own their whole buffer (safe to transfer). */
const transferables = (value: unknown, out = new Set<ArrayBuffer>()): Set<ArrayBuffer> => {
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer
    if (value.byteOffset === 0 && value.byteLength === buffer.byteLength && buffer instanceof ArrayBuffer) out.add(buffer)
  } else if (Array.isArray(value)) for (const v of value) transferables(v, out)
  else if (value !== null && typeof value === "object") for (const v of Object.values(value)) transferables(v, out)
  return out
}

type Run = (input: unknown) => Promise<unknown>

parentPort?.on("message", async ({ id, name, input }: { id: number; name: keyof typeof tasks; input: unknown }) => {
  try {
    const result = await (tasks[name] as Run)(input)
    parentPort?.postMessage({ id, result }, [...transferables(result)])
  } catch (e) {
    parentPort?.postMessage({ id, error: e instanceof Error ? e.message : String(e) })
  }
})
