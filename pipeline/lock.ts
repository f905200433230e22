/**
 * One run at a time per run folder: `outputs/<run>/.lock` holds the owner's pid, host and start
 * time. A lock whose process is gone (killed run) is taken over.
 *
 * Two runs that start together never both hold it:
 *   - the lock appears with its content already in it: it is written to a private file first and
 *     hard-linked to `.lock` (link fails when `.lock` exists), so no one ever reads a half-written lock;
 *   - a stale lock is removed only by the holder of `.lock.takeover` (taken the same way), after
 *     reading `.lock` again and finding the same dead owner: two runs that both saw the stale lock
 *     cannot remove each other's fresh one. A takeover lock left by a run killed in those few
 *     microseconds is itself taken over once it is TAKEOVER_STALE_MS old.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { randomBytes } from "node:crypto"
import { createExclusive, isAlive } from "./atomic.ts"

export const LOCK = ".lock"
const TAKEOVER = ".lock.takeover"
const TAKEOVER_STALE_MS = 10_000

export type LockResult =
  | { readonly _tag: "acquired"; readonly takenOverFrom?: number; readonly release: () => void }
  | { readonly _tag: "held"; readonly pid: number; readonly since: string; readonly file: string }

interface Owner {
  readonly pid: number
  readonly host?: string
  readonly since: string
  /** Unique per acquisition, so a lock is recognised even if a pid is reused. */
  readonly token?: string
}


const readOwner = (file: string): Owner | undefined => {
  try {
    const o = JSON.parse(fs.readFileSync(file, "utf8")) as Owner
    return typeof o.pid === "number" ? o : { pid: -1, since: "?" }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    return { pid: -1, since: "?" } // unreadable: written by something else; stale
  }
}

const alive = (o: Owner) => o.pid !== process.pid && (o.host === undefined || o.host === os.hostname()) && isAlive(o.pid)
const same = (a: Owner, b: Owner) => a.pid === b.pid && a.since === b.since && a.token === b.token

/** Remove `.lock` if it still is the dead `seen` owner's; only under `.lock.takeover`. */
const takeOver = (runDir: string, seen: Owner): void => {
  const lock = path.join(runDir, LOCK)
  const guard = path.join(runDir, TAKEOVER)
  if (!createExclusive(guard, String(process.pid))) {
    try {
      if (Date.now() - fs.statSync(guard).mtimeMs > TAKEOVER_STALE_MS) fs.rmSync(guard, { force: true })
    } catch {
      // gone meanwhile
    }
    return // someone else is taking it over; try again
  }
  try {
    const now = readOwner(lock)
    if (now !== undefined && same(now, seen)) fs.rmSync(lock, { force: true })
  } finally {
    fs.rmSync(guard, { force: true })
  }
}

export const acquireLock = (runDir: string): LockResult => {
  const p = path.join(runDir, LOCK)
  const token = randomBytes(8).toString("hex")
  const body = JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token })
  let takenOverFrom: number | undefined
  for (let attempt = 0; attempt < 50; attempt++) {
    if (createExclusive(p, body)) {
      return {
        _tag: "acquired",
        ...(takenOverFrom !== undefined ? { takenOverFrom } : {}),
        release: () => {
          const cur = readOwner(p)
          if (cur?.token === token) fs.rmSync(p, { force: true })
        },
      }
    }
    const owner = readOwner(p)
    if (owner === undefined) continue // released meanwhile
    if (alive(owner)) return { _tag: "held", pid: owner.pid, since: owner.since, file: p }
    takenOverFrom = owner.pid
    takeOver(runDir, owner)
    if (attempt > 2) {
      const wait = Date.now() + 2 * attempt
      while (Date.now() < wait) {} // another run is mid-takeover: back off a little
    }
  }
  throw new Error(`could not take the lock ${p} (another run keeps replacing it)`)
}
