/**
 * The Hub service: files of Hugging Face Hub repositories at a revision, kept in the standard
 * Hugging Face cache (shared with Python's huggingface_hub). This module holds the interface, its
 * Tag, the live Layer and the operations built on the two modules next to it:
 *
 *   cache.ts    the cache layout (blobs/, snapshots/<commit>/ relative links, refs/, .no_exist/), blob locks
 *   client.ts   settings from the environment, HEAD metadata, resumed downloads, retries, HubError
 *
 * How one file is found (fetchFile):
 *   1. the revision's commit from the cache (itself when a 40-hex commit, else refs/<revision>); when
 *      snapshots/<commit>/<file> is there, it is the answer and no request is made (the Hub is
 *      asked again only with `refresh: true`: a branch that moved is not seen otherwise);
 *   2. offline (HF_HUB_OFFLINE, or `cacheOnly`) it stops there: "not in the cache", or none when optional;
 *   3. HEAD → commit, etag, size; the blob is downloaded unless blobs/<etag> exists (under
 *      blobs/<etag>.lock, into blobs/<etag>.incomplete, then renamed), linked into the snapshot,
 *      and refs/<revision> records the commit.
 *
 * Stage code:
 *
 *   const hub = yield* Hub
 *   const ckpt = yield* hub.fetchCheckpoint("EleutherAI/pythia-70m", "step1000", (p) => bar.update(p.bytes, p.total))
 *   // → { commit: "c1d2…", folder: "~/.cache/huggingface/hub/models--EleutherAI--pythia-70m/snapshots/c1d2…",
 *   //     files: [{ file: "config.json", … }, { file: "model.safetensors", path, blob, size, sha256 }] }
 *   const tok = yield* hub.fetchTokenizer("facebook/opt-125m", "main")   // vocab.json + merges.txt
 *   yield* hub.releaseFiles("EleutherAI/pythia-70m", ckpt.commit, ["model.safetensors"])   // disk budget
 *
 * Tests provide `hubLayer({ ...hubSettingsFromEnv({}), endpoint: mock.url, cacheDir: tmp })`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Effect, Layer, Option } from "effect"
import { firstLine } from "../messages.ts"
import * as cache from "./cache.ts"
import { whereText, downloadTo, fetchMetadata, HubError, hubSettingsFromEnv, storedToken, type HubSettings, type Progress, type Where } from "./client.ts"

export { HubError, hubSettingsFromEnv, storedToken, DEFAULT_RETRY, resolveUrl, type HubSettings, type Progress, type RetrySettings } from "./client.ts"
export { repoFolderName } from "./cache.ts"

/** A file in the cache. */
export interface HubFile {
  /** The path inside the repository (`config.json`, `sub/dir/f.json`). */
  readonly file: string
  /** snapshots/<commit>/<file> (a link to the blob). */
  readonly path: string
  /** The blob's real path. */
  readonly blob: string
  readonly commit: string
  readonly size: number
  /** The sha256 of an LFS file (its etag), checked when downloaded. */
  readonly sha256?: string
}

export interface FetchOptions {
  /** Called as bytes arrive (not for a file already cached); the caller derives bytes/s and ETA. */
  readonly onProgress?: (p: Progress) => void
  /** Serve from the cache only, as if HF_HUB_OFFLINE were set. */
  readonly cacheOnly?: boolean
  /** Ask the Hub even when the revision's file is cached (to see a branch that moved). */
  readonly refresh?: boolean
}

export interface Snapshot {
  readonly commit: string
  /** snapshots/<commit>: the folder a Hugging Face loader takes (`from_pretrained(folder)`). */
  readonly folder: string
  readonly files: ReadonlyArray<HubFile>
}

