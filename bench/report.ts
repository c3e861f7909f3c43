/**
 * The results of a run: JSON (everything), Markdown (the table, the machine, the targets) and the chart.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { BalanceStrategy } from "../src/routing/choose.js";
import { chartSvg } from "./chart.js";
import type { ComponentUsage, Measurement } from "./measure.js";
import type { MemoryRecords } from "./memory-records.js";
import type { MachineInfo } from "./proc.js";

export interface PathResult extends Measurement {
  id: string;
  label: string;
  server: "prosody" | "ejabberd" | "fake";
  via: "direct" | "minimal" | "service";
  store: "redis" | "memory" | null;
  replicas: number;
  /** BALANCE of the service's replicas (random: the default, not set); null without the service. */
  balance: BalanceStrategy | null;
  /** Each round as measured; the fields above combine them (combine.ts). */
  rounds: Measurement[];
}

export interface Settings {
  seconds: number;
  warmupSeconds: number;
  connections: number;
  window: number;
  capacityRequesters: number;
  capacityWindow: number;
  /** Rounds of the Prosody and capacity paths (ejabberd paths run once). */
  rounds: number;
  paths: string[];
}

export interface Target {
  name: string;
  status: "met" | "missed" | "not judged";
  /** The measured value and how far it is from the target. */
  detail: string;
}

export interface RunReport {
  startedAt: string;
  finishedAt: string;
  smoke: boolean;
  settings: Settings;
  machine: MachineInfo;
  paths: PathResult[];
  failures: Array<{ id: string; error: string }>;
  targets: Target[];
  /** The service at capacity against the baselines of the same run (capacityComparisons). */
  comparisons: Comparison[];
  /** Redis memory per pending request and per tombstone (memory-records); null when it did not run. */
  memoryRecords: MemoryRecords | null;
}

/** One ratio of the service to a baseline measured in the same run; null when either path did not run. */
export interface Comparison {
  name: string;
  ratio: number | null;
  detail: string;
}

const MB = 1024 * 1024;
const fixed = (value: number, digits: number) => value.toFixed(digits);
const ms = (value: number) => (value < 10 ? value.toFixed(2) : value.toFixed(1));

