import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import { createKeys } from "../../src/store/keys.js";
import { createRedisStore, type RedisStoreDeps } from "../../src/store/redis.js";
import { createRedisClient } from "../../src/store/redis-client.js";
import { DEFAULT_TTLS, StoreUnavailableError } from "../../src/store/types.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { balanceSuite } from "./balance.suite.js";
import { CLAIM, expired, FORWARDED, forwardInput } from "./requests.js";
import { storeSuite } from "./store.suite.js";

const log = pino({ level: "silent" });
let server: RedisServer;
let prefixes = 0;

before(async () => {
  server = await startRedis();
});
after(async () => server?.stop());

async function makeStore(prefix = `t${++prefixes}`, extra: Partial<RedisStoreDeps> = {}) {
  const redis = createRedisClient({ url: server.url, log });
  const store = createRedisStore({ redis, keys: createKeys(prefix, "proxy.example.org"), ...extra });
  // Commands fail fast until connected (no offline queue): wait for the connection first.
  if (redis.status !== "ready") await once(redis, "ready");
  return { redis, store };
}

storeSuite("Redis", async (limits) => {
  const { store } = await makeStore(undefined, { limits });
  return { store, cleanup: () => store.close() };
});

balanceSuite("Redis", async () => {
  const { store } = await makeStore();
  return { store, cleanup: () => store.close() };
});

