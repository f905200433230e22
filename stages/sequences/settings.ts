/**
 * The `sequences` section of a run config (decoded with defaults by the config loader), resolved
 * against the models and datasets.
 */
import { modelsBySize, type Checkpoint, type Config, type Model } from "../../pipeline/config.ts"
import type { Sequences } from "../../schemas/config.ts"

export type SequencesConfig = Sequences

/** The decoded `sequences` section (defaults applied), or undefined when the config has none. */
export const sequencesSection = (config: Config): SequencesConfig | undefined => config.sequences

export interface ResolvedSequences {
  readonly section: SequencesConfig
  readonly small: { readonly model: Model; readonly checkpoint: Checkpoint }
  readonly large: { readonly model: Model; readonly checkpoint: Checkpoint }
  /** Dataset whose checkpoints.parquet perplexity is valid_ppl, and whose windows are perturbed. */
  readonly validDataset: string
  /** Where prompts come from: texts, or a dataset's windows. */
  readonly prompts: { readonly texts: ReadonlyArray<string> } | { readonly dataset: string; readonly n: number; readonly tokens: number }
}

/** Resolve models, steps and datasets; a string says what is wrong (one line, naming the field). */
export const resolveSequences = (config: Config, section: SequencesConfig): ResolvedSequences | string => {
  const bySize = modelsBySize(config)
  const pick = (field: "small" | "large", fallback: Model) => {
    const name = section[field]
    const model = name === undefined ? fallback : config.models.find((m) => m.name === name)
    if (model === undefined) return `sequences.${field}: no model named "${name}"`
    const cps = model.checkpoints
    const checkpoint = section.step === undefined ? cps[cps.length - 1] : cps.find((c) => c.step === section.step)
    if (checkpoint === undefined) return `sequences.step: model ${model.name} has no checkpoint at step ${section.step}`
    return { model, checkpoint }
  }
  const small = pick("small", bySize[0])
  if (typeof small === "string") return small
  const large = pick("large", bySize[bySize.length - 1])
  if (typeof large === "string") return large
  const validDataset = config.analysis.valid_dataset ?? config.datasets[0].name
  let prompts: ResolvedSequences["prompts"]
  if (section.prompts !== undefined) prompts = { texts: section.prompts }
  else {
    const from = section.prompts_from
    const dataset = from?.dataset ?? validDataset
    if (!config.datasets.some((d) => d.name === dataset)) return `sequences.prompts_from.dataset: no dataset named "${dataset}"`
    prompts = { dataset, n: from?.n_prompts ?? 10, tokens: from?.prompt_tokens ?? 8 }
  }
  return { section, small, large, validDataset, prompts }
}
