/**
 * The Redis store on a real Redis Cluster (three masters): the shared store suite, every key of a domain in
 * one slot, the Lua scripts (including those that build record keys from a prefix) on the shard that owns
 * the domain, and a shard that restarts empty.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import type { Cluster } from "ioredis";
import { pino } from "pino";
import { createKeys, type Keys } from "../../src/store/keys.js";
import { createRedisStore, type RedisStoreDeps } from "../../src/store/redis.js";
import { createRedisClient, onRedisReconnect } from "../../src/store/redis-client.js";
import { StoreUnavailableError } from "../../src/store/types.js";
import { type RedisCluster, startRedisCluster } from "../harness/redis-cluster.js";
import { balanceSuite } from "./balance.suite.js";
import { CLAIM, expired, forwardInput } from "./requests.js";
import { storeSuite } from "./store.suite.js";

const log = pino({ level: "silent" });
let cluster: RedisCluster;
let prefixes = 0;

before(async () => {
  cluster = await startRedisCluster();
});
after(async () => cluster?.stop());

function connect(): Cluster {
  return createRedisClient({ mode: "cluster", nodes: cluster.nodes, log });
}

async function makeStore(
  prefix = `c${++prefixes}`,
  domain = "proxy.example.org",
  extra: Partial<RedisStoreDeps> = {},
) {
  const redis = connect();
  const store = createRedisStore({ redis, keys: createKeys(prefix, domain), ...extra });
  // Commands fail fast until connected (no offline queue): wait for the connection first.
  if (redis.status !== "ready") await once(redis, "ready");
  return { redis, store };
}

storeSuite("Redis Cluster", async (limits) => {
  const { store } = await makeStore(undefined, undefined, { limits });
  return { store, cleanup: () => store.close() };
});

balanceSuite("Redis Cluster", async () => {
  const { store } = await makeStore();
  return { store, cleanup: () => store.close() };
});

const request = forwardInput;

/** Every key of a domain, a record included. */
const allKeys = (keys: Keys) => [
  keys.resources,
  keys.gone,
  keys.epoch,
  keys.subscription,
  keys.deadlines,
  keys.record(keys.member("user@example.org/desk", "1")),
];

describe("Redis Cluster specifics", () => {
  let admin: Cluster;
  const slotOf = async (key: string) => Number(await admin.cluster("KEYSLOT", key));
  /** The master serving a slot, as ioredis knows it (host:port). */
  const ownerOf = (slot: number) => admin.slots[slot]?.[0];
  /** Two domains whose slots are served by different masters. */
  let spread: Array<{ domain: string; slot: number; owner: string }>;

  before(async () => {
    admin = connect();
    if (admin.status !== "ready") await once(admin, "ready");
    spread = [];
    for (let i = 0; spread.length < 2; i++) {
      const domain = `proxy${i}.example.org`;
      const slot = await slotOf(createKeys("xcp", domain).deadlines);
      const owner = ownerOf(slot) ?? "";
      if (!spread.some((other) => other.owner === owner)) spread.push({ domain, slot, owner });
    }
  });
  after(() => admin?.disconnect());

  it("puts every key of a domain in one slot, and different domains in different slots", async () => {
    const slots = new Map<string, Set<number>>();
    for (const domain of ["proxy.example.org", "other.example.org", "a.b.example.net"]) {
      for (const prefix of ["xcp", "tenant-2"]) {
        const set = new Set(await Promise.all(allKeys(createKeys(prefix, domain)).map(slotOf)));
        assert.equal(set.size, 1, `${prefix} ${domain}: ${[...set].join(", ")}`);
        // The prefix is outside the hash tag: it does not move a domain to another slot.
        const known = slots.get(domain);
        if (known) assert.deepEqual(set, known);
        slots.set(domain, set);
      }
    }
    const distinct = new Set([...slots.values()].map((set) => [...set][0]));
    assert.equal(distinct.size, 3, "three domains, three slots");
  });

  it("serves two domains from two shards side by side, scripts and sweeps included", async () => {
    const now = Date.now();
    for (const { domain, owner } of spread) {
      const { store } = await makeStore("spread", domain);
      try {
        await store.resourceAvailable("a", now);
        await store.resourceAvailable("b", now);
        const to = domain;
        assert.equal(
          (await store.forward(request("1", now, { to, deadline: now + 10 }))).status,
          "forwarded",
        );
        assert.equal((await store.forward(request("2", now, { to, pick: 0.9 }))).status, "forwarded");
        // The sweep and the resource-gone scripts build record keys from a prefix inside the script.
        const swept = await expired(store, now + 100, 10);
        assert.deepEqual(
          swept.map((r) => [r.id, r.to]),
          [["1", to]],
        );
        assert.deepEqual(
          await store.resourceUnavailable("b", now + 1, 0),
          [{ requester: "user@example.org/desk", id: "2", resource: "a", payload: "<q/>", gen: 0 }],
          "the pending get moved to the other resource",
        );
        const claim = await store.claimReply({
          ...CLAIM,
          requester: "user@example.org/desk",
          id: "2",
          resource: "a",
          now: now + 2,
        });
        assert.equal(claim.status, "claimed");
        // The keys are on the master that owns the domain's slot, and only there.
        for (const node of admin.nodes("master")) {
          const found = await node.keys(`spread:{${domain}}:*`);
          const here = `${node.options.host}:${node.options.port}` === owner;
          assert.equal(found.length > 0, here, `${domain} keys on ${node.options.port}: ${found.length}`);
        }
      } finally {
        await store.close();
      }
    }
  });

  it("fails fast while the domain's shard is down, other shards serve, and it relearns when it returns", async () => {
    const [down, up] = spread;
    assert.ok(down && up);
    const index = cluster.nodes.findIndex(({ host, port }) => `${host}:${port}` === down.owner);
    const a = await makeStore("outage", down.domain);
    const b = await makeStore("outage", up.domain);
    try {
      const reconnects: number[] = [];
      onRedisReconnect(a.redis, () => reconnects.push(Date.now()));
      const now = Date.now();
      await a.store.resourceAvailable("r", now);
      await b.store.resourceAvailable("r", now);
      await cluster.kill(index);
      try {
        for (let i = 0; i < 3; i++) {
          const started = Date.now();
          await assert.rejects(a.store.forward(request(`x${i}`, Date.now())), StoreUnavailableError);
          const took = Date.now() - started;
          assert.ok(took < 1500, `failed after ${took} ms`);
        }
        assert.equal((await b.store.forward(request("y", Date.now()))).status, "forwarded");
      } finally {
        await cluster.restart(index);
      }
      // Same client: it reaches the restarted (empty) shard by itself and says so.
      const deadline = Date.now() + 10_000;
      let result = await a.store.forward(request("z", Date.now())).catch((err: Error) => err);
      while (result instanceof Error && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        result = await a.store.forward(request("z", Date.now())).catch((err: Error) => err);
      }
      assert.deepEqual(result, { status: "presence-unknown" }, "the shard came back empty");
      assert.equal(reconnects.length, 1, "reconnect reported once, so presence is probed again");
    } finally {
      await a.store.close();
      await b.store.close();
    }
  });
});
