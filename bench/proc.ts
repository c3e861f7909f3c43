/**
 * What the bench reads from /proc and from the system: CPU time and memory of a process, processes found by
 * their command line, and the versions of the machine and servers for the report. Read-only.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";

let ticksPerSecond: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK, 100 on Linux). */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** utime and stime of a process (all its threads), in seconds; null when it is gone. */
function cpuTimes(pid: number): { user: number; system: number } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return { user: utime / clockTicks(), system: stime / clockTicks() };
}

/** utime + stime of a process (all its threads), in seconds; null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  const times = cpuTimes(pid);
  return times === null ? null : times.user + times.system;
}

/** Sum of cpuSeconds over processes; gone ones count as 0. */
export function totalCpuSeconds(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += cpuSeconds(pid) ?? 0;
  return total;
}

/** Sum of the processes' stime (CPU time in the kernel on their behalf: system calls, the TCP work they do). */
export function totalKernelSeconds(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += cpuTimes(pid)?.system ?? 0;
  return total;
}

export interface Syscalls {
  /** read-like system calls (read, recv, ...). */
  reads: number;
  /** write-like system calls (write, send, writev, ...). */
  writes: number;
}

/** I/O system calls of a process so far, from /proc/<pid>/io (syscr, syscw); null when unreadable. */
export function syscallsOf(pid: number): Syscalls | null {
  let io: string;
  try {
    io = readFileSync(`/proc/${pid}/io`, "utf8");
  } catch {
    return null;
  }
  const reads = Number(/^syscr:\s+(\d+)/m.exec(io)?.[1] ?? NaN);
  const writes = Number(/^syscw:\s+(\d+)/m.exec(io)?.[1] ?? NaN);
  return Number.isFinite(reads) && Number.isFinite(writes) ? { reads, writes } : null;
}

/** Sum of syscallsOf over processes; unreadable ones count as 0. */
export function totalSyscalls(pids: readonly number[]): Syscalls {
  const total = { reads: 0, writes: 0 };
  for (const pid of pids) {
    const io = syscallsOf(pid);
    total.reads += io?.reads ?? 0;
    total.writes += io?.writes ?? 0;
  }
  return total;
}

/**
 * Voluntary context switches of all threads of a process so far: how often it went to sleep waiting for work,
 * i.e. event-loop wake-ups. Fewer per request means more requests handled per wake-up (batching).
 */
export function wakeupsOf(pid: number): number | null {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let total = 0;
  for (const task of tasks) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
      total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch {
      // the thread ended
    }
  }
  return total;
}

export function totalWakeups(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += wakeupsOf(pid) ?? 0;
  return total;
}

export interface Memory {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size so far (VmHWM), bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a process from /proc/<pid>/status; null when it is gone. */
export function memoryOf(pid: number): Memory | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  const rss = kb("VmRSS");
  const hwm = kb("VmHWM");
  if (!Number.isFinite(rss) || !Number.isFinite(hwm)) return null;
  return { rss: rss * 1024, hwm: hwm * 1024 };
}

/** PIDs of processes whose command line (arguments joined by spaces) contains every one of the strings. */
export function findPids(...needles: string[]): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
      continue;
    }
    if (needles.every((needle) => cmdline.includes(needle))) found.push(pid);
  }
  return found;
}

export interface CpuTicks {
  total: number;
  idle: number;
  steal: number;
}

/** The machine's CPU time so far, all cores, from the first line of /proc/stat (in clock ticks). */
export function machineTicks(): CpuTicks {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const [, ...values] = line.trim().split(/\s+/);
    const n = values.map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user already)
    const total = n.slice(0, 8).reduce((sum, value) => sum + (value || 0), 0);
    return { total, idle: (n[3] ?? 0) + (n[4] ?? 0), steal: n[7] ?? 0 };
  } catch {
    return { total: 0, idle: 0, steal: 0 };
  }
}

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  node: string;
  prosody: string;
  ejabberd: string;
  redis: string;
  loadAverage: number[];
  kernel: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpuModel;
  } catch {}
  let kernel = "unknown";
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {}
  return {
    cores: cpus().length,
    cpuModel,
    node: process.version,
    prosody: packageVersion("prosody"),
    ejabberd: packageVersion("ejabberd"),
    redis: redisVersion(),
    loadAverage: loadavg().map((value) => Math.round(value * 100) / 100),
    kernel,
  };
}

/** The installed Debian package's version (the servers the harnesses run are the Debian packages). */
function packageVersion(name: string): string {
  try {
    // dpkg-query's own format syntax, not a template string.
    return execFileSync("dpkg-query", ["-W", "-f", "$" + "{Version}", name], { encoding: "utf8" }).trim();
  } catch {
    return "not installed";
  }
}

function redisVersion(): string {
  try {
    const out = execFileSync("redis-server", ["--version"], { encoding: "utf8" });
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return "not installed";
  }
}
