/**
 * The Hub client against the mock Hub (test/fixtures/mock-hub.ts), each test with its own
 * temporary cache: downloads and the cache layout huggingface_hub uses, no request for what is
 * cached, offline mode, retries, resumed downloads, sha256 checks, auth and 404 messages, the
 * checkpoint and tokenizer operations, releasing files, and a cache written by hand the way
 * Python writes it.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { spawn, spawnSync } from "node:child_process"
import { buildSync } from "esbuild"
import { createHash, randomBytes } from "node:crypto"
import { Effect, Fiber, Option } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { hubSettingsFromEnv, makeHub, storedToken, type HubError, type HubService, type HubSettings, type Progress } from "../lib/hub/index.ts"
import { startMockHub, type MockHub } from "./fixtures/mock-hub.ts"

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "traj-hub-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const weights = randomBytes(300_000) // big enough to arrive in several chunks
const weights2 = randomBytes(50_000)
const shard1 = randomBytes(40_000)
const shard2 = randomBytes(30_000)
const pickleWeights = randomBytes(1000)
const config = '{"model_type":"gpt_neox","hidden_size":8}'
const COMMIT = "0123456789abcdef0123456789abcdef01234567"

let hub: MockHub
beforeAll(async () => {
  hub = await startMockHub({
    tokens: ["hf_ok", "hf_other"],
    renamed: { "old/tiny": "org/tiny" },
    repos: {
      "org/tiny": {
        revisions: {
          main: { files: { "config.json": config, "model.safetensors": weights, "tokenizer.json": '{"model":{}}', "tokenizer_config.json": "{}", "sub/dir/notes.txt": "hi" } },
          "stage1-step1000-tokens4B": { commit: COMMIT, files: { "config.json": config, "model.safetensors": weights2 } },
        },
      },
      "org/sharded": {
        revisions: {
          main: {
            files: {
              "config.json": config,
              "model.safetensors.index.json": JSON.stringify({
                metadata: { total_size: 70_000 },
                weight_map: { "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors", "c.weight": "model-00001-of-00002.safetensors" },
              }),
              "model-00001-of-00002.safetensors": shard1,
              "model-00002-of-00002.safetensors": shard2,
            },
          },
        },
      },
      "org/pickle": { revisions: { main: { files: { "config.json": config, "pytorch_model.bin": pickleWeights } } } },
      "org/pickle-sharded": {
        revisions: {
          main: {
            files: {
              "config.json": config,
              "pytorch_model.bin.index.json": JSON.stringify({ metadata: { total_size: 2_000 }, weight_map: { "a.weight": "pytorch_model-00001-of-00002.bin", "b.weight": "pytorch_model-00002-of-00002.bin" } }),
              "pytorch_model-00001-of-00002.bin": shard1,
              "pytorch_model-00002-of-00002.bin": shard2,
            },
          },
        },
      },
      "org/empty": { revisions: { main: { files: { "config.json": config } } } },
      "org/opt": { revisions: { main: { files: { "config.json": config, "vocab.json": '{"a":0}', "merges.txt": "#version: 0.2\na b\n", "special_tokens_map.json": "{}" } } } },
      "org/gated": { gated: { accepted: ["hf_ok"] }, revisions: { main: { files: { "config.json": config } } } },
      "org/private": { private: true, revisions: { main: { files: { "config.json": config } } } },
    },
  })
})
afterAll(() => hub.close())
beforeEach(() => {
  hub.clearRequests()
  hub.clearFaults()
})

let n = 0
/** Settings on a fresh cache, with retries fast enough for tests. */
const fresh = (over: Partial<HubSettings> = {}): HubSettings => ({
  ...hubSettingsFromEnv({}, "/nonexistent"),
  endpoint: hub.url,
  cacheDir: path.join(tmp, `cache-${++n}`, "hub"),
  retry: { attempts: 4, baseMs: 5, maxMs: 20 },
  lockPollMs: 10,
  ...over,
})
const run = <A>(s: HubSettings, f: (h: HubService) => Effect.Effect<A, HubError>): Promise<A> => Effect.runPromise(f(makeHub(s)))
const failure = (s: HubSettings, f: (h: HubService) => Effect.Effect<unknown, HubError>): Promise<HubError> => Effect.runPromise(Effect.flip(f(makeHub(s))))
const repoDir = (s: HubSettings, repo: string) => path.join(s.cacheDir, `models--${repo.replace("/", "--")}`)
/** A loopback URL where nothing listens (a port just freed). */
const deadEndpoint = async (): Promise<string> => {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}
const gets = (server: "hub" | "cdn") => hub.requests.filter((r) => r.server === server && r.method === "GET")

