/**
 * `trajectories dag [config]`: the stages of the registry and their edges, in run order, and with a
 * config the number of units each stage plans (DVC's `dvc dag` is the model).
 *
 *   $ trajectories dag configs/demo.yaml
 *   10 stages, in run order (← the stages each one reads; ⇠ soft: read if present)
 *     tokenize      3 units  ← (inputs only)         datasets → windows and tokens
 *     score       234 units  ← tokenize              per-token log-probabilities of every checkpoint …
 *     …
 *     report        1 unit   ⇠ aggregate, classify, …
 *   edges: tokenize → score, tokenize → downstream, …
 */
import type { Stage } from "./stage.ts"
import { orderStages } from "./runner.ts"

export interface DagStage {
  readonly name: string
  readonly after: ReadonlyArray<string>
  readonly soft: boolean
  readonly describe: string
  /** Units planned for the config (undefined without one). */
  readonly units?: number
}

/** The stages in run order, each with the registered stages it reads (unknown names dropped). */
export const dagOf = (stages: ReadonlyArray<Stage<any, any>>, unitCounts?: ReadonlyMap<string, number>): DagStage[] => {
  const known = new Set(stages.map((s) => s.name))
  return orderStages(stages).map((s) => ({
    name: s.name,
    after: s.after.filter((a) => known.has(a)),
    soft: s.softAfter === true,
    describe: s.describe,
    ...(unitCounts ? { units: unitCounts.get(s.name) ?? 0 } : {}),
  }))
}

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`

/** The DAG as text lines (see the example above). */
export const formatDag = (dag: ReadonlyArray<DagStage>, width = 120): string[] => {
  const nameW = Math.max(...dag.map((s) => s.name.length))
  const unitW = dag.some((s) => s.units !== undefined) ? Math.max(...dag.map((s) => plural(s.units ?? 0, "unit").length)) : 0
  const reads = dag.map((s) => (s.after.length === 0 ? "← (inputs only)" : `${s.soft ? "⇠" : "←"} ${s.after.join(", ")}`))
  const readW = Math.min(40, Math.max(...reads.map((r) => r.length)))
  const lines = [`${plural(dag.length, "stage")}, in run order (← the stages each one reads; ⇠ soft: read when present, never blocking)`]
  dag.forEach((s, i) => {
    const units = s.units !== undefined ? `  ${plural(s.units, "unit").padStart(unitW)}` : ""
    const lead = `  ${s.name.padEnd(nameW)}${units}  `
    const fit = (text: string, at: number) => {
      const room = Math.max(20, width - at)
      return text.length > room ? `${text.slice(0, room - 1)}…` : text
    }
    if (reads[i].length <= readW) {
      const head = `${lead}${reads[i].padEnd(readW)}  `
      lines.push(head + fit(s.describe, head.length))
    } else {
      // A long list of inputs gets its own line; the description goes under it.
      lines.push(lead + fit(reads[i], lead.length))
      const indent = " ".repeat(lead.length + readW + 2)
      lines.push(indent + fit(s.describe, indent.length))
    }
  })
  const edges = dag.flatMap((s) => s.after.map((a) => `${a} ${s.soft ? "⇢" : "→"} ${s.name}`))
  // Wrapped at `width`, continuation lines indented.
  let line = `edges (${edges.length}):`
  edges.forEach((e, i) => {
    const piece = ` ${e}${i < edges.length - 1 ? "," : ""}`
    if (line.length + piece.length > width && line.trim().length > 0 && !line.endsWith(":")) {
      lines.push(line)
      line = " "
    }
    line += piece
  })
  lines.push(line)
  return lines
}

/** The DAG in Graphviz's dot language (soft edges dashed), for `trajectories dag --dot | dot -Tsvg`. */
export const dagDot = (dag: ReadonlyArray<DagStage>): string[] => [
  "digraph trajectories {",
  "  rankdir=LR; node [shape=box, fontname=Helvetica];",
  ...dag.map((s) => `  "${s.name}" [label="${s.name}${s.units !== undefined ? `\\n${plural(s.units, "unit")}` : ""}"];`),
  ...dag.flatMap((s) => s.after.map((a) => `  "${a}" -> "${s.name}"${s.soft ? " [style=dashed]" : ""};`)),
  "}",
]
