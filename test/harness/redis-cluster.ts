/**
 * A private Redis Cluster for one test file: three masters, by default no replicas (or one replica per master,
 * for failovers), on free ports of 127.0.0.1, each node in its own temp dir (its nodes.conf lives there),
 * nothing persisted. Never the Redis on 6379.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, waitForPort } from "./ports.js";
import { exitOf, terminate, track } from "./processes.js";
import { askRedis } from "./redis.js";

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisClusterOptions {
  /** Replicas of each master (`--cluster-replicas`): 0 (default) or more. */
  replicasPerMaster?: number;
  /**
   * `cluster-node-timeout` in ms (Redis' default 15000): how long a master may be unreachable before it is
   * failed and its replica promoted.
   */
  nodeTimeoutMs?: number;
}

export interface RedisCluster {
  /** Every node, masters and replicas (which is which changes with failovers: see masterOf). */
  readonly nodes: ClusterNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, as REDIS_CLUSTER_NODES takes it. */
  readonly spec: string;
  /** SIGKILLs node `index`. */
  kill(index: number): Promise<void>;
  /**
   * Starts node `index` again on its port with its nodes.conf (same id and slots) but no data. A master that
   * was failed over while down comes back as a replica of its successor.
   */
  restart(index: number): Promise<void>;
  /** The index of the master that serves `key`'s slot now, as the running nodes see it. */
  masterOf(key: string): Promise<number>;
  /** The index of a replica of master `index`, as the running nodes see it. */
  replicaOf(index: number): Promise<number>;
  /** `CLUSTER FAILOVER` sent to node `index` (a replica): a planned failover to it. */
  failover(index: number): Promise<void>;
  /**
   * Resolves once every running node says cluster_state:ok, the masters agree, and each master has
   * `replicasPerMaster` replicas with their link up.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** The replication section of INFO of node `index` (for diagnostics). */
  replication(index: number): Promise<string>;
  /** What node `index` printed (its last 50 kB, across restarts), for failure reports. */
  logs(index: number): string;
  /** Stops every node and removes the temp dirs. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const MASTERS = 3;

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const replicasPerMaster = opts.replicasPerMaster ?? 0;
  const extra = [
    ...(opts.nodeTimeoutMs === undefined ? [] : ["--cluster-node-timeout", String(opts.nodeTimeoutMs)]),
    // A replica (re)joining syncs at once, not after waiting 5 s for more replicas.
    ...(replicasPerMaster > 0 ? ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"] : []),
  ];
  const dirs: string[] = [];
  const children: Array<ChildProcess | undefined> = [];
  const nodes: ClusterNode[] = [];
  const stop = async () => {
    await Promise.all(children.map((child) => child && terminate(child)));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    for (const { port } of nodes) outputs.delete(port);
  };
  try {
    for (let i = 0; i < MASTERS * (1 + replicasPerMaster); i++) {
      const port = await freePort();
      dirs.push(mkdtempSync(join(tmpdir(), `xcp-redis-cluster-${port}-`)));
      nodes.push({ host: HOST, port });
    }
    // Start them side by side: each takes ~30 ms, but waiting one after the other adds up.
    await Promise.all(
      nodes.map(async (node, i) => {
        children[i] = await launch(node.port, dirs[i] as string, extra);
      }),
    );
    await run("redis-cli", [
      "--cluster",
      "create",
      ...nodes.map(({ host, port }) => `${host}:${port}`),
      "--cluster-replicas",
      String(replicasPerMaster),
      "--cluster-yes",
    ]);
    await waitForClusterOk(nodes);
    if (replicasPerMaster > 0) await waitForReplicas(nodes, replicasPerMaster);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    spec: nodes.map(({ host, port }) => `${host}:${port}`).join(","),
    async kill(index) {
      const child = children[index];
      if (!child) throw new Error(`no cluster node ${index}`);
      child.kill("SIGKILL");
      await exitOf(child);
    },
    async restart(index) {
      const child = children[index];
      const node = nodes[index];
      if (!child || !node) throw new Error(`no cluster node ${index}`);
      await terminate(child);
      children[index] = await launch(node.port, dirs[index] as string, extra);
      await waitForClusterOk(nodes);
    },
    async masterOf(key) {
      const view = await clusterView(running());
      const slot = Number(await ask(view.from, (client) => client.cluster("KEYSLOT", key)));
      const owner = view.masters.find(({ slots }) => slots.some(([from, to]) => from <= slot && slot <= to));
      if (!owner) throw new Error(`no master serves slot ${slot}`);
      return indexOf(owner.port);
    },
    async replicaOf(index) {
      const [port] = await onlineReplicas(nodes[index] as ClusterNode);
      if (port === undefined) throw new Error(`node ${index} has no replica online`);
      return indexOf(port);
    },
    async failover(index) {
      const node = nodes[index];
      if (!node) throw new Error(`no cluster node ${index}`);
      const answer = await ask(node, (client) => client.cluster("FAILOVER"));
      if (String(answer) !== "OK") throw new Error(`CLUSTER FAILOVER: ${String(answer)}`);
    },
    async ready(timeoutMs = 30_000) {
      const up = running();
      await waitForClusterOk(up, timeoutMs);
      await waitForReplicas(up, replicasPerMaster, timeoutMs);
    },
    replication: (index) => ask(nodes[index] as ClusterNode, (client) => client.info("replication")),
    logs: (index) => outputs.get(nodes[index]?.port ?? 0) ?? "",
    stop,
  };

  function indexOf(port: number): number {
    const index = nodes.findIndex((node) => node.port === port);
    if (index < 0) throw new Error(`port ${port} is not a node of this cluster`);
    return index;
  }

  /** The nodes whose process runs. */
  function running(): ClusterNode[] {
    return nodes.filter((_, i) => {
      const child = children[i];
      return child && child.exitCode === null && child.signalCode === null;
    });
  }
}