export function evaluateTargets(
  paths: PathResult[],
  settings: Settings,
  records: MemoryRecords | null = null,
): Target[] {
  const byId = new Map(paths.map((path) => [path.id, path]));
  const targets: Target[] = [];

  // 1. Redis round trips: one per direction, two per request. The sweep (about one per second per replica)
  // and the epoch check are background work, spread over the requests: allowed on top.
  const redisPaths = paths.filter((path) => path.via === "service" && path.redis && path.completed > 0);
  if (redisPaths.length > 0) {
    const lines = redisPaths.map((path) => {
      const value = path.redis?.roundTripsPerRequest ?? 0;
      // Requests in flight at the mark or at the stop have one of their two round trips inside the window.
      const inFlight =
        path.server === "fake"
          ? settings.capacityRequesters * settings.capacityWindow
          : settings.connections * settings.window;
      const background = (2 * path.replicas * path.seconds + inFlight * path.rounds.length) / path.completed;
      return { path, value, ok: value <= 2 + background, background };
    });
    targets.push({
      name: "At most one Redis round trip per direction (two per request)",
      status: lines.every((line) => line.ok) ? "met" : "missed",
      detail: lines
        .map(
          ({ path, value, background }) =>
            `${path.label}: ${fixed(value, 3)} round trips per request (${fixed(
              path.redis?.commandsPerRequest ?? 0,
              1,
            )} commands; allowed on top for the timeout sweeps and the requests in flight at the window's edges: ${fixed(background, 3)})`,
        )
        .join("; "),
    });
  }

  // 2. Service CPU per proxied request with Redis against the minimal component's, in the same run: through
  // Prosody <= 2x; at capacity <= 2.5x, and Redis CPU per request <= 2x the floor's (the ratios of
  // capacityComparisons, judged).
  const ofService = byId.get("prosody-redis")?.component?.cpuMicrosPerRequest;
  const ofMinimal = byId.get("prosody-minimal")?.component?.cpuMicrosPerRequest;
  if (ofService !== undefined && ofMinimal !== undefined && ofMinimal > 0) {
    const ratio = ofService / ofMinimal;
    targets.push({
      name: "Service CPU per request with Redis <= 2x the minimal component's, through Prosody",
      status: ratio <= 2 ? "met" : "missed",
      detail: `${fixed(ofService, 1)} vs ${fixed(ofMinimal, 1)} us per request: ${fixed(ratio, 2)}x (limit 2x)`,
    });
  }
  const [cpuAtCapacity, redisVsFloor] = capacityComparisons(paths);
  for (const [comparison, name, limit] of [
    [cpuAtCapacity, "Service CPU per request with Redis <= 2.5x the minimal component's, at capacity", 2.5],
    [redisVsFloor, "Redis CPU per request <= 2x the floor's (capacity mode)", 2],
  ] as const) {
    if (comparison?.ratio == null) continue;
    targets.push({
      name,
      status: comparison.ratio <= limit ? "met" : "missed",
      detail: `${fixed(comparison.ratio, 2)}x (limit ${limit}x): ${comparison.detail}`,
    });
  }

  // 2b. About 2,000 requests/s offered evenly (capacity-redis-2000: each request wakes the replica on its own):
  // the service's CPU per request <= 1.5x its figure at capacity (capacity-redis), same run.
  const paced = byId.get("capacity-redis-2000");
  const saturated = byId.get("capacity-redis");
  if (paced?.component && saturated?.component && saturated.component.cpuMicrosPerRequest > 0) {
    const ratio = paced.component.cpuMicrosPerRequest / saturated.component.cpuMicrosPerRequest;
    targets.push({
      name: "Service CPU per request at about 2,000 req/s <= 1.5x its figure at capacity",
      status: ratio <= 1.5 ? "met" : "missed",
      detail: `${fixed(paced.component.cpuMicrosPerRequest, 1)} us at ${fixed(paced.requestsPerSecond, 0)} req/s vs ${fixed(
        saturated.component.cpuMicrosPerRequest,
        1,
      )} us at capacity (${fixed(saturated.requestsPerSecond, 0)} req/s): ${fixed(ratio, 2)}x (limit 1.5x)${minimalFactor(
        byId.get("capacity-minimal-2000"),
        byId.get("capacity-minimal"),
      )}`,
    });
  }

  // 3. End to end through Prosody, 64 requests in flight: >= 0.95x the minimal component's requests/s, with
  // Redis and with the in-process store.
  const minimal = byId.get("prosody-minimal");
  const stores = [byId.get("prosody-redis"), byId.get("prosody-memory")].flatMap((path) =>
    path ? [path] : [],
  );
  if (minimal && minimal.requestsPerSecond > 0 && stores.length > 0) {
    const token = byId.get("prosody-minimal-token");
    const share = (path: PathResult) => path.requestsPerSecond / minimal.requestsPerSecond;
    targets.push({
      name: "End to end through Prosody >= 0.95x the minimal stateless component's requests/s",
      status: stores.every((path) => share(path) >= 0.95) ? "met" : "missed",
      detail: `${stores
        .map((path) => `${path.label} ${fixed(path.requestsPerSecond, 0)}/s = ${fixed(share(path), 2)}x`)
        .join("; ")} of ${fixed(minimal.requestsPerSecond, 0)}/s${
        token ? `; the minimal component with a token-sized address alone: ${fixed(share(token), 2)}x` : ""
      }`,
    });
  }

  // 3b. Redis commands per request (scripts' commands included), capacity mode with the default strategy.
  const capacity = byId.get("capacity-redis");
  if (capacity?.redis) {
    const commands = capacity.redis.commandsPerRequest;
    targets.push({
      name: "Redis commands per request <= 8 (capacity mode)",
      status: commands <= 8 ? "met" : "missed",
      detail: `${fixed(commands, 2)} commands in ${fixed(capacity.redis.roundTripsPerRequest, 3)} round trips per request`,
    });
  }

  // 4. Memory: flat over 10 minutes. A shorter run only shows the growth over its own window.
  const memoryPaths = paths.filter((path) => path.via === "service" && path.component);
  if (memoryPaths.length > 0) {
    const long = settings.seconds >= 600;
    const lines = memoryPaths.map((path) => {
      // The largest growth among the rounds (each round is a fresh service process).
      const rounds = path.rounds.flatMap((round) => (round.component ? [round.component] : []));
      const growth = Math.max(...rounds.map((c) => (c.rssAtEndBytes - c.rssAtMarkBytes) / MB));
      const hwmGrowth = Math.max(...rounds.map((c) => (c.hwmAtEndBytes - c.hwmAtMarkBytes) / MB));
      const heapGrowths = rounds.flatMap((c) =>
        c.heapAtMarkBytes === null || c.heapAtEndBytes === null
          ? []
          : [(c.heapAtEndBytes - c.heapAtMarkBytes) / MB],
      );
      const heapGrowth = heapGrowths.length > 0 ? Math.max(...heapGrowths) : null;
      const flat = rounds.every(isFlat);
      const live = rounds.map(liveHeap);
      return {
        path,
        growth,
        hwmGrowth,
        heapGrowth,
        flat,
        live,
        peak: (path.component?.peakRssBytes ?? 0) / MB,
      };
    });
    targets.push({
      name: "Memory flat over a 10-minute run",
      status: long ? (lines.every((line) => line.flat) ? "met" : "missed") : "not judged",
      detail: `${
        long ? `${settings.seconds} s per path` : `NOT a 10-minute run: ${settings.seconds} s per path`
      }; RSS growth from the start to the end of the measurement (largest of the rounds): ${lines
        .map(
          ({ path, growth, hwmGrowth, heapGrowth, live, peak }) =>
            `${path.label} ${growth >= 0 ? "+" : ""}${fixed(growth, 1)} MB (V8 heap in use ${
              heapGrowth === null ? "?" : `${heapGrowth >= 0 ? "+" : ""}${fixed(heapGrowth, 1)} MB`
            }, VmHWM +${fixed(hwmGrowth, 1)} MB, peak RSS ${fixed(peak, 0)} MB${live
              .flatMap((thirds) =>
                thirds ? [`; live heap by thirds ${thirds.map((mb) => fixed(mb, 0)).join(" -> ")} MB`] : [],
              )
              .join("")})`,
        )
        .join("; ")}`,
    });
  }

  // 5. Balancing strategies: the choice is made inside the forward script, so no strategy adds a round trip.
  const { baseline, strategies } = balancingPaths(paths);
  if (strategies.length > 0) {
    const limit = baseline ? (baseline.redis?.roundTripsPerRequest ?? 0) + 0.05 : null;
    const lines = strategies.map((path) => {
      const value = path.redis?.roundTripsPerRequest ?? 0;
      return { path, value, ok: limit !== null && value <= limit };
    });
    targets.push({
      name: "Each balancing strategy: Redis round trips per request <= random's + 0.05 (capacity mode)",
      status: limit === null ? "not judged" : lines.every((line) => line.ok) ? "met" : "missed",
      detail:
        limit === null || !baseline
          ? "capacity-redis (random) did not run: nothing to compare with"
          : `random ${fixed(baseline.redis?.roundTripsPerRequest ?? 0, 3)} (limit ${fixed(limit, 3)}); ${lines
              .map(
                ({ path, value }) =>
                  `${path.balance} ${fixed(value, 3)} (${value >= limit ? "+" : ""}${fixed(value - limit, 3)} vs the limit)`,
              )
              .join("; ")}`,
    });
  }
  // 3d. Redis memory per pending request (100-byte payload) and per tombstone.
  if (records) {
    const ok = records.bytesPerPending <= 400 && records.bytesPerTombstone <= 120;
    targets.push({
      name: "Redis memory <= 400 bytes per pending request (100-byte payload), <= 120 per tombstone",
      status: ok ? "met" : "missed",
      detail: `${fixed(records.bytesPerPending, 0)} bytes per pending request (${records.payloadBytes}-byte payload), ${fixed(
        records.bytesPerTombstone,
        0,
      )} per tombstone`,
    });
  }

  // 4. The other paths, per stanza, at most 1.2x the IQ path's CPU: the balancing strategies at capacity.
  if (baseline?.component && strategies.length > 0) {
    const base = baseline.component.cpuMicrosPerRequest;
    const lines = strategies.map((path) => ({
      path,
      ratio: (path.component?.cpuMicrosPerRequest ?? 0) / base,
    }));
    targets.push({
      name: "Each balancing strategy's service CPU per request <= 1.2x random's (capacity mode)",
      status: lines.every((line) => line.ratio <= 1.2) ? "met" : "missed",
      detail: `random ${fixed(base, 1)} us; ${lines
        .map(({ path, ratio }) => `${path.balance} ${fixed(ratio, 2)}x`)
        .join("; ")}`,
    });
  }
  // The service address in its other uses, per round (two stanzas in, two out, as an IQ request and its answer).
  for (const [id, what] of [
    ["capacity-redis-messages", "Messages: a message in and one out"],
    ["capacity-redis-requests-out", "Requests from the implementing client: a request and its answer"],
  ] as const) {
    const path = byId.get(id);
    if (!baseline?.component || !path?.component) continue;
    const ratio = path.component.cpuMicrosPerRequest / baseline.component.cpuMicrosPerRequest;
    targets.push({
      name: `${what}: service CPU <= 1.2x an IQ request and its answer (capacity mode)`,
      status: ratio <= 1.2 ? "met" : "missed",
      detail: `${fixed(path.component.cpuMicrosPerRequest, 1)} vs ${fixed(
        baseline.component.cpuMicrosPerRequest,
        1,
      )} us: ${fixed(ratio, 2)}x (${fixed(path.redis?.commandsPerRequest ?? 0, 2)} Redis commands and ${fixed(
        path.redis?.roundTripsPerRequest ?? 0,
        3,
      )} round trips per round)`,
    });
  }
  return targets;
}

