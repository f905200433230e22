/**
 * The Hub's HTTP side: settings from the environment, file metadata (HEAD), blob downloads that
 * resume, retries with backoff, and the one-line errors. Plain async functions over global fetch;
 * index.ts turns them into the Hub service's Effects (an interrupted Effect aborts the request).
 *
 * What one file costs, for `EleutherAI/pythia-70m` at revision `step1000`, file `model.safetensors`:
 *
 *   HEAD https://huggingface.co/EleutherAI/pythia-70m/resolve/step1000/model.safetensors   (no redirects followed,
 *        except relative ones: a renamed repo)
 *     ← 302 Location: https://cdn-lfs…/…   X-Repo-Commit: c1d2…   X-Linked-Etag: "4a2e…"   X-Linked-Size: 166049099
 *   GET  https://cdn-lfs…/…   (Range: bytes=N- when blobs/4a2e….incomplete already holds N bytes; no Authorization
 *        when the host differs from the endpoint's)
 *     ← 206 (appended) | 200 (the server ignored Range: start over) | 416 (complete when N = size, else start over)
 *   then sha256(bytes) = 4a2e… (the etag of an LFS file is its sha256), or HubError naming what was expected and got.
 *
 * Retries: 429, 5xx and network errors (refused, reset, cut mid-body) are retried up to `retry.attempts`
 * times without progress, waiting `retry.baseMs`·2^k (at most `retry.maxMs`), or what `Retry-After` says.
 * A download retried after a cut resumes from the bytes it has.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createHash, type Hash } from "node:crypto"
import { Data } from "effect"
import { firstLine } from "../messages.ts"
import { abortableSleep } from "./cache.ts"

/** A Hub operation that failed; the message is one line and names repo, revision and file. */
export class HubError extends Data.TaggedError("HubError")<{
  readonly message: string
  /** The HTTP status that caused it, when there was one. */
  readonly status?: number
  /** The Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), when sent. */
  readonly code?: string
  readonly cause?: unknown
}> {}

export interface RetrySettings {
  /** Attempts without progress before giving up (default 5). */
  readonly attempts: number
  /** First wait in ms, doubled each time (default 1000). */
  readonly baseMs: number
  /** Longest wait in ms (default 16000); a Retry-After is honoured as it is. */
  readonly maxMs: number
}

export interface HubSettings {
  /** `HF_ENDPOINT`, no trailing slash (default https://huggingface.co). */
  readonly endpoint: string
  /** `HF_TOKEN`, sent as `Authorization: Bearer …` to the endpoint's host. */
  readonly token?: string
  /** `HF_HUB_OFFLINE`: never touch the network, serve from the cache only. */
  readonly offline: boolean
  /** `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else ~/.cache/huggingface/hub. */
  readonly cacheDir: string
  readonly retry: RetrySettings
  /** Timeout of a metadata request in ms (default 10000, huggingface_hub's HF_HUB_ETAG_TIMEOUT). */
  readonly metadataTimeoutMs: number
  /** How often a process waiting for another's download of the same blob looks again (default 200 ms). */
  readonly lockPollMs: number
}

export const DEFAULT_RETRY: RetrySettings = { attempts: 5, baseMs: 1000, maxMs: 16_000 }

const TRUE = new Set(["1", "ON", "YES", "TRUE"])

/**
 * Settings from environment variables, the way huggingface_hub reads them (pure: `env` and `home`
 * are all it looks at).
 *
 *   hubSettingsFromEnv({ HF_HOME: "/data/hf", HF_HUB_OFFLINE: "1" }, "/home/me")
 *   // → { endpoint: "https://huggingface.co", offline: true, cacheDir: "/data/hf/hub", retry: {…}, … }
 */
