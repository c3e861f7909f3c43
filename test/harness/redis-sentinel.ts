/**
 * A private Redis Sentinel group for one test file: a master, `replicas` replicas and `sentinels` sentinels
 * (`redis-server --sentinel`, the same binary as the Debian package redis-sentinel), each on a free port of
 * 127.0.0.1 with its own temp dir, nothing persisted. Never the Redis on 6379.
 *
 * Data servers are addressed by index (0 is the first master); which one is the master changes with failovers:
 * ask `masterIndex()`. A killed server restarts empty on its port as a replica of the current master, as an
 * operator would bring a failed node back.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "./ports.js";
import { exitOf, terminate, track } from "./processes.js";
import { askRedis } from "./redis.js";

const HOST = "127.0.0.1";

export interface SentinelGroupOptions {
  /** Default `xcp-master`. */
  name?: string;
  /** Replicas of the master (default 1). */
  replicas?: number;
  /** Sentinels (default 1). */
  sentinels?: number;
  /** Sentinels that must agree the master is down (default: a majority of them). */
  quorum?: number;
  /** `sentinel down-after-milliseconds` (default 500). */
  downAfterMs?: number;
  /** `sentinel failover-timeout` (default 5000). */
  failoverTimeoutMs?: number;
}

export interface RedisSentinelGroup {
  readonly name: string;
  /** Ports of the data servers, by index; index 0 was the first master. */
  readonly ports: readonly number[];
  readonly sentinelPorts: readonly number[];
  /** `127.0.0.1:p1,127.0.0.1:p2`, as REDIS_SENTINELS takes it. */
  readonly spec: string;
  /** The index of the master the sentinels name now. */
  masterIndex(): Promise<number>;
  /**
   * Resolves once the sentinels agree on a master that says it is one, with `count` replicas online and synced
   * that the sentinels know, and the sentinels can authorize a failover (CKQUORUM).
   */
  ready(count?: number, timeoutMs?: number): Promise<number>;
  /** Resolves with the new master's index once the sentinels name another master than `from`. */
  switched(from: number, timeoutMs?: number): Promise<number>;
  /** `SENTINEL FAILOVER <name>` sent to the first sentinel: a planned failover. */
  failover(): Promise<void>;
  /** SIGKILLs data server `index`. */
  kill(index: number): Promise<void>;
  /** Starts data server `index` again, empty, on its port, as a replica of the current master. */
  restart(index: number): Promise<void>;
  /** The replication section of INFO of data server `index` (for diagnostics). */
  replication(index: number): Promise<string>;
  /** What every process printed, for a failure report. */
  logs(): string;
  /** Stops everything and removes the temp dirs. */
  stop(): Promise<void>;
}

interface Proc {
  child: ChildProcess;
  output: string;
}

