/**
 * `npm run bench` (and `npm run bench:smoke`): throughput, latency, CPU, memory and Redis work of
 * xmpp-client-proxy against the same server used directly and through a minimal stateless component.
 *
 * Paths, back to back (ids for BENCH_PATHS):
 *   prosody-direct, prosody-minimal, prosody-minimal-token, prosody-redis, prosody-memory,
 *   ejabberd-direct, ejabberd-minimal, ejabberd-redis-1, ejabberd-redis-2,
 *   capacity-redis, capacity-memory (one replica against a fake XMPP server: bench/capacity.ts),
 *   capacity-redis-messages (capacity-redis with messages in and out instead of IQ requests and answers),
 *   capacity-redis-requests-out (requests of the resources to domain/<token>, answered by the requesters),
 *   capacity-redis-round-robin, capacity-redis-least-pending, capacity-redis-sticky (capacity-redis with
 *   BALANCE set: what each balancing strategy costs per request next to the default, random),
 *   capacity-redis-2000 (one replica, 2,000 requests/s offered evenly: the cost of a request that wakes the
 *   replica on its own; capacity-minimal-2000 the same for the minimal component), capacity-redis-2-replicas, capacity-redis-4-replicas (replicas sharing one Redis, the
 *   fake server sending each stanza to the next: the domain's ceiling per Redis core),
 *   capacity-minimal (the minimal component against the same fake server and load: the service's CPU per
 *   request at capacity against the least a component does), capacity-floor (the minimal component with one
 *   Redis SET per request and one GETDEL per answer: the least Redis work of any correlating proxy),
 *   memory-records (not a path: Redis memory per pending request and per tombstone with the real store, N =
 *   10,000, 100-byte payload; runs once, before the capacity paths)
 *
 * Environment: BENCH_SECONDS (measured time per path, default 10; smoke 2), BENCH_WARMUP_SECONDS (3; smoke 1),
 * BENCH_CONNECTIONS (requester connections, 4), BENCH_WINDOW (requests in flight per connection, 16),
 * BENCH_CAPACITY_REQUESTERS (50), BENCH_CAPACITY_WINDOW (4), BENCH_PATHS (comma-separated ids),
 * BENCH_HEAP_LIMIT_MB (--max-old-space-size of the replicas, as the Helm chart's heapLimitMb),
 * BENCH_ROUNDS (rounds of the Prosody and capacity paths, default 2; smoke 1), BENCH_CPU_PROF_DIR (write a
 * V8 CPU profile of every service replica there: for finding where the time goes, not for the numbers).
 * `--smoke`: 2 s per path, Prosody and capacity paths only (of the strategies, least-pending; the baselines
 * capacity-minimal and capacity-floor), and memory-records.
 *
 * Everything runs on 127.0.0.1 with private servers on free ports; every process started is stopped at the
 * end, on an error and on Ctrl-C. Results: bench/results/<timestamp>.{json,md,svg}.
 */
import { readFileSync } from "node:fs";
import type { Element } from "@xmpp/xml";
import type { BalanceStrategy } from "../src/routing/choose.js";
import { type Client, sendIq, stopClient } from "../test/harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../test/harness/ejabberd.js";
import { type ProsodyServer, startProsody } from "../test/harness/prosody.js";
import { type RedisServer, startRedis } from "../test/harness/redis.js";
import {
  connectImplementing,
  connectUser,
  echo,
  NS_ECHO,
  receivedBy,
  TEST_USERS,
  until,
} from "../test/integration/helpers.js";
import { runCapacity } from "./capacity.js";
import { cleanupAll, installSignalHandlers, interrupted, onCleanup } from "./cleanup.js";
import { combine } from "./combine.js";
import { startLoad } from "./load-protocol.js";
import { type Measurement, measure } from "./measure.js";
import { type MemoryRecords, measureRecordMemory } from "./memory-records.js";
import { findPids, machineInfo } from "./proc.js";
import { type RedisProbe, redisProbe } from "./redis-stats.js";
import {
  capacityComparisons,
  evaluateTargets,
  type PathResult,
  type RunReport,
  type Settings,
  writeResults,
} from "./report.js";
import { type Replica, startMinimal, startReplica, sumHeaps, type XmppTarget } from "./services.js";

