/**
 * The layering rule, checked on the sources (an equivalent of dependency-cruiser's forbidden rules):
 *   - a stage folder's files import only pipeline/, lib/, their own folder, and other stages' contract.ts;
 *   - lib/ imports no stage (it has no stage knowledge);
 *   - pipeline/ imports no stage, except main.ts, the entry that wires in the registry.
 * stages/index.ts (the registry), registry.ts (the same for worker threads), services.ts and
 * summary.ts are the registry's glue and may import any stage's entry.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const root = path.resolve(".")
const sources = (dir: string): string[] =>
  fs
    .readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|mjs)$/.test(e.name))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join("/"))

/** Relative imports of a file, resolved to paths from the repo root. */
const importsOf = (file: string): string[] => {
  const text = fs.readFileSync(path.join(root, file), "utf8")
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1])
  return specs.map((s) => path.relative(root, path.resolve(path.dirname(path.join(root, file)), s)).split(path.sep).join("/"))
}

const GLUE = new Set(["stages/index.ts", "stages/registry.ts", "stages/services.ts", "stages/summary.ts"])

/** Every import that breaks the rule, as "file → import". */
export const violations = (files: ReadonlyArray<string>): string[] =>
  files.flatMap((file) =>
    importsOf(file)
      .filter((target) => {
        if (file.startsWith("stages/") && !GLUE.has(file)) {
          const own = file.split("/").slice(0, 2).join("/")
          if (target.startsWith("pipeline/") || target.startsWith("lib/") || target.startsWith(`${own}/`)) return false
          return !/^stages\/[^/]+\/contract\.ts$/.test(target)
        }
        if (file.startsWith("lib/")) return target.startsWith("stages/")
        if (file.startsWith("pipeline/")) return file !== "pipeline/main.ts" && target.startsWith("stages/")
        return false
      })
      .map((target) => `${file} → ${target}`),
  )

describe("import rule", () => {
  it("stages import only pipeline/, lib/ and other stages' contract.ts; lib/ and pipeline/ import no stage", () => {
    const files = [...sources("stages"), ...sources("lib"), ...sources("pipeline")]
    expect(files.length).toBeGreaterThan(80)
    expect(violations(files)).toEqual([])
  })

  it("catches a stage reaching into another stage's internals", () => {
    const dir = path.join(root, "stages", "zz-rule-probe")
    fs.mkdirSync(dir, { recursive: true })
    try {
      fs.writeFileSync(path.join(dir, "index.ts"), `import { x } from "../score/tables.ts"\nimport { y } from "../score/contract.ts"\nimport { z } from "../../lib/tables.ts"\n`)
      expect(violations(["stages/zz-rule-probe/index.ts"])).toEqual(["stages/zz-rule-probe/index.ts → stages/score/tables.ts"])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
