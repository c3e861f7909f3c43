/**
 * A private Redis Cluster for one test file: three masters, no replicas, on free ports of 127.0.0.1, each
 * node in its own temp dir (its nodes.conf lives there), nothing persisted. Never the Redis on 6379.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, waitForPort } from "./ports.js";
import { exitOf, terminate, track } from "./processes.js";

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisCluster {
  readonly nodes: ClusterNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, as REDIS_CLUSTER_NODES takes it. */
  readonly spec: string;
  /** SIGKILLs node `index`. */
  kill(index: number): Promise<void>;
  /** Starts node `index` again on its port with its nodes.conf (same id and slots) but no data. */
  restart(index: number): Promise<void>;
  /** Stops every node and removes the temp dirs. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const MASTERS = 3;

export async function startRedisCluster(): Promise<RedisCluster> {
  const dirs: string[] = [];
  const children: Array<ChildProcess | undefined> = [];
  const nodes: ClusterNode[] = [];
  const stop = async () => {
    await Promise.all(children.map((child) => child && terminate(child)));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < MASTERS; i++) {
      const port = await freePort();
      dirs.push(mkdtempSync(join(tmpdir(), `xcp-redis-cluster-${port}-`)));
      nodes.push({ host: HOST, port });
    }
    // Start them side by side: each takes ~30 ms, but waiting one after the other adds up.
    await Promise.all(
      nodes.map(async (node, i) => {
        children[i] = await launch(node.port, dirs[i] as string);
      }),
    );
    await run("redis-cli", [
      "--cluster",
      "create",
      ...nodes.map(({ host, port }) => `${host}:${port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    await waitForClusterOk(nodes);
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
      children[index] = await launch(node.port, dirs[index] as string);
      await waitForClusterOk(nodes);
    },
    stop,
  };
}

async function launch(port: number, dir: string): Promise<ChildProcess> {
  let output = "";
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
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    ),
  );
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  try {
    await waitForPort(port, 5000, () => output);
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