type PathId =
  | "prosody-direct"
  | "prosody-minimal"
  | "prosody-minimal-token"
  | "prosody-redis"
  | "prosody-memory"
  | "ejabberd-direct"
  | "ejabberd-minimal"
  | "ejabberd-redis-1"
  | "ejabberd-redis-2"
  | "capacity-redis"
  | "capacity-memory"
  | "capacity-redis-round-robin"
  | "capacity-redis-least-pending"
  | "capacity-redis-sticky"
  | "capacity-redis-messages"
  | "capacity-redis-requests-out"
  | "capacity-redis-2000"
  | "capacity-minimal-2000"
  | "capacity-redis-2-replicas"
  | "capacity-redis-4-replicas"
  | "capacity-minimal"
  | "capacity-floor";

/** What a run can be asked for besides the paths: a measurement of its own, run once. */
type ExtraId = "memory-records";
type RunId = PathId | ExtraId;
const EXTRAS: ExtraId[] = ["memory-records"];

type PathInfo = Omit<PathResult, keyof Measurement | "rounds">;

const PATHS: Record<PathId, PathInfo> = {
  "prosody-direct": info("prosody-direct", "Prosody: direct to the client", "prosody", "direct", null, 0),
  "prosody-minimal": info("prosody-minimal", "Prosody: minimal component", "prosody", "minimal", null, 1),
  "prosody-minimal-token": info(
    "prosody-minimal-token",
    "Prosody: minimal, token-sized address",
    "prosody",
    "minimal",
    null,
    1,
  ),
  "prosody-redis": info("prosody-redis", "Prosody: service, Redis", "prosody", "service", "redis", 1),
  "prosody-memory": info("prosody-memory", "Prosody: service, in-process", "prosody", "service", "memory", 1),
  "ejabberd-direct": info("ejabberd-direct", "ejabberd: direct to the client", "ejabberd", "direct", null, 0),
  "ejabberd-minimal": info("ejabberd-minimal", "ejabberd: minimal component", "ejabberd", "minimal", null, 1),
  "ejabberd-redis-1": info(
    "ejabberd-redis-1",
    "ejabberd: service, Redis, 1 replica",
    "ejabberd",
    "service",
    "redis",
    1,
  ),
  "ejabberd-redis-2": info(
    "ejabberd-redis-2",
    "ejabberd: service, Redis, 2 replicas",
    "ejabberd",
    "service",
    "redis",
    2,
  ),
  "capacity-redis": info("capacity-redis", "capacity: 1 replica, Redis", "fake", "service", "redis", 1),
  "capacity-memory": info(
    "capacity-memory",
    "capacity: 1 replica, in-process",
    "fake",
    "service",
    "memory",
    1,
  ),
  "capacity-redis-round-robin": strategy("round-robin"),
  "capacity-redis-least-pending": strategy("least-pending"),
  "capacity-redis-sticky": strategy("sticky"),
  // Messages in and out instead of IQ requests (RFC 6121 section 5): the service address in both directions.
  "capacity-redis-messages": info(
    "capacity-redis-messages",
    "capacity: 1 replica, Redis, messages",
    "fake",
    "service",
    "redis",
    1,
  ),
  // Requests of the implementing client to domain/<token>, answered by the requester (the other direction).
  "capacity-redis-requests-out": info(
    "capacity-redis-requests-out",
    "capacity: 1 replica, Redis, requests from the resources",
    "fake",
    "service",
    "redis",
    1,
  ),
  // Far from capacity: 2,000 requests/s offered evenly (an open load), each request waking the replica on its own.
  "capacity-redis-2000": info(
    "capacity-redis-2000",
    "capacity: 1 replica, Redis, 2,000 req/s offered",
    "fake",
    "service",
    "redis",
    1,
  ),
  "capacity-minimal-2000": info(
    "capacity-minimal-2000",
    "capacity: minimal component, 2,000 req/s offered",
    "fake",
    "minimal",
    null,
    1,
  ),
  // The domain's ceiling: several replicas on one Redis, the fake server sending each stanza to the next one.
  "capacity-redis-2-replicas": info(
    "capacity-redis-2-replicas",
    "capacity: 2 replicas, one Redis",
    "fake",
    "service",
    "redis",
    2,
  ),
  "capacity-redis-4-replicas": info(
    "capacity-redis-4-replicas",
    "capacity: 4 replicas, one Redis",
    "fake",
    "service",
    "redis",
    4,
  ),
  // Baselines at capacity: the minimal component, and the same with the Redis floor (store "redis": its Redis is
  // measured).
  "capacity-minimal": info("capacity-minimal", "capacity: minimal component", "fake", "minimal", null, 1),
  "capacity-floor": info(
    "capacity-floor",
    "capacity: minimal + Redis SET/GETDEL (floor)",
    "fake",
    "minimal",
    "redis",
    1,
  ),
};
/** Every id in the canonical order: the paths, the memory measurement before the capacity paths. */
const ALL: RunId[] = (() => {
  const paths = Object.keys(PATHS) as PathId[];
  const firstCapacity = paths.findIndex((id) => PATHS[id].server === "fake");
  return [...paths.slice(0, firstCapacity), ...EXTRAS, ...paths.slice(firstCapacity)];
})();
const isPath = (id: RunId): id is PathId => id in PATHS;
const SMOKE: RunId[] = [
  "prosody-direct",
  "prosody-minimal",
  "prosody-redis",
  "prosody-memory",
  "capacity-redis",
  "capacity-memory",
  // One strategy besides random: BALANCE reaches the replica and the balancing table and target are written.
  // least-pending, because it adds work to both scripts of a request (forward and claim).
  "capacity-redis-least-pending",
  // The open load and the fake server with two component links.
  "capacity-redis-2000",
  "capacity-redis-2-replicas",
  // The baselines at capacity and the memory per record: 2-4 s each.
  "memory-records",
  "capacity-minimal",
  "capacity-floor",
];

