/**
 * The download stage's contract, and how every stage that reads a checkpoint finds it.
 *
 * One unit per Hub checkpoint (model × step), id `model=M/step=S`, writing
 * `downloads/model=M/step=S/files.parquet`: the repository, the revision asked for, the commit it
 * resolved to, and each file with its size and sha256 (LFS files). The files themselves live in the
 * Hugging Face cache (lib/hub), not in the run folder.
 *
 * A stage reading a checkpoint plans with `checkpointPlan` and opens it with `checkpointPath`:
 *
 *   const { inputs, files } = checkpointPlan(model, cp)     // local: files = the checkpoint's files; Hub: inputs = [its download unit]
 *   const where = yield* checkpointPath(ctx, model, cp)      // local: cp.path; Hub: the snapshot folder in the cache
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import type { Checkpoint, Model } from "../../pipeline/config.ts"
import { UnitError, type TableFile, type UnitContext, type UnitInput, type UnitRef } from "../../pipeline/stage.ts"
import { col, defineTable, type TableRow } from "../../lib/tables.ts"
import { checkpointFiles } from "../../lib/onnx/external.ts"
import { Hub, repoFolderName, type HubService } from "../../lib/hub/index.ts"

export const DOWNLOAD = "download"

export const downloadUnit = (model: string, step: number): UnitRef => ({ stage: DOWNLOAD, id: `model=${model}/step=${step}` })

/**
 * `downloads/model=M/step=S/files.parquet`: one row per file of the checkpoint.
 *   file    its path in the repository (config.json, model.safetensors, …)
 *   bytes   its size
 *   sha256  the LFS sha256 (weights), or null (small files, whose etag is a git blob id)
 */
export const DownloadFiles = defineTable("download_files", {
  repo: col.utf8(),
  revision: col.utf8(),
  commit: col.utf8(),
  file: col.utf8(),
  bytes: col.float64(),
  sha256: col.utf8({ nullable: true }),
})
export type DownloadFileRow = TableRow<typeof DownloadFiles>

export const downloadFile = (model: string, step: number): TableFile => ({
  path: `downloads/model=${model}/step=${step}/files.parquet`,
  table: DownloadFiles,
})

/** What a unit reading this checkpoint depends on: its files (local) or its download unit (Hub). */
export const checkpointPlan = (model: Pick<Model, "name">, cp: Checkpoint): { inputs: UnitRef[]; files: string[] } =>
  cp.hub !== undefined ? { inputs: [downloadUnit(model.name, cp.step)], files: [] } : { inputs: [], files: checkpointFiles(cp.path) }

/** `<cache>/models--org--name/snapshots/<commit>`: where a downloaded commit's files are linked. */
export const snapshotFolder = (hub: HubService, repo: string, commit: string): string =>
  path.join(hub.settings.cacheDir, repoFolderName(repo), "snapshots", commit)

/** Where a download's files are in the cache the Hub service uses now, and the first of them that is gone (if any). */
export const inCache = (hub: HubService, rows: ReadonlyArray<DownloadFileRow>): { folder: string; missing?: DownloadFileRow } => {
  const folder = snapshotFolder(hub, rows[0].repo, rows[0].commit)
  const missing = rows.find((r) => !fs.existsSync(path.join(folder, r.file)))
  return missing === undefined ? { folder } : { folder, missing }
}

/** The rows a done download unit recorded. */
export const readDownload = (input: UnitInput, model: string, step: number): Effect.Effect<DownloadFileRow[], UnitError> =>
  Effect.map(input.read(downloadFile(model, step)), (t) => DownloadFiles.toRows(t))

/**
 * Where a checkpoint is on this machine: an ONNX file or a Hugging Face folder. A Hub checkpoint's
 * snapshot folder is found from its download unit's record (the commit), in the cache the Hub service
 * uses now; every file must still be there.
 */
export const checkpointPath = (ctx: UnitContext, model: Pick<Model, "name">, cp: Checkpoint): Effect.Effect<string, UnitError, Hub> =>
  cp.hub === undefined
    ? Effect.succeed(cp.path)
    : Effect.gen(function* () {
        const rows = yield* readDownload(ctx.input(downloadUnit(model.name, cp.step)), model.name, cp.step)
        if (rows.length === 0) return yield* Effect.fail(new UnitError({ message: `${model.name} step ${cp.step}: its download recorded no files` }))
        const { folder, missing } = inCache(yield* Hub, rows)
        if (missing) {
          return yield* Effect.fail(
            new UnitError({
              message: `${model.name} step ${cp.step}: ${missing.file} of ${rows[0].repo}@${rows[0].revision} is no longer in the Hugging Face cache (${folder}); run again to download it`,
            }),
          )
        }
        return folder
      })
