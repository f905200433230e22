/**
 * Where a BIG-bench task's examples are: its task.json, or the task.json of each of its subtasks
 * (file system only; stages/downstream/tasks.ts parses the files).
 *
 * A BIG-bench task is a folder with a task.json. A parent task's task.json has no `examples`; its
 * subtasks are the subfolders that hold a task.json of their own, in name order (BIG-bench's
 * json_task reads `<folder>/<subtask>/task.json` when `examples` is missing). Subfolders without a
 * task.json (BIG-bench's `results/`) are not subtasks.
 *
 *   bb/                          bigbenchTask("bb") and bigbenchTask("bb/task.json") both give
 *     task.json  (no examples)     { file: "bb/task.json", subtasks: [
 *     first/task.json                  { name: "first", file: "bb/first/task.json" },
 *     second/task.json                 { name: "second", file: "bb/second/task.json" } ] }
 *     results/scores.json        (not a subtask)
 *   plain/task.json (examples)   { file: "plain/task.json", subtasks: [] }
 *
 * The parent's task.json is read only when some subfolder holds a task.json (a plain task's file,
 * which may be large, is left to the stage); one that has `examples` is a plain task whatever its
 * subfolders hold, as in BIG-bench.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { displayPath, firstLine } from "./messages.ts"

export interface BigbenchTask {
  /** Absolute path of the task's task.json. */
  readonly file: string
  /** A parent task's subtasks (folder name, absolute path of its task.json); empty for a plain task. */
  readonly subtasks: ReadonlyArray<{ readonly name: string; readonly file: string }>
}

/** A subtask's folder name becomes part of a task name, and so of folder names in the run. */
export const SUBTASK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

/**
 * Resolve a BIG-bench task path (a task.json or its folder).
 * @returns the task, or a one-line reason naming the file or folder
 */
export const bigbenchTask = (p: string): BigbenchTask | string => {
  const abs = path.resolve(p)
  let isDir: boolean
  try {
    isDir = fs.statSync(abs).isDirectory()
  } catch (e) {
    return `${displayPath(abs)}: cannot read (${(e as NodeJS.ErrnoException).code ?? firstLine(e)})`
  }
  const file = isDir ? path.join(abs, "task.json") : abs
  if (isDir && !fs.existsSync(file)) return `${displayPath(abs)}: a BIG-bench task folder needs a task.json, and this one has none`
  const dir = path.dirname(file)
  let entries: fs.Dirent[]
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true })
  } catch (e) {
    return `${displayPath(dir)}: cannot list the folder (${(e as NodeJS.ErrnoException).code ?? firstLine(e)})`
  }
  const candidates = entries
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, "task.json")))
    .map((d) => d.name)
    .sort()
  if (candidates.length === 0) return { file, subtasks: [] }
  let doc: unknown
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8"))
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    return `${displayPath(file)}: ${code ? `cannot read (${code})` : `not valid JSON (${firstLine(e)})`}`
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc) || "examples" in doc) return { file, subtasks: [] }
  const bad = candidates.find((n) => !SUBTASK_NAME.test(n))
  if (bad !== undefined) {
    return `${displayPath(path.join(dir, bad))}: a subtask folder's name must be letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes part of the task name)`
  }
  return { file, subtasks: candidates.map((name) => ({ name, file: path.join(dir, name, "task.json") })) }
}
