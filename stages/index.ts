/**
 * Every stage of the pipeline, in DAG order. The runner plans only the stages listed here.
 */
import type { Stage, StageName } from "../pipeline/stage.ts"
import { scoreStage } from "./score/index.ts"
import { tokenizeStage } from "./tokenize/index.ts"

export const allStages: ReadonlyArray<Stage> = [tokenizeStage, scoreStage]

export const stageNames: ReadonlyArray<StageName> = allStages.map((s) => s.name)