function info(
  id: PathId,
  label: string,
  server: PathInfo["server"],
  via: PathInfo["via"],
  store: PathInfo["store"],
  replicas: number,
  balance: BalanceStrategy | null = via === "service" ? "random" : null,
): PathInfo {
  return { id, label, server, via, store, replicas, balance };
}

/** capacity-redis with another balancing strategy than the default (random). */
function strategy(balance: Exclude<BalanceStrategy, "random">): PathInfo {
  const id = `capacity-redis-${balance}` as const;
  return info(id, `capacity: 1 replica, Redis, ${balance}`, "fake", "service", "redis", 1, balance);
}

/** What a capacity path connects to the fake server: the service, or a baseline (the floor: with Redis). */
function capacityComponent(path: PathInfo): "service" | "minimal" | "floor" {
  if (path.via !== "minimal") return "service";
  return path.store === "redis" ? "floor" : "minimal";
}

/** The settings a path's replicas run with beyond the defaults: BALANCE when not the default. */
function replicaEnv(path: PathInfo): Record<string, string> {
  return path.balance && path.balance !== "random" ? { BALANCE: path.balance } : {};
}

const smoke = process.argv.includes("--smoke");
/** Pending requests of the memory measurement (memory-records). */
const MEMORY_RECORDS = 10_000;

function numberFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, not ${raw}`);
  return value;
}

function selectedIds(): RunId[] {
  const raw = process.env.BENCH_PATHS;
  if (!raw) return smoke ? ALL.filter((id) => SMOKE.includes(id)) : ALL;
  const ids = raw
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean);
  const unknown = ids.filter((id) => !(ALL as string[]).includes(id));
  if (unknown.length > 0)
    throw new Error(`BENCH_PATHS: unknown ${unknown.join(", ")}; known: ${ALL.join(", ")}`);
  // Always in the canonical order: servers start once each.
  return ALL.filter((id) => ids.includes(id));
}

const log = (line: string) =>
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

interface Shared {
  settings: Settings;
  redis: { server: RedisServer; probe: RedisProbe; pids: number[] } | null;
  /** Measurements per path, one per round. */
  rounds: Map<PathId, Measurement[]>;
  failures: Array<{ id: string; error: string }>;
}

/** Runs one round of a path; a failure is recorded and the run goes on with the next one. */
async function runPath(
  shared: Shared,
  id: PathId,
  round: number,
  rounds: number,
  body: () => Promise<Measurement>,
): Promise<void> {
  if (interrupted()) return;
  const path = PATHS[id];
  const name = rounds > 1 ? `${id} (round ${round}/${rounds})` : id;
  log(`${name}: ${path.label}`);
  try {
    const measurement = await body();
    shared.rounds.set(id, [...(shared.rounds.get(id) ?? []), measurement]);
    const c = measurement.component;
    log(
      `${name}: ${measurement.requestsPerSecond.toFixed(0)} req/s, p50 ${measurement.latency.p50.toFixed(2)} ms, p99 ${measurement.latency.p99.toFixed(2)} ms${
        c ? `, proxy CPU ${c.cpuMicrosPerRequest.toFixed(1)} us/req` : ""
      }${measurement.redis ? `, Redis ${measurement.redis.roundTripsPerRequest.toFixed(3)} round trips/req` : ""}${
        measurement.errors + measurement.unanswered > 0
          ? `, ${measurement.errors} errors, ${measurement.unanswered} unanswered`
          : ""
      }`,
    );
  } catch (err) {
    if (interrupted()) return;
    const message = (err as Error).stack ?? String(err);
    log(`${name} FAILED: ${message}`);
    shared.failures.push({ id: name, error: message });
  } finally {
    // The implementing clients remember which resource served each id: not needed here, and unbounded.
    receivedBy.clear();
  }
}

/** The requesters of one path: a load generator process against the server's c2s port. */
async function endToEnd(
  shared: Shared,
  server: { c2sPort: number; domain: string },
  targets: string[],
  pids: { component: number[]; server: number[] },
  withRedis: boolean,
  heapUsed?: () => Promise<number | null>,
): Promise<Measurement> {
  const { settings } = shared;
  const load = await startLoad({
    c2sPort: server.c2sPort,
    domain: server.domain,
    targets,
    connections: settings.connections,
    window: settings.window,
    resourcePrefix: "load",
  });
  const closeLoad = onCleanup(`load generator ${load.pid}`, () => load.close());
  try {
    return await measure({
      componentPids: pids.component,
      serverPids: pids.server,
      redisPids: withRedis ? (shared.redis?.pids ?? []) : [],
      redis: withRedis ? (shared.redis?.probe ?? null) : null,
      ...(heapUsed ? { heapUsed } : {}),
      warmupSeconds: settings.warmupSeconds,
      seconds: settings.seconds,
      start: () => load.start(),
      mark: () => load.mark(),
      stop: async () => {
        const result = await load.stop(5000);
        return { ...result, loadCpuSeconds: result.cpuSeconds };
      },
    });
  } finally {
    await closeLoad();
  }
}

/** Waits until requests to the proxy are answered by both resources of the implementing account. */
async function waitServing(checker: Client, proxy: string): Promise<void> {
  const seen = new Set<string>();
  let n = 0;
  await until(
    "both resources answering through the proxy",
    async () => {
      const answer: Element = await sendIq(checker, echo(`ready-${n++}`, proxy, "ready"), 2000);
      const resource = answer.getChild("echo", NS_ECHO)?.attrs.resource;
      if (resource) seen.add(resource);
      return seen.size >= 2 || undefined;
    },
    20_000,
  );
}

/** The paths of one real server: its implementing clients stay connected from path to path. */
async function serverPhase(
  shared: Shared,
  kind: "prosody" | "ejabberd",
  ids: PathId[],
  rounds: number,
  serverPids: (server: ProsodyServer | EjabberdServer) => number[],
): Promise<void> {
  if (ids.length === 0 || interrupted()) return;
  log(`starting ${kind}`);
  const server: ProsodyServer | EjabberdServer =
    kind === "prosody"
      ? await startProsody({ users: TEST_USERS })
      : await startEjabberd({ users: TEST_USERS });
  const stopServer = onCleanup(kind, () => server.stop());
  const clients: Client[] = [];
  const stopClients = onCleanup(`${kind} clients`, () => Promise.all(clients.map((c) => stopClient(c))));
  try {
    const pids = serverPids(server);
    if (pids.length === 0) log(`warning: no process of ${kind} found: its CPU is not reported`);
    for (const resource of ["r1", "r2"]) clients.push(await connectImplementing(server, resource));
    const checker = await connectUser(server, "requester", "check");
    clients.push(checker);
    const proxy = server.componentDomain;
    const xmpp: XmppTarget = {
      componentPort: server.componentPort,
      componentDomain: proxy,
      componentSecret: server.componentSecret,
      target: `impl@${server.domain}`,
    };
    // Resources and the subscription from another server's run must not leak into this one.
    await shared.redis?.probe.flush();

    for (let round = 1; round <= rounds; round++)
      for (const id of ids) {
        const path = PATHS[id];
        await runPath(shared, id, round, rounds, async () => {
          if (path.via === "direct") {
            const targets = ["r1", "r2"].map((r) => `impl@${server.domain}/${r}`);
            return endToEnd(shared, server, targets, { component: [], server: pids }, false);
          }
          if (path.via === "minimal") {
            const minimal = await startMinimal(xmpp, ["r1", "r2"], id.endsWith("-token") ? "token" : "plain");
            try {
              await waitServing(checker, proxy);
              return await endToEnd(
                shared,
                server,
                [proxy],
                { component: [minimal.pid], server: pids },
                false,
              );
            } finally {
              await minimal.stop();
            }
          }
          const redisUrl = path.store === "redis" ? (shared.redis?.server.url ?? null) : null;
          const replicas: Replica[] = [];
          try {
            for (let i = 0; i < path.replicas; i++)
              replicas.push(await startReplica(xmpp, redisUrl, replicaEnv(path)));
            await waitServing(checker, proxy);
            return await endToEnd(
              shared,
              server,
              [proxy],
              { component: replicas.map((replica) => replica.pid), server: pids },
              redisUrl !== null,
              () => sumHeaps(replicas),
            );
          } finally {
            for (const replica of replicas) await replica.stop();
          }
        });
      }
  } finally {
    await stopClients();
    await stopServer();
  }
}

async function main(): Promise<number> {
  installSignalHandlers();
  const selected = selectedIds();
  const ids = selected.filter(isPath);
  const withMemoryRecords = selected.includes("memory-records");
  const settings: Settings = {
    seconds: numberFromEnv("BENCH_SECONDS", smoke ? 2 : 10),
    warmupSeconds: numberFromEnv("BENCH_WARMUP_SECONDS", smoke ? 1 : 3),
    connections: Math.round(numberFromEnv("BENCH_CONNECTIONS", 4)),
    window: Math.round(numberFromEnv("BENCH_WINDOW", 16)),
    capacityRequesters: Math.round(numberFromEnv("BENCH_CAPACITY_REQUESTERS", 50)),
    capacityWindow: Math.round(numberFromEnv("BENCH_CAPACITY_WINDOW", 4)),
    rounds: Math.round(numberFromEnv("BENCH_ROUNDS", smoke ? 1 : 2)),
    paths: selected,
  };
  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  log(
    `${ids.length} paths${withMemoryRecords ? " and memory-records" : ""}, ${settings.seconds} s each after ${settings.warmupSeconds} s warm-up; ${machine.cores} cores, load average ${machine.loadAverage.join(" ")}`,
  );
  const shared: Shared = { settings, redis: null, rounds: new Map(), failures: [] };
  let memoryRecords: MemoryRecords | null = null;

  try {
    if (withMemoryRecords || ids.some((id) => PATHS[id].store === "redis")) {
      const server = await startRedis();
      onCleanup("redis-server", () => server.stop());
      const probe = redisProbe(server.url);
      onCleanup("redis probe", () => probe.close());
      shared.redis = { server, probe, pids: findPids("redis-server", `127.0.0.1:${server.port}`) };
    }
    await serverPhase(
      shared,
      "prosody",
      ids.filter((id) => PATHS[id].server === "prosody"),
      settings.rounds,
      (server) => findPids("prosody", server.dir),
    );
    await serverPhase(
      shared,
      "ejabberd",
      ids.filter((id) => PATHS[id].server === "ejabberd"),
      1,
      (server) => findPids((server as EjabberdServer).node),
    );
    if (withMemoryRecords && shared.redis && !interrupted()) {
      log(`memory-records: Redis memory per record, ${MEMORY_RECORDS} requests with the real store`);
      try {
        memoryRecords = await measureRecordMemory(shared.redis.server.url, MEMORY_RECORDS);
        log(
          `memory-records: ${memoryRecords.bytesPerPending.toFixed(0)} bytes per pending request (${memoryRecords.payloadBytes}-byte payload), ${memoryRecords.bytesPerTombstone.toFixed(0)} bytes per tombstone (${memoryRecords.seconds.toFixed(1)} s)`,
        );
      } catch (err) {
        if (!interrupted()) {
          const message = (err as Error).stack ?? String(err);
          log(`memory-records FAILED: ${message}`);
          shared.failures.push({ id: "memory-records", error: message });
        }
      }
    }
    for (let round = 1; round <= settings.rounds; round++) {
      for (const id of ids.filter((id) => PATHS[id].server === "fake")) {
        const redis = shared.redis;
        await runPath(shared, id, round, settings.rounds, () =>
          runCapacity({
            redis:
              PATHS[id].store === "redis" && redis
                ? { url: redis.server.url, probe: redis.probe, pids: redis.pids }
                : null,
            warmupSeconds: settings.warmupSeconds,
            seconds: settings.seconds,
            requesters: settings.capacityRequesters,
            window: settings.capacityWindow,
            env: replicaEnv(PATHS[id]),
            component: capacityComponent(PATHS[id]),
            replicas: PATHS[id].replicas,
            ...(id.endsWith("-2000") ? { rate: 2000 } : {}),
            stanza:
              id === "capacity-redis-messages"
                ? "message"
                : id === "capacity-redis-requests-out"
                  ? "request-out"
                  : "iq",
          }),
        );
      }
    }
  } finally {
    if (!interrupted()) await cleanupAll();
  }
  if (interrupted()) return 130;

  const results: PathResult[] = ids.flatMap((id) => {
    const rounds = shared.rounds.get(id) ?? [];
    return rounds.length === 0 ? [] : [{ ...PATHS[id], ...combine(rounds), rounds }];
  });
  const report: RunReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    smoke,
    settings,
    machine,
    paths: results,
    failures: shared.failures,
    targets: evaluateTargets(results, settings, memoryRecords),
    comparisons: capacityComparisons(results),
    memoryRecords,
  };
  const files = writeResults(report);
  log(`results: ${files.md}, ${files.json}, ${files.svg}`);
  process.stdout.write(`\n${readFileSync(files.md, "utf8")}`);
  return shared.failures.length > 0 ? 1 : 0;
}

// An exception nothing caught (a socket error without a listener, say) still stops every process started.
process.on("uncaughtException", (err) => {
  process.stderr.write(`bench: uncaught exception: ${err.stack ?? err.message}\n`);
  void cleanupAll().finally(() => process.exit(1));
});

main().then(
  (code) => process.exit(code),
  async (err: Error) => {
    if (interrupted()) return;
    process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
