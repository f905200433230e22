/**
 * The downstream stage's contract: one unit per (model, checkpoint, task), id
 * `model=M/step=S/task=T`, writing the log-prob of every option of every example. A subtask of a
 * BIG-bench parent task is a task, T = `<parent>.<subtask folder>` (pipeline/config.ts Task).
 */
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import type { Checkpoint, Config, Model, Task } from "../../pipeline/config.ts"
import type { TableFile, UnitRef } from "../../pipeline/stage.ts"

export const DOWNSTREAM = "downstream"

export const downstreamUnitId = (model: string, step: number, task: string): string => `model=${model}/step=${step}/task=${task}`
export const downstreamUnit = (model: string, step: number, task: string): UnitRef => ({ stage: DOWNSTREAM, id: downstreamUnitId(model, step, task) })

/** Every (model, checkpoint, task) of the config, in unit order. */
export const downstreamUnits = (config: Config): Array<{ model: Model; checkpoint: Checkpoint; task: Task; id: string }> =>
  config.models.flatMap((model) =>
    model.checkpoints.flatMap((checkpoint) =>
      config.tasks.map((task) => ({ model, checkpoint, task, id: downstreamUnitId(model.name, checkpoint.step, task.name) })),
    ),
  )

/**
 * `downstream/model=M/step=S/task=T/options.parquet`: one row per option of every scored example.
 *   example_id   index of the example in the task file (0-based; rows in example_id order). With
 *                `max_examples: N`, the ids of a seeded sample of N examples (./prompts.ts
 *                sampleIndices), still their indices in the file; repeats and generative-only
 *                examples that tasks.ts drops leave gaps, and the sample is drawn among those kept
 *   option_id    index of the option within the example (file order)
 *   is_correct   the option is (one of) the example's correct option(s)
 *   target_score its BIG-bench target score (partial credit: 1, 0.5, 0 …); 1 / 0 for correct / incorrect in the other formats
 *   logprob_sum  Σ log p(token | context) over the option's scored tokens, nats
 *   n_tokens     number of scored tokens of the option
 *   n_chars      characters (UTF-16 code units) of the text those tokens cover — the option with its
 *                leading spaces (see ./prompts.ts for the boundary)
 *   n_cut        prompt tokens cut from the left so that prompt + option fit context_length (0: none;
 *                the task's `truncate: skip` leaves such examples out, `error` fails instead)
 */
export const Options = defineTable("options", {
  example_id: col.int32(),
  option_id: col.int32(),
  is_correct: col.bool(),
  target_score: col.float64(),
  logprob_sum: col.float64(),
  n_tokens: col.int32(),
  n_chars: col.int32(),
  n_cut: col.int32(),
})
export type OptionRow = TableRow<typeof Options>

export const optionsFile = (model: string, step: number, task: string): TableFile => ({
  path: `downstream/model=${model}/step=${step}/task=${task}/options.parquet`,
  table: Options,
})
