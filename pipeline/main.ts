/** Entry point of `trajectories` (bin/trajectories.js, npm start): the registry, its services, and the CLI's extras. */
import { checkWarnings } from "../stages/checks/flagged.ts"
import { withHubTokenizer } from "../stages/download/prepare.ts"
import { estimateLines } from "../stages/estimate.ts"
import { allStages } from "../stages/index.ts"
import { REPORT, REPORT_PATH } from "../stages/report/contract.ts"
import { StageServicesLive } from "../stages/services.ts"
import { runSummaryLines } from "../stages/summary.ts"
import { makeCli } from "./cli.ts"
import { runCli } from "./run-cli.ts"

runCli(
  makeCli(allStages, {
    afterRun: (c) => checkWarnings(c.runDir, { excluded: c.analysis.exclude_flagged }),
    summary: runSummaryLines,
    estimate: estimateLines,
    layer: StageServicesLive,
    prepare: withHubTokenizer,
    report: { stage: REPORT, file: REPORT_PATH },
    registry: new URL("../stages/registry.ts", import.meta.url).href,
  }),
)
