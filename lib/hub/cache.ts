/**
 * The Hugging Face cache layout, read and written the way huggingface_hub does, so a cache filled
 * by Python (`hf_hub_download`, transformers' `from_pretrained`) is reused here and vice versa.
 * This module and client.ts are the only ones of lib/hub that touch node:fs.
 *
 *   <cache>/CACHEDIR.TAG                     tells backup tools to skip the cache (written before a first download)
 *   <cache>/models--EleutherAI--pythia-70m/
 *     blobs/4a2e…(64 hex)                   an LFS file's bytes, named by its sha256 (the Hub's etag)
 *     blobs/9d1c…(40 hex)                   a small file's bytes, named by its git blob sha1 (its etag)
 *     blobs/4a2e….incomplete                a download in progress (resumed with `Range: bytes=N-`)
 *     blobs/4a2e….lock                      held while one process downloads that blob (ours, not Python's)
 *     snapshots/<commit>/model.safetensors  → ../../blobs/4a2e…      (relative symlink)
 *     snapshots/<commit>/sub/dir/f.json     → ../../../../blobs/9d1c…
 *     refs/step1000                         "<commit>" (40 hex, no newline); none for a commit revision
 *     .no_exist/<commit>/model.safetensors.index.json   empty: "this file does not exist at that commit"
 *
 *   const rc = repoCache("/home/me/.cache/huggingface/hub", "EleutherAI/pythia-70m")
 *   readRef(rc, "step1000")                        // → "c1d2…" (the commit), or undefined
 *   cachedPath(rc, "c1d2…", "config.json")         // → "<rc.root>/snapshots/c1d2…/config.json" when its blob is there
 *   linkSnapshot(rc, "c1d2…", "config.json", etag) // the relative symlink, created atomically
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import { createExclusive, isAlive, tmpNameFor, writeFileAtomicSync } from "../../pipeline/atomic.ts"

/** One repository's folder in the cache and its parts. */
export interface RepoCache {
  readonly repo: string
  readonly root: string
  readonly blobs: string
  readonly snapshots: string
  readonly refs: string
  readonly noExist: string
}

/** `EleutherAI/pythia-70m` → `models--EleutherAI--pythia-70m` (`gpt2` → `models--gpt2`). */
export const repoFolderName = (repo: string): string => ["models", ...repo.split("/")].join("--")

export const repoCache = (cacheDir: string, repo: string): RepoCache => {
  const root = path.resolve(cacheDir, repoFolderName(repo))
  return {
    repo,
    root,
    blobs: path.join(root, "blobs"),
    snapshots: path.join(root, "snapshots"),
    refs: path.join(root, "refs"),
    noExist: path.join(root, ".no_exist"),
  }
}

/**
 * `<cache>/CACHEDIR.TAG` (the Cache Directory Tagging Standard, which backup tools honour), as
 * huggingface_hub writes it before a download; kept when present.
 */
export const tagCacheDir = (cacheDir: string): void => {
  const tag = path.join(cacheDir, "CACHEDIR.TAG")
  if (fs.existsSync(tag)) return
  try {
    writeFileAtomicSync(tag, "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag (https://bford.info/cachedir/) for the Hugging Face cache.\n")
  } catch {
    // a read-only cache: the tag is a courtesy
  }
}

/** A full commit hash (what huggingface_hub's REGEX_COMMIT_HASH accepts). */
export const isCommitHash = (revision: string): boolean => /^[0-9a-f]{40}$/.test(revision)

/** A 64-hex etag is an LFS file's sha256, which the download is checked against. */
export const isSha256 = (etag: string): boolean => /^[0-9a-f]{64}$/.test(etag)

/** Why a repo id, revision or file path cannot name a place in the cache, or undefined when it can. */
export const badName = (repo: string, revision: string, file: string): string | undefined => {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo) || repo.includes("..")) return `"${repo}" is not a repository id (org/name)`
  if (revision === "" || revision.split("/").some((p) => p === "" || p === "." || p === "..")) return `"${revision}" is not a revision`
  if (file === "" || file.startsWith("/") || file.split("/").some((p) => p === "" || p === "." || p === ".."))
    return `"${file}" is not a relative file path inside the repository`
  return undefined
}

export const blobPath = (rc: RepoCache, etag: string): string => path.join(rc.blobs, etag)
export const snapshotDir = (rc: RepoCache, commit: string): string => path.join(rc.snapshots, commit)
export const snapshotPath = (rc: RepoCache, commit: string, file: string): string => path.join(rc.snapshots, commit, ...file.split("/"))

