/**
 * The registry: every stage of the pipeline, and the only list of them. The engine (pipeline/)
 * plans, orders and runs whatever is here; a new stage is one folder (contract.ts, index.ts) and
 * one line below (docs/new-stage.md walks through an example).
 */
import type { Stage } from "../pipeline/stage.ts"
import { aggregateStage } from "./aggregate/index.ts"
import { excludingFlagged, excludingUnscored } from "./checks/flagged.ts"
import { checksStage } from "./checks/index.ts"
import { classifyStage } from "./classify/index.ts"
import { correlateStage } from "./correlate/index.ts"
import { downloadStage } from "./download/index.ts"
import { downstreamStage } from "./downstream/index.ts"
import { regressStage } from "./regress/index.ts"
import { reportStage } from "./report/index.ts"
import { scoreStage } from "./score/index.ts"
import { sequencesStage } from "./sequences/index.ts"
import type { StageServices } from "./services.ts"
import { tokenizeStage } from "./tokenize/index.ts"

export const allStages: ReadonlyArray<Stage<any, StageServices>> = [
  tokenizeStage,
  downloadStage,
  scoreStage,
  // A checkpoint that could not be scored never blocks the analysis: these leave it out (and
  // checks records it as broken).
  excludingUnscored(aggregateStage),
  excludingUnscored(checksStage),
  // These also drop checkpoints flagged by `checks` when analysis.exclude_flagged is set.
  excludingUnscored(excludingFlagged(regressStage)),
  excludingUnscored(excludingFlagged(classifyStage)),
  downstreamStage,
  excludingUnscored(excludingFlagged(correlateStage)),
  sequencesStage,
  reportStage,
]

export const stageNames: ReadonlyArray<string> = allStages.map((s) => s.name)
