/**
 * The ioredis client for the configured topology (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS), tuned
 * so that nothing waits on a Redis that is down: a request is answered with a `wait` error at once instead of
 * hanging to its timeout, and service resumes by itself when Redis returns.
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { CorkableStream, TurnWrites } from "../util/turn-writes.js";
import { explainRedisError, type RedisProblem } from "./redis-problem.js";

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

export interface SingleTarget {
  readonly mode?: "single";
  readonly url: string;
}
export interface ClusterTarget {
  readonly mode: "cluster";
  readonly nodes: readonly RedisNode[];
  readonly password?: string;
}
export interface SentinelTarget {
  readonly mode: "sentinel";
  readonly sentinels: readonly RedisNode[];
  readonly name: string;
  readonly password?: string;
}
/** Where Redis is; structurally the `redis` part of the configuration (its `prefix` is ignored here). */
export type RedisTarget = SingleTarget | ClusterTarget | SentinelTarget;

/** Clients being closed on purpose (closeRedisClient): their end is final. */
const closing = new WeakSet<Redis | Cluster>();

/** Closes a client made here for good: QUIT, or a disconnect when Redis cannot be reached. */
export async function closeRedisClient(client: Redis | Cluster): Promise<void> {
  closing.add(client);
  await client.quit().catch(() => client.disconnect());
}

/** Reconnect forever, quickly at first, at most every 2 s. */
const retry = (attempt: number) => Math.min(100 * attempt, 2_000);

/** The options of every connection to a Redis server, whatever the topology. */
const FAIL_FAST = {
  // Do not resend a command that was in flight when the connection dropped: fail it, the caller decides.
  maxRetriesPerRequest: 0,
  // ioredis otherwise writes those commands again after reconnecting, although their callers were already told
  // they failed: a forward answered with an error would then still be recorded, a claim still be made.
  autoResendUnfulfilledCommands: false,
  // A Redis that accepts but does not answer (overloaded, half-open) must not stall requests.
  commandTimeout: 1_000,
  // A connection attempt that gets no answer is abandoned and retried.
  connectTimeout: 2_000,
  // Report ready only once Redis has loaded its data set (INFO), so readiness is not claimed too early.
  enableReadyCheck: true,
} satisfies RedisOptions;

/** `turnWrites`: every connection to Redis batches its writes per event-loop turn (util/turn-writes.ts). */
type ClientOptions = { log: Logger; turnWrites?: TurnWrites };

export function createRedisClient(options: ClusterTarget & ClientOptions): Cluster;
export function createRedisClient(options: (SingleTarget | SentinelTarget) & ClientOptions): Redis;
export function createRedisClient(options: RedisTarget & ClientOptions): Redis | Cluster;
export function createRedisClient(options: RedisTarget & ClientOptions): Redis | Cluster {
  const client = build(options);
  watch(client, options.log);
  const { turnWrites } = options;
  if (turnWrites) {
    // ioredis makes a new stream on every (re)connect; a Cluster has one connection per node.
    const batch = (connection: Redis) =>
      connection.on("connect", () =>
        turnWrites.register((connection as unknown as { stream: CorkableStream }).stream),
      );
    if (client instanceof Cluster) client.on("+node", batch);
    else batch(client);
  }
  return client;
}

