/**
 * Scorer options from the config's `scoring` section: the one place that maps it onto
 * ScorerOptions, for every stage that scores (score, downstream, sequences).
 *
 *   scorerOptions({ batch_size: 8, threads: 4, execution_provider: "cuda", cuda_device: 1, entropy: true }, { cacheDir, label: "s step 100" })
 *   // → { batchSize: 8, threads: 4, executionProvider: "cuda", cudaDevice: 1, entropy: true, cacheDir, label: "s step 100" }
 *
 * sessionSettings is the part the next-token path needs (threads and the device alone).
 */
import type { Scoring } from "../../schemas/config.ts"
import type { ScorerOptions } from "./scorer.ts"
import type { SessionSettings } from "./session.ts"

/** What the scorer reads of the `scoring` section (the decoded config's; threads resolved or not). */
export type ScoringSection = Pick<Scoring, "batch_size" | "threads" | "execution_provider" | "cuda_device" | "entropy"> & Partial<Pick<Scoring, "spin" | "max_memory_gb">>

export interface ScorerContext {
  /** Folder for rewritten graphs (the run's cache folder). */
  readonly cacheDir: string
  /** Names the checkpoint in messages ("s step 100"). */
  readonly label: string
  /** Notices for the user; a plain callback (collect them and log after opening). */
  readonly log?: (message: string) => void
  /** Compute entropies; default `scoring.entropy`. Stages that keep only log-probs pass false. */
  readonly entropy?: boolean
}

/** Threads and execution provider (with its CUDA device) of the `scoring` section, for any session. */
export const sessionSettings = (scoring: Pick<ScoringSection, "threads" | "execution_provider" | "cuda_device" | "spin">): SessionSettings => ({
  threads: scoring.threads,
  executionProvider: scoring.execution_provider,
  cudaDevice: scoring.cuda_device,
  spin: scoring.spin ?? false,
})

export const scorerOptions = (scoring: ScoringSection, c: ScorerContext): ScorerOptions => ({
  ...sessionSettings(scoring),
  batchSize: scoring.batch_size,
  ...(scoring.max_memory_gb !== undefined ? { maxMemoryBytes: scoring.max_memory_gb * 1e9 } : {}),
  entropy: c.entropy ?? scoring.entropy,
  cacheDir: c.cacheDir,
  label: c.label,
  ...(c.log !== undefined ? { log: c.log } : {}),
})
