/**
 * How messages show errors and paths (pure; no Effect, so worker threads can import it cheaply).
 * pipeline/errors.ts re-exports both.
 */
import * as path from "node:path"

/** The first line of an error's message (or of its string form), trimmed. */
export const firstLine = (e: unknown): string => {
  const m = e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String((e as { message: unknown }).message) : String(e)
  return m.split("\n")[0].trim()
}

/** A path as messages show it: relative to the working folder when inside it. */
export const displayPath = (file: string): string => {
  const rel = path.relative(process.cwd(), file)
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file
}
