/**
 * Every stage of the pipeline, in DAG order. The runner plans only the stages listed here.
 */
import type { Stage, StageName } from "../pipeline/stage.ts"
import { aggregateStage } from "./aggregate.ts"
import { excludingFlagged } from "./checks/flagged.ts"
import { checksStage } from "./checks/index.ts"
import { classifyStage } from "./classify.ts"
import { correlateStage } from "./correlate/index.ts"
import { downstreamStage } from "./downstream/index.ts"
import { regressStage } from "./regress.ts"
import { reportStage } from "./report/index.ts"
import { scoreStage } from "./score/index.ts"
import { sequencesStage } from "./sequences/index.ts"
import { tokenizeStage } from "./tokenize/index.ts"

export const allStages: ReadonlyArray<Stage> = [
  tokenizeStage,
  scoreStage,
  aggregateStage,
  checksStage,
  // These drop checkpoints flagged by `checks` when analysis.exclude_flagged is set.
  excludingFlagged(regressStage),
  excludingFlagged(classifyStage),
  downstreamStage,
  excludingFlagged(correlateStage),
  sequencesStage,
  reportStage,
]

export const stageNames: ReadonlyArray<StageName> = allStages.map((s) => s.name)
