/**
 * Unit keys and file fingerprints.
 *
 * A unit's key = sha256 of its key parts: the stage name and version, a hash of the unit's config
 * slice, the keys of the upstream units it reads and the fingerprints of the external files it
 * reads. A file's fingerprint is its path relative to the config's folder and a sha256 of its
 * content, so a run folder copied or moved together with its inputs (another folder, another
 * machine, a cluster's shared disk) keeps every key. Files up to SAMPLE_ABOVE (64 MiB: datasets,
 * tokenizers, tasks, small checkpoints) are hashed whole; larger ones (real checkpoints, GBs
 * each, hundreds per suite) by their size and three 1 MiB samples (start, middle, end), which a
 * re-export or another checkpoint changes but which cost 3 MiB of reading instead of the file.
 * Digests are cached by (path, size, mtime, inode) in the run's cache folder, so an unchanged file
 * is read once, and a copied one once more.
 *
 * The manifest keeps each unit's parts, so `status` can say which part of a stale key changed
 * (`explainKeyChange`).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash } from "node:crypto"
import * as zlib from "node:zlib"
import { writeFileAtomicSync } from "./atomic.ts"

/** JSON with object keys sorted, so equal values give equal strings. */
export const stableStringify = (v: unknown): string => {
  if (v === undefined) return "null"
  if (v === null || typeof v !== "object") return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`
  const keys = Object.keys(v as object).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`).join(",")}}`
}

export const sha256 = (s: string | Uint8Array): string => createHash("sha256").update(s).digest("hex")

/** What a unit's key is made of (stored in the manifest). */
export interface KeyParts {
  readonly stage: string
  readonly version: number
  /** sha256 of the unit's params (stableStringify), 16 hex digits. */
  readonly params: string
  /** Upstream unit name → its key. */
  readonly inputs: Readonly<Record<string, string>>
  /** File path relative to the config's folder ("/" separators) → "sha256:…" or "missing". */
  readonly files: Readonly<Record<string, string>>
}

export const paramsHash = (params: unknown): string => sha256(stableStringify(params)).slice(0, 16)

export const keyOf = (parts: KeyParts): string => sha256(stableStringify(parts)).slice(0, 32)

interface CachedDigest {
  readonly size: number
  readonly mtimeMs: number
  readonly ino: number
  readonly digest: string
}

/**
 * Content fingerprints of external files, relative to `base` (the config's folder), with a digest
 * cache in `cacheFile` (optional; absent: every file is hashed each time it is asked for once).
 */
export class Fingerprints {
  private readonly memo = new Map<string, string>()
  private cache: Record<string, CachedDigest> | undefined
  private dirty = false

  constructor(
    private readonly base: string,
    private readonly cacheFile?: string,
  ) {}

  /** `path relative to base` ("/" separators). */
  relative(file: string): string {
    return path.relative(this.base, file).split(path.sep).join("/") || "."
  }

  /** The file's digest (hashFile), or "missing" (the unit will fail on it and say why). */
  digest(file: string): string {
    const hit = this.memo.get(file)
    if (hit !== undefined) return hit
    let st: fs.Stats
    try {
      st = fs.statSync(file)
    } catch {
      return "missing"
    }
    if (!st.isFile()) return `not a file`
    const cache = this.loadCache()
    const c = cache[file]
    let digest: string
    if (c !== undefined && c.size === st.size && c.mtimeMs === st.mtimeMs && c.ino === st.ino) digest = c.digest
    else {
      digest = hashFile(file)
      cache[file] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, digest }
      this.dirty = true
    }
    this.memo.set(file, digest)
    return digest
  }

  /** The `files` key part of a unit. */
  of(files: ReadonlyArray<string>): Record<string, string> {
    return Object.fromEntries(files.map((f) => [this.relative(f), this.digest(f)]))
  }

  /** Write the digest cache back when it changed (best effort: a cache). */
  save(): void {
    if (!this.dirty || this.cacheFile === undefined || this.cache === undefined) return
    try {
      writeFileAtomicSync(this.cacheFile, JSON.stringify(this.cache))
      this.dirty = false
    } catch {
      // an unwritable cache only costs hashing again next time
    }
  }

  private loadCache(): Record<string, CachedDigest> {
    if (this.cache !== undefined) return this.cache
    this.cache = {}
    if (this.cacheFile !== undefined) {
      try {
        const parsed = JSON.parse(fs.readFileSync(this.cacheFile, "utf8"))
        if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) this.cache = parsed as Record<string, CachedDigest>
      } catch {
        // no cache yet, or an unreadable one: start empty
      }
    }
    return this.cache
  }
}

/** Files larger than this are fingerprinted by samples (see the file's comment). */
export const SAMPLE_ABOVE = 64 << 20
const SAMPLE = 1 << 20

/**
 * `sha256:<hex>` of a file's bytes, read in 4 MiB pieces; above SAMPLE_ABOVE bytes,
 * `sampled-sha256:<hex>` of its size and its first, middle and last MiB.
 */
export const hashFile = (file: string): string => {
  const h = createHash("sha256")
  const fd = fs.openSync(file, "r")
  try {
    const size = fs.fstatSync(fd).size
    if (size > SAMPLE_ABOVE) {
      const buf = Buffer.allocUnsafe(SAMPLE)
      h.update(`size ${size}\n`)
      for (const at of [0, Math.floor((size - SAMPLE) / 2), size - SAMPLE]) {
        let done = 0
        while (done < SAMPLE) {
          const n = fs.readSync(fd, buf, done, SAMPLE - done, at + done)
          if (n === 0) break
          done += n
        }
        h.update(buf.subarray(0, done))
      }
      return `sampled-sha256:${h.digest("hex")}`
    }
    eachChunk(fd, (chunk) => h.update(chunk))
  } finally {
    fs.closeSync(fd)
  }
  return `sha256:${h.digest("hex")}`
}

/** Every byte of an open file, in 4 MiB pieces, from its current position to its end. */
const eachChunk = (fd: number, use: (chunk: Buffer) => void): void => {
  const buf = Buffer.allocUnsafe(4 << 20)
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null)
    if (n === 0) return
    use(buf.subarray(0, n))
  }
}

/** CRC-32 of a whole file (the manifest's check of an output), remembered per (path, size, mtime, inode) for the process. */
const fileCrcs = new Map<string, number>()
export const crc32OfFile = (file: string): number => {
  const st = fs.statSync(file)
  const memo = `${file}\0${st.size}\0${st.mtimeMs}\0${st.ino}`
  const hit = fileCrcs.get(memo)
  if (hit !== undefined) return hit
  let crc = 0
  const fd = fs.openSync(file, "r")
  try {
    eachChunk(fd, (chunk) => (crc = zlib.crc32(chunk, crc)))
  } finally {
    fs.closeSync(fd)
  }
  fileCrcs.set(memo, crc)
  return crc
}

const shown = (v: unknown): string => {
  const s = v === undefined ? "absent" : stableStringify(v)
  return s.length > 40 ? `${s.slice(0, 37)}…` : s
}

/**
 * The leaves where two params values differ, as "path: old → new" (arrays of another length as a
 * whole): paramsDiff({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] } }) = ["b.c[1]: 2 → 3"].
 */
export const paramsDiff = (a: unknown, b: unknown, at = ""): string[] => {
  if (stableStringify(a) === stableStringify(b)) return []
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v)
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) return a.flatMap((x, i) => paramsDiff(x, b[i], `${at}[${i}]`))
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    return keys.flatMap((k) => paramsDiff(a[k], b[k], at ? `${at}.${k}` : k))
  }
  return [`${at || "params"}: ${shown(a)} → ${shown(b)}`]
}

/**
 * Which parts of a stale key changed, in words, most telling first:
 *   "code version (score 1 → 2)", "config slice", "upstream tokenize/dataset=press",
 *   "file ../zoo/s/step-100.onnx (content)", "file b.txt (added)".
 */
export const explainKeyChange = (
  old: KeyParts | undefined,
  now: KeyParts,
  params?: { readonly old: unknown; readonly now: unknown },
): string => {
  if (old === undefined) return "key changed (recorded by an older version of trajectories, which kept no key parts)"
  const what: string[] = []
  if (old.version !== now.version) what.push(`code version (${now.stage} ${old.version} → ${now.version})`)
  if (old.params !== now.params) {
    const diff = params && params.old !== undefined ? paramsDiff(params.old, params.now) : []
    what.push(diff.length ? `config slice (${diff.length > 3 ? `${diff.slice(0, 3).join(", ")} and ${diff.length - 3} more` : diff.join(", ")})` : "config slice")
  }
  const changedInputs = Object.keys(now.inputs).filter((n) => old.inputs[n] !== now.inputs[n])
  const droppedInputs = Object.keys(old.inputs).filter((n) => !(n in now.inputs))
  const list = (xs: string[]) => (xs.length > 3 ? `${xs.slice(0, 3).join(", ")} and ${xs.length - 3} more` : xs.join(", "))
  if (changedInputs.length) what.push(`upstream ${list(changedInputs)}`)
  if (droppedInputs.length) what.push(`no longer reads ${list(droppedInputs)}`)
  const files = Object.keys(now.files).map((f) =>
    !(f in old.files) ? `file ${f} (${now.files[f] === "missing" ? "missing" : "added"})` : old.files[f] !== now.files[f] ? `file ${f} (${now.files[f] === "missing" ? "missing" : "content"})` : "",
  ).filter((s) => s !== "")
  const droppedFiles = Object.keys(old.files).filter((f) => !(f in now.files))
  if (files.length) what.push(list(files))
  if (droppedFiles.length) what.push(`no longer reads ${list(droppedFiles.map((f) => `file ${f}`))}`)
  return what.length ? `key changed: ${what.join("; ")}` : "key changed"
}
