/**
 * Content digests of ONNX checkpoints for the identical-weights check.
 *
 * A checkpoint's digest is the sha256 of the lines
 *     onnx <sha256 of the .onnx file>
 *     <location> <sha256 of that external-data file>        (one per distinct location, sorted)
 * where the locations are those named by the model's external-data tensors (`external_data`
 * entries with key "location", relative to the model's folder). Two exports with the same graph
 * file but different weight files (`model.onnx` + `model.onnx_data` in per-step folders) differ;
 * the same bytes under two names are equal.
 *
 * File hashes are cached by absolute path + size + mtime in `<cacheDir>/checks/digests.json`, so
 * each file is read once across runs; a file that changes gets a new size or mtime and is hashed
 * again. Locations are read only when the header scan says the model has external data; the graph
 * is then decoded (it holds no weights, so it is small).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { createHash } from "node:crypto"
import { writeFileAtomicSync } from "../../pipeline/atomic.ts"
import { externalDataFiles, hfFolderFiles } from "../../lib/onnx/external.ts"
import { isWeightFile } from "../../lib/onnx/safetensors.ts"

interface Entry {
  readonly size: number
  readonly mtimeMs: number
  readonly sha256: string
}

const CHUNK = 4 << 20

/** sha256 (hex) of a file, read in chunks. */
export const sha256File = async (file: string): Promise<string> => {
  const h = createHash("sha256")
  const fd = await fs.promises.open(file, "r")
  try {
    const buf = Buffer.alloc(CHUNK)
    for (;;) {
      const { bytesRead } = await fd.read(buf, 0, CHUNK, null)
      if (bytesRead === 0) break
      h.update(buf.subarray(0, bytesRead))
    }
  } finally {
    await fd.close()
  }
  return h.digest("hex")
}

/** File hashes keyed by path + size + mtime, persisted as JSON. */
export class DigestCache {
  private readonly entries: Map<string, Entry>
  private readonly used = new Map<string, Entry>()
  private dirty = false
  /** Files actually read and hashed by this cache object (not found in the cache). */
  hashed = 0

  constructor(readonly file: string) {
    this.entries = new Map()
    try {
      const j = JSON.parse(fs.readFileSync(file, "utf8")) as { version?: number; files?: Record<string, Entry> }
      if (j.version === 1 && j.files) for (const [k, v] of Object.entries(j.files)) this.entries.set(k, v)
    } catch {
      // no cache yet, or unreadable: start empty
    }
  }

  async sha256(file: string): Promise<string> {
    const abs = path.resolve(file)
    const st = await fs.promises.stat(abs)
    const old = this.entries.get(abs)
    if (old && old.size === st.size && old.mtimeMs === st.mtimeMs) {
      this.used.set(abs, old)
      return old.sha256
    }
    const entry = { size: st.size, mtimeMs: st.mtimeMs, sha256: await sha256File(abs) }
    this.hashed++
    this.entries.set(abs, entry)
    this.used.set(abs, entry)
    this.dirty = true
    return entry.sha256
  }

  /** Write the entries used by this run (old ones are dropped), if anything changed. */
  save(): void {
    if (!this.dirty && this.used.size === this.entries.size) return
    writeFileAtomicSync(this.file, JSON.stringify({ version: 1, files: Object.fromEntries(this.used) }))
  }
}

export { externalDataFiles, externalLocations } from "../../lib/onnx/external.ts"

/**
 * The digest of a Hugging Face checkpoint's weights from each weight file's name in the folder
 * and sha256: `<file> <sha256>` lines, sorted. Hub checkpoints pass their LFS sha256s (recorded by
 * the download stage) without reading a byte; a local folder's files are hashed — the same weights
 * give the same digest either way.
 */
export const weightsDigest = (files: ReadonlyArray<{ readonly file: string; readonly sha256: string }>): string =>
  createHash("sha256")
    .update(files.map((f) => `${f.file} ${f.sha256}`).sort().join("\n"))
    .digest("hex")

/** The content digest of a checkpoint (see the module comment): an ONNX file with its external data, or a Hugging Face folder's weights. */
export const checkpointDigest = async (onnxFile: string, cache: DigestCache): Promise<string> => {
  if (fs.statSync(onnxFile).isDirectory()) {
    const weights = hfFolderFiles(onnxFile).filter(isWeightFile)
    return weightsDigest(await Promise.all(weights.map(async (f) => ({ file: path.basename(f), sha256: await cache.sha256(f) }))))
  }
  const lines = [`onnx ${await cache.sha256(onnxFile)}`]
  for (const { location, file } of externalDataFiles(onnxFile)) {
    lines.push(`${location} ${await cache.sha256(file)}`)
  }
  return createHash("sha256").update(lines.join("\n")).digest("hex")
}