export interface HubService {
  readonly settings: HubSettings
  /** One file of `repo` at `revision` (a branch, tag or commit), downloaded unless cached. */
  readonly fetchFile: {
    (repo: string, revision: string, file: string, options: FetchOptions & { readonly optional: true }): Effect.Effect<Option.Option<HubFile>, HubError>
    (repo: string, revision: string, file: string, options?: FetchOptions & { readonly optional?: false }): Effect.Effect<HubFile, HubError>
  }
  /**
   * What a checkpoint needs: config.json, then model.safetensors, or else model.safetensors.index.json
   * and every shard it lists; a revision without safetensors (older repositories, pythia's step
   * branches) gives pytorch_model.bin, or else pytorch_model.bin.index.json and its shards
   * (transformers' order; lib/onnx/torch-zip.ts reads them without running their pickle). All files
   * come from the one commit the revision resolved to.
   */
  readonly fetchCheckpoint: (repo: string, revision: string, onProgress?: (p: Progress) => void) => Effect.Effect<Snapshot, HubError>
  /**
   * tokenizer.json, or GPT-2-style vocab.json + merges.txt (OPT ships only these); with
   * tokenizer_config.json and special_tokens_map.json when the repository has them.
   */
  readonly fetchTokenizer: (repo: string, revision: string) => Effect.Effect<Snapshot & { readonly kind: "tokenizer.json" | "vocab+merges" }, HubError>
  /** snapshots/<commit> when every one of `files` is in the cache for `revision`; never touches the network. */
  readonly cachedSnapshot: (repo: string, revision: string, files: ReadonlyArray<string>) => Effect.Effect<Option.Option<string>>
  /** Delete these files' snapshot links and their blobs, but no blob another snapshot still links to. Returns bytes freed. */
  readonly releaseFiles: (repo: string, commit: string, files: ReadonlyArray<string>) => Effect.Effect<number, HubError>
  /** Bytes under the repository's blobs/ (downloads in progress included). */
  readonly cacheBytes: (repo: string) => Effect.Effect<number, HubError>
}

export class Hub extends Context.Tag("trajectories/Hub")<Hub, HubService>() {}

/** Thrown inside the async code: a HubError as it is; anything else (the file system's) named by `w`. */
const toHubError =
  (w: Where) =>
  (e: unknown): HubError =>
    e instanceof HubError ? e : new HubError({ message: `${whereText(w)}: ${firstLine(e)}`, cause: e })

/**
 * An async operation as an Effect whose interruption aborts it and waits for it to settle, so its
 * own cleanup (closing the file, releasing the blob lock) is done when the interruption is.
 */
const abortable = <A>(f: (signal: AbortSignal) => Promise<A>, onError: (e: unknown) => HubError): Effect.Effect<A, HubError> =>
  Effect.suspend(() => {
    const ctrl = new AbortController()
    let running: Promise<A> | undefined
    return Effect.tryPromise({ try: () => (running = f(ctrl.signal)), catch: onError }).pipe(
      Effect.onInterrupt(() =>
        Effect.promise(async () => {
          ctrl.abort()
          await running?.catch(() => undefined)
        }),
      ),
    )
  })

const hubFile = (file: string, p: string, commit: string): HubFile => {
  const blob = fs.realpathSync(p)
  const etag = path.basename(blob)
  return { file, path: p, blob, commit, size: fs.statSync(blob).size, ...(cache.isSha256(etag) ? { sha256: etag } : {}) }
}

