/**
 * The registry of bench/cluster.ts's runners (the module their worker threads load, as
 * stages/registry.ts is for `trajectories runner`): one stage, `noop`, whose units do nothing, so
 * that a run of them measures only the cost of getting a unit to a runner and its result back.
 *
 *   TRAJECTORIES_BENCH_UNITS=1000   noop plans units i=0 … 999 (read where the run is planned)
 *   TRAJECTORIES_BENCH_CHAIN=1      each unit reads the one before: they run one at a time
 */
import { Effect, Layer } from "effect"
import { defineStage, type Stage } from "../pipeline/stage.ts"

const count = (): number => Number(process.env.TRAJECTORIES_BENCH_UNITS ?? 1)
const chained = (): boolean => process.env.TRAJECTORIES_BENCH_CHAIN === "1"

export const noopStage = defineStage<{ i: number }>({
  name: "noop",
  version: 1,
  after: [],
  describe: "bench: units that do nothing",
  plan: () =>
    Array.from({ length: count() }, (_, i) => ({
      id: `i=${i}`,
      params: { i },
      inputs: chained() && i > 0 ? [{ stage: "noop", id: `i=${i - 1}` }] : [],
      files: [],
    })),
  run: () => Effect.void,
})

export const stages: ReadonlyArray<Stage<any, any>> = [noopStage]
export const layer = Layer.empty
