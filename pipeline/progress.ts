/**
 * Progress of a run: units done per stage, throughput and ETA.
 * On a TTY one status line is redrawn in place (at most 10 times a second): per stage in flight a
 * bar of its units, the throughput and the stage's ETA, then the run's (progress-eta.ts). Otherwise
 * a plain line is printed every `intervalMs` (default 10 s) while a unit runs, with the unit in
 * flight's own progress and ETA, and one line per finished unit (`score [3/18] … done in 2.1s, …`).
 */
import { runEtaText, stageBar, type StageWork } from "./progress-eta.ts"
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

/** A stage's units in this run: planned and finished, their weights, and when its first began. */
interface Count {
  total: number
  done: number
  /** Whether beginStage gave the total weight (else every unit weighs 1). */
  weighted: boolean
  totalWeight: number
  doneWeight: number
  start?: number
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
  /** Its UnitPlan.weight (1 when the stage's weights are not known). */
  readonly weight: number
  total: number
  done: number
  what: string
}

/**
 * Units of several lanes may be in flight at once (a download beside a score): the status line
 * shows each, joined by " | ", and every finished unit prints its own line.
 */
export class Reporter {
  private readonly counts = new Map<string, Count>()
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

  /**
   * How many units of `stage` this run expects to run (for "[k/N]"), and their total weight
   * (Σ UnitPlan.weight, for the stage's ETA; default: one per unit).
   */
  beginStage(stage: string, unitsToRun: number, totalWeight?: number): void {
    this.counts.set(stage, { total: unitsToRun, done: 0, weighted: totalWeight !== undefined, totalWeight: totalWeight ?? unitsToRun, doneWeight: 0 })
  }

  /** A unit begins; `weight`: its UnitPlan.weight (counted when beginStage was given the stage's total weight). */
  beginUnit(stage: string, id: string, weight = 1): UnitSlot {
    const c0 = this.count(stage)
    const now = performance.now()
    c0.start ??= now
    const f: Flight = { stage, unit: id, start: now, weight: c0.weighted ? weight : 1, total: 0, done: 0, what: "" }
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
        c.doneWeight += f.weight
        const rate = f.done > 0 && seconds > 0 ? `, ${fmtRate(f.done / seconds)} ${f.what}/s` : ""
        this.clear()
        this.sink.write(`${stage} [${c.done}/${Math.max(c.total, c.done)}] ${id} ${ok ? "done" : "FAILED"} in ${fmtSeconds(seconds)}${rate}${where ? ` on ${where}` : ""}${detail ? `: ${detail}` : ""}\n`)
        if (this.flights.size > 0) this.draw(true)
      },
    }
  }

  private count(stage: string): Count {
    let c = this.counts.get(stage)
    if (c === undefined) this.counts.set(stage, (c = { total: 0, done: 0, weighted: false, totalWeight: 0, doneWeight: 0 }))
    return c
  }

  /** A stage's work now: finished units' weight plus the done part of each unit in flight. */
  private work(stage: string, c: Count, now: number): StageWork {
    let inFlight = 0
    for (const f of this.flights) if (f.stage === stage && f.total > 0) inFlight += f.weight * Math.min(1, f.done / f.total)
    return {
      total: c.total,
      done: c.done,
      totalWeight: Math.max(c.totalWeight, c.doneWeight),
      doneWeight: c.doneWeight + inFlight,
      ...(c.start !== undefined ? { elapsed: (now - c.start) / 1000 } : {}),
    }
  }

  /** The TTY line: a bar per stage in flight (planned stages; others as plain flights), then the run's ETA. */
  private ttyLine(): string {
    const now = performance.now()
    const stages = [...new Set([...this.flights].map((f) => f.stage))]
    const parts = stages.map((stage) => {
      const c = this.count(stage)
      const flights = [...this.flights].filter((f) => f.stage === stage)
      if (c.total === 0) return flights.map((f) => this.flightLine(f)).join(" | ")
      const f = flights.find((x) => x.total > 0)
      const el = f ? (now - f.start) / 1000 : 0
      const rate = f && el > 0 && f.done > 0 ? `${fmtRate(f.done / el)} ${f.what}/s` : ""
      return stageBar(stage, this.work(stage, c, now), rate, fmtSeconds)
    })
    const planned = [...this.counts].filter(([, c]) => c.total > 0).map(([stage, c]) => this.work(stage, c, now))
    return parts.join(" | ") + (planned.length > 0 ? runEtaText(planned, fmtSeconds) : "")
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
      this.sink.write(`\r\x1b[2K${this.ttyLine().slice(0, cols - 1)}`)
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
