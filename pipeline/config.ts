/**
 * Loading a run config: YAML → Effect Schema decode → paths resolved against the config's folder,
 * checkpoint patterns globbed and parsed, dataset globs expanded.
 *
 * Every error is a ConfigError whose message names the file, the line and the document path:
 *   configs/demo.yaml:14: models[1].checkpoints: no file matches "zoo/m/step-{step}.onnx"
 * Nothing is written to disk here.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Either, ParseResult, Schema } from "effect"
import { escapePath, globSync } from "tinyglobby"
import * as YAML from "yaml"
import { Config as ConfigSchema, Mauve as MauveSchema, type Analysis, type DatasetFormat, type Decoding, type Download, type Scoring, type Sequences } from "../schemas/config.ts"

export type { Analysis, Checks, DatasetFormat, Download, Scoring, Sequences, XAxis } from "../schemas/config.ts"
import { ConfigError, displayPath, firstLine } from "./errors.ts"
import { tokenizerFiles } from "../lib/tokenizer-folder.ts"
import { bigbenchTask } from "../lib/bigbench-subtasks.ts"

/**
 * One checkpoint of a model. Local: `path` is an ONNX file or a Hugging Face folder (config.json +
 * safetensors). Hub: `hub` names the repository and revision; its files are fetched by the download
 * stage (stages/download/contract.ts checkpointPath says where they are at run time).
 */
export type Checkpoint = LocalCheckpoint | HubCheckpoint

export interface LocalCheckpoint {
  readonly step: number
  /** Absolute path of the ONNX file or Hugging Face folder. */
  readonly path: string
  readonly hub?: undefined
}

export interface HubCheckpoint {
  readonly step: number
  readonly hub: { readonly repo: string; readonly revision: string }
  readonly path?: undefined
}

export interface Model {
  readonly name: string
  readonly params: number
  readonly tokens_per_step: number
  /** Sorted by step, steps unique. */
  readonly checkpoints: ReadonlyArray<Checkpoint>
}

/** The tokenizer: a local file or folder, or a Hub revision (fetched when the run starts: pipeline/hub-inputs.ts). */
export type TokenizerSource = { readonly path: string; readonly hub?: undefined } | { readonly hub: { readonly repo: string; readonly revision: string }; readonly path?: undefined }

export interface Dataset {
  readonly name: string
  readonly format: DatasetFormat
  /** Absolute paths, sorted, excludes removed. */
  readonly files: ReadonlyArray<string>
  readonly max_tokens?: number
  readonly text_field: string
  readonly id_field: string
}

/**
 * A task to score. A `tasks[]` entry that names a BIG-bench parent task (lib/bigbench-subtasks.ts)
 * becomes one Task per subtask, in folder-name order, named `<entry name>.<subtask folder>` (e.g.
 * `conceptual_combinations.contradictions`: BIG-bench writes `task:subtask`, but a name must be
 * usable as a folder name), with the entry's shots, seed and truncate, and the entry's max_examples
 * split over them as BIG-bench splits it: N // k each of the k subtasks (N ≥ k is required).
 */
export interface Task {
  readonly name: string
  readonly format: "bigbench" | "pairs" | "jsonl"
  /** Absolute path of the task file (a BIG-bench task folder is resolved to its task.json). */
  readonly path: string
  readonly shots: number
  readonly max_examples?: number
  readonly seed: number
  /** A prompt longer than the context: cut from the left, skip the example, or fail. */
  readonly truncate: "left" | "skip" | "error"
  /** Index of the `tasks[]` entry it comes from (the subtasks of a parent share it), for messages. */
  readonly entry: number
  /** A subtask's parent task: the entry's name (parentTasks lists a parent's subtasks). */
  readonly parent?: string
}

/** The BIG-bench parent tasks of the config, in config order, each with its subtasks' task names in order. */
export const parentTasks = (config: Pick<Config, "tasks">): Array<{ readonly name: string; readonly subtasks: ReadonlyArray<string> }> => {
  const out: Array<{ name: string; subtasks: string[] }> = []
  for (const t of config.tasks) {
    if (t.parent === undefined) continue
    const last = out[out.length - 1]
    if (last?.name === t.parent) last.subtasks.push(t.name)
    else out.push({ name: t.parent, subtasks: [t.name] })
  }
  return out
}