describe("Redis store specifics", () => {
  it("puts every key under the prefix and the domain's hash tag, each with a TTL", async () => {
    const { store } = await makeStore("ttl");
    await store.resourceAvailable("a", Date.now());
    await store.setSubscriptionApproved(true);
    const now = Date.now();
    await store.forward(
      forwardInput("1", now, { requester: "u@x/y", to: "proxy.example.org", deadline: now + 1000 }),
    );
    await store.forward(
      forwardInput("2", now, { requester: "u@x/y", to: "proxy.example.org", deadline: now + 1000 }),
    );
    await store.claimReply({ ...CLAIM, requester: "u@x/y", id: "1", resource: "a", now });
    const admin = new Redis(server.url);
    const keys = await admin.keys("ttl:*");
    assert.equal(keys.length, 7, keys.join(", "));
    for (const key of keys) {
      assert.ok(key.startsWith("ttl:{proxy.example.org}:"), key);
      assert.ok((await admin.pttl(key)) > 0, `${key} has a TTL`);
    }
    admin.disconnect();
    await store.close();
  });

  it("keeps of an answered request its state only, for the tombstone lifetime", async () => {
    const { store } = await makeStore("tomb");
    const now = Date.now();
    await store.resourceAvailable("a", now);
    await store.resourceAvailable("b", now);
    const forward = (id: string, deadline = now + 60_000) =>
      store.forward(forwardInput(id, now, { requester: "u@x/y", type: "set", deadline }));
    await forward("replied");
    await forward("timed-out", now - 1);
    await forward("bounced");
    assert.equal(
      (await store.claimReply({ ...CLAIM, requester: "u@x/y", id: "replied", resource: "a", now })).status,
      "claimed",
    );
    assert.equal((await expired(store, now, 10)).length, 1);
    assert.equal(
      (await store.failover({ ...CLAIM, requester: "u@x/y", id: "bounced", resource: "a", pick: 0, now }))
        .status,
      "claimed",
      "a bounced set is passed back, not moved",
    );
    await store.ack([
      { requester: "u@x/y", id: "replied", op: CLAIM.op },
      { requester: "u@x/y", id: "bounced", op: CLAIM.op },
    ]);
    const admin = new Redis(server.url);
    const keys = createKeys("tomb", "proxy.example.org");
    for (const [id, state] of [
      ["replied", "replied"],
      ["timed-out", "timeout"],
      ["bounced", "replied"],
    ] as const) {
      const record = keys.record(`u@x/y ${id}`);
      assert.deepEqual(Object.keys(await admin.hgetall(record)).sort(), ["fop", "state"], id);
      assert.equal(await admin.hget(record, "state"), state, id);
      const ttl = await admin.pttl(record);
      assert.ok(ttl > DEFAULT_TTLS.tombstoneMs - 5000 && ttl <= DEFAULT_TTLS.tombstoneMs, `${id}: ${ttl} ms`);
    }
    admin.disconnect();
    await store.close();
  });

  it("fails fast with StoreUnavailableError while Redis is down, and recovers on the same client", async () => {
    const { store } = await makeStore("down");
    await store.resourceAvailable("a", Date.now());
    await server.stop();
    try {
      const started = Date.now();
      await assert.rejects(store.ping(), StoreUnavailableError);
      const now = Date.now();
      await assert.rejects(
        store.forward(forwardInput("1", now, { requester: "u@x/y", to: "p", deadline: now + 1 })),
        (err: Error) => err instanceof StoreUnavailableError && !err.message.includes("redis://"),
      );
      assert.ok(Date.now() - started < 1500, `failed after ${Date.now() - started} ms`);
    } finally {
      await server.restart();
    }
    // Same client, new empty server: it reconnects by itself and the scripts load again (NOSCRIPT).
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        await store.ping();
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await store.resourceAvailable("a", Date.now());
    const now = Date.now();
    const result = await store.forward(
      forwardInput("1", now, { requester: "u@x/y", to: "p", deadline: now + 1 }),
    );
    assert.deepEqual(result, { ...FORWARDED, resource: "a", gen: 0 });
    await store.close();
  });

  it("handles a resource leaving with 100,000 requests pending in chunks, each under 10 ms of Redis time", async () => {
    const { store } = await makeStore("big");
    const admin = new Redis(server.url);
    const now = Date.now();
    await store.resourceAvailable("a", now);
    await store.resourceAvailable("b", now);
    const COUNT = 100_000;
    for (let i = 0; i < COUNT; i += 1000) {
      await Promise.all(
        Array.from({ length: 1000 }, (_, j) =>
          store.forward(
            forwardInput(`${i + j}`, now, {
              requester: "u@x/y",
              deadline: now + 600_000,
              pick: (i + j) % 2 === 0 ? 0 : 0.9,
            }),
          ),
        ),
      );
    }
    assert.equal(await store.pendingCount(), COUNT);
    // Wall-clock time inside Redis: on a busy 2-core machine one call can be preempted, so the bound is on the
    // average per call, and no single call may come near the 874 ms of a scan of everything.
    await admin.config("SET", "slowlog-log-slower-than", "100000");
    await admin.slowlog("RESET");
    await admin.config("RESETSTAT");
    try {
      const moved = await store.resourceUnavailable("a", now + 1, 0);
      assert.equal(moved.length, COUNT / 2, "every pending get of the resource moved");
      assert.ok(moved.every((request) => request.resource === "b"));
      const stats = await admin.info("commandstats");
      let calls = 0;
      let usec = 0;
      for (const m of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
        calls += Number(m[1]);
        usec += Number(m[2]);
      }
      console.log(
        `resource gone, ${COUNT} pending: ${calls} script calls, ${(usec / calls / 1000).toFixed(2)} ms each`,
      );
      assert.ok(calls >= COUNT / 200, `scanned in chunks: ${calls} calls`);
      assert.ok(usec / calls < 10_000, `${usec / calls} us per call`);
      const slow = (await admin.slowlog("GET", 100)) as Array<[number, number, number, string[]]>;
      assert.deepEqual(
        slow.map(([, , micros, args]) => `${args[0]} ${micros} us`),
        [],
        "no call took 100 ms or more",
      );
    } finally {
      await admin.config("SET", "slowlog-log-slower-than", "10000");
      await admin.flushall();
      admin.disconnect();
      await store.close();
    }
  });

  it("answers with a timeout a request whose record was evicted, once", async () => {
    const { store } = await makeStore("evicted");
    const admin = new Redis(server.url);
    const keys = createKeys("evicted", "proxy.example.org");
    const now = Date.now();
    await store.resourceAvailable("a", now);
    await store.forward(forwardInput("gone", now, { requester: "u@x/y", deadline: now + 100 }));
    await admin.del(keys.record("u@x/y gone"));
    const swept = await store.sweep(now + 200, 10, "sw");
    assert.deepEqual(
      swept.due.map(({ request, answer }) => [request.requester, request.id, request.to, answer]),
      [["u@x/y", "gone", "", null]],
      "the member names the requester and the id; the address it was sent to is lost",
    );
    await store.ack([{ requester: "u@x/y", id: "gone", op: "sw" }]);
    assert.deepEqual((await store.sweep(now + 10_000, 10, "again")).due, []);
    const late = { ...CLAIM, requester: "u@x/y", id: "gone", resource: "a", now: now + 300 };
    assert.equal((await store.claimReply(late)).status, "late");
    admin.disconnect();
    await store.close();
  });

  it("keeps every key printable, one per line, and reads back any requester and id from the member", async () => {
    const { store } = await makeStore("printable");
    const admin = new Redis(server.url);
    const now = Date.now();
    await store.resourceAvailable("a", now);
    // A resourcepart may hold spaces and `%`; an id may hold anything XML allows, a newline included.
    const cases = [
      { requester: "u@x/my phone 100%", id: "id with spaces" },
      { requester: "u@x/%20", id: "line\nbreak %20" },
      { requester: "u@x", id: " " },
    ];
    for (const { requester, id } of cases)
      await store.forward(forwardInput(id, now, { requester, deadline: now + 100 }));
    const keys = await admin.keys("printable:*");
    assert.ok(keys.length >= 3, keys.join(", "));
    for (const key of keys) assert.match(key, /^[\x20-\x7e]+$/, `${JSON.stringify(key)} is printable`);
    // Evicted records: the sweep has only the member to say who and what to answer.
    const records = keys.filter((key) => key.includes(":request:"));
    assert.equal(records.length, cases.length, keys.join(", "));
    for (const key of records) await admin.del(key);
    const swept = await store.sweep(now + 200, 10, "sw");
    assert.deepEqual(
      swept.due.map(({ request }) => [request.requester, request.id]).sort(),
      cases.map(({ requester, id }) => [requester, id]).sort(),
    );
    admin.disconnect();
    await store.close();
  });

  it("answers, once, the requests a version before 0.2 left pending (rolling update)", async () => {
    const keys = createKeys("rolling", "proxy.example.org");
    // The previous version: the same scripts over the legacy keys, which is what it wrote.
    const { store: old } = await makeStore("rolling", {
      keys: {
        ...keys,
        deadlines: keys.legacy.deadlines,
        recordPrefix: keys.legacy.recordPrefix,
        record: (member) => keys.legacy.recordPrefix + member,
        member: keys.legacy.member,
      },
    });
    const { store } = await makeStore("rolling");
    const admin = new Redis(server.url);
    const now = Date.now();
    await old.resourceAvailable("a", now);
    const requester = "u@x/my phone";
    await old.forward(
      forwardInput("timed-out", now, { requester, to: "proxy.example.org", deadline: now + 100 }),
    );
    await old.forward(
      forwardInput("evicted", now, { requester, to: "proxy.example.org", deadline: now + 100 }),
    );
    await admin.del(keys.legacy.recordPrefix + keys.legacy.member(requester, "evicted"));
    assert.equal(await admin.zcard(keys.legacy.deadlines), 2);

    const swept = await store.sweep(now + 200, 10, "new");
    assert.deepEqual(swept.due.map(({ request, legacy }) => [request.requester, request.id, legacy]).sort(), [
      [requester, "evicted", true],
      [requester, "timed-out", true],
    ]);
    await store.ack(swept.due.map(({ request, legacy }) => ({ ...request, op: "new", legacy })));
    assert.equal(await admin.zcard(keys.legacy.deadlines), 0, "acknowledged under the legacy keys");
    const later = await store.sweep(now + 200 + DEFAULT_TTLS.answerLeaseMs + 1_000, 10, "later");
    assert.deepEqual(later.due, [], "never handed out again");
    assert.equal(
      await admin.hget(keys.counts, "u@x"),
      null,
      "the requester's pending count is back to nothing",
    );
    admin.disconnect();
    await old.close();
    await store.close();
  });
});
