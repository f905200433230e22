/**
 * CPU time from /proc (Linux; elsewhere every figure is 0), for benchmarks that spread over several
 * processes (bench/cluster.ts): a process with its threads, the children it reaped, a PostgreSQL
 * server, the whole machine. Seconds throughout.
 */
import * as fs from "node:fs"
import * as path from "node:path"

const TICK = 100 // USER_HZ
const procStat = (pid: number): string[] | undefined => {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return s.slice(s.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}
/** utime + stime of a process (all its threads), seconds; with `reaped`, also its waited-for children's. */
export const cpuOfPid = (pid: number, reaped = false): number => {
  const f = procStat(pid)
  if (f === undefined) return 0
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) / TICK
}
/** CPU seconds of this process's children that exited (a `run` the moment it has exited). */
export const cpuOfReaped = (): number => {
  const f = procStat(process.pid)
  return f === undefined ? 0 : (Number(f[13]) + Number(f[14])) / TICK
}
/** The CPU of the PostgreSQL server of data folder `data`: the postmaster, its live backends, and those that exited. */
export const cpuOfPostgres = (data: string): number => {
  let master: number
  try {
    master = Number(fs.readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0])
  } catch {
    return 0
  }
  let sum = cpuOfPid(master, true)
  for (const d of fs.existsSync("/proc") ? fs.readdirSync("/proc") : []) {
    if (/^\d+$/.test(d) && procStat(Number(d))?.[1] === String(master)) sum += cpuOfPid(Number(d))
  }
  return sum
}
/** CPU seconds of the whole machine (every core, every process, other users' too): user, system (with interrupts), and steal (the hypervisor ran someone else). */
export const cpuOfMachine = (): { user: number; system: number; steal: number } => {
  try {
    // user nice system idle iowait irq softirq steal
    const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number)
    return { user: (f[0] + f[1]) / TICK, system: (f[2] + f[5] + f[6]) / TICK, steal: f[7] / TICK }
  } catch {
    return { user: 0, system: 0, steal: 0 }
  }
}