/** V8's young generation on 64-bit Node 20: up to 16 MB of semi-space, counted in the heap in use. */
const YOUNG_MB = 16;

/**
 * The live heap of a round: the lowest V8 heap in use (what survived the collections) in each third of the
 * measurement, MB; null without a heap trace of at least 3 samples.
 */
function liveHeap(c: ComponentUsage): [number, number, number] | null {
  const trace = c.heapTrace;
  if (trace.length < 3) return null;
  const third = Math.floor(trace.length / 3);
  const low = (from: number, to: number) => Math.min(...trace.slice(from, to).map(([, bytes]) => bytes)) / MB;
  return [low(0, third), low(third, 2 * third), low(2 * third, trace.length)];
}

/**
 * Whether memory stayed flat over a round. With a heap trace: the live heap of the last third is at most 10%
 * above the middle third's, or within the young generation's size (YOUNG_MB: what is in it when sampled is
 * chance); the first third is when what the service keeps for IQ_TIMEOUT_MS and the tombstones fill up.
 * Peaks are no measure of a leak: without a heap limit V8 grows the heap before it collects. Without a heap
 * trace: the RSS of the second half stays within 5% of the first half's peak.
 */
function isFlat(c: ComponentUsage): boolean {
  const live = liveHeap(c);
  if (live) return live[2] <= Math.max(live[1] * 1.1, live[1] + YOUNG_MB);
  const half = Math.floor(c.rssTrace.length / 2);
  const firstPeak = Math.max(0, ...c.rssTrace.slice(0, half).map(([, bytes]) => bytes));
  const secondPeak = Math.max(0, ...c.rssTrace.slice(half).map(([, bytes]) => bytes));
  return firstPeak > 0 && secondPeak <= firstPeak * 1.05;
}

