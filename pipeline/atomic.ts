/**
 * Atomic files: every file of a run is written under a temporary name in its final folder,
 * fsynced, then renamed into place, so a killed run never leaves a truncated file under a final
 * name. Temporary names start with TMP_PREFIX; the runner sweeps those left by dead processes.
 *
 * This is one of the few modules that touch node:fs directly.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash, randomBytes } from "node:crypto"
import * as os from "node:os"

export const TMP_PREFIX = ".tmp-"

/** Temporary files written by this process and not yet renamed (removed on interruption). */
const live = new Set<string>()

/**
 * This machine in temporary names: runs and cluster runners on several machines write into one
 * shared folder, and a pid says whether its writer is alive only on the machine that wrote it.
 */
const HOST = createHash("sha256").update(os.hostname()).digest("hex").slice(0, 8)
/** A temporary file of another machine is swept only once it is this old (its writer is surely gone). */
const FOREIGN_STALE_MS = 24 * 3600_000

export const tmpNameFor = (finalPath: string): string =>
  path.join(path.dirname(finalPath), `${TMP_PREFIX}${process.pid}.${HOST}-${randomBytes(4).toString("hex")}-${path.basename(finalPath)}`)

/** Write `data` to `finalPath` atomically (temp file in the same folder, fsync, rename). Returns bytes written. */
export const writeFileAtomicSync = (finalPath: string, data: Uint8Array | string): number => {
  fs.mkdirSync(path.dirname(finalPath), { recursive: true })
  const tmp = tmpNameFor(finalPath)
  live.add(tmp)
  try {
    const fd = fs.openSync(tmp, "w")
    try {
      // writeSync may write less than asked (a full disk says so only on the next call): loop.
      const bytes = typeof data === "string" ? Buffer.from(data) : data
      let done = 0
      while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, finalPath)
    return typeof data === "string" ? Buffer.byteLength(data) : data.byteLength
  } catch (e) {
    try { fs.rmSync(tmp, { force: true }) } catch { /* already gone */ }
    throw e
  } finally {
    live.delete(tmp)
  }
}

/** Remove this process's temporary files (called when a run is interrupted). */
export const removeLiveTemps = (): void => {
  for (const t of live) {
    try { fs.rmSync(t, { force: true }) } catch { /* ignore */ }
  }
  live.clear()
}

/**
 * Remove temporary files under `root` whose writer is no longer alive (a SIGKILLed run).
 * Files of a live process other than ours are left alone, and so are another machine's (a cluster
 * runner's) until they are a day old. Returns the paths removed.
 */
export const sweepStaleTemps = (root: string): string[] => {
  const removed: string[] = []
  const walk = (dir: string) => {
    let entries: fs.Dirent[]
    try { entries = fs.readdirSync(dir, { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.startsWith(TMP_PREFIX)) {
        // ".tmp-<pid>.<host>-…" (".tmp-<pid>-…" before hosts were named: this machine's).
        const [pidText, host = HOST] = e.name.slice(TMP_PREFIX.length).split("-")[0].split(".")
        const pid = Number(pidText)
        if (host !== HOST) {
          let age = 0
          try { age = Date.now() - fs.statSync(p).mtimeMs } catch { continue }
          if (age < FOREIGN_STALE_MS) continue
        } else if (pid !== process.pid && isAlive(pid)) continue
        try { fs.rmSync(p, { force: true }); removed.push(p) } catch { /* ignore */ }
      }
    }
  }
  walk(root)
  return removed
}

/**
 * Is a process with this pid running? A zombie (killed, not yet reaped by its parent — seen
 * here for ~1 s after a SIGKILL, while the machine's init gets to it) is not: it can hold no lock
 * and write no file. On Linux the state is read from /proc/<pid>/stat.
 */
export const isAlive = (pid: number): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // "pid (comm) S …": the state follows the last ")" (comm may hold spaces and parentheses).
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return true // no /proc (not Linux): kill(pid, 0) is all there is
  }
}

/**
 * Create `file` with `body` atomically, content first and then the name (a hard link, which fails
 * when `file` exists): no reader ever sees it half-written. False when it exists. The run lock and
 * the Hub cache's blob locks are made this way.
 */
export const createExclusive = (file: string, body: string): boolean => {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`
  fs.writeFileSync(tmp, body, { flag: "wx" })
  try {
    fs.linkSync(tmp, file)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
    throw e
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}