/**
 * `analysis` with every derived default resolved (here, and nowhere else):
 *   valid_dataset        default: the first dataset
 *   reference_model      default: the second-smallest model by params (the only one when there is one)
 *   reference_threshold  default: the configured threshold equal to 0.1 (within 1e-9), else the smallest
 */
export interface ResolvedAnalysis extends Omit<Analysis, "valid_dataset" | "reference_model" | "reference_threshold"> {
  readonly valid_dataset: string
  readonly reference_model: string
  readonly reference_threshold: number
}

/** The `sequences` section resolved against the models and datasets (defaults of schemas/config.ts applied). */
export interface ResolvedSequences {
  readonly section: Sequences
  /** `sequences.small` (default: the smallest model) at `sequences.step` (default: its last checkpoint). */
  readonly small: { readonly model: Model; readonly checkpoint: Checkpoint }
  /** `sequences.large` (default: the largest model) at `sequences.step` (default: its last checkpoint). */
  readonly large: { readonly model: Model; readonly checkpoint: Checkpoint }
  /** = analysis.valid_dataset: its checkpoints.parquet perplexity is valid_ppl, and its windows are perturbed. */
  readonly validDataset: string
  /** Where prompts come from: texts, or a dataset's windows (default: 10 prompts of 8 tokens from the validation dataset). */
  readonly prompts: { readonly texts: ReadonlyArray<string> } | { readonly dataset: string; readonly n: number; readonly tokens: number }
  /** `sequences.decoding` as a list without repeats, in config order. */
  readonly decodings: ReadonlyArray<Decoding>
  /** MAUVE's settings (absent: off — `mauve: false`, or text prompts without a `mauve` section). */
  readonly mauve?: {
    /** The features' checkpoint: `features_model` (default: the largest by params) at `features_step` (default: its last). */
    readonly model: Model
    readonly checkpoint: Checkpoint
    readonly scaling: number
    readonly buckets: number | "auto"
    readonly seed: number
  }
}

/** Two fractions are the same threshold (config values go through decimal text). */
export const sameFraction = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9

export interface Config {
  /** Absolute path of the YAML file. */
  readonly file: string
  readonly run: string
  /** Absolute output root; the run folder is `runDir`. */
  readonly outputRoot: string
  readonly runDir: string
  /**
   * Absolute path of the tokenizer.json file or tokenizer folder. For a Hub tokenizer, the snapshot
   * folder once fetched (withHubInputs); empty before.
   */
  readonly tokenizer: string
  /** Where the tokenizer comes from, as configured. */
  readonly tokenizerSource: TokenizerSource
  /** The files the tokenizer reads (absolute): what enters the keys of the units that use it. */
  readonly tokenizerFiles: ReadonlyArray<string>
  readonly context_length: number
  readonly stride: number
  readonly prepend?: string
  /** In config order. */
  readonly models: ReadonlyArray<Model>
  readonly datasets: ReadonlyArray<Dataset>
  readonly tasks: ReadonlyArray<Task>
  readonly analysis: ResolvedAnalysis
  readonly scoring: Scoring & { readonly threads: number; readonly max_memory_gb: number }
  readonly download: Download
  /** The sequences stage's settings; absent when the config has no `sequences` section. */
  readonly sequences?: ResolvedSequences
}

export interface LoadOptions {
  /** Check that files exist and expand globs (default true). Off for validating example configs. */
  readonly checkPaths?: boolean
}

/** `["models", 1, "checkpoints"]` → `models[1].checkpoints` */
export const formatDocPath = (p: ReadonlyArray<PropertyKey>): string =>
  p.reduce<string>((acc, k) => (typeof k === "number" ? `${acc}[${k}]` : acc === "" ? String(k) : `${acc}.${String(k)}`), "")

