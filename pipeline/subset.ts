/**
 * `run`'s flags that change the loaded config without editing the YAML; each is a pure function of
 * a resolved Config, failing with a one-line ConfigError that names the flag:
 *
 *   --limit 500        every dataset's max_tokens = min(its own, 500), every task's max_examples =
 *                      min(its own, 500), into its own run folder <output>/<run>-limit500/ (a smoke
 *                      test never mixes with the real run's tables)
 *   --models tiny,base only these models (their checkpoints, in config order)
 *   --steps 8,908      only the checkpoints at these steps, of every model that has them
 *
 * Settings resolved from the whole model list stay as loaded (the `sequences` section's models),
 * except analysis.reference_model: when --models leaves it out, it falls back to the default among
 * the kept models (the second-smallest by params).
 */
import * as path from "node:path"
import { Either } from "effect"
import type { Config } from "./config.ts"
import { ConfigError, displayPath } from "./errors.ts"

/** `"a, b,c"` → `["a", "b", "c"]`; an empty item is an error. */
export const parseList = (flag: string, value: string): Either.Either<string[], ConfigError> => {
  const items = value.split(",").map((s) => s.trim())
  return items.some((s) => s === "")
    ? Either.left(new ConfigError({ field: flag, reason: `expected a comma-separated list like a,b, got ${JSON.stringify(value)}` }))
    : Either.right(items)
}

/** Smoke-test sizes: at most `n` tokens per dataset and `n` examples per task, in `<run>-limit<n>`. */
export const limitConfig = (config: Config, n: number): Either.Either<Config, ConfigError> => {
  if (!Number.isInteger(n) || n < 1) return Either.left(new ConfigError({ field: "--limit", reason: `expected a whole number of at least 1, got ${n}` }))
  const run = `${config.run}-limit${n}`
  return Either.right({
    ...config,
    run,
    runDir: path.join(path.dirname(config.runDir), run),
    datasets: config.datasets.map((d) => ({ ...d, max_tokens: Math.min(d.max_tokens ?? Infinity, n) })),
    tasks: config.tasks.map((t) => ({ ...t, max_examples: Math.min(t.max_examples ?? Infinity, n) })),
  })
}

/** Only the named models (config order kept); an unknown name is an error listing the config's models. */
export const selectModels = (config: Config, names: ReadonlyArray<string>): Either.Either<Config, ConfigError> => {
  const known = config.models.map((m) => m.name)
  const bad = names.find((n) => !known.includes(n))
  if (bad !== undefined) {
    return Either.left(new ConfigError({ file: displayPath(config.file), field: `--models ${bad}`, reason: `no such model (models: ${known.join(", ")})` }))
  }
  const models = config.models.filter((m) => names.includes(m.name))
  const bySize = [...models].sort((a, b) => a.params - b.params)
  const reference = models.some((m) => m.name === config.analysis.reference_model)
    ? config.analysis.reference_model
    : bySize[Math.min(1, bySize.length - 1)].name
  return Either.right({ ...config, models, analysis: { ...config.analysis, reference_model: reference } })
}

/**
 * Only the checkpoints at these steps. A step no model has is an error listing the steps there
 * are; so is a model left with no checkpoint (leave it out with --models).
 */
export const selectSteps = (config: Config, steps: ReadonlyArray<string>): Either.Either<Config, ConfigError> => {
  const file = displayPath(config.file)
  const all = [...new Set(config.models.flatMap((m) => m.checkpoints.map((c) => c.step)))].sort((a, b) => a - b)
  const wanted: number[] = []
  for (const s of steps) {
    const step = Number(s)
    if (!/^\d+$/.test(s) || !all.includes(step)) {
      const shown = all.length > 12 ? `${all.slice(0, 12).join(", ")}, … (${all.length} in all)` : all.join(", ")
      return Either.left(new ConfigError({ file, field: `--steps ${s}`, reason: `no checkpoint at this step (steps: ${shown})` }))
    }
    wanted.push(step)
  }
  const models = config.models.map((m) => ({ ...m, checkpoints: m.checkpoints.filter((c) => wanted.includes(c.step)) }))
  const empty = models.find((m) => m.checkpoints.length === 0)
  if (empty !== undefined) {
    return Either.left(new ConfigError({ file, field: "--steps", reason: `model ${empty.name} has none of the steps ${wanted.join(", ")} (leave it out with --models)` }))
  }
  return Either.right({ ...config, models })
}

/** What `run` was given; applied in this order: --models, --steps, --limit. */
export interface Subset {
  readonly limit?: number
  readonly models?: string
  readonly steps?: string
}

/** The config `run` works on, given its subset flags. */
export const subsetConfig = (config: Config, s: Subset): Either.Either<Config, ConfigError> => {
  let c: Either.Either<Config, ConfigError> = Either.right(config)
  if (s.models !== undefined) {
    const m = s.models
    c = Either.flatMap(c, (x) => Either.flatMap(parseList("--models", m), (names) => selectModels(x, names)))
  }
  if (s.steps !== undefined) {
    const st = s.steps
    c = Either.flatMap(c, (x) => Either.flatMap(parseList("--steps", st), (steps) => selectSteps(x, steps)))
  }
  if (s.limit !== undefined) {
    const n = s.limit
    c = Either.flatMap(c, (x) => limitConfig(x, n))
  }
  return c
}
