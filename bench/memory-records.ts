/**
 * Redis memory per record (`memory-records`): what one pending request and one tombstone (an answered
 * request, remembered for the tombstone lifetime) take in Redis, with the service's real store and scripts.
 *
 * Against the bench's Redis, flushed before and after: N requests with a 100-byte payload are forwarded
 * (store.forward, two resources online, shaped as the capacity mode's: 50 requesters, the echo namespace),
 * then all answered (claimReply, then ack in batches as the outbox does). used_memory (INFO memory) is read
 * before, with N pending, and with N tombstones: the growth over N is the memory per record, the deadline
 * index entry, the requester's pending count and the main dictionary's share included. Left out of the growth:
 * the buffers Redis sizes on its own, not per record: the replication backlog (mem_replication_backlog: Redis
 * 7.0 here fills a 1 MB backlog with the scripts' writes, once per server, even without replicas) and the
 * client buffers (mem_clients_normal). A warm-up under another prefix first loads the scripts, so that their
 * memory is not counted either.
 */

import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { Redis } from "ioredis";
import { pino } from "pino";
import { createKeys } from "../src/store/keys.js";
import { createRedisStore } from "../src/store/redis.js";
import { createRedisClient } from "../src/store/redis-client.js";
import { RANDOM_POLICY, type Store } from "../src/store/types.js";
import { sleep } from "../test/integration/helpers.js";

const DOMAIN = "proxy.localhost";
const TARGET = "impl@localhost";
const NS_ECHO = "urn:xmpp-client-proxy:test:echo";
/** The service's default REDIS_PREFIX: keys as long as a default deployment's. */
const PREFIX = "xcp";
const REQUESTERS = 50;
/** Requests in flight at once while filling: small, so that client buffers stay out of used_memory. */
const CONCURRENCY = 100;
/** Acknowledged together, at most (src/delivery/outbox.ts sends what one write carried). */
const ACK_BATCH = 32;

export interface MemoryRecords {
  records: number;
  payloadBytes: number;
  /** (used_memory with N pending - before) / N, bytes, the backlog and client buffers left out. */
  bytesPerPending: number;
  /** (used_memory with N tombstones - before) / N, bytes, the backlog and client buffers left out. */
  bytesPerTombstone: number;
  /**
   * At each step, bytes: used_memory, and the parts of it left out of the growth: mem_clients_normal (client
   * buffers) and mem_replication_backlog.
   */
  usedMemory: { before: number; pending: number; tombstones: number };
  clientsMemory: { before: number; pending: number; tombstones: number };
  backlogMemory: { before: number; pending: number; tombstones: number };
  /** Keys in the database with N pending and with N tombstones. */
  keys: { pending: number; tombstones: number };
  /**
   * MEMORY USAGE of one request's record key, pending and as a tombstone, bytes: the rest of the memory per
   * record is the deadline index entry, the pending count and the main dictionaries' share.
   */
  recordKeyBytes: { pending: number | null; tombstone: number | null };
  /** OBJECT ENCODING of that key, pending and as a tombstone (listpack, hashtable). */
  recordEncoding: { pending: string | null; tombstone: string | null };
  seconds: number;
}

/** A 100-byte payload, as the service keeps it: the request's child element, serialized. */
export const PAYLOAD = (() => {
  const open = `<echo xmlns="${NS_ECHO}">`;
  const close = "</echo>";
  return `${open}${"x".repeat(100 - open.length - close.length)}${close}`;
})();

export interface MemoryReading {
  used: number;
  clients: number;
  backlog: number;
}

/** used_memory and the parts of it Redis sizes on its own (client buffers, replication backlog). */
export async function memory(admin: Redis): Promise<MemoryReading> {
  // Redis trims idle client buffers in its cron (10 times a second): give it a moment.
  await sleep(300);
  const text = await admin.info("memory");
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return {
    used: field("used_memory"),
    clients: field("mem_clients_normal"),
    backlog: field("mem_replication_backlog"),
  };
}

async function openStore(url: string, prefix: string): Promise<Store> {
  const redis = createRedisClient({ url, log: pino({ level: "silent" }) });
  // Commands fail fast until connected (no offline queue): wait for the connection first.
  if (redis.status !== "ready") await once(redis, "ready");
  const store = createRedisStore({ redis, keys: createKeys(prefix, DOMAIN) });
  const now = Date.now();
  await store.resourceAvailable("r1", now);
  await store.resourceAvailable("r2", now);
  return store;
}

/** Forwards `ids` (index -> requester and id), CONCURRENCY at a time; returns each one's resource and gen. */
async function forwardAll(
  store: Store,
  count: number,
  request: (i: number) => { requester: string; id: string },
): Promise<Array<{ resource: string; gen: number }>> {
  const out: Array<{ resource: string; gen: number }> = [];
  const op = randomBytes(6).toString("base64url");
  for (let start = 0; start < count; start += CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, count - start) }, (_, j) => start + j);
    const results = await Promise.all(
      batch.map((i) => {
        const now = Date.now();
        return store.forward({
          ...request(i),
          to: DOMAIN,
          type: "get",
          now,
          deadline: now + 30_000,
          pick: Math.random(),
          balance: RANDOM_POLICY,
          namespace: NS_ECHO,
          payload: PAYLOAD,
          op: `${op}${i.toString(36)}`,
        });
      }),
    );
    for (const [j, result] of results.entries()) {
      if (result.status !== "forwarded") throw new Error(`forward ${start + j}: ${result.status}`);
      out.push({ resource: result.resource, gen: result.gen });
    }
  }
  return out;
}

