/** Entry point of `trajectories` (bin/trajectories.js, npm start). */
import { checkWarnings } from "../stages/checks/flagged.ts"
import { allStages } from "../stages/index.ts"
import { runSummaryLines } from "../stages/summary.ts"
import { makeCli } from "./cli.ts"
import { runCli } from "./run-cli.ts"

runCli(
  makeCli(allStages, {
    afterRun: (c) => checkWarnings(c.runDir, { excluded: c.analysis.exclude_flagged }),
    summary: runSummaryLines,
  }),
)