/** The same factor for the minimal component (capacity-minimal-2000 against capacity-minimal), when both ran. */
function minimalFactor(paced: PathResult | undefined, saturated: PathResult | undefined): string {
  const at = paced?.component?.cpuMicrosPerRequest;
  const full = saturated?.component?.cpuMicrosPerRequest;
  if (at === undefined || full === undefined || full <= 0) return "";
  return `; the minimal component: ${fixed(at, 1)} us at ${fixed(paced?.requestsPerSecond ?? 0, 0)} req/s vs ${fixed(
    full,
    1,
  )} us at capacity, ${fixed(at / full, 2)}x`;
}

/**
 * The capacity paths with Redis, by balancing strategy: the default's (random), and the others'. Only when
 * some other strategy ran.
 */
function balancingPaths(paths: PathResult[]): { baseline: PathResult | null; strategies: PathResult[] } {
  const capacity = paths.filter(
    (path) =>
      path.server === "fake" &&
      path.via === "service" &&
      path.store === "redis" &&
      path.redis &&
      path.replicas === 1 &&
      !["capacity-redis-messages", "capacity-redis-requests-out", "capacity-redis-2000"].includes(path.id),
  );
  const strategies = capacity.filter((path) => path.balance !== null && path.balance !== "random");
  const baseline = capacity.find((path) => path.balance === "random") ?? null;
  return { baseline, strategies };
}

/** Microseconds of Redis CPU per request (its cores in use over the requests per second). */
const redisMicros = (path: PathResult) =>
  path.cores.redis === null || path.requestsPerSecond <= 0
    ? null
    : (path.cores.redis * 1e6) / path.requestsPerSecond;

/**
 * The service at capacity (capacity-redis: one replica, Redis, the default strategy) against the baselines
 * measured with the same fake server and load in the same run: its CPU per request against the minimal
 * stateless component's (capacity-minimal), and its Redis's CPU per request against the Redis floor's
 * (capacity-floor: one SET and one GETDEL per request).
 */