interface ClusterView {
  from: ClusterNode;
  masters: Array<{ id: string; port: number; slots: Array<[number, number]> }>;
  replicas: Array<{ id: string; port: number; masterId: string }>;
  /** Ports of the nodes flagged fail, pfail, handshake or noaddr. */
  failing: number[];
}

/** The ports of the replicas that master `node` has online (synced), from its INFO. */
async function onlineReplicas(node: ClusterNode): Promise<number[]> {
  const info = await ask(node, (client) => client.info("replication"));
  if (!/^role:master\r?$/m.test(info)) return [];
  return [...info.matchAll(/^slave\d+:ip=[^,]+,port=(\d+),state=online,/gm)].map((m) => Number(m[1]));
}

/** CLUSTER NODES of the first node that answers, healthy nodes only (no fail flag). */
async function clusterView(nodes: ClusterNode[]): Promise<ClusterView> {
  let last: unknown;
  for (const from of nodes) {
    try {
      const text = String(await ask(from, (client) => client.cluster("NODES")));
      const view: ClusterView = { from, masters: [], replicas: [], failing: [] };
      for (const line of text.split("\n")) {
        const [id, addr, flags, masterId, , , , , ...slots] = line.trim().split(" ");
        if (!id || !addr || !flags) continue;
        const port = Number(/:(\d+)/.exec(addr)?.[1]);
        if (/fail|handshake|noaddr/.test(flags)) {
          view.failing.push(port);
          continue;
        }
        if (flags.includes("master")) {
          const ranges = slots
            .filter((slot) => !slot.startsWith("["))
            .map((slot) => slot.split("-").map(Number))
            .map(([a, b]) => [a, b ?? a] as [number, number]);
          view.masters.push({ id, port, slots: ranges });
        } else if (flags.includes("slave") && masterId) {
          view.replicas.push({ id, port, masterId });
        }
      }
      return view;
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no cluster node answers: ${(last as Error)?.message}`);
}

/** One command on a fresh connection to a node (see askRedis). */
const ask = <T>(node: ClusterNode, fn: (client: Redis) => Promise<T>): Promise<T> => askRedis(node.port, fn);

/** Every master of the running nodes has `count` replicas whose link is up, and the masters agree. */
async function waitForReplicas(nodes: ClusterNode[], count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const views = await Promise.all(nodes.map((node) => clusterView([node])));
      const masters = (view: ClusterView) =>
        view.masters
          .filter(({ slots }) => slots.length > 0)
          .map(({ port }) => port)
          .sort()
          .join(",");
      const first = views[0] as ClusterView;
      const agree = views.every((view) => masters(view) === masters(first));
      const linked = await Promise.all(
        first.masters
          .filter(({ slots }) => slots.length > 0)
          .map(async ({ port }) => (await onlineReplicas({ host: HOST, port })).length),
      );
      // Every running node sees every other running node healthy.
      const ports = new Set(nodes.map(({ port }) => port));
      const failing = views.flatMap((view) => view.failing.filter((port) => ports.has(port)));
      last = `masters ${views.map(masters).join(" | ")}; online replicas ${linked.join(", ")}; failing ${failing.join(" ")}`;
      if (agree && failing.length === 0 && linked.length === MASTERS && linked.every((n) => n >= count))
        return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Redis Cluster replicas not ready within ${timeoutMs} ms: ${last}`);
}

/** What each node printed (its last 50 kB), by port: kept across restarts, for failure reports. */
const outputs = new Map<number, string>();

async function launch(port: number, dir: string, extra: string[] = []): Promise<ChildProcess> {
  const child = track(
    spawn(
      "redis-server",
      [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--port",
        String(port),
        "--bind",
        HOST,
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        ...extra,
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    ),
  );
  const collect = (chunk: Buffer) => {
    outputs.set(port, ((outputs.get(port) ?? "") + chunk.toString()).slice(-50_000));
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  try {
    await waitForPort(port, 5000, () => outputs.get(port) ?? "");
  } catch (err) {
    await terminate(child);
    throw err;
  }
  return child;
}

/** Runs a command to its end (tracked, so it cannot outlive the tests); rejects with its output on failure. */
async function run(command: string, args: string[], timeoutMs = 20_000): Promise<string> {
  const child = track(spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] }));
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await exitOf(child);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output}`);
  return output;
}

/** Every node says cluster_state:ok. */
async function waitForClusterOk(nodes: ClusterNode[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    // Fresh connections each round: a node that is still starting refuses, and must not poison a client.
    const clients = nodes.map(
      ({ host, port }) => new Redis({ host, port, maxRetriesPerRequest: 0, retryStrategy: () => null }),
    );
    try {
      const infos = await Promise.all(clients.map((client) => client.call("CLUSTER", "INFO")));
      last = infos.map(String).join("\n");
      if (infos.every((info) => /^cluster_state:ok\r?$/m.test(String(info)))) return;
    } catch (err) {
      last = (err as Error).message;
    } finally {
      for (const client of clients) client.disconnect();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Redis Cluster not ok within ${timeoutMs} ms:\n${last}`);
}