/** The commit a revision stands for in the cache: itself when it is a commit, else refs/<revision>. */
export const readRef = (rc: RepoCache, revision: string): string | undefined => {
  if (isCommitHash(revision)) return revision
  try {
    const c = fs.readFileSync(path.join(rc.refs, ...revision.split("/")), "utf8").trim()
    return isCommitHash(c) ? c : undefined
  } catch {
    return undefined
  }
}

/** Record refs/<revision> = commit (atomically; skipped for a commit revision or an unchanged ref). */
export const writeRef = (rc: RepoCache, revision: string, commit: string): void => {
  if (revision === commit || readRef(rc, revision) === commit) return
  writeFileAtomicSync(path.join(rc.refs, ...revision.split("/")), commit)
}

/** The snapshot path of `file` at `commit` when it is in the cache (its link resolves), else undefined. */
export const cachedPath = (rc: RepoCache, commit: string, file: string): string | undefined => {
  const p = snapshotPath(rc, commit, file)
  try {
    return fs.statSync(p).isFile() ? p : undefined
  } catch {
    return undefined
  }
}

/** Is `file` recorded as absent at `commit` (huggingface_hub's `.no_exist` markers)? */
export const knownMissing = (rc: RepoCache, commit: string, file: string): boolean =>
  fs.existsSync(path.join(rc.noExist, commit, ...file.split("/")))

export const markMissing = (rc: RepoCache, commit: string, file: string): void => {
  const p = path.join(rc.noExist, commit, ...file.split("/"))
  try {
    fs.mkdirSync(path.dirname(p), { recursive: true })
    fs.closeSync(fs.openSync(p, "a"))
  } catch {
    // a read-only cache: the marker only saves a request next time
  }
}

/**
 * snapshots/<commit>/<file> → the blob, as a relative symlink (`../../blobs/<etag>`, one more
 * `../` per folder of `file`). Made under a temporary name and renamed over the final one, so a
 * reader sees the old entry or the new one, never none.
 */
export const linkSnapshot = (rc: RepoCache, commit: string, file: string, etag: string): string => {
  const dst = snapshotPath(rc, commit, file)
  fs.mkdirSync(path.dirname(dst), { recursive: true })
  const tmp = tmpNameFor(dst)
  fs.symlinkSync(path.relative(path.dirname(dst), blobPath(rc, etag)), tmp)
  try {
    fs.renameSync(tmp, dst)
  } catch (e) {
    fs.rmSync(tmp, { force: true })
    throw e
  }
  return dst
}

/** Every file entry under a folder (symlinks not followed), as absolute paths. */
const entries = (dir: string): string[] => {
  try {
    return fs
      .readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => !e.isDirectory())
      .map((e) => path.join(e.parentPath, e.name))
  } catch {
    return []
  }
}

/** Absolute blob paths that snapshot entries link to, except `skip`'s (a set of snapshot paths). */
const linkedBlobs = (rc: RepoCache, skip: ReadonlySet<string>): Set<string> => {
  const out = new Set<string>()
  for (const p of entries(rc.snapshots)) {
    if (skip.has(p)) continue
    try {
      if (fs.lstatSync(p).isSymbolicLink()) out.add(path.resolve(path.dirname(p), fs.readlinkSync(p)))
    } catch {
      // removed meanwhile
    }
  }
  return out
}

/**
 * Remove `files`' entries of snapshots/<commit> and the blobs they link to, except blobs that an
 * entry of another snapshot (or another file of this one) still links to. A snapshot entry that is
 * a plain file (huggingface_hub's copy when symlinks are unavailable) is removed as it is. Folders
 * left empty are removed. Returns the bytes freed.
 */
export const releaseFiles = (rc: RepoCache, commit: string, files: ReadonlyArray<string>): number => {
  const targets = new Set(files.map((f) => snapshotPath(rc, commit, f)))
  const keep = linkedBlobs(rc, targets)
  let freed = 0
  for (const p of targets) {
    let st: fs.Stats
    try {
      st = fs.lstatSync(p)
    } catch {
      continue
    }
    if (st.isSymbolicLink()) {
      const blob = path.resolve(path.dirname(p), fs.readlinkSync(p))
      fs.rmSync(p, { force: true })
      if (!keep.has(blob) && path.dirname(blob) === rc.blobs) {
        try {
          freed += fs.statSync(blob).size
          fs.rmSync(blob, { force: true })
        } catch {
          // already gone
        }
      }
    } else {
      freed += st.size
      fs.rmSync(p, { force: true })
    }
    // Remove the folders left empty, up to and including snapshots/<commit>.
    for (let d = path.dirname(p); d.startsWith(snapshotDir(rc, commit)); d = path.dirname(d)) {
      try {
        fs.rmdirSync(d)
      } catch {
        break
      }
    }
  }
  return freed
}

