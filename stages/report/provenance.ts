/**
 * Where a report comes from: the tool and its dependencies (versions from their package.json), the
 * git commit of the checkout when there is one, the machine, the date, the configuration, and the
 * wall time of each stage whose units the report reads. `collectProvenance` reads the files and
 * the machine (the report's only reads outside the run folder); `provenanceHtml` is pure.
 *
 * The page is not compared byte for byte anywhere (tools/run-digest.ts and compare-runs digest
 * Parquet tables only, and skip report/), so the date and the machine may be in it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { escapeHtml } from "./render.ts"

/** The dependencies whose versions the page names. */
export const PROVENANCE_DEPENDENCIES = ["onnxruntime-node", "apache-arrow", "parquet-wasm", "effect", "tokenizers"] as const

export interface Provenance {
  readonly tool: { readonly name: string; readonly version: string }
  /** 40 hex digits; absent outside a git checkout (or where .git cannot be read). */
  readonly commit?: string
  /** Name → version; a dependency that is not installed is left out. */
  readonly dependencies: ReadonlyArray<{ readonly name: string; readonly version: string }>
  /** ISO 8601. */
  readonly date: string
  readonly machine: { readonly os: string; readonly cpus: number; readonly cpuModel: string; readonly memoryGb: number; readonly node: string }
  /** Per stage (in the order given): units the report read and their recorded wall time, seconds. */
  readonly stages: ReadonlyArray<{ readonly stage: string; readonly units: number; readonly seconds: number }>
  /** The resolved configuration, as JSON. */
  readonly config: string
}

/** The checkout this module is in (stages/report/ → the project root). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

const readJson = (file: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>
  } catch {
    return undefined
  }
}
const readText = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8").trim()
  } catch {
    return undefined
  }
}

/**
 * The commit HEAD names, read from `.git` without running git: a folder, or (a worktree) a file
 * "gitdir: <folder>"; HEAD is a commit or "ref: refs/heads/<branch>", looked up as a loose ref in
 * the git folder, then in its common folder (`commondir`, a worktree's main repository), then in
 * packed-refs. Undefined when any step fails.
 */
export const gitCommit = (root: string): string | undefined => {
  const dotGit = path.join(root, ".git")
  let gitDir = dotGit
  try {
    if (fs.statSync(dotGit).isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(fs.readFileSync(dotGit, "utf8"))
      if (!m) return undefined
      gitDir = path.resolve(root, m[1].trim())
    }
  } catch {
    return undefined
  }
  const head = readText(path.join(gitDir, "HEAD"))
  if (head === undefined) return undefined
  if (/^[0-9a-f]{40}$/.test(head)) return head
  const ref = /^ref:\s*(\S+)$/.exec(head)?.[1]
  if (ref === undefined) return undefined
  const common = readText(path.join(gitDir, "commondir"))
  const dirs = [gitDir, ...(common !== undefined ? [path.resolve(gitDir, common)] : [])]
  for (const d of dirs) {
    const loose = readText(path.join(d, ref))
    if (loose !== undefined && /^[0-9a-f]{40}$/.test(loose)) return loose
  }
  for (const d of dirs) {
    const packed = readText(path.join(d, "packed-refs"))
    const line = packed?.split("\n").find((l) => l.endsWith(` ${ref}`))
    if (line && /^[0-9a-f]{40} /.test(line)) return line.slice(0, 40)
  }
  return undefined
}

/** Read the provenance of a report now; `stages` from the manifest records of the units it read. */
export const collectProvenance = (
  config: unknown,
  stages: Provenance["stages"],
  root: string = ROOT,
  now: Date = new Date(),
): Provenance => {
  const pkg = readJson(path.join(root, "package.json"))
  const commit = gitCommit(root)
  const cpus = os.cpus()
  return {
    tool: { name: String(pkg?.name ?? "trajectories"), version: String(pkg?.version ?? "unknown") },
    ...(commit !== undefined ? { commit } : {}),
    dependencies: PROVENANCE_DEPENDENCIES.flatMap((name) => {
      const v = readJson(path.join(root, "node_modules", name, "package.json"))?.version
      return typeof v === "string" ? [{ name, version: v }] : []
    }),
    date: now.toISOString(),
    machine: {
      os: `${os.type()} ${os.release()} (${os.arch()})`,
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? "unknown",
      memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
    },
    stages,
    config: JSON.stringify(config, null, 2),
  }
}

const seconds = (s: number): string => (s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(2)} h`)

/** The page's provenance section (escaped; the configuration in a collapsed <details>). */
export const provenanceHtml = (p: Provenance): string => {
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`
  const m = p.machine
  return [
    `<section id="provenance"><h2>Provenance</h2>`,
    `<table class="data provenance"><tbody>`,
    row("tool", `${p.tool.name} ${p.tool.version}`),
    row("git commit", p.commit ?? "not a git checkout"),
    row("dependencies", p.dependencies.map((d) => `${d.name} ${d.version}`).join(", ")),
    row("report built", p.date),
    row("machine", `${m.os}; ${m.cpus} × ${m.cpuModel}; ${m.memoryGb} GiB memory; Node ${m.node}`),
    `</tbody></table>`,
    p.stages.length
      ? `<table class="data stage-times"><thead><tr><th>stage</th><th>units</th><th>wall time (last run of each unit)</th></tr></thead><tbody>\n` +
        p.stages.map((s) => `<tr><td>${escapeHtml(s.stage)}</td><td>${s.units}</td><td>${escapeHtml(seconds(s.seconds))}</td></tr>`).join("\n") +
        `\n</tbody></table>`
      : "",
    `<details><summary>Configuration (resolved)</summary><pre>${escapeHtml(p.config)}</pre></details>`,
    `</section>`,
  ]
    .filter((s) => s !== "")
    .join("\n")
}
