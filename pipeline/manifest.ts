/**
 * `outputs/<run>/manifest.json`: what every unit produced, under which key, and how it ended.
 * Rewritten atomically (temp file, fsync, rename) after every unit.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { writeFileAtomicSync } from "./atomic.ts"

export interface FileRecord {
  /** Relative to the run folder. */
  readonly path: string
  readonly bytes: number
}

export interface UnitRecord {
  readonly stage: string
  readonly id: string
  readonly key: string
  readonly status: "done" | "failed"
  readonly files: ReadonlyArray<FileRecord>
  readonly started: string
  readonly seconds: number
  readonly error?: string
}

export interface Manifest {
  readonly version: 1
  readonly run: string
  units: Record<string, UnitRecord>
}

export const MANIFEST = "manifest.json"
export const unitName = (stage: string, id: string) => `${stage}/${id}`

export type LoadedManifest =
  | { readonly _tag: "ok"; readonly manifest: Manifest }
  | { readonly _tag: "corrupt"; readonly reason: string }

export const readManifest = (runDir: string, run: string): LoadedManifest => {
  const p = path.join(runDir, MANIFEST)
  if (!fs.existsSync(p)) return { _tag: "ok", manifest: { version: 1, run, units: {} } }
  try {
    const m = JSON.parse(fs.readFileSync(p, "utf8")) as Manifest
    if (m.version !== 1 || typeof m.units !== "object" || m.units === null) throw new Error("not a version-1 manifest")
    return { _tag: "ok", manifest: m }
  } catch (e) {
    return { _tag: "corrupt", reason: (e as Error).message.split("\n")[0] }
  }
}

export const writeManifest = (runDir: string, m: Manifest): void => {
  writeFileAtomicSync(path.join(runDir, MANIFEST), JSON.stringify(m, null, 1) + "\n")
}

/** A done record whose files all exist with their recorded sizes. */
export const filesIntact = (runDir: string, r: UnitRecord): boolean =>
  r.files.every((f) => {
    try {
      return fs.statSync(path.join(runDir, f.path)).size === f.bytes
    } catch {
      return false
    }
  })
