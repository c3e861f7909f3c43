/**
 * One measurement of a path: warm-up, then a fixed time during which the load runs unchanged; CPU time,
 * memory and Redis work are read right before the mark and right before the stop.
 */

import { cpus } from "node:os";
import { sleep } from "../test/integration/helpers.js";
import type { LoadResult } from "./load-protocol.js";
import {
  machineTicks,
  memoryOf,
  totalCpuSeconds,
  totalKernelSeconds,
  totalSyscalls,
  totalWakeups,
} from "./proc.js";
import type { RedisProbe, RedisWork } from "./redis-stats.js";
import type { LatencySummary } from "./stats.js";

/** What the load generator reports for a window; its CPU time is null when it is this process (clientCores). */
export type LoadWindow = Omit<LoadResult, "cpuSeconds"> & {
  loadCpuSeconds: number | null;
  /** Requests forwarded to each resource of the implementing account (capacity mode only). */
  byResource?: Record<string, number>;
};

export interface MeasureOptions {
  /** The proxy's processes (service replicas or the minimal component); empty for the direct path. */
  componentPids: number[];
  serverPids: number[];
  redisPids: number[];
  redis: RedisProbe | null;
  warmupSeconds: number;
  seconds: number;
  /** The V8 heap in use of the proxy's processes, summed (the service's /metrics); absent: not read. */
  heapUsed?: () => Promise<number | null>;
  /** Starts sending (warm-up). */
  start(): void;
  /** Starts counting. */
  mark(): Promise<void>;
  /** Stops sending and counting; resolves once in-flight requests drained. */
  stop(): Promise<LoadWindow>;
}

export interface Measurement {
  seconds: number;
  completed: number;
  errors: number;
  errorConditions: Record<string, number>;
  unanswered: number;
  requestsPerSecond: number;
  latency: LatencySummary;
  /** Requests forwarded to each resource during the window, when the load knows (capacity mode). */
  byResource?: Record<string, number>;
  /** Of all the proxy's processes together; null without a proxy. */
  component: ComponentUsage | null;
  redis: RedisUsage | null;
  /** CPU cores in use on average during the window, per role. */
  cores: {
    component: number | null;
    server: number;
    redis: number | null;
    load: number | null;
    /** This process: the implementing clients (end-to-end paths) or the fake server (capacity mode). */
    bench: number;
    /** The whole machine: busy cores (anything not idle), and the share of CPU time stolen by the host. */
    machineBusy: number;
    stealPercent: number;
  };
  /**
   * Per proxied request: the XMPP server's CPU time and wake-ups (voluntary context switches of all its
   * threads), and the proxy's wake-ups and read/write system calls (/proc/<pid>/io counts read() and write(),
   * which Node uses for sockets; Prosody's recv()/send() are not counted there).
   */
  perRequest: {
    serverCpuMicros: number | null;
    serverWakeups: number | null;
    componentWakeups: number | null;
    /** The proxy's CPU time in the kernel (stime), microseconds: part of ComponentUsage.cpuMicrosPerRequest. */
    componentKernelMicros: number | null;
    componentReads: number | null;
    componentWrites: number | null;
  };
}

export interface ComponentUsage {
  processes: number;
  cpuSeconds: number;
  /** CPU microseconds per proxied request = CPU milliseconds per 1000 proxied requests. */
  cpuMicrosPerRequest: number;
  /** Highest VmHWM among the processes at the end of the window (their lifetime peak), bytes. */
  peakRssBytes: number;
  /** Sum over the processes of VmRSS at the mark and at the end, and of VmHWM at the mark. */
  rssAtMarkBytes: number;
  rssAtEndBytes: number;
  hwmAtMarkBytes: number;
  hwmAtEndBytes: number;
  /** VmRSS (sum over the processes) once per second during the window: [seconds since mark, bytes]. */
  rssTrace: Array<[number, number]>;
  /** V8 heap in use (sum over the processes; services only) at the mark, at the end, and once per second. */
  heapAtMarkBytes: number | null;
  heapAtEndBytes: number | null;
  heapTrace: Array<[number, number]>;
}

export interface RedisUsage extends RedisWork {
  commandsPerRequest: number;
  roundTripsPerRequest: number;
}

const selfCpu = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

const sumMemory = (pids: number[], field: "rss" | "hwm") =>
  pids.reduce((total, pid) => total + (memoryOf(pid)?.[field] ?? 0), 0);

