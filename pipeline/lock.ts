/**
 * One run at a time per run folder: `outputs/<run>/.lock` holds the owner's pid. A lock whose
 * process is gone (killed run) is taken over.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { isAlive } from "./atomic.ts"

export const LOCK = ".lock"

export type LockResult =
  | { readonly _tag: "acquired"; readonly takenOverFrom?: number; readonly release: () => void }
  | { readonly _tag: "held"; readonly pid: number; readonly since: string }

export const acquireLock = (runDir: string): LockResult => {
  const p = path.join(runDir, LOCK)
  const body = JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString() })
  let takenOverFrom: number | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(p, body, { flag: "wx" })
      return {
        _tag: "acquired",
        ...(takenOverFrom !== undefined ? { takenOverFrom } : {}),
        release: () => {
          try {
            const cur = JSON.parse(fs.readFileSync(p, "utf8")) as { pid: number }
            if (cur.pid === process.pid) fs.rmSync(p, { force: true })
          } catch { /* already gone */ }
        },
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
      let owner: { pid: number; since: string; host?: string }
      try {
        owner = JSON.parse(fs.readFileSync(p, "utf8"))
      } catch {
        owner = { pid: -1, since: "?" } // unreadable or half-written lock: treat as stale
      }
      const sameHost = owner.host === undefined || owner.host === os.hostname()
      if (owner.pid !== process.pid && sameHost && isAlive(owner.pid)) {
        return { _tag: "held", pid: owner.pid, since: owner.since }
      }
      takenOverFrom = owner.pid
      fs.rmSync(p, { force: true })
    }
  }
  throw new Error(`could not take the lock ${p}`)
}
