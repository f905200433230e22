/** Entry point of `trajectories` (bin/trajectories.js, npm start). */
import { allStages } from "../stages/index.ts"
import { makeCli } from "./cli.ts"
import { runCli } from "./run-cli.ts"

runCli(makeCli(allStages))
