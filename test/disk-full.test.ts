/**
 * A full disk (a 256 KiB tmpfs, mounted by the test: the suite runs as root, as .ci/run does):
 * the unit whose write does not fit fails with one line naming the file and ENOSPC, independent
 * units still run (--keep-going), and no file under a final name is truncated. At 76db982 the same
 * run died with "internal error: ENOSPC" and left a truncated score file under its final name.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadConfig } from "../pipeline/config.ts"
import { quietSink } from "../pipeline/progress.ts"
import { readParquetFile } from "../pipeline/store.ts"
import { fakeStages } from "./fixtures/fake-stages.ts"
import { runOnDisk } from "./fixtures/run.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-full-"))
const disk = path.join(tmp, "disk")

beforeAll(() => {
  fs.mkdirSync(disk)
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], { encoding: "utf8" })
  if (m.status !== 0) throw new Error(`this test mounts a small tmpfs and needs root (as .ci/run has): ${m.stderr.trim()}`)
})
afterAll(() => {
  spawnSync("umount", [disk])
  fs.rmSync(tmp, { recursive: true, force: true })
})

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
    const config = await Effect.runPromise(loadConfig(cfg))
    const result = await Effect.runPromise(Effect.either(runOnDisk(config, { stages: fakeStages, sink: quietSink, keepGoing: true })))
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isRight(result)) return
    const runDir = path.join(disk, "t")
    expect(result.left.message.split("\n").slice(0, 3)).toEqual([
      "1 unit(s) failed, 1 blocked:",
      `  gen/dataset=big: ${runDir}/gen/dataset=big/out.parquet: cannot write: no space left on device (ENOSPC)`,
      "  sum/all: needs gen/dataset=big, which failed",
    ])
    // What is under a final name is whole: every recorded file has its recorded size and reads back.
    const manifest = JSON.parse(fs.readFileSync(path.join(runDir, "manifest.json"), "utf8"))
    expect(Object.entries(manifest.units).map(([k, u]) => `${k}:${(u as { status: string }).status}`)).toEqual(["gen/dataset=a:done", "gen/dataset=big:failed", "gen/dataset=b:done"])
    for (const u of Object.values(manifest.units) as Array<{ files: Array<{ path: string; bytes: number }> }>) {
      for (const f of u.files) {
        expect(fs.statSync(path.join(runDir, f.path)).size).toBe(f.bytes)
        expect(readParquetFile(path.join(runDir, f.path)).numRows).toBeGreaterThan(0)
      }
    }
    const files = fs.readdirSync(runDir, { recursive: true }).map(String)
    expect(files.filter((f) => path.basename(f).startsWith(".tmp-"))).toEqual([])
    expect(files.some((f) => f.includes("dataset=big") && f.endsWith(".parquet"))).toBe(false)
  })
})