/** One file; `undefined` when optional and absent. */
const fetchOne = async (s: HubSettings, w: Where, options: FetchOptions & { readonly optional?: boolean }, signal: AbortSignal): Promise<HubFile | undefined> => {
  const bad = cache.badName(w.repo, w.revision, w.file)
  if (bad !== undefined) throw new HubError({ message: `${whereText(w)}: ${bad}` })
  const rc = cache.repoCache(s.cacheDir, w.repo)
  const known = cache.readRef(rc, w.revision)
  const offline = s.offline || options.cacheOnly === true
  if (known !== undefined && (options.refresh !== true || offline)) {
    const p = cache.cachedPath(rc, known, w.file)
    if (p !== undefined) return hubFile(w.file, p, known)
    if (options.optional === true && cache.knownMissing(rc, known, w.file)) return undefined
  }
  if (offline) {
    if (options.optional === true) return undefined
    const why = s.offline ? "HF_HUB_OFFLINE is set" : "only the cache was asked"
    throw new HubError({ message: `${whereText(w)}: not in the cache (${s.cacheDir}) and ${why}` })
  }
  const r = await fetchMetadata(s, w, signal)
  if (r._tag === "missing") {
    if (r.commit !== undefined && cache.isCommitHash(r.commit)) {
      cache.markMissing(rc, r.commit, w.file)
      cache.writeRef(rc, w.revision, r.commit)
    }
    if (options.optional === true) return undefined
    throw r.error
  }
  const { commit, etag } = r.meta
  if (!cache.isCommitHash(commit)) throw new HubError({ message: `${whereText(w)}: the Hub sent "${commit}" as the commit, not a 40-hex hash` })
  if (etag.includes("/") || etag.startsWith(".")) throw new HubError({ message: `${whereText(w)}: the Hub sent "${etag}" as the etag` })
  const done = () => {
    cache.writeRef(rc, w.revision, commit)
    return hubFile(w.file, cache.linkSnapshot(rc, commit, w.file, etag), commit)
  }
  const cached = cache.cachedPath(rc, commit, w.file) // the same commit: the same bytes
  if (cached !== undefined) {
    cache.writeRef(rc, w.revision, commit)
    return hubFile(w.file, cached, commit)
  }
  const blob = cache.blobPath(rc, etag)
  if (fs.existsSync(blob)) return done()
  cache.tagCacheDir(s.cacheDir)
  const lock = await cache.acquireBlobLock(rc, etag, { pollMs: s.lockPollMs, signal })
  try {
    if (!fs.existsSync(blob)) {
      const incomplete = `${blob}.incomplete`
      await downloadTo(s, w, r.meta, incomplete, {
        touch: lock.touch,
        signal,
        ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
      })
      fs.renameSync(incomplete, blob)
    }
    return done()
  } finally {
    lock.release()
  }
}