/** Reduce Effect Schema's issues to one message per path; unions become "expected a or b". */
const summarizeIssues = (
  issues: ReadonlyArray<ParseResult.ArrayFormatterIssue>,
): Array<{ path: ReadonlyArray<PropertyKey>; message: string }> => {
  const byPath = new Map<string, { path: ReadonlyArray<PropertyKey>; messages: string[] }>()
  for (const i of issues) {
    const k = JSON.stringify(i.path)
    const e = byPath.get(k) ?? { path: i.path, messages: [] }
    e.messages.push(i.message)
    byPath.set(k, e)
  }
  const entries = [...byPath.values()]
  // A parent's error is noise when a child explains it (e.g. "analysis: expected undefined").
  const kept = entries.filter(
    (e) => !entries.some((o) => o !== e && o.path.length > e.path.length && e.path.every((k, j) => o.path[j] === k)),
  )
  return kept.map((e) => {
    const unexpected = e.messages.find((m) => m.startsWith("is unexpected"))
    if (unexpected) {
      const m = unexpected.match(/expected: (.*)$/)
      return { path: e.path, message: `unknown field${m ? ` (expected one of ${m[1]})` : ""}` }
    }
    const custom = e.messages.find((m) => !m.startsWith("Expected "))
    if (custom) return { path: e.path, message: `expected ${custom}` }
    const expected: string[] = []
    let actual = ""
    for (const m of e.messages) {
      const mm = m.match(/^Expected (.*), actual (.*)$/s)
      if (mm) {
        if (mm[1] !== "undefined" && !expected.includes(mm[1])) expected.push(mm[1])
        actual = mm[2]
      }
    }
    const nice = expected.map((x) => x.replace(/ReadonlyArray<(.*)>/, "a list of $1"))
    return {
      path: e.path,
      message: nice.length ? `expected ${nice.join(" or ")}, got ${actual.slice(0, 60)}` : e.messages[0],
    }
  })
}

/** The 1-based line of the node at `docPath` (or its nearest existing parent). */
const lineOf = (doc: YAML.Document, lc: YAML.LineCounter, docPath: ReadonlyArray<PropertyKey>): number | undefined => {
  for (let n = docPath.length; n >= 0; n--) {
    const sub = docPath.slice(0, n)
    let node: unknown
    if (sub.length === 0) node = doc.contents
    else {
      // For an unknown key, point at the key itself.
      const parent = sub.length > 1 ? doc.getIn(sub.slice(0, -1), true) : doc.contents
      if (YAML.isMap(parent)) {
        const pair = parent.items.find((it) => YAML.isScalar(it.key) && it.key.value === sub[sub.length - 1])
        if (pair) node = pair.key
      } else node = doc.getIn(sub as Array<unknown>, true)
    }
    const range = (node as { range?: [number, number, number] } | undefined)?.range
    if (range) return lc.linePos(range[0]).line
  }
  return undefined
}

interface Located {
  readonly file: string
  readonly doc: YAML.Document
  readonly lc: YAML.LineCounter
}

const errAt = (loc: Located, docPath: ReadonlyArray<PropertyKey>, message: string): ConfigError => {
  const line = lineOf(loc.doc, loc.lc, docPath)
  return new ConfigError({
    file: displayPath(loc.file),
    ...(line !== undefined ? { line } : {}),
    ...(docPath.length ? { field: formatDocPath(docPath) } : {}),
    reason: message,
  })
}

const expandGlobs = (patterns: ReadonlyArray<string>, cwd: string, o: { folders?: boolean } = {}): string[] =>
  globSync(patterns as string[], { cwd, absolute: true, onlyFiles: !o.folders, expandDirectories: false, dot: false })
    .map((p) => (p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p))
    .sort()

/** A checkpoint path: a file (ONNX), or a folder holding config.json (Hugging Face). */
const isCheckpointPath = (p: string): boolean => {
  try {
    return !fs.statSync(p).isDirectory() || fs.existsSync(path.join(p, "config.json"))
  } catch {
    return false
  }
}

/** The files a tokenizer at `p` reads (lib/tokenizer-folder.ts tokenizerFiles), or a one-line reason it has none. */
export const tokenizerFilesOf = (p: string): string[] | string => {
  try {
    return tokenizerFiles(p)
  } catch (e) {
    return firstLine(e)
  }
}
const isGlob = (p: string) => /[*?[\]{}]/.test(p)

