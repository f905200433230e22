/**
 * The executor of `trajectories run --cluster`: every unit whose inputs are done becomes a durable
 * workflow execution (job.ts) that some runner runs; this process waits for the results and
 * records them, exactly as a local run records its own. Killed and started again, it names the
 * same executions and is answered from the cluster's storage, so nothing finished runs twice.
 */
import { Cause, Effect, Option } from "effect"
import type { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import { firstLine } from "../errors.ts"
import type { Executor, UnitExecution } from "../runner.ts"
import type { RunStoreShape } from "../run-store.ts"
import { decodeExecution, executionName, jobMessage, UnitWorkflow } from "./job.ts"

/** Every file of a done execution is in the run folder with its size (not deleted since it ran). */
const filesThere = (store: RunStoreShape, e: UnitExecution) =>
  Effect.map(
    Effect.forEach(e.files, (f) => Effect.map(Effect.orElseSucceed(store.size(f.path), () => Option.none<number>()), (s) => Option.isSome(s) && s.value === f.bytes)),
    (ok) => ok.every(Boolean),
  )

export const clusterExecutor: Executor<WorkflowEngine> = {
  concurrent: true,
  // A finished unit's result is the workflow's stored reply: a run killed and started again is
  // answered from it, so the manifest is written at most once a second (runner.ts).
  durable: true,
  execute: (job, store) =>
    Effect.gen(function* () {
      const name = executionName(job)
      const message = JSON.stringify(jobMessage(job))
      const first = decodeExecution(yield* UnitWorkflow.execute({ execution: name, job: message }))
      // An answer from storage whose files are gone since (deleted by hand before it was recorded) runs again.
      if (!first.ok || (yield* filesThere(store, first))) return first
      return decodeExecution(yield* UnitWorkflow.execute({ execution: `${name}/again-${Date.now()}`, job: message }))
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.succeed<UnitExecution>({ ok: false, files: [], started: new Date().toISOString(), seconds: 0, message: `the cluster failed to run it: ${firstLine(Cause.squash(cause))}` }),
      ),
    ) as Effect.Effect<UnitExecution, never, WorkflowEngine>,
}
