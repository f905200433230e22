/**
 * A full disk (a 256 KiB tmpfs, mounted in a private mount namespace, test/fixtures/disk-full-run.ts):
 * the unit whose write does not fit fails with one line naming the file and ENOSPC, independent
 * units still run (--keep-going), and no file under a final name is truncated. At 76db982 the same
 * run died with "internal error: ENOSPC" and left a truncated score file under its final name.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { diskFullScenario } from "./fixtures/disk-full.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-full-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

describe("a full disk", () => {
  it("fails the unit that does not fit with one line naming the file; nothing truncated under a final name", () => {
    const { result: got, error } = diskFullScenario(tmp)
    if (got === undefined) throw new Error(error)
    expect(got.failed).toBe(true)
    expect(got.message.split("\n").slice(0, 3)).toEqual([
      "1 unit(s) failed, 1 blocked:",
      `  gen/dataset=big: ${got.runDir}/gen/dataset=big/out.parquet: cannot write: no space left on device (ENOSPC)`,
      "  sum/all: needs gen/dataset=big, which failed",
    ])
    // What is under a final name is whole: every recorded file has its recorded size and reads back.
    expect(got.units).toEqual(["gen/dataset=a:done", "gen/dataset=big:failed", "gen/dataset=b:done"])
    expect(got.whole).toEqual([true, true])
    expect(got.temporaries).toEqual([])
    expect(got.bigFiles).toEqual([])
  })
})