/** Bytes of everything under blobs/ (finished blobs and downloads in progress). */
export const blobBytes = (rc: RepoCache): number =>
  entries(rc.blobs).reduce((sum, p) => {
    try {
      return sum + fs.statSync(p).size
    } catch {
      return sum
    }
  }, 0)

// ---------------------------------------------------------------------------------------------
// The blob lock: blobs/<etag>.lock, created with its content already in it (a private file
// hard-linked to the name: link fails when the name exists). It is stale when its process is dead
// (same host) or when it has not been touched for `staleMs` (the holder touches it as bytes
// arrive, so a long download keeps it fresh). A stale lock is removed only by the holder of
// `<etag>.lock.takeover`, after reading it again and finding the same owner.

interface LockOwner {
  readonly pid: number
  readonly host: string
  readonly token: string
}

export interface BlobLock {
  /** Mark the lock as alive (call as bytes arrive; cheap, rate-limited inside). */
  readonly touch: () => void
  readonly release: () => void
}

/** Tokens of the blob locks this process holds (another fibre of ours holding one is not stale). */
const heldHere = new Set<string>()

const readOwner = (file: string): LockOwner | undefined | "unreadable" => {
  try {
    const o = JSON.parse(fs.readFileSync(file, "utf8")) as LockOwner
    return typeof o.pid === "number" && typeof o.token === "string" ? o : "unreadable"
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? undefined : "unreadable"
  }
}

const isStale = (file: string, o: LockOwner | "unreadable", staleMs: number): boolean => {
  let age: number
  try {
    age = Date.now() - fs.statSync(file).mtimeMs
  } catch {
    return false // gone: not ours to remove, just retry
  }
  if (age > staleMs) return true
  if (o === "unreadable") return false
  if (o.host !== os.hostname()) return false
  if (o.pid === process.pid) return !heldHere.has(o.token)
  return !isAlive(o.pid)
}

const takeOver = (file: string, seen: LockOwner | "unreadable"): void => {
  const guard = `${file}.takeover`
  if (!createExclusive(guard, String(process.pid))) {
    try {
      if (Date.now() - fs.statSync(guard).mtimeMs > 10_000) fs.rmSync(guard, { force: true })
    } catch {
      // gone meanwhile
    }
    return
  }
  try {
    const now = readOwner(file)
    if (now !== undefined && (now === seen || (now !== "unreadable" && seen !== "unreadable" && now.token === seen.token)))
      fs.rmSync(file, { force: true })
  } finally {
    fs.rmSync(guard, { force: true })
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal!.reason)
    }
    signal?.addEventListener("abort", onAbort, { once: true })
  })

/**
 * Hold blobs/<etag>.lock, waiting (polling every `pollMs`) while a live holder has it; a stale
 * lock is taken over. `onWait` is called once when the lock is found held.
 */
export const acquireBlobLock = async (
  rc: RepoCache,
  etag: string,
  options: { readonly pollMs?: number; readonly staleMs?: number; readonly signal?: AbortSignal; readonly onWait?: () => void } = {},
): Promise<BlobLock> => {
  const file = `${blobPath(rc, etag)}.lock`
  const token = randomBytes(8).toString("hex")
  const body = JSON.stringify({ pid: process.pid, host: os.hostname(), token, since: new Date().toISOString() })
  const staleMs = options.staleMs ?? 10 * 60_000
  fs.mkdirSync(rc.blobs, { recursive: true })
  let waited = false
  for (;;) {
    if (createExclusive(file, body)) break
    const owner = readOwner(file)
    if (owner === undefined) continue // released meanwhile
    if (isStale(file, owner, staleMs)) {
      takeOver(file, owner)
      continue
    }
    if (!waited) options.onWait?.()
    waited = true
    await sleep(options.pollMs ?? 200, options.signal)
  }
  heldHere.add(token)
  let touched = Date.now()
  return {
    touch: () => {
      if (Date.now() - touched < 5_000) return
      touched = Date.now()
      try {
        fs.utimesSync(file, new Date(), new Date())
      } catch {
        // taken over after all: the sha256 check and the atomic rename still keep the blob whole
      }
    },
    release: () => {
      heldHere.delete(token)
      const cur = readOwner(file)
      if (cur !== undefined && cur !== "unreadable" && cur.token === token) fs.rmSync(file, { force: true })
    },
  }
}

export { sleep as abortableSleep }