/** Decode and resolve a config already parsed from YAML text. */
export const parseConfig = (
  file: string,
  text: string,
  options: LoadOptions = {},
): Either.Either<Config, ConfigError> => {
  const checkPaths = options.checkPaths ?? true
  const absFile = path.resolve(file)
  const lc = new YAML.LineCounter()
  const doc = YAML.parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true })
  const loc: Located = { file: absFile, doc, lc }
  if (doc.errors.length > 0) {
    const e = doc.errors[0]
    const line = e.linePos?.[0]?.line
    const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")
    return Either.left(new ConfigError({ file: displayPath(absFile), ...(line ? { line } : {}), reason: `invalid YAML: ${msg}` }))
  }
  let raw: unknown
  try {
    // toJS resolves aliases; the yaml package refuses an alias bomb (exponential expansion) here.
    raw = doc.toJS()
  } catch (e) {
    return Either.left(new ConfigError({ file: displayPath(absFile), reason: `invalid YAML: ${firstLine(e)}` }))
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return Either.left(new ConfigError({ file: displayPath(absFile), reason: "expected a YAML mapping with run, tokenizer, models, datasets" }))
  }
  const decoded = Schema.decodeUnknownEither(ConfigSchema, { errors: "all", onExcessProperty: "error" })(raw)
  if (Either.isLeft(decoded)) {
    const issues = summarizeIssues(ParseResult.ArrayFormatter.formatErrorSync(decoded.left))
    const first = issues[0]
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : ""
    return Either.left(errAt(loc, first.path, first.message + more))
  }
  const c = decoded.right
  const base = path.dirname(absFile)
  const abs = (p: string) => path.resolve(base, p)
  try {
    const seen = (what: string, names: string[], key: string) => {
      const dup = names.find((n, i) => names.indexOf(n) !== i)
      if (dup !== undefined) throw errAt(loc, [key, names.lastIndexOf(dup), "name"], `duplicate ${what} name "${dup}"`)
    }
    seen("model", c.models.map((m) => m.name), "models")
    seen("dataset", c.datasets.map((d) => d.name), "datasets")
    seen("task", c.tasks.map((t) => t.name), "tasks")

    const stride = c.stride ?? Math.max(1, Math.floor(c.context_length / 2))
    if (stride > c.context_length - 1) {
      throw errAt(loc, ["stride"], `must be at most context_length − 1 = ${c.context_length - 1} (got ${stride})`)
    }
    const tokenizerSource: TokenizerSource =
      typeof c.tokenizer === "string" ? { path: abs(c.tokenizer) } : { hub: { repo: c.tokenizer.hub, revision: c.tokenizer.revision } }
    const tokenizer = tokenizerSource.path ?? ""
    let tokenizerFiles: string[] = []
    if (checkPaths && tokenizerSource.path !== undefined) {
      if (!fs.existsSync(tokenizer)) throw errAt(loc, ["tokenizer"], `file not found: ${displayPath(tokenizer)}`)
      const files = tokenizerFilesOf(tokenizer)
      if (typeof files === "string") throw errAt(loc, ["tokenizer"], files)
      tokenizerFiles = files
    }

    /** ONNX files or Hugging Face folders, from a pattern with {step} (globbed) or a list. */
    const localCheckpoints = (spec: string | ReadonlyArray<{ step: number; path: string }>, steps: ReadonlyArray<number> | undefined, mi: number): Checkpoint[] => {
      let cps: LocalCheckpoint[]
      if (typeof spec === "string") {
        const pattern = abs(spec)
        if (!checkPaths) cps = []
        else {
          const [before, after] = [pattern.slice(0, pattern.indexOf("{step}")), pattern.slice(pattern.indexOf("{step}") + 6)]
          // Only {step} is a wildcard: the rest is the file's path as it is ("my run (v2)/…").
          const globbed = expandGlobs([`${escapePath(before)}*${escapePath(after)}`], base, { folders: true })
          const re = new RegExp(`^${escapeRe(before)}(\\d+)${escapeRe(after)}$`)
          cps = globbed.flatMap((p) => {
            const mm = p.match(re)
            return mm && isCheckpointPath(p) ? [{ step: Number(mm[1]), path: p }] : []
          })
          if (cps.length === 0) throw errAt(loc, ["models", mi, "checkpoints"], `no file or Hugging Face folder (with config.json) matches "${spec}"`)
        }
        if (steps) {
          const wanted = new Set(steps)
          if (checkPaths) {
            const missing = steps.filter((s) => !cps.some((c) => c.step === s))
            if (missing.length) throw errAt(loc, ["models", mi, "steps"], `no checkpoint file for step ${missing.join(", ")}`)
          }
          cps = cps.filter((c) => wanted.has(c.step))
        }
      } else {
        cps = spec.map((cp, ci) => {
          const p = abs(cp.path)
          if (checkPaths && !fs.existsSync(p)) throw errAt(loc, ["models", mi, "checkpoints", ci, "path"], `file not found: ${displayPath(p)}`)
          if (checkPaths && !isCheckpointPath(p)) throw errAt(loc, ["models", mi, "checkpoints", ci, "path"], `${displayPath(p)} is a folder without config.json (expected an ONNX file or a Hugging Face folder)`)
          return { step: cp.step, path: p }
        })
      }
      return cps
    }

    const models: Model[] = c.models.map((m, mi) => {
      const at = (...p: Array<string | number>) => ["models", mi, ...p]
      let cps: Checkpoint[]
      if (m.hub !== undefined) {
        if (m.checkpoints !== undefined) throw errAt(loc, at("checkpoints"), "give either checkpoints (local files) or hub (a Hub repository), not both")
        if (m.revisions !== undefined) {
          if (m.revision !== undefined) throw errAt(loc, at("revision"), "give either revision (a pattern with {step}) or revisions (a step → revision map), not both")
          const map = Object.entries(m.revisions).map(([k, revision]) => ({ step: Number(k), revision }))
          if (map.length === 0) throw errAt(loc, at("revisions"), "expected at least one step → revision entry")
          let chosen = map
          if (m.steps) {
            const missing = m.steps.filter((st) => !map.some((e) => e.step === st))
            if (missing.length) throw errAt(loc, at("steps"), `no entry in revisions for step ${missing.join(", ")}`)
            chosen = map.filter((e) => m.steps!.includes(e.step))
          }
          cps = chosen.map((e) => ({ step: e.step, hub: { repo: m.hub!, revision: e.revision } }))
        } else {
          const pattern = m.revision ?? "step{step}"
          if (!m.steps || m.steps.length === 0) throw errAt(loc, at("steps"), `with hub and revision "${pattern}", list the steps to fetch`)
          if (!pattern.includes("{step}") && m.steps.length > 1) {
            throw errAt(loc, at("revision"), `"${pattern}" has no {step}, so it names one revision, but steps lists ${m.steps.length}; use a pattern or revisions`)
          }
          cps = m.steps.map((st) => ({ step: st, hub: { repo: m.hub!, revision: pattern.replaceAll("{step}", String(st)) } }))
        }
      } else if (m.revision !== undefined || m.revisions !== undefined) {
        throw errAt(loc, at(m.revision !== undefined ? "revision" : "revisions"), "revisions name Hub checkpoints: give hub too, or leave it out")
      } else if (m.checkpoints === undefined) {
        throw errAt(loc, ["models", mi], "expected checkpoints (local files or folders) or hub (a Hub repository)")
      } else cps = localCheckpoints(m.checkpoints, m.steps, mi)
      cps.sort((a, b) => a.step - b.step)
      const dupStep = cps.find((c, i) => i > 0 && cps[i - 1].step === c.step)
      if (dupStep) throw errAt(loc, at(m.hub !== undefined ? "steps" : "checkpoints"), `step ${dupStep.step} appears twice`)
      return { name: m.name, params: m.params, tokens_per_step: m.tokens_per_step, checkpoints: cps }
    })

    const datasets: Dataset[] = c.datasets.map((d, di) => {
      const patterns = typeof d.path === "string" ? [d.path] : [...d.path]
      let files: string[] = []
      if (checkPaths) {
        for (const [pi, p] of patterns.entries()) {
          const found = isGlob(p) ? expandGlobs([p], base) : fs.existsSync(abs(p)) ? [abs(p)] : []
          if (found.length === 0) {
            const where = typeof d.path === "string" ? ["datasets", di, "path"] : ["datasets", di, "path", pi]
            throw errAt(loc, where, isGlob(p) ? `no file matches "${p}"` : `file not found: ${displayPath(abs(p))}`)
          }
          files.push(...found)
        }
        if (d.exclude) {
          const ex = new Set(expandGlobs(typeof d.exclude === "string" ? [d.exclude] : [...d.exclude], base))
          files = files.filter((f) => !ex.has(f))
        }
        files = [...new Set(files)].sort()
        if (files.length === 0) throw errAt(loc, ["datasets", di, "exclude"], "every file matched by path is excluded")
      }
      return {
        name: d.name,
        format: d.format,
        files,
        ...(d.max_tokens !== undefined ? { max_tokens: d.max_tokens } : {}),
        text_field: d.text_field,
        id_field: d.id_field,
      }
    })

    const tasks: Task[] = c.tasks.flatMap((t, ti): Task[] => {
      const p = abs(t.path)
      if (checkPaths && !fs.existsSync(p)) throw errAt(loc, ["tasks", ti, "path"], `file not found: ${displayPath(p)}`)
      const task = { name: t.name, format: t.format, path: p, shots: t.shots, seed: t.seed, truncate: t.truncate, entry: ti }
      const max = t.max_examples
      if (!checkPaths || t.format !== "bigbench") return [{ ...task, ...(max !== undefined ? { max_examples: max } : {}) }]
      const bb = bigbenchTask(p)
      if (typeof bb === "string") throw errAt(loc, ["tasks", ti, "path"], bb)
      if (bb.subtasks.length === 0) return [{ ...task, path: bb.file, ...(max !== undefined ? { max_examples: max } : {}) }]
      const k = bb.subtasks.length
      if (max !== undefined && max < k) {
        throw errAt(loc, ["tasks", ti, "max_examples"], `${max} is fewer than the ${k} subtasks of ${displayPath(bb.file)}: a parent task's max_examples is split over its subtasks (N // ${k} each, as BIG-bench does)`)
      }
      return bb.subtasks.map((s) => ({
        ...task,
        name: `${t.name}.${s.name}`,
        path: s.file,
        parent: t.name,
        ...(max !== undefined ? { max_examples: Math.floor(max / k) } : {}),
      }))
    })
    // A subtask's name may meet another entry's (or parent's) name: the entries' names are unique (above).
    const named = [...tasks, ...parentTasks({ tasks }).map((p) => ({ name: p.name, entry: tasks.find((t) => t.parent === p.name)!.entry, parent: undefined }))]
    const dup = named.find((t, i) => named.findIndex((u) => u.name === t.name) !== i)
    if (dup !== undefined) {
      const other = named.find((u) => u.name === dup.name && u !== dup)!
      const [sub, entry] = dup.parent !== undefined ? [dup, other] : [other, dup]
      throw errAt(loc, ["tasks", entry.entry, "name"], `duplicate task name "${dup.name}": also the name of a subtask of tasks[${sub.entry}] (${displayPath((sub as Task).path)})`)
    }

    const a = c.analysis
    if (a.valid_dataset !== undefined && !datasets.some((d) => d.name === a.valid_dataset)) {
      throw errAt(loc, ["analysis", "valid_dataset"], `no dataset named "${a.valid_dataset}"`)
    }
    if (a.reference_model !== undefined && !models.some((m) => m.name === a.reference_model)) {
      throw errAt(loc, ["analysis", "reference_model"], `no model named "${a.reference_model}"`)
    }
    const bySize = [...models].sort((x, y) => x.params - y.params)
    const analysis = resolveAnalysis(a, models, datasets)

    let sequences: ResolvedSequences | undefined
    const sq = c.sequences
    if (sq !== undefined) {
      const side = (field: "small" | "large", fallback: Model) => {
        const name = sq[field]
        const model = name === undefined ? fallback : models.find((m) => m.name === name)
        if (model === undefined) throw errAt(loc, ["sequences", field], `no model named "${name}"`)
        const cps = model.checkpoints
        const checkpoint = sq.step === undefined ? cps[cps.length - 1] : cps.find((cp) => cp.step === sq.step)
        if (checkpoint === undefined && cps.length > 0) throw errAt(loc, ["sequences", "step"], `model ${model.name} has no checkpoint at step ${sq.step}`)
        // Only a config loaded without checking paths (example configs) has a pattern that matched no checkpoint.
        return { model, checkpoint: checkpoint ?? { step: sq.step ?? 0, path: "" } }
      }
      const small = side("small", bySize[0])
      const large = side("large", bySize[bySize.length - 1])
      let prompts: ResolvedSequences["prompts"]
      if (sq.prompts !== undefined) prompts = { texts: sq.prompts }
      else {
        const from = sq.prompts_from
        const dataset = from?.dataset ?? analysis.valid_dataset
        if (!datasets.some((d) => d.name === dataset)) throw errAt(loc, ["sequences", "prompts_from", "dataset"], `no dataset named "${dataset}"`)
        prompts = { dataset, n: from?.n_prompts ?? 10, tokens: from?.prompt_tokens ?? 8 }
      }
      const decodings = [...new Set(typeof sq.decoding === "string" ? [sq.decoding] : sq.decoding)]
      let mauve: ResolvedSequences["mauve"]
      if (sq.mauve !== false && !(sq.mauve === undefined && "texts" in prompts)) {
        if ("texts" in prompts) throw errAt(loc, ["sequences", "mauve"], "MAUVE compares generations with the human continuations of their prompts: use prompts_from (a dataset), not prompts, or set mauve: false")
        const m = sq.mauve ?? Schema.decodeSync(MauveSchema)({})
        const name = m.features_model
        const model = name === undefined ? bySize[bySize.length - 1] : models.find((x) => x.name === name)
        if (model === undefined) throw errAt(loc, ["sequences", "mauve", "features_model"], `no model named "${name}"`)
        const cps = model.checkpoints
        const checkpoint = m.features_step === undefined ? cps[cps.length - 1] : cps.find((cp) => cp.step === m.features_step)
        if (checkpoint === undefined && cps.length > 0) throw errAt(loc, ["sequences", "mauve", "features_step"], `model ${model.name} has no checkpoint at step ${m.features_step}`)
        mauve = { model, checkpoint: checkpoint ?? { step: m.features_step ?? 0, path: "" }, scaling: m.scaling, buckets: m.buckets, seed: m.seed ?? sq.seed }
      }
      sequences = { section: sq, small, large, validDataset: analysis.valid_dataset, prompts, decodings, ...(mauve !== undefined ? { mauve } : {}) }
    }

    const outputRoot = abs(c.output)
    return Either.right({
      file: absFile,
      run: c.run,
      outputRoot,
      runDir: path.join(outputRoot, c.run),
      tokenizer,
      tokenizerSource,
      tokenizerFiles,
      context_length: c.context_length,
      stride,
      ...(c.prepend !== undefined ? { prepend: c.prepend } : {}),
      models,
      datasets,
      tasks,
      analysis,
      scoring: {
        ...c.scoring,
        threads: c.scoring.threads ?? Math.max(1, os.availableParallelism()),
        max_memory_gb: c.scoring.max_memory_gb ?? Math.round(os.totalmem() / 16 / 1e7) / 100,
      },
      download: c.download,
      ...(sequences !== undefined ? { sequences } : {}),
    })
  } catch (e) {
    if (e instanceof ConfigError) return Either.left(e)
    throw e
  }
}