export async function startSentinelGroup(opts: SentinelGroupOptions = {}): Promise<RedisSentinelGroup> {
  const name = opts.name ?? "xcp-master";
  const replicaCount = opts.replicas ?? 1;
  const sentinelCount = opts.sentinels ?? 1;
  const quorum = opts.quorum ?? Math.floor(sentinelCount / 2) + 1;
  const downAfterMs = opts.downAfterMs ?? 500;
  const failoverTimeoutMs = opts.failoverTimeoutMs ?? 5000;

  const dir = mkdtempSync(join(tmpdir(), "xcp-redis-sentinel-"));
  const ports: number[] = [];
  const sentinelPorts: number[] = [];
  const servers: Array<Proc | undefined> = [];
  const sentinels: Array<Proc | undefined> = [];
  const stop = async () => {
    await Promise.all([...servers, ...sentinels].map((proc) => proc && terminate(proc.child)));
    rmSync(dir, { recursive: true, force: true });
  };

  const indexOfPort = (port: number) => {
    const index = ports.indexOf(port);
    if (index < 0) throw new Error(`port ${port} is not a data server of this group`);
    return index;
  };
  /** The master each sentinel names now (by port). */
  const named = () =>
    Promise.all(
      sentinelPorts.map((port) =>
        askRedis(port, async (client) => {
          const addr = (await client.call("SENTINEL", "get-master-addr-by-name", name)) as string[] | null;
          return Number(addr?.[1]);
        }).catch(() => Number.NaN),
      ),
    );
  const masterIndex = async () => {
    const answers = (await named()).filter((port) => !Number.isNaN(port));
    const first = answers[0];
    if (first === undefined) throw new Error("no sentinel answers");
    return indexOfPort(first);
  };
  const launchServer = async (index: number, masterPort?: number) => {
    const port = ports[index] as number;
    const args = [
      "--port",
      String(port),
      "--bind",
      HOST,
      "--dir",
      dir,
      "--dbfilename",
      `dump-${port}.rdb`,
      "--save",
      "",
      "--appendonly",
      "no",
      // A full sync at once, not after waiting 5 s for more replicas to join.
      "--repl-diskless-sync",
      "yes",
      "--repl-diskless-sync-delay",
      "0",
      ...(masterPort === undefined ? [] : ["--replicaof", HOST, String(masterPort)]),
    ];
    servers[index] = await launch(args, port);
  };
  const launchSentinel = async (index: number, masterPort: number) => {
    const port = sentinelPorts[index] as number;
    const file = join(dir, `sentinel-${port}.conf`);
    // The sentinel rewrites its configuration file: it must be its own, writable.
    writeFileSync(
      file,
      [
        `port ${port}`,
        `bind ${HOST}`,
        `dir ${dir}`,
        `sentinel monitor ${name} ${HOST} ${masterPort} ${quorum}`,
        `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
        `sentinel failover-timeout ${name} ${failoverTimeoutMs}`,
        `sentinel parallel-syncs ${name} ${Math.max(1, replicaCount)}`,
        "",
      ].join("\n"),
    );
    sentinels[index] = await launch([file, "--sentinel"], port);
  };

  /** Replicas of the master at `port` that are online and synced, by port. */
  const onlineReplicas = async (port: number): Promise<number[]> => {
    const info = await askRedis(port, (client) => client.info("replication"));
    if (!/^role:master\r?$/m.test(info)) return [];
    return [...info.matchAll(/^slave\d+:ip=[^,]+,port=(\d+),state=online,/gm)].map((m) => Number(m[1]));
  };
  const linkUp = (port: number) =>
    askRedis(port, (client) => client.info("replication")).then((info) =>
      /^master_link_status:up\r?$/m.test(info),
    );

  const ready = async (count = replicaCount, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const names = await named();
        const port = names[0] as number;
        if (names.some((other) => other !== port) || Number.isNaN(port)) {
          last = `sentinels disagree: ${names.join(", ")}`;
        } else {
          const online = await onlineReplicas(port);
          const linked = await Promise.all(online.map((replica) => linkUp(replica).catch(() => false)));
          const known = await Promise.all(
            sentinelPorts.map((sentinel) =>
              askRedis(sentinel, async (client) => {
                const list = (await client.call("SENTINEL", "replicas", name)) as string[][];
                const good = list
                  .map((fields) => fieldsOf(fields))
                  .filter((f) => f.flags === "slave" && f["master-link-status"] === "ok");
                const quorumOk = String(await client.call("SENTINEL", "ckquorum", name)).startsWith("OK");
                return { good: good.map((f) => Number(f.port)), quorumOk };
              }),
            ),
          );
          const usable = online.filter(
            (replica, i) => linked[i] && known.every(({ good }) => good.includes(replica)),
          );
          last = `master ${port}, online ${online.join(" ") || "-"}, usable ${usable.join(" ") || "-"}, quorum ${known.map((k) => k.quorumOk).join(" ")}`;
          if (usable.length >= count && known.every(({ quorumOk }) => quorumOk)) return indexOfPort(port);
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`Sentinel group not ready within ${timeoutMs} ms: ${last}`);
  };

  try {
    for (let i = 0; i <= replicaCount; i++) ports.push(await freePort());
    for (let i = 0; i < sentinelCount; i++) sentinelPorts.push(await freePort());
    const masterPort = ports[0] as number;
    await launchServer(0);
    await Promise.all(ports.slice(1).map((_, i) => launchServer(i + 1, masterPort)));
    // Started once the replicas are linked: the sentinels' first INFO of the master lists them.
    const deadline = Date.now() + 10_000;
    while ((await onlineReplicas(masterPort)).length < replicaCount) {
      if (Date.now() > deadline) throw new Error("the replicas did not sync");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await Promise.all(sentinelPorts.map((_, i) => launchSentinel(i, masterPort)));
    await ready(replicaCount);
  } catch (err) {
    const logs = [...servers, ...sentinels].map((proc) => proc?.output ?? "").join("\n");
    await stop();
    throw new Error(`${(err as Error).message}\n${logs.slice(-4000)}`);
  }

  return {
    name,
    ports,
    sentinelPorts,
    spec: sentinelPorts.map((port) => `${HOST}:${port}`).join(","),
    masterIndex,
    ready,
    async switched(from, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const names = await named();
        const port = names[0] as number;
        if (!Number.isNaN(port) && port !== ports[from] && names.every((other) => other === port)) {
          return indexOfPort(port);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`no failover from ${ports[from]} within ${timeoutMs} ms`);
    },
    async failover() {
      const answer = await askRedis(sentinelPorts[0] as number, (client) =>
        client.call("SENTINEL", "FAILOVER", name),
      );
      if (String(answer) !== "OK") throw new Error(`SENTINEL FAILOVER: ${String(answer)}`);
    },
    async kill(index) {
      const proc = servers[index];
      if (!proc) throw new Error(`no data server ${index}`);
      proc.child.kill("SIGKILL");
      await exitOf(proc.child);
    },
    async restart(index) {
      const proc = servers[index];
      if (proc) await terminate(proc.child);
      const master = await masterIndex();
      await launchServer(index, master === index ? undefined : ports[master]);
    },
    replication: (index) => askRedis(ports[index] as number, (client) => client.info("replication")),
    logs: () =>
      [...servers, ...sentinels]
        .map(
          (proc, i) =>
            `--- ${i < servers.length ? `server ${i}` : `sentinel ${i - servers.length}`}\n${proc?.output ?? ""}`,
        )
        .join("\n"),
    stop,
  };
}

/** SENTINEL REPLICAS answers each replica as a flat list of field, value. */
function fieldsOf(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

async function launch(args: string[], port: number): Promise<Proc> {
  const child = track(spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] }));
  const proc: Proc = { child, output: "" };
  const collect = (chunk: Buffer) => {
    // Enough for a failure report; a sentinel logs every state change.
    proc.output = (proc.output + chunk.toString()).slice(-50_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  try {
    await waitForPort(port, 5000, () => proc.output);
  } catch (err) {
    await terminate(child);
    throw err;
  }
  return proc;
}