function build(target: RedisTarget): Redis | Cluster {
  switch (target.mode) {
    case "cluster":
      return new Cluster(
        target.nodes.map(({ host, port }) => ({ host, port })),
        {
          // Each node connection; ioredis itself gives them an offline queue while they (re)connect, which the
          // command timeout bounds.
          redisOptions: { ...FAIL_FAST, ...password(target.password) },
          // Fail commands at once while no node is reachable instead of queueing them.
          enableOfflineQueue: false,
          // All nodes lost: start over from the configured nodes, forever.
          clusterRetryStrategy: retry,
          // A command is retried on MOVED/ASK (resharding), TRYAGAIN, CLUSTERDOWN and a closed node
          // connection, 100 ms apart: a few times only, so that a shard that is down fails fast.
          maxRedirections: 4,
          enableReadyCheck: true,
          lazyConnect: false,
        },
      );
    case "sentinel": {
      const client = new Redis({
        ...FAIL_FAST,
        ...password(target.password),
        sentinels: target.sentinels.map(({ host, port }) => ({ host, port })),
        name: target.name,
        role: "master",
        enableOfflineQueue: false,
        retryStrategy: retry,
        sentinelRetryStrategy: retry,
        // Subscribe to the sentinels' +switch-master and move to the new master at once.
        failoverDetector: true,
        // A demoted master that kept our connection answers writes with READONLY: ask the sentinels again.
        reconnectOnError: (err) => err.message.startsWith("READONLY"),
        lazyConnect: false,
      });
      client.on("end", () => {
        // quit() leaves the failover detector's sentinel connections open (ioredis 5.11); disconnect() closes them.
        if (closing.has(client)) {
          client.disconnect();
          return;
        }
        // ioredis 5.11 ends the client for good when the failover detector disconnects it while it is still
        // asking a sentinel for the master (a race under load): connect again, as after any outage.
        setTimeout(() => {
          if (!closing.has(client) && client.status === "end") client.connect().catch(() => {});
        }, retry(1));
      });
      return client;
    }
    default:
      return new Redis(target.url, {
        ...FAIL_FAST,
        // Fail commands at once while disconnected instead of queueing them until Redis returns.
        enableOfflineQueue: false,
        retryStrategy: retry,
        lazyConnect: false,
      });
  }
}

function password(value: string | undefined): { password?: string } {
  return value === undefined ? {} : { password: value };
}

/** The last problem of each client since it was last ready (null: none seen). */
const problems = new WeakMap<Redis | Cluster, RedisProblem>();

/** What keeps the client from Redis right now, in plain words; null when it is ready. */
export function redisProblem(client: Redis | Cluster): RedisProblem | null {
  if (client.status === "ready") return null;
  return problems.get(client) ?? { words: `not connected to Redis (${client.status})`, credentials: false };
}

/** Logs the first problem of an outage, and each new kind of problem, in plain words; and the recovery. */
function watch(client: Redis | Cluster, log: Logger): void {
  let down = false;
  const lost = (err: Error & { code?: string }) => {
    const problem = explainRedisError(err);
    if (!down || problems.get(client)?.words !== problem.words)
      log.warn({ problem: problem.words, code: err.code }, "Redis unavailable");
    problems.set(client, problem);
    down = true;
  };
  const restored = () => {
    if (down) log.info("Redis connection restored");
    problems.delete(client);
    down = false;
  };
  client.on("ready", restored);
  client.on("error", lost);
  if (client instanceof Cluster) {
    // A Cluster reports trouble with one shard per node (its own 'error' only when every node failed), and
    // stays ready meanwhile: a node connected again is the recovery.
    client.on("node error", lost);
    client.on("+node", (node: Redis) =>
      node.once("ready", () => {
        if (client.status === "ready") restored();
      }),
    );
  }
  client.on("end", () => {
    down = true;
  });
}

/**
 * Calls `fn` on every reconnect after the first 'ready': Redis may have come back empty. On a Cluster also
 * when a node that was connected before is connected again while the cluster stays up (that shard may have
 * restarted without its data): the cluster as a whole then does not reconnect.
 */
export function onRedisReconnect(client: Redis | Cluster, fn: () => void): void {
  let readyBefore = client.status === "ready";
  client.on("ready", () => {
    if (readyBefore) fn();
    readyBefore = true;
  });
  if (!(client instanceof Cluster)) return;
  // The nodes connected since the cluster was last ready (ioredis connects to a node lazily, and anew after
  // losing it); the cluster's own 'ready' stands for every node.
  const connected = new Set<string>();
  const key = (node: Redis) => `${node.options.host}:${node.options.port}`;
  const seedConnected = () => {
    connected.clear();
    for (const node of client.nodes("all")) if (node.status === "ready") connected.add(key(node));
  };
  const watchNode = (node: Redis) =>
    node.once("ready", () => {
      if (connected.has(key(node)) && client.status === "ready") fn();
      connected.add(key(node));
    });
  seedConnected();
  for (const node of client.nodes("all")) if (node.status !== "ready") watchNode(node);
  client.on("ready", seedConnected);
  client.on("+node", watchNode);
}