describe("hubSettingsFromEnv", () => {
  it("reads the variables huggingface_hub reads, with its defaults", () => {
    const d = hubSettingsFromEnv({}, "/home/me")
    expect(d).toMatchObject({ endpoint: "https://huggingface.co", offline: false, cacheDir: "/home/me/.cache/huggingface/hub" })
    expect(d.token).toBeUndefined()
    expect(hubSettingsFromEnv({ HF_HOME: "/data/hf", HF_ENDPOINT: "http://mirror:8080/", HF_TOKEN: "hf_x", HF_HUB_OFFLINE: "1" }, "/h")).toMatchObject({
      endpoint: "http://mirror:8080",
      token: "hf_x",
      offline: true,
      cacheDir: "/data/hf/hub",
    })
    expect(hubSettingsFromEnv({ HF_HOME: "/data/hf", HF_HUB_CACHE: "/fast/hub" }, "/h").cacheDir).toBe("/fast/hub")
    expect(hubSettingsFromEnv({ XDG_CACHE_HOME: "/xdg" }, "/h").cacheDir).toBe("/xdg/huggingface/hub")
    for (const v of ["true", "TRUE", "yes", "on"]) expect(hubSettingsFromEnv({ HF_HUB_OFFLINE: v }, "/h").offline).toBe(true)
    for (const v of ["0", "false", ""]) expect(hubSettingsFromEnv({ HF_HUB_OFFLINE: v }, "/h").offline).toBe(false)
  })

  it("storedToken reads the token huggingface-cli login wrote", () => {
    const home = path.join(tmp, "login-home")
    fs.mkdirSync(path.join(home, "hf"), { recursive: true })
    fs.writeFileSync(path.join(home, "hf", "token"), "hf_stored\n")
    expect(storedToken({ HF_HOME: path.join(home, "hf") })).toBe("hf_stored")
    expect(storedToken({ HF_HOME: path.join(home, "none") })).toBeUndefined()
  })
})

