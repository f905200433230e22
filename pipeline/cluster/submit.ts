/**
 * The executor of `trajectories run --cluster`: every unit whose inputs are done becomes a durable
 * workflow execution (job.ts) that some runner runs; this process waits for the results and
 * records them, exactly as a local run records its own. Killed and started again, it names the
 * same executions and is answered from the cluster's storage, so nothing finished runs twice.
 */
import { Cause, Effect } from "effect"
import type { WorkflowEngine } from "@effect/workflow/WorkflowEngine"
import { firstLine } from "../errors.ts"
import type { Executor, UnitExecution } from "../runner.ts"
import { decodeExecution, executionName, jobMessage, UnitWorkflow } from "./job.ts"

export const clusterExecutor: Executor<WorkflowEngine> = {
  concurrent: true,
  execute: (job) =>
    UnitWorkflow.execute({ execution: executionName(job), job: JSON.stringify(jobMessage(job)) }).pipe(
      Effect.map(decodeExecution),
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.succeed<UnitExecution>({ ok: false, files: [], started: new Date().toISOString(), seconds: 0, message: `the cluster failed to run it: ${firstLine(Cause.squash(cause))}` }),
      ),
    ) as Effect.Effect<UnitExecution, never, WorkflowEngine>,
}