export async function measure(opts: MeasureOptions): Promise<Measurement> {
  const { componentPids, serverPids, redisPids, redis } = opts;
  opts.start();
  await sleep(opts.warmupSeconds * 1000);

  // Before the Redis snapshot: a scrape of /metrics sends one HKEYS, which must stay out of the window.
  const heapBefore = opts.heapUsed ? await opts.heapUsed() : null;
  const redisBefore = redis ? await redis.snapshot() : null;
  // One reading of every counter the window compares, taken at its start and at its end.
  const sample = () => ({
    component: totalCpuSeconds(componentPids),
    componentKernel: totalKernelSeconds(componentPids),
    server: totalCpuSeconds(serverPids),
    redis: totalCpuSeconds(redisPids),
    bench: selfCpu(),
    rss: sumMemory(componentPids, "rss"),
    hwm: sumMemory(componentPids, "hwm"),
    serverWakeups: totalWakeups(serverPids),
    componentWakeups: totalWakeups(componentPids),
    componentIo: totalSyscalls(componentPids),
    machine: machineTicks(),
    at: performance.now(),
  });
  const before = sample();
  await opts.mark();

  const rssTrace: Array<[number, number]> = [];
  const heapTrace: Array<[number, number]> = [];
  const end = before.at + opts.seconds * 1000;
  for (let next = before.at + 1000; next < end; next += 1000) {
    await sleep(Math.max(0, next - performance.now()));
    const at = Math.round((performance.now() - before.at) / 100) / 10;
    if (componentPids.length > 0) rssTrace.push([at, sumMemory(componentPids, "rss")]);
    const heap = opts.heapUsed ? await opts.heapUsed() : null;
    if (heap !== null) heapTrace.push([at, heap]);
  }
  await sleep(Math.max(0, end - performance.now()));

  const after = sample();
  const redisAfter = redis ? await redis.snapshot() : null;
  const heapAfter = opts.heapUsed ? await opts.heapUsed() : null;
  const window = await opts.stop();
  const wall = (after.at - before.at) / 1000;
  const perRequest = (value: number) => (window.completed > 0 ? value / window.completed : 0);
  const cores = (seconds: number) => Math.round((seconds / wall) * 100) / 100;

  let component: ComponentUsage | null = null;
  if (componentPids.length > 0) {
    const cpuSeconds = after.component - before.component;
    component = {
      processes: componentPids.length,
      cpuSeconds,
      cpuMicrosPerRequest: perRequest(cpuSeconds * 1e6),
      peakRssBytes: Math.max(...componentPids.map((pid) => memoryOf(pid)?.hwm ?? 0)),
      rssAtMarkBytes: before.rss,
      rssAtEndBytes: after.rss,
      hwmAtMarkBytes: before.hwm,
      hwmAtEndBytes: after.hwm,
      rssTrace,
      heapAtMarkBytes: heapBefore,
      heapAtEndBytes: heapAfter,
      heapTrace,
    };
  }
  let redisUsage: RedisUsage | null = null;
  if (redis && redisBefore && redisAfter) {
    const work = redis.diff(redisBefore, redisAfter);
    redisUsage = {
      ...work,
      commandsPerRequest: perRequest(work.commands),
      roundTripsPerRequest: perRequest(work.roundTrips),
    };
  }
  return {
    seconds: window.seconds,
    completed: window.completed,
    errors: window.errors,
    errorConditions: window.errorConditions,
    unanswered: window.unanswered,
    requestsPerSecond: window.seconds > 0 ? window.completed / window.seconds : 0,
    latency: window.latency,
    ...(window.byResource ? { byResource: window.byResource } : {}),
    component,
    redis: redisUsage,
    cores: {
      component: component ? cores(component.cpuSeconds) : null,
      server: cores(after.server - before.server),
      redis: redis ? cores(after.redis - before.redis) : null,
      load: window.loadCpuSeconds === null ? null : cores(window.loadCpuSeconds),
      bench: cores(after.bench - before.bench),
      ...machineShare(before.machine, after.machine),
    },
    perRequest: {
      serverCpuMicros: serverPids.length > 0 ? perRequest((after.server - before.server) * 1e6) : null,
      serverWakeups: serverPids.length > 0 ? perRequest(after.serverWakeups - before.serverWakeups) : null,
      componentWakeups: component ? perRequest(after.componentWakeups - before.componentWakeups) : null,
      componentKernelMicros: component
        ? perRequest((after.componentKernel - before.componentKernel) * 1e6)
        : null,
      componentReads: component ? perRequest(after.componentIo.reads - before.componentIo.reads) : null,
      componentWrites: component ? perRequest(after.componentIo.writes - before.componentIo.writes) : null,
    },
  };
}

function machineShare(
  before: ReturnType<typeof machineTicks>,
  after: ReturnType<typeof machineTicks>,
): { machineBusy: number; stealPercent: number } {
  const total = after.total - before.total;
  if (total <= 0) return { machineBusy: 0, stealPercent: 0 };
  const busy = total - (after.idle - before.idle);
  return {
    machineBusy: Math.round((busy / total) * cpus().length * 100) / 100,
    stealPercent: Math.round(((after.steal - before.steal) / total) * 1000) / 10,
  };
}