/** Claims the answer of every request forwarded, then acknowledges them in batches. */
async function answerAll(
  store: Store,
  forwarded: Array<{ resource: string; gen: number }>,
  request: (i: number) => { requester: string; id: string },
): Promise<void> {
  const op = randomBytes(6).toString("base64url");
  for (let start = 0; start < forwarded.length; start += CONCURRENCY) {
    const batch = forwarded.slice(start, start + CONCURRENCY).map((sent, j) => {
      const i = start + j;
      const { requester, id } = request(i);
      return { requester, id, op: `${op}${i.toString(36)}`, ...sent };
    });
    const claims = await Promise.all(
      batch.map(({ requester, id, op, resource, gen }) =>
        store.claimReply({
          requester,
          id,
          resource,
          op,
          gen,
          now: Date.now(),
          answer: `<iq type="result" id="${id}" from="${TARGET}/${resource}" to="${DOMAIN}/${requester}">${PAYLOAD}</iq>`,
        }),
      ),
    );
    for (const [j, claim] of claims.entries())
      if (claim.status !== "claimed") throw new Error(`claim ${start + j}: ${claim.status}`);
    const acks = batch.map(({ requester, id, op }) => ({ requester, id, op }));
    const chunks = [];
    for (let k = 0; k < acks.length; k += ACK_BATCH) chunks.push(store.ack(acks.slice(k, k + ACK_BATCH)));
    await Promise.all(chunks);
  }
}

/** The memory per pending request and per tombstone, against the Redis at `url` (flushed before and after). */
export async function measureRecordMemory(url: string, records = 10_000): Promise<MemoryRecords> {
  const started = performance.now();
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  let store: Store | null = null;
  try {
    await admin.flushall();
    // Warm-up under another prefix: the scripts are loaded (SCRIPT LOAD, Lua's own memory) before the baseline.
    const warm = await openStore(url, `${PREFIX}-warmup`);
    const warmRequest = (i: number) => ({ requester: "warmup@localhost/bench", id: `w${i}` });
    await answerAll(warm, await forwardAll(warm, 10, warmRequest), warmRequest);
    await warm.close();
    await admin.flushall();

    store = await openStore(url, PREFIX);
    const tag = randomBytes(3).toString("hex");
    // As the capacity mode's requests: requester k of 50, ids c<tag><k>-<seq>.
    const request = (i: number) => {
      const k = i % REQUESTERS;
      return { requester: `req${k}@localhost/bench`, id: `c${tag}${k}-${i}` };
    };
    const first = request(0);
    const keys = createKeys(PREFIX, DOMAIN);
    const firstKey = keys.record(keys.member(first.requester, first.id));
    const usage = async () => {
      const bytes = await admin.memory("USAGE", firstKey, "SAMPLES", 0);
      const encoding = await admin.object("ENCODING", firstKey);
      return {
        bytes: typeof bytes === "number" ? bytes : null,
        encoding: typeof encoding === "string" ? encoding : null,
      };
    };
    const before = await memory(admin);
    const forwarded = await forwardAll(store, records, request);
    const pending = await memory(admin);
    const pendingKeys = await admin.dbsize();
    const pendingRecord = await usage();
    await answerAll(store, forwarded, request);
    const tombstones = await memory(admin);
    const tombstoneKeys = await admin.dbsize();
    const tombstoneRecord = await usage();
    const pendingCount = await store.pendingCount();
    if (pendingCount !== 0) throw new Error(`${pendingCount} requests still pending after the acks`);
    const data = (m: MemoryReading) => m.used - m.clients - m.backlog;
    return {
      records,
      payloadBytes: Buffer.byteLength(PAYLOAD),
      bytesPerPending: (data(pending) - data(before)) / records,
      bytesPerTombstone: (data(tombstones) - data(before)) / records,
      usedMemory: { before: before.used, pending: pending.used, tombstones: tombstones.used },
      clientsMemory: { before: before.clients, pending: pending.clients, tombstones: tombstones.clients },
      backlogMemory: { before: before.backlog, pending: pending.backlog, tombstones: tombstones.backlog },
      keys: { pending: pendingKeys, tombstones: tombstoneKeys },
      recordKeyBytes: { pending: pendingRecord.bytes, tombstone: tombstoneRecord.bytes },
      recordEncoding: { pending: pendingRecord.encoding, tombstone: tombstoneRecord.encoding },
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await store?.close();
    await admin.flushall().catch(() => {});
    admin.disconnect();
  }
}