/** A HubService on these settings. */
export const makeHub = (settings: HubSettings): HubService => {
  const run = (w: Where, options: FetchOptions & { readonly optional?: boolean }) =>
    abortable((signal) => fetchOne(settings, w, options, signal), toHubError(w))

  const fetchFile = ((repo: string, revision: string, file: string, options: FetchOptions & { readonly optional?: boolean } = {}) => {
    const e = run({ repo, revision, file }, options)
    return options.optional === true ? Effect.map(e, Option.fromNullable) : Effect.map(e, (f) => f!)
  }) as HubService["fetchFile"]

  const required = (repo: string, revision: string, file: string, onProgress?: (p: Progress) => void) =>
    fetchFile(repo, revision, file, onProgress !== undefined ? { onProgress } : {})
  const optional = (repo: string, revision: string, file: string, onProgress?: (p: Progress) => void) =>
    fetchFile(repo, revision, file, { optional: true, ...(onProgress !== undefined ? { onProgress } : {}) })
  const folderOf = (repo: string, commit: string) => cache.snapshotDir(cache.repoCache(settings.cacheDir, repo), commit)

  const fetchCheckpoint: HubService["fetchCheckpoint"] = (repo, revision, onProgress) =>
    Effect.gen(function* () {
      const config = yield* required(repo, revision, "config.json")
      const commit = config.commit // every other file from the same commit, whatever the branch does meanwhile
      const files: HubFile[] = [config]
      // transformers' order: the single file first, then the index, safetensors before PyTorch's
      // pickle weights (a cached snapshot answers either without a request)
      const sharded = (indexName: string) =>
        Effect.gen(function* () {
          const index = yield* optional(repo, commit, indexName)
          if (Option.isNone(index)) return Option.none<Snapshot>()
          const shards = yield* Effect.try({
            try: () => shardsOf(fs.readFileSync(index.value.path, "utf8")),
            catch: (e) => new HubError({ message: `${whereText({ repo, revision, file: indexName })}: ${firstLine(e)}` }),
          })
          const out = [...files, index.value]
          for (const shard of shards) out.push(yield* required(repo, commit, shard, onProgress))
          return Option.some({ commit, folder: folderOf(repo, commit), files: out })
        })
      const single = (name: string) =>
        Effect.map(optional(repo, commit, name, onProgress), Option.map((f): Snapshot => ({ commit, folder: folderOf(repo, commit), files: [...files, f] })))
      for (const attempt of [single("model.safetensors"), sharded("model.safetensors.index.json"), single("pytorch_model.bin"), sharded("pytorch_model.bin.index.json")]) {
        const found = yield* attempt
        if (Option.isSome(found)) return found.value
      }
      return yield* new HubError({
        message: `${whereText({ repo, revision, file: "model.safetensors" })}: none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json ${settings.offline ? "is in the cache (HF_HUB_OFFLINE is set)" : "exists at this revision"}`,
      })
    })

  const fetchTokenizer: HubService["fetchTokenizer"] = (repo, revision) =>
    Effect.gen(function* () {
      const extras = (commit: string) =>
        Effect.map(
          Effect.all(["tokenizer_config.json", "special_tokens_map.json"].map((f) => optional(repo, commit, f))),
          (os) => os.flatMap((o) => (Option.isSome(o) ? [o.value] : [])),
        )
      const tj = yield* optional(repo, revision, "tokenizer.json")
      if (Option.isSome(tj)) {
        const commit = tj.value.commit
        return { commit, folder: folderOf(repo, commit), kind: "tokenizer.json" as const, files: [tj.value, ...(yield* extras(commit))] }
      }
      const vocab = yield* optional(repo, revision, "vocab.json")
      const commit = Option.isSome(vocab) ? vocab.value.commit : revision
      const merges = Option.isSome(vocab) ? yield* optional(repo, commit, "merges.txt") : Option.none()
      if (Option.isNone(vocab) || Option.isNone(merges))
        return yield* new HubError({
          message: `${whereText({ repo, revision, file: "tokenizer.json" })}: neither tokenizer.json nor vocab.json + merges.txt ${settings.offline ? "is in the cache (HF_HUB_OFFLINE is set)" : "exists at this revision"}`,
        })
      return { commit, folder: folderOf(repo, commit), kind: "vocab+merges" as const, files: [vocab.value, merges.value, ...(yield* extras(commit))] }
    })

  const cachedSnapshot: HubService["cachedSnapshot"] = (repo, revision, files) =>
    Effect.sync(() => {
      const rc = cache.repoCache(settings.cacheDir, repo)
      const commit = cache.readRef(rc, revision)
      if (commit === undefined) return Option.none()
      return files.every((f) => cache.cachedPath(rc, commit, f) !== undefined) ? Option.some(cache.snapshotDir(rc, commit)) : Option.none()
    })

  const releaseFiles: HubService["releaseFiles"] = (repo, commit, files) =>
    Effect.try({
      try: () => cache.releaseFiles(cache.repoCache(settings.cacheDir, repo), commit, files),
      catch: toHubError({ repo, revision: commit, file: files.join(", ") }),
    })

  const cacheBytes: HubService["cacheBytes"] = (repo) =>
    Effect.try({ try: () => cache.blobBytes(cache.repoCache(settings.cacheDir, repo)), catch: toHubError({ repo, revision: "*", file: "blobs/" }) })

  return { settings, fetchFile, fetchCheckpoint, fetchTokenizer, cachedSnapshot, releaseFiles, cacheBytes }
}

/** The shard files a model.safetensors.index.json (or pytorch_model.bin.index.json) lists (its weight_map values, each once, in order). */
export const shardsOf = (indexJson: string): string[] => {
  const map = (JSON.parse(indexJson) as { weight_map?: Record<string, unknown> }).weight_map
  if (typeof map !== "object" || map === null) throw new Error("no weight_map in the index")
  const out = [...new Set(Object.values(map))]
  const bad = out.find((f) => typeof f !== "string" || cache.badName("x/y", "main", f) !== undefined)
  if (bad !== undefined) throw new Error(`weight_map names ${JSON.stringify(bad)}, not a file of the repository`)
  return out as string[]
}

/** A Hub service on these settings (tests: the mock Hub's URL and a temporary cache). */
export const hubLayer = (settings: HubSettings): Layer.Layer<Hub> => Layer.succeed(Hub, makeHub(settings))

/**
 * The Hub service on this process's environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HF_HOME,
 * HF_HUB_CACHE), with the token of `huggingface-cli login` when HF_TOKEN is not set.
 */
export const HubLive: Layer.Layer<Hub> = Layer.sync(Hub, () => {
  const s = hubSettingsFromEnv(process.env)
  const token = s.token ?? storedToken(process.env)
  return makeHub(token !== undefined ? { ...s, token } : s)
})
