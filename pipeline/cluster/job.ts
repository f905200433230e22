/**
 * A unit of a run as it travels to a cluster runner: the durable workflow that runs it, the JSON
 * message it carries, and the name of its execution.
 *
 * One workflow execution per unit run. Its execution id is derived from the unit's identity in
 * this run, so that
 *   - the same decision made again (the `run` process killed and started again before it recorded
 *     the unit) names the same execution, which the cluster finishes once and answers from storage;
 *   - a new decision to run it (a later run: its previous record or an input's record changed)
 *     names a new execution, which runs.
 *
 *   executionName(job)
 *   // sha256 of [run folder, instance, "score/model=s/step=1/dataset=d", key, previous record, inputs' stamps]
 */
import { createHash } from "node:crypto"
import { Workflow } from "@effect/workflow"
import { Schema } from "effect"
import type { Config } from "../config.ts"
import type { UnitRecord } from "../manifest.ts"
import type { UnitExecution, UnitJob } from "../runner.ts"
import type { Stage, UnitPlan } from "../stage.ts"

/**
 * The workflow of one unit run: its payload is the execution's name and the job as JSON (the
 * config and the input records are plain data; the stage is named, and looked up in the runner's
 * registry), its result the UnitExecution as JSON.
 */
export const UnitWorkflow = Workflow.make({
  name: "trajectories/unit",
  payload: { execution: Schema.String, job: Schema.String },
  success: Schema.String,
  idempotencyKey: (p) => p.execution,
})

/** What a runner needs to run a unit, as JSON. */
export interface JobMessage {
  /** The resolved config; its runDir and every path in it must be the same on every machine (the shared folder). */
  readonly config: Config
  readonly stage: string
  /** The stage's version the run was planned with: a runner with other code refuses the unit. */
  readonly version: number
  readonly unit: UnitPlan
  readonly name: string
  readonly key: string
  readonly allowed: ReadonlyArray<string>
  readonly inputs: Readonly<Record<string, UnitRecord>>
}

export const jobMessage = (job: UnitJob): JobMessage => ({
  config: job.config,
  stage: job.stage.name,
  version: job.stage.version,
  unit: job.unit,
  name: job.name,
  key: job.key,
  allowed: job.allowed,
  inputs: job.inputs,
})

/** The job back, with the stage from this process's registry; a one-line reason when it cannot run here. */
export const jobFromMessage = (m: JobMessage, stages: ReadonlyArray<Stage<any, any>>): UnitJob | string => {
  const stage = stages.find((s) => s.name === m.stage)
  if (stage === undefined) return `this runner has no stage ${m.stage} (stages: ${stages.map((s) => s.name).join(", ")}); run the same version of trajectories everywhere`
  if (stage.version !== m.version) {
    return `this runner's ${m.stage} stage is version ${stage.version}, the run was planned with version ${m.version}; run the same version of trajectories everywhere`
  }
  return { config: m.config, stage, unit: m.unit, name: m.name, key: m.key, allowed: m.allowed, inputs: m.inputs, instance: "" }
}

/**
 * The execution's name: the unit in this run (folder, its instance, name, key), its record before this run
 * (all of it: a re-run that keeps its stamp by early cutoff still changes its duration), and the
 * stamps of the inputs it reads.
 */
export const executionName = (job: UnitJob): string =>
  createHash("sha256")
    .update(
      JSON.stringify([
        job.config.runDir,
        job.instance,
        job.name,
        job.key,
        job.previous ?? null,
        job.allowed.map((n) => [n, job.inputs[n]?.status === "done" ? job.inputs[n].started : ""]),
      ]),
    )
    .digest("hex")

/** The result as the workflow stores it. */
export const encodeExecution = (e: UnitExecution): string => JSON.stringify(e)
export const decodeExecution = (s: string): UnitExecution => JSON.parse(s) as UnitExecution