export const hubSettingsFromEnv = (env: Readonly<Record<string, string | undefined>>, home: string = env.HOME ?? os.homedir()): HubSettings => {
  const nonEmpty = (k: string) => (env[k] !== undefined && env[k] !== "" ? env[k] : undefined)
  const hfHome = nonEmpty("HF_HOME") ?? path.join(nonEmpty("XDG_CACHE_HOME") ?? path.join(home, ".cache"), "huggingface")
  const token = nonEmpty("HF_TOKEN") ?? nonEmpty("HUGGING_FACE_HUB_TOKEN")
  return {
    endpoint: (nonEmpty("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, ""),
    ...(token !== undefined ? { token } : {}),
    offline: TRUE.has((nonEmpty("HF_HUB_OFFLINE") ?? nonEmpty("TRANSFORMERS_OFFLINE") ?? "").toUpperCase()),
    cacheDir: nonEmpty("HF_HUB_CACHE") ?? path.join(hfHome, "hub"),
    retry: DEFAULT_RETRY,
    metadataTimeoutMs: 10_000,
    lockPollMs: 200,
  }
}

/**
 * The token `huggingface-cli login` (`hf auth login`) stored, for when HF_TOKEN is not set:
 * `$HF_TOKEN_PATH`, else `$HF_HOME/token` (HF_HOME as in hubSettingsFromEnv). Reads one small file.
 */
export const storedToken = (env: Readonly<Record<string, string | undefined>>, home: string = env.HOME ?? os.homedir()): string | undefined => {
  const hfHome = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(home, ".cache"), "huggingface")
  try {
    const t = fs.readFileSync(env.HF_TOKEN_PATH || path.join(hfHome, "token"), "utf8").trim()
    return t === "" ? undefined : t
  } catch {
    return undefined
  }
}

/** What a message names: `EleutherAI/pythia-70m (revision step1000) config.json`. */
export interface Where {
  readonly repo: string
  readonly revision: string
  readonly file: string
}

export const whereText = (w: Where): string => `Hub ${w.repo} (revision ${w.revision}) ${w.file}`

/** `{endpoint}/{repo}/resolve/{revision}/{file}`, the revision encoded as one segment. */
export const resolveUrl = (endpoint: string, w: Where): string =>
  `${endpoint}/${w.repo}/resolve/${encodeURIComponent(w.revision)}/${w.file.split("/").map(encodeURIComponent).join("/")}`

/** A failure worth another attempt (429, 5xx, a network error). */
class Retryable extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

/** `Retry-After: 3` or an HTTP date, in ms. */
const retryAfterMs = (h: Headers): number | undefined => {
  const v = h.get("retry-after")
  if (v === null) return undefined
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Number(v) * 1000
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now())
}

/** The network error under fetch's "fetch failed" / "terminated": `ECONNRESET`, `other side closed`, … */
const networkReason = (e: unknown): string => {
  const c = (e as { cause?: { code?: string; message?: string } }).cause
  return c?.code ?? (c?.message !== undefined ? firstLine(c) : firstLine(e))
}

const isAbort = (e: unknown, signal?: AbortSignal) => signal?.aborted === true || (e instanceof Error && e.name === "AbortError")

/** The HubError (or Retryable) of a non-2xx, non-3xx response. */
const statusFailure = (res: Response, w: Where, s: HubSettings, tokenSent: boolean): HubError | Retryable => {
  const status = res.status
  const code = res.headers.get("x-error-code") ?? undefined
  const hubMessage = res.headers.get("x-error-message") ?? undefined
  const at = whereText(w)
  const repoUrl = `${s.endpoint}/${w.repo}`
  if (status === 429 || status >= 500) return new Retryable(`HTTP ${status}`, status, retryAfterMs(res.headers))
  const fail = (message: string) => new HubError({ message: `${at}: ${message}`, status, ...(code !== undefined ? { code } : {}) })
  if (code === "GatedRepo")
    return fail(
      tokenSent
        ? `gated repository: accept the licence at ${repoUrl} with the account of HF_TOKEN`
        : `gated repository: accept the licence at ${repoUrl}, then set HF_TOKEN to a token of that account`,
    )
  if (status === 401) {
    if (!tokenSent) return fail(`needs a token (private, gated or missing repository): set HF_TOKEN (HTTP 401)`)
    return fail(`token refused (HF_TOKEN)${hubMessage !== undefined ? `: ${hubMessage}` : ""} (HTTP 401)`)
  }
  if (status === 403) return fail(`access refused (HTTP 403): if the repository is gated, accept the licence at ${repoUrl}`)
  if (status === 404) {
    if (code === "RepoNotFound") return fail(`repository not found on ${s.endpoint} (HTTP 404 RepoNotFound)`)
    if (code === "RevisionNotFound") return fail(`revision not found in the repository (HTTP 404 RevisionNotFound)`)
    if (code === "EntryNotFound") return fail(`file not found at this revision (HTTP 404 EntryNotFound)`)
    return fail(`not found (HTTP 404)`)
  }
  return fail(`HTTP ${status}${hubMessage !== undefined ? `: ${hubMessage}` : ""}`)
}

/**
 * Run `attempt` until it succeeds, retrying Retryable failures with backoff. `progress()` (bytes
 * so far) resets the count of attempts when an attempt moved forward, as huggingface_hub does.
 */
