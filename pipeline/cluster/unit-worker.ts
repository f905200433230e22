/**
 * The worker thread of a cluster runner: it runs units, one at a time, off the runner's main
 * thread (onnxruntime-node runs a session synchronously, and a main thread busy for seconds would
 * starve the runner's shard-lock refresh and its replies to other runners).
 *
 * It loads the stage registry named in workerData (a module exporting `stages` and `layer`), keeps
 * one runtime with the registry's services for all its units (the tokenizer cache lives on), and
 * answers each job with the unit's execution as JSON. Messages: see WorkerRequest/WorkerReply in
 * pool.ts.
 */
import { parentPort, workerData } from "node:worker_threads"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Fiber, Layer, ManagedRuntime } from "effect"
import type { Layer as LayerType } from "effect/Layer"
import { firstLine } from "../errors.ts"
import { makeNodeRunStore } from "../run-store-node.ts"
import { executeUnit, type UnitExecution, type UnitJob } from "../runner.ts"
import type { Stage } from "../stage.ts"
import { jobFromMessage, type JobMessage } from "./job.ts"
import { applyOverrides, type RunnerOverrides, type WorkerReply, type WorkerRequest } from "./pool.ts"

const port = parentPort!
const data = workerData as { readonly registry: string; readonly overrides: RunnerOverrides }
const registry = (await import(data.registry)) as { readonly stages: ReadonlyArray<Stage<any, any>>; readonly layer: LayerType<any> }
const runtime = ManagedRuntime.make(Layer.mergeAll(registry.layer, NodeFileSystem.layer))
const fibers = new Map<number, Fiber.RuntimeFiber<UnitExecution, unknown>>()
const send = (m: WorkerReply) => port.postMessage(m)

const failed = (message: string): UnitExecution => ({ ok: false, files: [], started: new Date().toISOString(), seconds: 0, message })

const start = (id: number, text: string) => {
  let job: UnitJob | string
  try {
    job = jobFromMessage(JSON.parse(text) as JobMessage, registry.stages)
  } catch (e) {
    job = `unreadable job (${firstLine(e)})`
  }
  if (typeof job === "string") return send({ type: "done", id, result: JSON.stringify(failed(job)) })
  const unit = applyOverrides(job, data.overrides)
  // Progress is sent at most 4 times a second.
  let pending = 0
  let last = 0
  const flush = () => {
    if (pending > 0) send({ type: "advance", id, n: pending })
    pending = 0
    last = performance.now()
  }
  const progress = {
    start: (total: number, what: string) => {
      flush()
      send({ type: "start", id, total, what })
    },
    advance: (n: number) => {
      pending += n
      if (performance.now() - last > 250) flush()
    },
  }
  const program = Effect.flatMap(makeNodeRunStore(unit.config.runDir), (store) =>
    executeUnit(unit, store, progress, (message) => send({ type: "log", id, message })),
  )
  const fiber = runtime.runFork(program as Effect.Effect<UnitExecution, never, never>)
  fibers.set(id, fiber)
  fiber.addObserver((exit) => {
    fibers.delete(id)
    flush()
    if (exit._tag === "Success") send({ type: "done", id, result: JSON.stringify(exit.value) })
    else send({ type: "interrupted", id })
  })
}

port.on("message", (m: WorkerRequest) => {
  if (m.type === "job") start(m.id, m.job)
  else if (m.type === "cancel") {
    const f = fibers.get(m.id)
    if (f !== undefined) runtime.runFork(Fiber.interrupt(f))
  }
})
send({ type: "ready" })
