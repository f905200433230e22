/**
 * The download stage: one unit per Hub checkpoint (model × step) fetches the revision's
 * config.json and safetensors weights (or, without them, pytorch_model.bin) into the Hugging Face
 * cache (lib/hub: resumed, verified, shared with Python's huggingface_hub) and records them in
 * `downloads/model=M/step=S/files.parquet`.
 *
 * Its units run in the "io" lane, beside the main lane: the next checkpoint downloads while the
 * one before it is scored. With `download.keep: false` a checkpoint's weights are deleted from the
 * cache once every unit reading it is done (`release`), and `download.max_gb` holds a download back
 * while the weights this run holds would pass the budget (`admit`); a later run that needs a
 * released checkpoint again downloads it again (`present`), and, the files being the same, nothing
 * downstream re-runs (the runner's early cutoff).
 *
 * Worked example: model pythia-70m, hub EleutherAI/pythia-70m, revision "step{step}", steps
 * [1000] plans unit `model=pythia-70m/step=1000` with params { repo, revision: "step1000" }; it
 * writes rows (config.json, 570 bytes, null) and (model.safetensors, 166 MB, "a3f…") with the
 * commit the branch pointed at.
 */
import { Effect } from "effect"
import { defineStage, UnitError, type UnitContext, type UnitPlan } from "../../pipeline/stage.ts"
import type { Config } from "../../pipeline/config.ts"
import { Hub } from "../../lib/hub/index.ts"
import { isWeightFile } from "../../lib/onnx/safetensors.ts"
import { DOWNLOAD, DownloadFiles, downloadFile, downloadUnit, inCache, readDownload } from "./contract.ts"

export interface DownloadParams {
  readonly model: string
  readonly step: number
  readonly repo: string
  readonly revision: string
}

/** Bytes of weights downloaded in this run and not released, by run folder (the budget of `max_gb`), as the scheduling process counts them. */
const held = new Map<string, Map<string, number>>()
const heldIn = (config: Config) => {
  let m = held.get(config.runDir)
  if (m === undefined) held.set(config.runDir, (m = new Map()))
  return m
}
/** The size of a model's last download: what the next one of that model is expected to need. */
const lastSize = new Map<string, number>()

const run = Effect.fn("stage.download")(function* (unit: UnitPlan<DownloadParams>, ctx: UnitContext) {
  const { model, step, repo, revision } = unit.params
  const hub = yield* Hub
  let current = ""
  const lastBytes = new Map<string, number>()
  const snapshot = yield* hub
    .fetchCheckpoint(repo, revision, (p) => {
      if (p.file !== current) {
        current = p.file
        ctx.progress.start(p.total, "bytes")
      }
      ctx.progress.advance(p.bytes - (lastBytes.get(p.file) ?? 0))
      lastBytes.set(p.file, p.bytes)
    })
    .pipe(Effect.mapError((e) => new UnitError({ message: `${model} step ${step}: ${e.message}`, cause: e })))
  const rows = snapshot.files.map((f) => ({ repo, revision, commit: snapshot.commit, file: f.file, bytes: f.size, sha256: f.sha256 ?? null }))
  yield* ctx.writeParquet(downloadFile(model, step), DownloadFiles.fromRows(rows))
})

export const downloadStage = defineStage<DownloadParams, Hub>({
  name: DOWNLOAD,
  version: 1,
  after: [],
  lane: "io",
  describe: "fetch Hub checkpoints (config.json + safetensors or pytorch_model.bin) into the Hugging Face cache; one unit per model × step",
  plan: (config) =>
    config.models.flatMap((m) =>
      m.checkpoints.flatMap((cp) =>
        cp.hub === undefined
          ? []
          : [{ id: downloadUnit(m.name, cp.step).id, params: { model: m.name, step: cp.step, repo: cp.hub.repo, revision: cp.hub.revision }, inputs: [], files: [] }],
      ),
    ),
  run,
  present: (unit, own) =>
    Effect.gen(function* () {
      const rows = yield* readDownload(own, unit.params.model, unit.params.step)
      return rows.length > 0 && inCache(yield* Hub, rows).missing === undefined
    }).pipe(Effect.orElseSucceed(() => false)),
  // Counted where the run is scheduled (the download itself may have run on a cluster runner).
  recorded: (unit, own, config) =>
    Effect.gen(function* () {
      const rows = yield* readDownload(own, unit.params.model, unit.params.step)
      const weights = rows.filter((r) => isWeightFile(r.file)).reduce((a, r) => a + r.bytes, 0)
      if (!config.download.keep) heldIn(config).set(unit.id, weights)
      lastSize.set(unit.params.model, weights)
    }).pipe(Effect.ignore),
  release: (unit, own, config) =>
    Effect.gen(function* () {
      if (config.download.keep) return
      const rows = yield* readDownload(own, unit.params.model, unit.params.step)
      if (rows.length === 0) return
      const hub = yield* Hub
      yield* hub.releaseFiles(rows[0].repo, rows[0].commit, rows.filter((r) => isWeightFile(r.file)).map((r) => r.file))
      heldIn(config).delete(unit.id)
    }).pipe(Effect.ignore),
  admit: (unit, config) =>
    Effect.sync(() => {
      const budget = config.download.max_gb
      if (config.download.keep || budget === undefined) return true
      const now = [...heldIn(config).values()].reduce((a, b) => a + b, 0)
      return now === 0 || now + (lastSize.get(unit.params.model) ?? 0) <= budget * 1e9
    }),
})
