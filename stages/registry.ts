/**
 * The registry as a module a cluster runner's worker threads load (pipeline/cluster/unit-worker.ts):
 * the stages and the services their runs need, under the names the worker expects.
 */
export { allStages as stages } from "./index.ts"
export { StageServicesLive as layer } from "./services.ts"
