/**
 * Progress of a run: units done per stage, throughput and ETA of the unit in flight.
 * On a TTY one status line is redrawn in place (at most 10 times a second); otherwise a plain
 * line is printed every `intervalMs` (default 10 s) while a unit runs, and one line per finished unit.
 */
import type { Progress } from "./stage.ts"

export interface Sink {
  readonly isTTY: boolean
  write(s: string): void
}

export const stderrSink = (): Sink => ({
  isTTY: Boolean(process.stderr.isTTY) && process.env.CI !== "true",
  write: (s) => void process.stderr.write(s),
})

export const quietSink: Sink = { isTTY: false, write: () => {} }

const fmtRate = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(x < 10 ? 1 : 0))
export const fmtSeconds = (s: number): string => {
  if (!Number.isFinite(s)) return "?"
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

export class Reporter {
  private stage = ""
  private unitsTotal = 0
  private unitsDone = 0
  private unit = ""
  private unitStart = 0
  private total = 0
  private done = 0
  private what = ""
  private lastDraw = 0
  private lastPlain = 0
  private drawn = false

  constructor(
    private readonly sink: Sink,
    private readonly intervalMs = Number(process.env.TRAJECTORIES_PROGRESS_MS ?? 10_000),
  ) {}

  /** A notice, printed on its own line (the status line is redrawn after it). */
  log(message: string): void {
    this.clear()
    this.sink.write(`${message}\n`)
  }

  beginStage(stage: string, unitsToRun: number): void {
    this.stage = stage
    this.unitsTotal = unitsToRun
    this.unitsDone = 0
  }

  beginUnit(id: string): void {
    this.unit = id
    this.unitStart = performance.now()
    this.total = 0
    this.done = 0
    this.what = ""
    this.lastPlain = this.unitStart
    this.draw(true)
  }

  endUnit(ok: boolean, seconds: number, detail?: string): void {
    this.unitsDone++
    const rate = this.done > 0 && seconds > 0 ? `, ${fmtRate(this.done / seconds)} ${this.what}/s` : ""
    this.clear()
    this.sink.write(
      `${this.stage} [${this.unitsDone}/${this.unitsTotal}] ${this.unit} ${ok ? "done" : "FAILED"} in ${fmtSeconds(seconds)}${rate}${detail ? `: ${detail}` : ""}\n`,
    )
  }

  /** The Progress handed to the unit in flight. */
  progress(): Progress {
    return {
      start: (total, what) => {
        this.total = total
        this.what = what
        this.done = 0
        this.draw(true)
      },
      advance: (n) => {
        this.done += n
        this.draw(false)
      },
    }
  }

  private line(): string {
    const el = (performance.now() - this.unitStart) / 1000
    const parts = [`${this.stage} [${this.unitsDone + 1}/${this.unitsTotal}] ${this.unit}`]
    if (this.total > 0) {
      const rate = el > 0 ? this.done / el : 0
      const eta = rate > 0 ? (this.total - this.done) / rate : Infinity
      parts.push(
        `${Math.min(100, (100 * this.done) / this.total).toFixed(0)}% of ${fmtRate(this.total)} ${this.what}`,
        `${fmtRate(rate)} ${this.what}/s`,
        `ETA ${fmtSeconds(eta)}`,
      )
    }
    return parts.join(" · ")
  }

  private draw(force: boolean): void {
    const now = performance.now()
    if (this.sink.isTTY) {
      if (!force && now - this.lastDraw < 100) return
      this.lastDraw = now
      const cols = process.stderr.columns ?? 100
      this.sink.write(`\r\x1b[2K${this.line().slice(0, cols - 1)}`)
      this.drawn = true
    } else if (now - this.lastPlain >= this.intervalMs) {
      this.lastPlain = now
      this.sink.write(`${this.line()}\n`)
    }
  }

  clear(): void {
    if (this.sink.isTTY && this.drawn) {
      this.sink.write("\r\x1b[2K")
      this.drawn = false
    }
  }
}