export function capacityComparisons(paths: PathResult[]): Comparison[] {
  const byId = new Map(paths.map((path) => [path.id, path]));
  const service = byId.get("capacity-redis");
  const minimal = byId.get("capacity-minimal");
  const floor = byId.get("capacity-floor");
  const ratio = (a: number | null | undefined, b: number | null | undefined) =>
    a == null || b == null || b <= 0 ? null : a / b;
  const us = (value: number | null | undefined) => (value == null ? "-" : `${fixed(value, 1)} us`);
  const missing = (...ids: Array<[string, PathResult | undefined]>) =>
    ids.filter(([, path]) => !path).map(([id]) => id);
  const comparisons: Comparison[] = [];

  const serviceCpu = service?.component?.cpuMicrosPerRequest;
  const minimalCpu = minimal?.component?.cpuMicrosPerRequest;
  const cpu = ratio(serviceCpu, minimalCpu);
  const cpuMissing = missing(["capacity-redis", service], ["capacity-minimal", minimal]);
  comparisons.push({
    name: "service CPU per request at capacity vs minimal at capacity",
    ratio: cpu,
    detail:
      cpuMissing.length > 0
        ? `not measured: ${cpuMissing.join(" and ")} did not run`
        : `${us(serviceCpu)} vs ${us(minimalCpu)} per request (${fixed(service?.requestsPerSecond ?? 0, 0)} vs ${fixed(
            minimal?.requestsPerSecond ?? 0,
            0,
          )} req/s)${
            floor?.component
              ? `; the floor (minimal + SET/GETDEL) ${us(floor.component.cpuMicrosPerRequest)} (${fixed(
                  floor.requestsPerSecond,
                  0,
                )} req/s)`
              : ""
          }`,
  });

  const serviceRedis = service ? redisMicros(service) : null;
  const floorRedis = floor ? redisMicros(floor) : null;
  const redisRatio = ratio(serviceRedis, floorRedis);
  const redisMissing = missing(["capacity-redis", service], ["capacity-floor", floor]);
  comparisons.push({
    name: "service Redis CPU per request vs floor",
    ratio: redisRatio,
    detail:
      redisMissing.length > 0
        ? `not measured: ${redisMissing.join(" and ")} did not run`
        : `${us(serviceRedis)} vs ${us(floorRedis)} of Redis CPU per request (${fixed(
            service?.redis?.roundTripsPerRequest ?? 0,
            3,
          )} vs ${fixed(floor?.redis?.roundTripsPerRequest ?? 0, 3)} round trips, ${fixed(
            service?.redis?.commandsPerRequest ?? 0,
            2,
          )} vs ${fixed(floor?.redis?.commandsPerRequest ?? 0, 2)} commands per request)${ceiling(
            serviceRedis,
            floorRedis,
          )}`,
  });
  comparisons.push(measuredCeiling(paths, service ?? null, floorRedis));
  return comparisons;
}

/**
 * The domain's ceiling as measured with several replicas on one Redis (capacity-redis-N-replicas): requests/s
 * over the Redis cores busy, beside one replica's and the floor's. Its ratio: the service's requests per Redis
 * core with the most replicas that ran, as a share of the floor's.
 */
function measuredCeiling(
  paths: PathResult[],
  single: PathResult | null,
  floorRedis: number | null,
): Comparison {
  const several = paths.filter(
    (path) => path.server === "fake" && path.via === "service" && path.store === "redis" && path.replicas > 1,
  );
  const perCore = (micros: number | null) => (micros ? 1e6 / micros : null);
  const line = (path: PathResult) =>
    `${path.replicas} replica${path.replicas > 1 ? "s" : ""}: ${fixed(path.requestsPerSecond, 0)} req/s with Redis ${fixed(
      path.cores.redis ?? 0,
      2,
    )} cores busy = ${fixed(perCore(redisMicros(path)) ?? 0, 0)} req/s per Redis core`;
  const most = several.at(-1) ?? null;
  const mostPerCore = most ? perCore(redisMicros(most)) : null;
  const floorPerCore = perCore(floorRedis);
  return {
    name: "the domain's ceiling, requests/s per Redis core, vs the floor's",
    ratio: mostPerCore !== null && floorPerCore ? mostPerCore / floorPerCore : null,
    detail:
      several.length === 0
        ? "not measured: no path with several replicas ran (capacity-redis-2-replicas, capacity-redis-4-replicas)"
        : `${[...(single ? [single] : []), ...several].map(line).join("; ")}; the floor: ${
            floorPerCore === null ? "-" : fixed(floorPerCore, 0)
          } req/s per Redis core. Every replica and Redis share the machine's cores: Redis is not saturated here, its cost per request is what sets the ceiling`,
  };
}

/**
 * The domain's ceiling: all replicas of a domain share one Redis (one hash-tag slot on a Cluster), so one Redis
 * core carries at most 1 / (Redis CPU per request) requests per second, however many replicas run. On 2 cores
 * replicas saturate the machine before Redis does, so the ceiling is read off the per-request cost, not reached.
 */
