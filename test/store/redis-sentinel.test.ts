/**
 * The Redis store through Redis Sentinel: a master, one replica and one sentinel (`redis-server --sentinel`,
 * the same binary as the Debian package redis-sentinel), each private, on free ports of 127.0.0.1. The shared
 * store suite through the sentinel client, and a failover to the replica on the same client.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { createKeys } from "../../src/store/keys.js";
import { createRedisStore, type RedisStoreDeps } from "../../src/store/redis.js";
import { createRedisClient, onRedisReconnect } from "../../src/store/redis-client.js";
import { freePort, waitForPort } from "../harness/ports.js";
import { terminate, track } from "../harness/processes.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { storeSuite } from "./store.suite.js";

const log = pino({ level: "silent" });
const NAME = "xcp-master";
let master: RedisServer;
let replica: RedisServer;
let sentinel: { port: number; child: ChildProcess; dir: string };
let prefixes = 0;

before(async () => {
  [master, replica] = await Promise.all([startRedis(), startRedis()]);
  // Full sync at once, not after the default 5 s wait for more replicas.
  const primary = new Redis(master.url);
  await primary.config("SET", "repl-diskless-sync-delay", "0");
  primary.disconnect();
  const admin = new Redis(replica.url);
  await admin.replicaof("127.0.0.1", master.port);
  const deadline = Date.now() + 10_000;
  while (!/^master_link_status:up\r?$/m.test(await admin.info("replication"))) {
    assert.ok(Date.now() < deadline, "the replica did not sync");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  admin.disconnect();
  // Started after the replica is linked: the sentinel's first INFO of the master lists it.
  sentinel = await startSentinel(master.port);
});

after(async () => {
  if (sentinel) {
    await terminate(sentinel.child);
    rmSync(sentinel.dir, { recursive: true, force: true });
  }
  await Promise.all([master?.stop(), replica?.stop()]);
});

async function startSentinel(masterPort: number) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "xcp-redis-sentinel-"));
  // The sentinel rewrites its configuration file: it must be its own, writable.
  writeFileSync(
    join(dir, "sentinel.conf"),
    [
      `port ${port}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${NAME} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${NAME} 500`,
      `sentinel failover-timeout ${NAME} 5000`,
      "",
    ].join("\n"),
  );
  let output = "";
  const child = track(
    spawn("redis-server", [join(dir, "sentinel.conf"), "--sentinel"], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    }),
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
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { port, child, dir };
}

async function makeStore(prefix = `s${++prefixes}`, extra: Partial<RedisStoreDeps> = {}) {
  const redis = createRedisClient({
    mode: "sentinel",
    sentinels: [{ host: "127.0.0.1", port: sentinel.port }],
    name: NAME,
    log,
  });
  const store = createRedisStore({ redis, keys: createKeys(prefix, "proxy.example.org"), ...extra });
  if (redis.status !== "ready") await once(redis, "ready");
  return { redis, store };
}

/** The port of the server the client is connected to (its options keep the defaults in sentinel mode). */
async function servingPort(redis: Redis): Promise<number> {
  return Number(/^tcp_port:(\d+)/m.exec(await redis.info("server"))?.[1]);
}

storeSuite("Redis Sentinel", async (limits) => {
  const { store } = await makeStore(undefined, { limits });
  return { store, cleanup: () => store.close() };
});

describe("Redis Sentinel specifics", () => {
  it("follows a failover to the replica on the same client, with the data, and reports the reconnect", async () => {
    const { redis, store } = await makeStore("failover");
    try {
      const reconnects: number[] = [];
      onRedisReconnect(redis, () => reconnects.push(Date.now()));
      await store.resourceAvailable("a", Date.now());
      // Replication is asynchronous: make sure the replica has the write before the master dies.
      assert.equal(await redis.call("WAIT", "1", "2000"), 1);
      assert.equal(await servingPort(redis), master.port);

      // A sentinel learns about replicas from the master's INFO, every 10 s: it can only fail over to a
      // replica it knows.
      const ask = new Redis({ host: "127.0.0.1", port: sentinel.port });
      try {
        const knowsReplica = async () => {
          const replicas = (await ask.call("SENTINEL", "replicas", NAME)) as string[][];
          return replicas.some((fields) => fields.includes(String(replica.port)));
        };
        const until = Date.now() + 20_000;
        while (!(await knowsReplica()) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
        assert.ok(await knowsReplica(), "the sentinel knows the replica");
      } finally {
        ask.disconnect();
      }

      const killed = Date.now();
      await master.kill();
      const deadline = Date.now() + 20_000;
      let resources = await store.onlineResources().catch((err: Error) => err);
      while (resources instanceof Error && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        resources = await store.onlineResources().catch((err: Error) => err);
      }
      console.log(`sentinel failover: serving again ${Date.now() - killed} ms after the master died`);
      assert.deepEqual(resources, ["a"], "the promoted replica has the data");
      assert.equal(await servingPort(redis), replica.port, "connected to the promoted replica");
      // The sentinels' +switch-master may reconnect the client once more just after it served again: a write
      // refused at once meanwhile (never sent) is tried again, as the service's own retries do.
      const writeUntil = Date.now() + 5_000;
      let written = await store.resourceAvailable("b", Date.now()).catch((err: Error) => err);
      while (written instanceof Error && Date.now() < writeUntil) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        written = await store.resourceAvailable("b", Date.now()).catch((err: Error) => err);
      }
      assert.equal(written, false, "the promoted replica accepts writes");
      assert.deepEqual(await store.onlineResources(), ["a", "b"], "and accepts writes");
      // Once, or twice when the sentinels' +switch-master reaches the client after it had already reconnected
      // by itself (the failover detector then reconnects it once more): either way presence is probed again.
      assert.ok(
        reconnects.length >= 1 && reconnects.length <= 2,
        `the reconnect is reported (${reconnects.length} times), so presence is probed again`,
      );
    } finally {
      await store.close();
    }
  });
});
