/**
 * A full disk (a 256 KiB tmpfs, mounted in a private mount namespace, test/fixtures/disk-full-run.ts):
 * the unit whose write does not fit fails with one line naming the file and ENOSPC, independent
 * units still run (--keep-going), and no file under a final name is truncated. At 76db982 the same
 * run died with "internal error: ENOSPC" and left a truncated score file under its final name.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-full-"))
const disk = path.join(tmp, "disk")
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/**
 * Run the scenario in a private mount namespace with a 256 KiB tmpfs at `disk`: as root `unshare
 * -m`, otherwise `unshare -rm` (a user namespace, where an unprivileged user may mount a tmpfs).
 */
const inSmallDisk = (cfg: string) => {
  fs.mkdirSync(disk, { recursive: true })
  const tsx = path.resolve("node_modules/.bin/tsx")
  const script = `mount -t tmpfs -o size=256k tmpfs '${disk}' && exec '${tsx}' '${path.resolve("test/fixtures/disk-full-run.ts")}' '${disk}' '${cfg}'`
  const r = spawnSync("unshare", [process.getuid?.() === 0 ? "-m" : "-rm", "sh", "-c", script], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(`the disk-full scenario needs to mount a tmpfs in a private namespace (unshare): ${r.stderr.trim()}`)
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    failed: boolean
    message: string
    runDir: string
    units: string[]
    whole: boolean[]
    temporaries: string[]
    bigFiles: string[]
  }
}

describe("a full disk", () => {
  it("fails the unit that does not fit with one line naming the file; nothing truncated under a final name", async () => {
    // Datasets outside the small disk; the run folder on it. "big" needs ~1 MB of Parquet.
    const data = path.join(tmp, "data")
    fs.mkdirSync(data)
    fs.writeFileSync(path.join(data, "a.txt"), "alpha")
    fs.writeFileSync(path.join(data, "b.txt"), "beta")
    const r = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7919) % 90))).join("")
    fs.writeFileSync(path.join(data, "big.txt"), r(400_000))
    fs.writeFileSync(path.join(tmp, "tok.json"), "{}")
    fs.writeFileSync(path.join(tmp, "m.onnx"), "x")
    const cfg = path.join(tmp, "run.yaml")
    fs.writeFileSync(
      cfg,
      [
        "run: t",
        `output: ${disk}`,
        "tokenizer: tok.json",
        "models: [{ name: m, params: 1000, tokens_per_step: 10, checkpoints: [{ step: 1, path: m.onnx }] }]",
        "datasets:",
        ...["a", "big", "b"].map((d) => `  - { name: ${d}, format: text, path: data/${d}.txt }`),
        "",
      ].join("\n"),
    )
    const got = inSmallDisk(cfg)
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