function ceiling(serviceRedisMicros: number | null, floorRedisMicros: number | null): string {
  if (!serviceRedisMicros || !floorRedisMicros) return "";
  const perCore = (micros: number) => fixed(1e6 / micros, 0);
  return `; the domain's ceiling: ${perCore(serviceRedisMicros)} req/s per Redis core vs the floor's ${perCore(
    floorRedisMicros,
  )}`;
}

/** The comparisons and the memory per record, as the Markdown shows them. */
function baselineLines(report: RunReport): string[] {
  const lines = report.comparisons.map(
    (c) => `- **${c.name}: ${c.ratio === null ? "-" : `${fixed(c.ratio, 1)}x`}.** ${c.detail}`,
  );
  const m = report.memoryRecords;
  if (m) {
    const kib = (bytes: number) => fixed(bytes / 1024, 0);
    const left = (step: "pending" | "tombstones") =>
      `${kib(m.backlogMemory[step] - m.backlogMemory.before)} KiB of replication backlog and ${kib(
        m.clientsMemory[step] - m.clientsMemory.before,
      )} KiB of client buffers`;
    lines.push(
      [
        `- **Redis memory per pending request: ${fixed(m.bytesPerPending, 0)} bytes (${m.payloadBytes}-byte payload);`,
        `per tombstone: ${fixed(m.bytesPerTombstone, 0)} bytes.**`,
        `Growth of used_memory over ${m.records} requests of the real store (${m.keys.pending} keys pending,`,
        `${m.keys.tombstones} answered), without the buffers Redis sizes on its own (pending: ${left("pending")};`,
        `tombstones: ${left("tombstones")}). MEMORY USAGE of one record key:`,
        `${m.recordKeyBytes.pending ?? "?"} bytes pending (${m.recordEncoding.pending ?? "?"}),`,
        `${m.recordKeyBytes.tombstone ?? "?"} as a tombstone (${m.recordEncoding.tombstone ?? "?"}).`,
      ].join(" "),
    );
  }
  if (lines.length === 0) return [];
  return [
    "## Against the baselines",
    "",
    "At capacity (one process against the fake server, same load, same run): the service (capacity-redis) against the minimal stateless component (capacity-minimal) and the Redis floor (capacity-floor: the minimal component with one SET per request and one GETDEL per answer, the service's Redis client). Redis CPU per request: its cores in use over the requests per second.",
    "",
    ...lines,
    "",
  ];
}

/**
 * What each balancing strategy costs next to random, one replica against the fake server with Redis: its
 * throughput, the service's and Redis's CPU per request, Redis round trips and commands per request, which
 * commands it adds, and how it spread the requests over the two resources.
 */