const withRetries = async <A>(
  s: HubSettings,
  w: Where,
  signal: AbortSignal | undefined,
  attempt: () => Promise<A>,
  progress: () => number = () => 0,
): Promise<A> => {
  let failures = 0
  let wait = s.retry.baseMs
  for (;;) {
    const before = progress()
    try {
      return await attempt()
    } catch (e) {
      if (!(e instanceof Retryable) || isAbort(e, signal)) throw e
      if (progress() > before) {
        failures = 0
        wait = s.retry.baseMs
      }
      failures++
      if (failures >= s.retry.attempts)
        throw new HubError({
          message: `${whereText(w)}: ${e.message}, ${failures} attempts in a row`,
          ...(e.status !== undefined ? { status: e.status } : {}),
        })
      await abortableSleep(e.retryAfterMs ?? wait, signal)
      wait = Math.min(s.retry.maxMs, wait * 2)
    }
  }
}

const fetchOrRetry = async (url: string, init: RequestInit, signal: AbortSignal | undefined): Promise<Response> => {
  try {
    return await fetch(url, init)
  } catch (e) {
    if (isAbort(e, signal)) throw e
    throw new Retryable(`network error (${networkReason(e)}) on ${new URL(url).host}`)
  }
}

const authHeaders = (s: HubSettings): Record<string, string> => (s.token !== undefined ? { authorization: `Bearer ${s.token}` } : {})

/** What the Hub says of a file at a revision. */
export interface FileMetadata {
  readonly commit: string
  /** Normalised (no `W/`, no quotes): the blob's name; the sha256 of an LFS file. */
  readonly etag: string
  readonly size: number
  /** Where to GET the bytes (the CDN for LFS files). */
  readonly location: string
}

export type MetadataResult =
  | { readonly _tag: "found"; readonly meta: FileMetadata }
  /** 404 EntryNotFound (or a 404 without a code): the file is not at this revision. */
  | { readonly _tag: "missing"; readonly commit?: string; readonly error: HubError }