describe("fetchFile", () => {
  it("downloads a small file and an LFS file (redirect followed) into the standard layout", async () => {
    const s = fresh()
    const commit = hub.commitOf("org/tiny", "main")
    const progress: Progress[] = []
    const small = await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    const big = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors", { onProgress: (p) => progress.push(p) }))
    const root = repoDir(s, "org/tiny")
    expect(fs.readFileSync(path.join(root, "refs", "main"), "utf8")).toBe(commit)
    for (const [f, file, bytes] of [[small, "config.json", Buffer.from(config)], [big, "model.safetensors", weights]] as const) {
      const etag = hub.etagOf("org/tiny", "main", file)
      expect(f.path).toBe(path.join(root, "snapshots", commit, file))
      expect(fs.readlinkSync(f.path)).toBe(`../../blobs/${etag}`)
      expect(f.blob).toBe(path.join(fs.realpathSync(root), "blobs", etag))
      expect(f.commit).toBe(commit)
      expect(f.size).toBe(bytes.byteLength)
      expect(Buffer.compare(fs.readFileSync(f.path), bytes)).toBe(0)
    }
    expect(big.sha256).toBe(sha256(weights))
    expect(small.sha256).toBeUndefined() // a git blob sha1 etag: not a sha256
    expect(fs.readdirSync(path.join(root, "blobs")).sort()).toEqual([hub.etagOf("org/tiny", "main", "config.json"), sha256(weights)].sort())
    // The LFS file: HEAD on the Hub answered 302, the bytes came from the CDN.
    expect(hub.requests.map((r) => `${r.server} ${r.method} ${r.status}`)).toEqual(["hub HEAD 200", "hub GET 200", "hub HEAD 302", "cdn GET 200"])
    expect(progress.length).toBeGreaterThan(1)
    expect(progress.at(-1)).toEqual({ file: "model.safetensors", bytes: weights.byteLength, total: weights.byteLength })
    expect(progress.every((p, i) => i === 0 || p.bytes > progress[i - 1].bytes)).toBe(true)
    expect(fs.readFileSync(path.join(s.cacheDir, "CACHEDIR.TAG"), "utf8")).toMatch(/^Signature: 8a477f597d28d172789f06886806bc55\n/)
  })

  it("nested paths link with one more ../ per folder", async () => {
    const s = fresh()
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "sub/dir/notes.txt"))
    expect(fs.readlinkSync(f.path)).toBe(`../../../../blobs/${hub.etagOf("org/tiny", "main", "sub/dir/notes.txt")}`)
    expect(fs.readFileSync(f.path, "utf8")).toBe("hi")
  })

  it("a second fetch of a cached file makes no request", async () => {
    const s = fresh()
    await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    hub.clearRequests()
    const again = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(hub.requests).toEqual([])
    expect(again.sha256).toBe(sha256(weights))
  })

  it("offline: serves the cache without the network, and says in one line what is missing", async () => {
    const s = fresh()
    await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    hub.clearRequests()
    const off = { ...s, offline: true }
    const f = await run(off, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(fs.readFileSync(f.path, "utf8")).toBe(config)
    const e = await failure(off, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(e.message).toMatch(/^Hub org\/tiny \(revision main\) model\.safetensors: not in the cache \(.*\) and HF_HUB_OFFLINE is set$/)
    const e2 = await failure(off, (h) => h.fetchFile("org/tiny", "stage1-step1000-tokens4B", "config.json"))
    expect(e2.message).toContain("not in the cache")
    expect(await run(off, (h) => h.fetchFile("org/tiny", "main", "nope.json", { optional: true }))).toEqual(Option.none())
    const e3 = await failure(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors", { cacheOnly: true }))
    expect(e3.message).toContain("only the cache was asked")
    expect(hub.requests).toEqual([])
  })

  it("a revision that is a commit: no ref written, and served from the cache with no request next time", async () => {
    const s = fresh()
    const f = await run(s, (h) => h.fetchFile("org/tiny", COMMIT, "model.safetensors"))
    expect(f.commit).toBe(COMMIT)
    expect(Buffer.compare(fs.readFileSync(f.path), weights2)).toBe(0)
    expect(fs.existsSync(path.join(repoDir(s, "org/tiny"), "refs"))).toBe(false)
    expect(hub.requests[0].path).toBe(`/org/tiny/resolve/${COMMIT}/model.safetensors`)
    hub.clearRequests()
    await run(s, (h) => h.fetchFile("org/tiny", COMMIT, "model.safetensors"))
    await run({ ...s, offline: true }, (h) => h.fetchFile("org/tiny", COMMIT, "model.safetensors"))
    expect(hub.requests).toEqual([])
  })

  it("a branch name is URL-encoded as one segment; refs/<branch> holds the commit", async () => {
    const s = fresh()
    const f = await run(s, (h) => h.fetchFile("org/tiny", "stage1-step1000-tokens4B", "config.json"))
    expect(f.commit).toBe(COMMIT)
    expect(fs.readFileSync(path.join(repoDir(s, "org/tiny"), "refs", "stage1-step1000-tokens4B"), "utf8")).toBe(COMMIT)
    // The config is the same bytes at both commits: one blob, two snapshot links.
    await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(fs.readdirSync(path.join(repoDir(s, "org/tiny"), "blobs"))).toHaveLength(1)
  })

  it("a branch that moved on the Hub is seen with refresh: true (the cache answers otherwise)", async () => {
    const s = fresh()
    hub.setRevision("org/moving", "main", { files: { "config.json": "{}" } })
    const first = await run(s, (h) => h.fetchFile("org/moving", "main", "config.json"))
    hub.setRevision("org/moving", "main", { files: { "config.json": '{"v":2}' } })
    hub.clearRequests()
    expect((await run(s, (h) => h.fetchFile("org/moving", "main", "config.json"))).commit).toBe(first.commit)
    expect(hub.requests).toEqual([])
    const moved = await run(s, (h) => h.fetchFile("org/moving", "main", "config.json", { refresh: true }))
    expect(moved.commit).toBe(hub.commitOf("org/moving", "main"))
    expect(moved.commit).not.toBe(first.commit)
    expect(fs.readFileSync(moved.path, "utf8")).toBe('{"v":2}')
    expect(fs.readFileSync(path.join(repoDir(s, "org/moving"), "refs", "main"), "utf8")).toBe(moved.commit)
    expect(fs.readFileSync(first.path, "utf8")).toBe("{}") // the old snapshot stays
  })

  it("a renamed repository (relative redirect) is followed", async () => {
    const s = fresh()
    const f = await run(s, (h) => h.fetchFile("old/tiny", "main", "model.safetensors"))
    expect(Buffer.compare(fs.readFileSync(f.path), weights)).toBe(0)
    expect(hub.requests.map((r) => `${r.method} ${r.status} ${r.path}`).slice(0, 2)).toEqual([
      "HEAD 307 /old/tiny/resolve/main/model.safetensors",
      "HEAD 302 /org/tiny/resolve/main/model.safetensors",
    ])
  })
})

describe("retries", () => {
  it("a 500 is retried, then succeeds", async () => {
    const s = fresh()
    hub.fail({ file: "config.json", server: "hub", method: "HEAD", status: 500, times: 2 })
    hub.fail({ file: "model.safetensors", server: "cdn", status: 503 })
    await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(hub.requests.filter((r) => r.method === "HEAD").map((r) => r.status)).toEqual([500, 500, 200])
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn").map((r) => r.status)).toEqual([503, 200])
    expect(f.sha256).toBe(sha256(weights))
  })

  it("429 waits what Retry-After says", async () => {
    const s = fresh()
    hub.fail({ file: "config.json", status: 429, retryAfter: 1 })
    const t0 = Date.now()
    await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950)
    expect(hub.requests.map((r) => r.status)).toEqual([429, 200, 200])
  })

  it("gives up after the configured attempts with one line naming the file", async () => {
    const s = fresh()
    hub.fail({ file: "config.json", status: 502, times: 10 })
    const e = await failure(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(e.message).toBe("Hub org/tiny (revision main) config.json: HTTP 502, 4 attempts in a row")
    expect(e.status).toBe(502)
  })

  it("a refused connection is a network error, retried, then one line", async () => {
    const s = fresh({ endpoint: await deadEndpoint() })
    const e = await failure(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(e.message).toMatch(/^Hub org\/tiny \(revision main\) config\.json: network error \(ECONNREFUSED\) on 127\.0\.0\.1:\d+, 4 attempts in a row$/)
  })
})

describe("integrity and resume", () => {
  it("a wrong sha256 fails with both values, leaving nothing under a final name and no .incomplete", async () => {
    const s = fresh()
    hub.fail({ file: "model.safetensors", server: "cdn", corrupt: true })
    const e = await failure(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(e.message).toContain("Hub org/tiny (revision main) model.safetensors: corrupt download, sha256 expected " + sha256(weights) + ", got ")
    expect(e.message).not.toContain("\n")
    const root = repoDir(s, "org/tiny")
    expect(fs.readdirSync(path.join(root, "blobs"))).toEqual([])
    expect(fs.existsSync(path.join(root, "snapshots", hub.commitOf("org/tiny", "main"), "model.safetensors"))).toBe(false)
    // and the next try downloads it whole
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(sha256(fs.readFileSync(f.path))).toBe(sha256(weights))
  })

  it("a connection cut mid-file: the next attempt asks Range: bytes=K- and the blob is right", async () => {
    const s = fresh()
    const K = 123_457
    hub.fail({ file: "model.safetensors", server: "cdn", cutAfter: K })
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    const cdn = gets("cdn")
    expect(cdn).toHaveLength(2)
    expect(cdn[0].headers.range).toBeUndefined()
    // What the client had read of the cut reply is kept and asked for from there. (A fetch whose
    // connection ends short errors its body stream, which drops the chunks not yet read: on a busy
    // machine that can be all of them, and the retry then rightly asks for the whole file; the
    // mock leaves 150 ms for reading, and "a leftover .incomplete" below checks Range exactly.)
    if (cdn[1].headers.range !== undefined) {
      expect(cdn[1].headers.range).toBe(`bytes=${K}-`)
      expect(cdn[1].status).toBe(206)
    } else expect(cdn[1].status).toBe(200)
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
  })

  it("a leftover .incomplete of a killed process is resumed with Range", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, 1000))
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn").map((r) => r.headers.range)).toEqual(["bytes=1000-"])
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
    expect(fs.readdirSync(blobs)).toEqual([sha256(weights)])
  })

  it("a server that answers a Range request with 200 is read from the start", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), Buffer.alloc(5000, 7)) // wrong bytes, too
    hub.fail({ file: "model.safetensors", server: "cdn", ignoreRange: true })
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn").map((r) => `${r.headers.range} ${r.status}`)).toEqual(["bytes=5000- 200"])
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
  })

  it("416 to a partial download: started over without Range", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, 999))
    hub.fail({ file: "model.safetensors", server: "cdn", status: 416 })
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn").map((r) => `${r.headers.range} ${r.status}`)).toEqual(["bytes=999- 416", "undefined 200"])
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
  })

  it("a complete .incomplete (killed before the rename) needs no GET", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.incomplete`), weights)
    await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn")).toEqual([])
  })

  it("two fetches of one blob at once download it once; a lock left by a dead process is taken over", async () => {
    const s = fresh()
    const [a, b] = await run(s, (h) => Effect.all([h.fetchFile("org/tiny", "main", "model.safetensors"), h.fetchFile("org/tiny", "main", "model.safetensors")], { concurrency: 2 }))
    expect(a.blob).toBe(b.blob)
    expect(gets("cdn")).toHaveLength(1)

    const s2 = fresh()
    const blobs = path.join(repoDir(s2, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!
    fs.writeFileSync(path.join(blobs, `${sha256(weights)}.lock`), JSON.stringify({ pid: dead, host: os.hostname(), token: "t", since: "x" }))
    const f = await run(s2, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
    expect(fs.readdirSync(blobs)).toEqual([sha256(weights)])
  })

  it("processes racing for one blob download it once and agree on its bytes", async () => {
    const s = fresh()
    const entry = path.join(tmp, "racer-entry.ts")
    const bundle = path.join(tmp, "racer.mjs")
    fs.writeFileSync(
      entry,
      `import { Effect } from "effect"
import { hubSettingsFromEnv, makeHub } from ${JSON.stringify(path.resolve("lib/hub/index.ts"))}
const [endpoint, cacheDir] = process.argv.slice(2)
const hub = makeHub({ ...hubSettingsFromEnv({}), endpoint, cacheDir, retry: { attempts: 4, baseMs: 5, maxMs: 20 }, lockPollMs: 5 })
Effect.runPromise(hub.fetchFile("org/tiny", "main", "model.safetensors")).then(
  (f) => process.stdout.write(f.sha256 ?? "none"),
  (e) => process.stdout.write("ERR " + e.message),
)
`,
    )
    hub.fail({ file: "model.safetensors", server: "cdn", delayMs: 400 }) // the first download is slow: the others find its lock
    buildSync({ entryPoints: [entry], outfile: bundle, bundle: true, platform: "node", format: "esm", logLevel: "error", nodePaths: [path.resolve("node_modules")] })
    const outs = await Promise.all(
      Array.from({ length: 3 }, () =>
        new Promise<string>((resolve) => {
          const c = spawn(process.execPath, [bundle, hub.url, s.cacheDir], { stdio: ["ignore", "pipe", "inherit"] })
          let out = ""
          c.stdout.on("data", (d) => (out += d))
          c.on("exit", () => resolve(out))
        }),
      ),
    )
    expect(outs).toEqual([sha256(weights), sha256(weights), sha256(weights)])
    expect(gets("cdn")).toHaveLength(1)
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    expect(fs.readdirSync(blobs)).toEqual([sha256(weights)])
    expect(sha256(fs.readFileSync(path.join(blobs, sha256(weights))))).toBe(sha256(weights))
  })

  it("a live process's lock is waited for; one untouched for 10 minutes is stale", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    fs.mkdirSync(blobs, { recursive: true })
    const lock = path.join(blobs, `${sha256(weights)}.lock`)
    fs.writeFileSync(lock, JSON.stringify({ pid: process.ppid, host: os.hostname(), token: "other", since: "x" }))
    const pending = run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    await new Promise((r) => setTimeout(r, 150))
    expect(gets("cdn")).toEqual([]) // still waiting
    fs.rmSync(lock)
    await pending
    expect(gets("cdn")).toHaveLength(1)

    const s2 = fresh()
    const blobs2 = path.join(repoDir(s2, "org/tiny"), "blobs")
    fs.mkdirSync(blobs2, { recursive: true })
    const lock2 = path.join(blobs2, `${sha256(weights)}.lock`)
    fs.writeFileSync(lock2, JSON.stringify({ pid: process.ppid, host: "another-host", token: "other", since: "x" }))
    const old = new Date(Date.now() - 11 * 60_000)
    fs.utimesSync(lock2, old, old)
    await run(s2, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(fs.existsSync(lock2)).toBe(false)
  })

  it("an interrupted download keeps its .incomplete and frees the lock; the next run resumes it", async () => {
    const s = fresh()
    const blobs = path.join(repoDir(s, "org/tiny"), "blobs")
    hub.fail({ file: "model.safetensors", server: "cdn", stallAfter: 70_000 })
    const incomplete = path.join(blobs, `${sha256(weights)}.incomplete`)
    const seen: number[] = []
    await Effect.runPromise(
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(makeHub(s).fetchFile("org/tiny", "main", "model.safetensors", { onProgress: (p) => seen.push(p.bytes) }))
        yield* Effect.promise(async () => {
          while (seen.at(-1) !== 70_000) await new Promise((r) => setTimeout(r, 10))
        })
        yield* Fiber.interrupt(fiber)
      }),
    )
    expect(fs.statSync(incomplete).size).toBe(70_000)
    expect(fs.readdirSync(blobs).sort()).toEqual([`${sha256(weights)}.incomplete`])
    const f = await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(gets("cdn").map((r) => r.headers.range)).toEqual([undefined, "bytes=70000-"])
    expect(sha256(fs.readFileSync(f.blob))).toBe(sha256(weights))
  })
})

describe("auth and not-found errors", () => {
  it("401 without a token says to set HF_TOKEN; with HF_TOKEN it works and the token goes to the Hub only", async () => {
    const e = await failure(fresh(), (h) => h.fetchFile("org/private", "main", "config.json"))
    expect(e.message).toBe("Hub org/private (revision main) config.json: needs a token (private, gated or missing repository): set HF_TOKEN (HTTP 401)")
    expect(e.status).toBe(401)
    hub.clearRequests()
    const s = fresh({ token: "hf_ok" })
    await run(s, (h) => h.fetchFile("org/private", "main", "config.json"))
    expect(hub.requests.every((r) => r.headers.authorization === "Bearer hf_ok")).toBe(true)
    hub.clearRequests()
    await run(s, (h) => h.fetchFile("org/tiny", "main", "model.safetensors"))
    expect(hub.requests.map((r) => `${r.server} ${r.headers.authorization}`)).toEqual(["hub Bearer hf_ok", "cdn undefined"])
    const bad = await failure(fresh({ token: "hf_wrong" }), (h) => h.fetchFile("org/tiny", "main", "config.json"))
    expect(bad.message).toBe("Hub org/tiny (revision main) config.json: token refused (HF_TOKEN): Invalid credentials in Authorization header (HTTP 401)")
  })

  it("a gated repository says where to accept the licence", async () => {
    const e401 = await failure(fresh(), (h) => h.fetchFile("org/gated", "main", "config.json"))
    expect(e401.message).toBe(`Hub org/gated (revision main) config.json: gated repository: accept the licence at ${hub.url}/org/gated, then set HF_TOKEN to a token of that account`)
    const e403 = await failure(fresh({ token: "hf_other" }), (h) => h.fetchFile("org/gated", "main", "config.json"))
    expect(e403.message).toBe(`Hub org/gated (revision main) config.json: gated repository: accept the licence at ${hub.url}/org/gated with the account of HF_TOKEN`)
    expect(e403.status).toBe(403)
    await run(fresh({ token: "hf_ok" }), (h) => h.fetchFile("org/gated", "main", "config.json"))
  })

  it("404 says whether the repository, the revision or the file is missing", async () => {
    const s = fresh()
    expect((await failure(s, (h) => h.fetchFile("org/nope", "main", "config.json"))).message).toBe(
      `Hub org/nope (revision main) config.json: repository not found on ${hub.url} (HTTP 404 RepoNotFound)`,
    )
    expect((await failure(s, (h) => h.fetchFile("org/tiny", "step9", "config.json"))).message).toBe(
      "Hub org/tiny (revision step9) config.json: revision not found in the repository (HTTP 404 RevisionNotFound)",
    )
    const e = await failure(s, (h) => h.fetchFile("org/tiny", "main", "nope.json"))
    expect(e.message).toBe("Hub org/tiny (revision main) nope.json: file not found at this revision (HTTP 404 EntryNotFound)")
    expect(e.status).toBe(404)
    expect(await run(s, (h) => h.fetchFile("org/tiny", "main", "nope.json", { optional: true }))).toEqual(Option.none())
    // huggingface_hub's .no_exist marker: the next optional fetch makes no request
    expect(fs.existsSync(path.join(repoDir(s, "org/tiny"), ".no_exist", hub.commitOf("org/tiny", "main"), "nope.json"))).toBe(true)
    hub.clearRequests()
    expect(await run(s, (h) => h.fetchFile("org/tiny", "main", "nope.json", { optional: true }))).toEqual(Option.none())
    expect(hub.requests).toEqual([])
  })

  it("names that cannot be a place in the cache are refused before any request", async () => {
    const e = await failure(fresh(), (h) => h.fetchFile("org/tiny", "main", "../../etc/passwd"))
    expect(e.message).toContain("is not a relative file path")
    expect(hub.requests).toEqual([])
  })
})

describe("fetchCheckpoint and fetchTokenizer", () => {
  it("a single-file checkpoint: config.json + model.safetensors; again: no request", async () => {
    const s = fresh()
    const c = await run(s, (h) => h.fetchCheckpoint("org/tiny", "main"))
    expect(c.commit).toBe(hub.commitOf("org/tiny", "main"))
    expect(c.folder).toBe(path.join(repoDir(s, "org/tiny"), "snapshots", c.commit))
    expect(c.files.map((f) => f.file)).toEqual(["config.json", "model.safetensors"])
    expect(fs.readdirSync(c.folder).sort()).toEqual(["config.json", "model.safetensors"])
    hub.clearRequests()
    await run(s, (h) => h.fetchCheckpoint("org/tiny", "main"))
    expect(hub.requests).toEqual([])
    const off = await run({ ...s, offline: true }, (h) => h.fetchCheckpoint("org/tiny", "main"))
    expect(off.files.map((f) => f.file)).toEqual(["config.json", "model.safetensors"])
  })

  it("a sharded checkpoint: the index and every shard it lists, once each", async () => {
    const s = fresh()
    const progress: string[] = []
    const c = await run(s, (h) => h.fetchCheckpoint("org/sharded", "main", (p) => progress.push(p.file)))
    expect(c.files.map((f) => f.file)).toEqual(["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    expect(sha256(fs.readFileSync(path.join(c.folder, "model-00002-of-00002.safetensors")))).toBe(sha256(shard2))
    expect(new Set(progress)).toEqual(new Set(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]))
    expect(gets("cdn")).toHaveLength(2)
  })

  it("no safetensors: pytorch_model.bin, or pytorch_model.bin.index.json and its shards", async () => {
    const s = fresh()
    const c = await run(s, (h) => h.fetchCheckpoint("org/pickle", "main"))
    expect(c.files.map((f) => f.file)).toEqual(["config.json", "pytorch_model.bin"])
    expect(sha256(fs.readFileSync(path.join(c.folder, "pytorch_model.bin")))).toBe(sha256(pickleWeights))
    expect(gets("cdn")).toHaveLength(1)
    const sh = await run(s, (h) => h.fetchCheckpoint("org/pickle-sharded", "main"))
    expect(sh.files.map((f) => f.file)).toEqual(["config.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"])
    expect(sha256(fs.readFileSync(path.join(sh.folder, "pytorch_model-00002-of-00002.bin")))).toBe(sha256(shard2))
    hub.clearRequests()
    const again = await run({ ...s, offline: true }, (h) => h.fetchCheckpoint("org/pickle", "main"))
    expect(again.files.map((f) => f.file)).toEqual(["config.json", "pytorch_model.bin"])
    expect(hub.requests).toEqual([])
  })

  it("no weights at all: an error naming the four file names, and no weights downloaded", async () => {
    const s = fresh()
    const e = await failure(s, (h) => h.fetchCheckpoint("org/empty", "main"))
    expect(e.message).toBe(
      "Hub org/empty (revision main) model.safetensors: none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json exists at this revision",
    )
    expect(gets("cdn")).toEqual([])
  })

  it("a tokenizer: tokenizer.json (+ tokenizer_config.json), or vocab.json + merges.txt", async () => {
    const s = fresh()
    const t = await run(s, (h) => h.fetchTokenizer("org/tiny", "main"))
    expect(t.kind).toBe("tokenizer.json")
    expect(t.files.map((f) => f.file)).toEqual(["tokenizer.json", "tokenizer_config.json"])
    expect(fs.existsSync(path.join(t.folder, "tokenizer.json"))).toBe(true)
    const o = await run(s, (h) => h.fetchTokenizer("org/opt", "main"))
    expect(o.kind).toBe("vocab+merges")
    expect(o.files.map((f) => f.file)).toEqual(["vocab.json", "merges.txt", "special_tokens_map.json"])
    expect(fs.readFileSync(path.join(o.folder, "merges.txt"), "utf8")).toContain("a b")
    const e = await failure(s, (h) => h.fetchTokenizer("org/pickle", "main"))
    expect(e.message).toContain("neither tokenizer.json nor vocab.json + merges.txt exists at this revision")
  })
})

describe("the cache on disk", () => {
  it("cachedSnapshot is the folder only when every file is there, with no request", async () => {
    const s = fresh()
    expect(await run(s, (h) => h.cachedSnapshot("org/tiny", "main", ["config.json"]))).toEqual(Option.none())
    await run(s, (h) => h.fetchFile("org/tiny", "main", "config.json"))
    hub.clearRequests()
    const folder = path.join(repoDir(s, "org/tiny"), "snapshots", hub.commitOf("org/tiny", "main"))
    expect(await run(s, (h) => h.cachedSnapshot("org/tiny", "main", ["config.json"]))).toEqual(Option.some(folder))
    expect(await run(s, (h) => h.cachedSnapshot("org/tiny", "main", ["config.json", "model.safetensors"]))).toEqual(Option.none())
    expect(hub.requests).toEqual([])
  })

  it("releaseFiles removes links and blobs, but keeps a blob another snapshot links to", async () => {
    const s = fresh()
    const a = await run(s, (h) => h.fetchCheckpoint("org/tiny", "main"))
    const b = await run(s, (h) => h.fetchCheckpoint("org/tiny", "stage1-step1000-tokens4B"))
    const before = await run(s, (h) => h.cacheBytes("org/tiny"))
    expect(before).toBe(weights.byteLength + weights2.byteLength + config.length)
    const freed = await run(s, (h) => h.releaseFiles("org/tiny", a.commit, ["config.json", "model.safetensors"]))
    expect(freed).toBe(weights.byteLength) // config.json's blob is still linked from the other snapshot
    expect(await run(s, (h) => h.cacheBytes("org/tiny"))).toBe(before - weights.byteLength)
    expect(fs.existsSync(a.folder)).toBe(false)
    expect(fs.readFileSync(path.join(b.folder, "config.json"), "utf8")).toBe(config)
    // fetched again later, it downloads what was released
    hub.clearRequests()
    await run(s, (h) => h.fetchCheckpoint("org/tiny", "main"))
    expect(gets("cdn")).toHaveLength(1)
  })

  it("reads a cache written the way huggingface_hub writes it, without the network", async () => {
    // Built by hand as Python leaves it: blobs named by etag, relative links, refs without a newline.
    const cacheDir = path.join(tmp, "python-cache", "hub")
    const root = path.join(cacheDir, "models--EleutherAI--pythia-14m")
    const commit = "f33025648652797a390d8c4e0e27d10bb4e2b3f6"
    const cfg = Buffer.from('{"architectures":["GPTNeoXForCausalLM"]}\n')
    const cfgEtag = createHash("sha1").update(`blob ${cfg.byteLength}\0`).update(cfg).digest("hex")
    const w = randomBytes(2048)
    fs.mkdirSync(path.join(root, "blobs"), { recursive: true })
    fs.mkdirSync(path.join(root, "snapshots", commit), { recursive: true })
    fs.mkdirSync(path.join(root, "refs"), { recursive: true })
    fs.writeFileSync(path.join(root, "blobs", cfgEtag), cfg)
    fs.writeFileSync(path.join(root, "blobs", sha256(w)), w)
    fs.symlinkSync(`../../blobs/${cfgEtag}`, path.join(root, "snapshots", commit, "config.json"))
    fs.symlinkSync(`../../blobs/${sha256(w)}`, path.join(root, "snapshots", commit, "model.safetensors"))
    fs.writeFileSync(path.join(root, "refs", "step3000"), commit)
    const s = fresh({ cacheDir, endpoint: await deadEndpoint() }) // nothing listens there
    const c = await run(s, (h) => h.fetchCheckpoint("EleutherAI/pythia-14m", "step3000"))
    expect(c.commit).toBe(commit)
    expect(c.files.map((f) => [f.file, f.size, f.sha256])).toEqual([
      ["config.json", cfg.byteLength, undefined],
      ["model.safetensors", w.byteLength, sha256(w)],
    ])
    expect(await run(s, (h) => h.cachedSnapshot("EleutherAI/pythia-14m", "step3000", ["config.json", "model.safetensors"]))).toEqual(
      Option.some(path.join(root, "snapshots", commit)),
    )
    expect(await run({ ...s, offline: true }, (h) => h.fetchFile("EleutherAI/pythia-14m", commit, "config.json"))).toMatchObject({ commit, size: cfg.byteLength })
  })
})
