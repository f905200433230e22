/**
 * Writes docs/config.schema.json (JSON Schema of the run config, for editors) from schemas/config.ts.
 * `npx tsx tools/config-schema.ts` — a test checks that the committed file is current.
 */
import * as fs from "node:fs"
import { JSONSchema } from "effect"
import { Config } from "../schemas/config.ts"

export const configJsonSchema = (): string => JSON.stringify(JSONSchema.make(Config), null, 2) + "\n"

if (import.meta.url === `file://${process.argv[1]}`) {
  fs.writeFileSync("docs/config.schema.json", configJsonSchema())
  console.log("wrote docs/config.schema.json")
}
