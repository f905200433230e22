/**
 * The line printed after Ctrl-C: the command that resumes. "Run the same command again" is wrong
 * after `run --force score`: that would start score from zero again, while the same command
 * without `--force …` resumes it (the units it re-ran are recorded under their keys).
 *
 *   trajectories run cfg.yaml --force score -k   →   npx trajectories run cfg.yaml -k
 */

/** A word as a POSIX shell reads it back: bare when safe, else in single quotes. */
export const shellWord = (w: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)

/** The CLI's arguments (process.argv after the script) without any `--force X` / `--force=X`. */
export const withoutForce = (args: ReadonlyArray<string>): string[] => {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--force") i++
    else if (!args[i].startsWith("--force=")) out.push(args[i])
  }
  return out
}

/** The interruption message for `args` (process.argv.slice(2)). */
export const resumeHint = (args: ReadonlyArray<string>, program = "npx trajectories"): string => {
  const resume = withoutForce(args)
  const command = [program, ...resume.map(shellWord)].join(" ")
  return resume.length < args.length
    ? `interrupted: finished units are kept; to resume, without --force (which would start again from zero): ${command}`
    : `interrupted: finished units are kept; to resume: ${command}`
}
