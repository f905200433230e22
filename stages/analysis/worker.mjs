// A worker thread of stages/analysis/parallel.ts: runs block tasks (block-tasks.ts) by name and
// posts their results back, transferring typed-array buffers. Plain JavaScript because worker
// threads do not inherit tsx's loader: it registers tsx, then imports the TypeScript tasks.
import { parentPort } from "node:worker_threads"
// The tasks' JavaScript dependencies, loaded before tsx's loader is registered: through its hooks
// every one of apache-arrow's ~250 modules costs a round trip to the hooks thread (≈0.3 s more
// per worker); the TypeScript imports below then find them in the module cache.
import "apache-arrow"
import "parquet-wasm/node"
import "@stdlib/stats-base-dists-t-cdf"
import { register } from "tsx/esm/api"

register()
const { tasks } = await import("./block-tasks.ts")

/** Buffers of the typed arrays in a result that own their whole buffer (safe to transfer). */
const transferables = (value, out = new Set()) => {
  if (ArrayBuffer.isView(value)) {
    if (value.byteOffset === 0 && value.byteLength === value.buffer.byteLength && !(value.buffer instanceof SharedArrayBuffer)) out.add(value.buffer)
  } else if (Array.isArray(value)) for (const v of value) transferables(v, out)
  else if (value !== null && typeof value === "object") for (const v of Object.values(value)) transferables(v, out)
  return out
}

parentPort.on("message", async ({ id, name, input }) => {
  try {
    const result = await tasks[name](input)
    parentPort.postMessage({ id, result }, [...transferables(result)])
  } catch (e) {
    parentPort.postMessage({ id, error: e instanceof Error ? e.message : String(e) })
  }
})
