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

/** One unit in flight: its own progress, and how it ends. */
export interface UnitSlot {
  readonly progress: Progress
  /** Print the unit's outcome line (`interrupted`: no line, the run is stopping; `where`: the cluster runner it ran on). */
  end(ok: boolean, seconds: number, detail?: string, interrupted?: boolean, where?: string): void
}

interface Flight {
  readonly stage: string
  readonly unit: string
  readonly start: number
  total: number
  done: number
  what: string
}

/**
 * Units of several lanes may be in flight at once (a download beside a score): the status line
 * shows each, joined by " | ", and every finished unit prints its own line.
 */
export class Reporter {
  private readonly counts = new Map<string, { total: number; done: number }>()
  private readonly flights = new Set<Flight>()
  private lastDraw = 0
  private lastPlain = 0
  private drawn = false
  /** Redraws while units are in flight, also when they report no progress (a cluster run's units). */
  private timer: ReturnType<typeof setInterval> | undefined

  constructor(
    private readonly sink: Sink,
    private readonly intervalMs = Number(process.env.TRAJECTORIES_PROGRESS_MS ?? 10_000),
  ) {}

  /** A notice, printed on its own line (the status line is redrawn after it). */
  log(message: string): void {
    this.clear()
    this.sink.write(`${message}\n`)
  }

  /** How many units of `stage` this run expects to run (for "[k/N]"). */
  beginStage(stage: string, unitsToRun: number): void {
    this.counts.set(stage, { total: unitsToRun, done: 0 })
  }

  beginUnit(stage: string, id: string): UnitSlot {
    const f: Flight = { stage, unit: id, start: performance.now(), total: 0, done: 0, what: "" }
    this.flights.add(f)
    if (this.flights.size === 1) this.lastPlain = f.start
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.draw(false), Math.max(50, Math.min(1000, this.intervalMs)))
      this.timer.unref()
    }
    this.draw(true)
    return {
      progress: {
        start: (total, what) => {
          f.total = total
          f.what = what
          f.done = 0
          this.draw(true)
        },
        advance: (n) => {
          f.done += n
          this.draw(false)
        },
      },
      end: (ok, seconds, detail, interrupted, where) => {
        this.flights.delete(f)
        if (this.flights.size === 0 && this.timer !== undefined) {
          clearInterval(this.timer)
          this.timer = undefined
        }
        if (interrupted) return this.clear()
        const c = this.count(stage)
        c.done++
        const rate = f.done > 0 && seconds > 0 ? `, ${fmtRate(f.done / seconds)} ${f.what}/s` : ""
        this.clear()
        this.sink.write(`${stage} [${c.done}/${Math.max(c.total, c.done)}] ${id} ${ok ? "done" : "FAILED"} in ${fmtSeconds(seconds)}${rate}${where ? ` on ${where}` : ""}${detail ? `: ${detail}` : ""}\n`)
        if (this.flights.size > 0) this.draw(true)
      },
    }
  }

  private count(stage: string) {
    let c = this.counts.get(stage)
    if (c === undefined) this.counts.set(stage, (c = { total: 0, done: 0 }))
    return c
  }

  private flightLine(f: Flight): string {
    const el = (performance.now() - f.start) / 1000
    const c = this.count(f.stage)
    const parts = [`${f.stage} [${c.done + 1}/${Math.max(c.total, c.done + 1)}] ${f.unit}`]
    if (f.total > 0) {
      const rate = el > 0 ? f.done / el : 0
      const eta = rate > 0 ? (f.total - f.done) / rate : Infinity
      parts.push(
        `${Math.min(100, (100 * f.done) / f.total).toFixed(0)}% of ${fmtRate(f.total)} ${f.what}`,
        `${fmtRate(rate)} ${f.what}/s`,
        `ETA ${fmtSeconds(eta)}`,
      )
    }
    return parts.join(" · ")
  }

  private line(): string {
    // Many units in flight (a cluster run): the first few, and how many more (no copy of them all:
    // a cluster run redraws on every unit that starts or ends, with a thousand in flight).
    const shown: string[] = []
    for (const f of this.flights) {
      if (shown.length === 3) break
      shown.push(this.flightLine(f))
    }
    if (this.flights.size > 3) shown.push(`+${this.flights.size - 3} more in flight`)
    return shown.join(" | ")
  }

  private draw(force: boolean): void {
    if (this.flights.size === 0) return
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
