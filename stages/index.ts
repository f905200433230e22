/**
 * Every stage of the pipeline, in DAG order. The runner plans only the stages listed here.
 */
import type { Stage, StageName } from "../pipeline/stage.ts"

export const allStages: ReadonlyArray<Stage> = []

export const stageNames: ReadonlyArray<StageName> = allStages.map((s) => s.name)