function balancingTable(report: RunReport): string[] {
  const { baseline, strategies } = balancingPaths(report.paths);
  if (strategies.length === 0) return [];
  const rows = baseline ? [baseline, ...strategies] : strategies;
  /** The path's value, and in parentheses its difference from random's (in percent when relative). */
  const delta = (
    path: PathResult,
    pick: (p: PathResult) => number | null,
    digits: number,
    relative = false,
  ) => {
    const value = pick(path);
    const base = baseline ? pick(baseline) : null;
    if (value === null) return "-";
    if (base === null || path === baseline) return fixed(value, digits);
    const diff = relative ? (base === 0 ? 0 : ((value - base) / base) * 100) : value - base;
    return `${fixed(value, digits)} (${diff >= 0 ? "+" : ""}${relative ? `${fixed(diff, 0)}%` : fixed(diff, digits)})`;
  };
  const perRequest = (path: PathResult) => {
    const out = new Map<string, number>();
    for (const [name, calls] of Object.entries(path.redis?.byCommand ?? {}))
      out.set(name, path.completed > 0 ? calls / path.completed : 0);
    return out;
  };
  const baseCommands = baseline ? perRequest(baseline) : new Map<string, number>();
  const added = (path: PathResult) => {
    if (!baseline || path === baseline) return "-";
    const mine = perRequest(path);
    const names = new Set([...mine.keys(), ...baseCommands.keys()]);
    const parts = [...names]
      .map((name) => [name, (mine.get(name) ?? 0) - (baseCommands.get(name) ?? 0)] as const)
      .filter(([, diff]) => Math.abs(diff) >= 0.05)
      .sort((a, b) => b[1] - a[1])
      .map(([name, diff]) => `${diff >= 0 ? "+" : ""}${fixed(diff, 2)} ${name}`);
    return parts.length > 0 ? parts.join(", ") : "none";
  };
  const spread = (path: PathResult) => {
    const counts = Object.entries(path.byResource ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
    const total = counts.reduce((sum, [, n]) => sum + n, 0);
    return total === 0
      ? "-"
      : counts.map(([name, n]) => `${name} ${fixed((n / total) * 100, 0)}%`).join(", ");
  };
  const header = [
    "strategy",
    "req/s",
    "proxy CPU us/req",
    "Redis CPU us/req",
    "Redis round trips/req",
    "Redis commands/req",
    "commands added per request",
    "requests per resource",
  ];
  return [
    "## Balancing strategies",
    "",
    `One replica against the fake server with Redis (capacity mode), BALANCE set; in parentheses the difference from ${
      baseline ? "random (capacity-redis)" : "random, which did not run"
    }. Redis CPU per request: its cores in use over the requests per second.`,
    "",
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 || i >= 6 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map(
      (path) =>
        `| ${[
          path.balance ?? "?",
          delta(path, (p) => p.requestsPerSecond, 0, true),
          delta(path, (p) => p.component?.cpuMicrosPerRequest ?? null, 1),
          delta(path, redisMicros, 1),
          delta(path, (p) => p.redis?.roundTripsPerRequest ?? null, 3),
          delta(path, (p) => p.redis?.commandsPerRequest ?? null, 2),
          added(path),
          spread(path),
        ].join(" | ")} |`,
    ),
    "",
  ];
}

/**
 * Busy cores of the machine not used by the bench's own processes: other work on the machine (and the
 * kernel's loopback networking, which is not charged to any process).
 */
export function otherCores(path: PathResult): number {
  const { component, server, redis, load, bench, machineBusy } = path.cores;
  return Math.max(0, machineBusy - (component ?? 0) - server - (redis ?? 0) - (load ?? 0) - bench);
}

export function markdown(report: RunReport, chartFile: string | null): string {
  const { machine, settings } = report;
  const rows = report.paths.map((path) => {
    const c = path.component;
    const r = path.redis;
    return [
      path.label,
      path.rounds.length > 1
        ? `${fixed(path.requestsPerSecond, 0)} (${path.rounds.map((round) => fixed(round.requestsPerSecond, 0)).join(", ")})`
        : fixed(path.requestsPerSecond, 0),
      ms(path.latency.p50),
      ms(path.latency.p99),
      ms(path.latency.max),
      c ? fixed(c.cpuMicrosPerRequest, 1) : "-",
      c ? fixed(c.peakRssBytes / MB, 0) : "-",
      r ? fixed(r.commandsPerRequest, 2) : "-",
      r ? fixed(r.roundTripsPerRequest, 3) : "-",
      [
        path.cores.component === null ? null : `proxy ${fixed(path.cores.component, 2)}`,
        path.server === "fake" ? null : `${path.server} ${fixed(path.cores.server, 2)}`,
        path.cores.redis === null ? null : `redis ${fixed(path.cores.redis, 2)}`,
        path.cores.load === null ? null : `requesters ${fixed(path.cores.load, 2)}`,
        `${path.server === "fake" ? "fake server" : "impl clients"} ${fixed(path.cores.bench, 2)}`,
        `other processes ${fixed(otherCores(path), 2)}${path.cores.stealPercent > 0 ? ` (steal ${path.cores.stealPercent}%)` : ""}`,
      ]
        .filter((part) => part !== null)
        .join(", "),
      path.errors + path.unanswered === 0
        ? "0"
        : `${path.errors} errors${
            Object.keys(path.errorConditions).length > 0 ? ` (${JSON.stringify(path.errorConditions)})` : ""
          }, ${path.unanswered} unanswered`,
    ];
  });
  const header = [
    "path",
    "req/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "proxy CPU ms per 1000 req",
    "proxy peak RSS MB",
    "Redis commands/req",
    "Redis round trips/req",
    "CPU cores in use",
    "errors",
  ];
  const table = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 || i >= 9 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
  const diagHeader = [
    "path",
    "server CPU us/req",
    "server wake-ups/req",
    "proxy wake-ups/req",
    "proxy kernel CPU us/req",
    "proxy reads/req",
    "proxy writes/req",
  ];
  const opt = (value: number | null, digits: number) => (value === null ? "-" : fixed(value, digits));
  const diagnostics = [
    `| ${diagHeader.join(" | ")} |`,
    `| ${diagHeader.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...report.paths.map(
      (path) =>
        `| ${[
          path.label,
          opt(path.perRequest.serverCpuMicros, 0),
          opt(path.perRequest.serverWakeups, 2),
          opt(path.perRequest.componentWakeups, 2),
          opt(path.perRequest.componentKernelMicros, 1),
          opt(path.perRequest.componentReads, 2),
          opt(path.perRequest.componentWrites, 2),
        ].join(" | ")} |`,
    ),
  ].join("\n");
  const memHeader = [
    "path (last round)",
    "proxy RSS MB, start -> end (all replicas)",
    "proxy V8 heap in use MB, start -> end (all replicas)",
    "proxy peak RSS MB (largest replica)",
    "Redis used_memory growth MB",
  ];
  const mb = (bytes: number | null) => (bytes === null ? "?" : fixed(bytes / MB, 0));
  const memoryTable = [
    `| ${memHeader.join(" | ")} |`,
    `| ${memHeader.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...report.paths
      .filter((path) => path.via === "service")
      .map((path) => {
        const last = path.rounds[path.rounds.length - 1] ?? path;
        const c = last.component;
        return `| ${[
          path.label,
          c ? `${mb(c.rssAtMarkBytes)} -> ${mb(c.rssAtEndBytes)}` : "-",
          c ? `${mb(c.heapAtMarkBytes)} -> ${mb(c.heapAtEndBytes)}` : "-",
          c ? mb(c.peakRssBytes) : "-",
          last.redis ? fixed(last.redis.usedMemoryGrowth / MB, 1) : "-",
        ].join(" | ")} |`;
      }),
  ].join("\n");
  const lines = [
    `# Benchmark run ${report.startedAt}${report.smoke ? " (smoke)" : ""}`,
    "",
    `Machine: ${machine.cores} cores, ${machine.cpuModel}, Linux ${machine.kernel}, load average at start ${machine.loadAverage.join(
      " / ",
    )}. Node ${machine.node}, Prosody ${machine.prosody}, ejabberd ${machine.ejabberd}, Redis ${machine.redis}.`,
    "",
    `Settings: ${settings.seconds} s measured per path and round after ${settings.warmupSeconds} s warm-up; ${settings.rounds} round(s) of the Prosody and capacity paths, one after the other (req/s in parentheses: each round), one of the ejabberd paths; ${settings.connections} requester connections x ${settings.window} requests in flight (end to end); capacity mode ${settings.capacityRequesters} fake requesters x ${settings.capacityWindow} in flight.`,
    "",
    table,
    "",
    ...(chartFile ? [`![throughput and latency per path](${chartFile})`, ""] : []),
    "Per proxied request, from /proc: the XMPP server's CPU time; wake-ups (voluntary context switches, all threads) of the server and of the proxy; the part of the proxy's CPU time spent in the kernel (stime: system calls, the loopback TCP work they do); the proxy's read and write system calls (XMPP and Redis sockets).",
    "",
    diagnostics,
    "",
    `Memory of the service over the measured ${settings.seconds} s (the service keeps answered requests for IQ_TIMEOUT_MS plus a grace period in this process, and the store keeps tombstones for IQ_TIMEOUT_MS + 30 s):`,
    "",
    memoryTable,
    "",
    ...balancingTable(report),
    ...baselineLines(report),
    ...(report.failures.length > 0
      ? ["Failed paths:", "", ...report.failures.map((f) => `- ${f.id}: ${f.error.split("\n")[0]}`), ""]
      : []),
    "## Targets",
    "",
    ...report.targets.map((target) => `- **${target.name}: ${target.status}.** ${target.detail}`),
    "",
  ];
  return lines.join("\n");
}

/**
 * Formats the written files with the project's Biome, so that `biome check .` (npm run lint) stays clean in a
 * tree where the bench ran: biome.json does not exclude bench/results/. Best effort.
 */
function formatWithBiome(files: string[]): void {
  const biome = fileURLToPath(new URL("../node_modules/@biomejs/biome/bin/biome", import.meta.url));
  spawnSync(process.execPath, [biome, "format", "--write", ...files], { stdio: "ignore", timeout: 30_000 });
}

/** Writes bench/results/<stamp>.{json,md,svg}; returns the paths written. */
export function writeResults(report: RunReport): { json: string; md: string; svg: string } {
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const base = `${stamp}${report.smoke ? "-smoke" : ""}`;
  const files = {
    json: new URL(`${base}.json`, dir).pathname,
    md: new URL(`${base}.md`, dir).pathname,
    svg: new URL(`${base}.svg`, dir).pathname,
  };
  writeFileSync(files.json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(files.svg, chartSvg(report.paths, `${report.startedAt}${report.smoke ? " (smoke)" : ""}`));
  writeFileSync(files.md, markdown(report, `${base}.svg`));
  formatWithBiome([files.json, files.md, files.svg]);
  return files;
}