const normaliseEtag = (e: string | null): string | undefined => {
  if (e === null) return undefined
  const v = e.replace(/^W\//, "").replace(/^"|"$/g, "")
  return v === "" ? undefined : v
}

/** HEAD the file's resolve URL (relative redirects followed, others not), with retries. */
export const fetchMetadata = (s: HubSettings, w: Where, signal?: AbortSignal): Promise<MetadataResult> =>
  withRetries(s, w, signal, async () => {
    let url = resolveUrl(s.endpoint, w)
    for (let hops = 0; ; hops++) {
      const timeout = AbortSignal.timeout(s.metadataTimeoutMs)
      const res = await fetchOrRetry(
        url,
        {
          method: "HEAD",
          redirect: "manual",
          headers: { ...authHeaders(s), "accept-encoding": "identity", "user-agent": "trajectories (hub client)" },
          signal: signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout,
        },
        signal,
      )
      const h = res.headers
      const location = h.get("location")
      const isRedirect = res.status >= 300 && res.status < 400
      if (isRedirect && location !== null && !/^([a-z][a-z0-9+.-]*:)?\/\//i.test(location)) {
        if (hops >= 10) throw new HubError({ message: `${whereText(w)}: too many redirects`, status: res.status })
        url = new URL(location, url).toString() // a renamed repository: follow
        continue
      }
      if (!res.ok && !isRedirect) {
        const f = statusFailure(res, w, s, s.token !== undefined)
        if (f instanceof HubError && f.status === 404 && (f.code === "EntryNotFound" || f.code === undefined)) {
          const commit = h.get("x-repo-commit") ?? undefined
          return { _tag: "missing", ...(commit !== undefined ? { commit } : {}), error: f } as const
        }
        throw f
      }
      const commit = h.get("x-repo-commit")
      const etag = normaliseEtag(h.get("x-linked-etag") ?? h.get("etag"))
      const sizeText = h.get("x-linked-size") ?? (isRedirect ? null : h.get("content-length"))
      const missing = commit === null ? "X-Repo-Commit" : etag === undefined ? "ETag" : sizeText === null ? "a size (X-Linked-Size or Content-Length)" : undefined
      if (missing !== undefined)
        throw new HubError({ message: `${whereText(w)}: ${new URL(url).host} sent no ${missing}; is HF_ENDPOINT (${s.endpoint}) a Hugging Face Hub?` })
      return {
        _tag: "found",
        meta: { commit: commit!, etag: etag!, size: Number(sizeText), location: isRedirect && location !== null ? new URL(location, url).toString() : url },
      } as const
    }
  })

export interface Progress {
  readonly file: string
  /** Bytes of the file on disk so far (a resumed download starts above 0). */
  readonly bytes: number
  readonly total: number
}

/** Bytes of a file, 0 when there is none. */
const sizeOf = (p: string): number => {
  try {
    return fs.statSync(p).size
  } catch {
    return 0
  }
}

/** sha256 of a file's first `n` bytes (to carry on hashing a resumed download). */
const hashPrefix = async (p: string, n: number): Promise<Hash> => {
  const h = createHash("sha256")
  if (n === 0) return h
  for await (const chunk of fs.createReadStream(p, { start: 0, end: n - 1 })) h.update(chunk as Buffer)
  return h
}

/**
 * Download the bytes of `meta` into `incomplete` (appending to what it holds, with Range), with
 * retries, and check them: the size always, the sha256 when the etag is one. On a wrong sha256 or
 * size the file is removed and a HubError names both values. Returns the sha256 (hex).
 */
export const downloadTo = async (
  s: HubSettings,
  w: Where,
  meta: FileMetadata,
  incomplete: string,
  options: { readonly onProgress?: (p: Progress) => void; readonly touch?: () => void; readonly signal?: AbortSignal } = {},
): Promise<string> => {
  const { signal } = options
  const sameHost = new URL(meta.location).host === new URL(s.endpoint).host
  let hash: Hash | undefined
  let hashed = 0
  const restart = () => {
    fs.truncateSync(incomplete, 0)
    hash = undefined
  }
  fs.closeSync(fs.openSync(incomplete, "a"))
  await withRetries(
    s,
    w,
    signal,
    async () => {
      let have = sizeOf(incomplete)
      if (have > meta.size) {
        restart()
        have = 0
      }
      if (have === meta.size) return // complete already (a process killed before the rename)
      const res = await fetchOrRetry(
        meta.location,
        {
          headers: {
            ...(sameHost ? authHeaders(s) : {}),
            ...(have > 0 ? { range: `bytes=${have}-` } : {}),
            // the bytes as stored: a compressed reply has another length and cannot be resumed by offset
            "accept-encoding": "identity",
            "user-agent": "trajectories (hub client)",
          },
          redirect: "follow",
          ...(signal !== undefined ? { signal } : {}),
        },
        signal,
      )
      if (res.status === 416) {
        await res.body?.cancel()
        restart()
        throw new Retryable("HTTP 416 for a partial download (started over)")
      }
      if (!res.ok) {
        await res.body?.cancel()
        throw statusFailure(res, w, s, sameHost && s.token !== undefined)
      }
      const range = res.headers.get("content-range")
      if (have > 0 && (res.status !== 206 || range === null || !range.startsWith(`bytes ${have}-`))) {
        restart() // the server ignored Range (200) or answered another range: start over
        have = 0
      }
      if (hash === undefined || hashed !== have) {
        hash = await hashPrefix(incomplete, have)
        hashed = have
      }
      const fh = await fs.promises.open(incomplete, "r+")
      try {
        const reader = res.body!.getReader()
        for (;;) {
          let chunk: Awaited<ReturnType<typeof reader.read>>
          try {
            chunk = await reader.read()
          } catch (e) {
            if (isAbort(e, signal)) throw e
            throw new Retryable(`connection lost after ${have} of ${meta.size} bytes (${networkReason(e)})`)
          }
          if (chunk.done) break
          const bytes = chunk.value
          if (have + bytes.byteLength > meta.size) {
            await reader.cancel().catch(() => undefined)
            restart()
            throw new Retryable(`the server sent more than the ${meta.size} bytes announced (started over)`)
          }
          let off = 0
          while (off < bytes.byteLength) off += (await fh.write(bytes, off, bytes.byteLength - off, have + off)).bytesWritten
          hash.update(bytes)
          have += bytes.byteLength
          hashed = have
          options.touch?.()
          options.onProgress?.({ file: w.file, bytes: have, total: meta.size })
        }
      } finally {
        await fh.close()
      }
      if (have < meta.size) throw new Retryable(`connection closed after ${have} of ${meta.size} bytes`)
    },
    () => sizeOf(incomplete),
  )
  if (hash === undefined || hashed !== meta.size) hash = await hashPrefix(incomplete, meta.size)
  const got = hash.digest("hex")
  if (/^[0-9a-f]{64}$/.test(meta.etag) && got !== meta.etag) {
    fs.rmSync(incomplete, { force: true })
    throw new HubError({ message: `${whereText(w)}: corrupt download, sha256 expected ${meta.etag}, got ${got} (removed; run again to download it anew)` })
  }
  return got
}