/** `analysis` with its derived defaults (see ResolvedAnalysis); names are checked by parseConfig. */
export const resolveAnalysis = (
  a: Analysis,
  models: ReadonlyArray<Pick<Model, "name" | "params">>,
  datasets: ReadonlyArray<Pick<Dataset, "name">>,
): ResolvedAnalysis => {
  const bySize = [...models].sort((x, y) => x.params - y.params)
  return {
    ...a,
    valid_dataset: a.valid_dataset ?? datasets[0].name,
    reference_model: a.reference_model ?? bySize[Math.min(1, bySize.length - 1)].name,
    reference_threshold: a.reference_threshold ?? a.thresholds.find((t) => sameFraction(t, 0.1)) ?? Math.min(...a.thresholds),
  }
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Read, decode and resolve a config file. */
export const loadConfig = (file: string, options: LoadOptions = {}): Effect.Effect<Config, ConfigError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = fs.readFileSync(file, "utf8")
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      return Effect.fail(
        new ConfigError({
          file: displayPath(path.resolve(file)),
          reason: code === "ENOENT" ? "config file not found" : code === "EISDIR" ? "is a folder, not a config file" : `cannot read config file (${code})`,
        }),
      )
    }
    return parseConfig(file, text, options)
  })

/** Models ordered by parameter count, smallest first (sizes in the report and comparisons). */
export const modelsBySize = (c: Config): ReadonlyArray<Model> => [...c.models].sort((a, b) => a.params - b.params)

/** Tokens seen and FLOPs at a step: tokens = step × tokens_per_step, FLOPs = 6 × params × tokens. */
export const tokensSeen = (m: Pick<Model, "tokens_per_step">, step: number): number => step * m.tokens_per_step
export const flopsAt = (m: Pick<Model, "tokens_per_step" | "params">, step: number): number => 6 * m.params * step * m.tokens_per_step
