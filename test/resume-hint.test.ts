/** The command printed after Ctrl-C (pipeline/resume-hint.ts): the same arguments without --force. */
import { describe, expect, it } from "vitest"
import { resumeHint, shellWord, withoutForce } from "../pipeline/resume-hint.ts"

describe("resume hint", () => {
  it("drops every --force X and --force=X, keeps everything else in order", () => {
    expect(withoutForce(["run", "cfg.yaml", "--force", "score", "-k", "--force=report", "--only", "score"])).toEqual(["run", "cfg.yaml", "-k", "--only", "score"])
    expect(withoutForce(["run", "cfg.yaml"])).toEqual(["run", "cfg.yaml"])
  })

  it("names the exact command, quoted for a shell, and says why --force is gone", () => {
    expect(resumeHint(["run", "configs/demo.yaml", "--force", "score"])).toBe(
      "interrupted: finished units are kept; to resume, without --force (which would start again from zero): npx trajectories run configs/demo.yaml",
    )
    expect(resumeHint(["run", "my runs/it's.yaml", "-k"])).toBe("interrupted: finished units are kept; to resume: npx trajectories run 'my runs/it'\\''s.yaml' -k")
    expect(shellWord("postgres://me@db:5432/t")).toBe("postgres://me@db:5432/t")
  })
})
