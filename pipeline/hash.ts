/**
 * Unit keys and file fingerprints.
 *
 * A unit's key = sha256 of the stage name and version, the unit's config slice, the keys of the
 * upstream units it reads and the fingerprints of the external files it reads. Small files
 * (≤ 1 MiB) are fingerprinted by content, larger ones by size + mtime (cheap, and what DVC-style
 * tools do for large data).
 */
import * as fs from "node:fs"
import { createHash } from "node:crypto"

export const SMALL_FILE_BYTES = 1 << 20

/** JSON with object keys sorted, so equal values give equal strings. */
export const stableStringify = (v: unknown): string => {
  if (v === undefined) return "null"
  if (v === null || typeof v !== "object") return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`
  const keys = Object.keys(v as object).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`).join(",")}}`
}

export const sha256 = (s: string | Uint8Array): string => createHash("sha256").update(s).digest("hex")

/** "missing" when the file does not exist (the unit will fail on it and say why). */
export const fingerprint = (file: string): string => {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    return `${file}:missing`
  }
  if (st.size <= SMALL_FILE_BYTES) return `${file}:sha256:${sha256(fs.readFileSync(file))}`
  return `${file}:${st.size}:${Math.round(st.mtimeMs)}`
}

export const unitKey = (parts: {
  readonly stage: string
  readonly version: number
  readonly params: unknown
  readonly inputKeys: ReadonlyArray<string>
  readonly files: ReadonlyArray<string>
}): string =>
  sha256(
    stableStringify({
      stage: parts.stage,
      version: parts.version,
      params: parts.params,
      inputs: [...parts.inputKeys].sort(),
      files: parts.files.map(fingerprint).sort(),
    }),
  ).slice(0, 32)
