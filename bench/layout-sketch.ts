/**
 * What other record layouts would take in Redis memory, next to the store's own (`memory-records`).
 *
 * `node --import tsx bench/layout-sketch.ts` starts a private redis-server and writes N = 10,000 records per
 * layout with plain pipelined commands, shaped as the store's (the same requesters, ids, 100-byte payload and
 * fields), then turns them into tombstones, reading used_memory (without client buffers and the replication
 * backlog) before, with N pending and with N tombstones. No script runs and nothing is claimed: this measures
 * the data, not the service. The layouts:
 *
 * - `hash`: today's, for reference: one hash per request under `request:<member>` with the fields the forward
 *   script writes; the tombstone written anew with state and fop.
 * - `string`: one string per request under the same key, its fields joined by 0x1F (no field of a record can
 *   hold that character: XML 1.0 excludes it, and so do JIDs), `SET ... PX`; the tombstone a short string.
 * - `string-short-key`: the same under a key named by 16 characters of the member's SHA-1 (base64url), with
 *   that name as the deadline index member; the requester and id stay in the value.
 * - `tombstone-buckets`: pending as `string-short-key`; tombstones as fields of hashes shared per minute and
 *   per one of 64 buckets, small enough for Redis' compact listpack encoding, each hash expiring as a whole.
 * - `without-index`: `string-short-key` without its deadline index entry: what that entry costs.
 */
import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { memberOf } from "../src/store/keys.js";
import { type RedisServer, startRedis } from "../test/harness/redis.js";
import { measureRecordMemory, memory, PAYLOAD } from "./memory-records.js";

const RECORDS = 10_000;
const REQUESTERS = 50;
const BASE = "xcp:{proxy.localhost}:";
const SEP = "\x1f";
const BUCKETS = 64;

type Layout = "string" | "string-short-key" | "tombstone-buckets" | "without-index";

interface Row {
  layout: string;
  pending: number;
  tombstone: number;
}

/** used_memory without what Redis sizes on its own (memory-records.ts does the same). */
async function dataMemory(admin: Redis): Promise<number> {
  const m = await memory(admin);
  return m.used - m.clients - m.backlog;
}

const shortName = (member: string) => createHash("sha1").update(member).digest("base64url").slice(0, 16);

async function measureLayout(admin: Redis, layout: Layout): Promise<Row> {
  await admin.flushall();
  const tag = randomBytes(3).toString("hex");
  const now = Date.now();
  const requests = Array.from({ length: RECORDS }, (_, i) => {
    const k = i % REQUESTERS;
    const requester = `req${k}@localhost/bench`;
    const id = `c${tag}${k}-${i}`;
    const member = memberOf(requester, id);
    const name = layout === "string" ? member : shortName(member);
    return { requester, id, member: name, key: `${BASE}request:${name}` };
  });
  const before = await dataMemory(admin);
  const fop = () => randomBytes(6).toString("base64url") + Math.floor(Math.random() * 1e6).toString(36);
  for (let start = 0; start < RECORDS; start += 500) {
    const pipeline = admin.pipeline();
    for (const r of requests.slice(start, start + 500)) {
      // requester, id, to, type, resource, deadline, state, payload, fop: what forward-8.lua records.
      const value = [
        r.requester,
        r.id,
        "proxy.localhost",
        "get",
        "r1",
        now + 30_000,
        "p",
        PAYLOAD,
        fop(),
      ].join(SEP);
      pipeline.set(r.key, value, "PX", 60_000);
      if (layout !== "without-index") pipeline.zadd(`${BASE}due`, now + 30_000, r.member);
    }
    await pipeline.exec();
  }
  const pending = await dataMemory(admin);
  for (let start = 0; start < RECORDS; start += 500) {
    const pipeline = admin.pipeline();
    for (const r of requests.slice(start, start + 500)) {
      pipeline.zrem(`${BASE}due`, r.member);
      if (layout === "tombstone-buckets") {
        pipeline.del(r.key);
        const bucket =
          Number.parseInt(createHash("sha1").update(r.member).digest("hex").slice(0, 4), 16) % BUCKETS;
        const hash = `${BASE}answered:${Math.floor(now / 60_000)}:${bucket}`;
        pipeline.hset(hash, r.member, `r${SEP}${fop()}`);
        pipeline.pexpire(hash, 120_000);
      } else {
        pipeline.set(r.key, `r${SEP}${fop()}`, "PX", 60_000);
      }
    }
    await pipeline.exec();
  }
  const tombstones = await dataMemory(admin);
  return { layout, pending: (pending - before) / RECORDS, tombstone: (tombstones - before) / RECORDS };
}

async function main(): Promise<void> {
  let server: RedisServer | null = null;
  const admin = () => new Redis(server?.url ?? "", { maxRetriesPerRequest: 1 });
  try {
    server = await startRedis();
    const rows: Row[] = [];
    const store = await measureRecordMemory(server.url, RECORDS);
    rows.push({
      layout: "hash (the store today)",
      pending: store.bytesPerPending,
      tombstone: store.bytesPerTombstone,
    });
    const client = admin();
    try {
      for (const layout of ["string", "string-short-key", "tombstone-buckets", "without-index"] as const)
        rows.push(await measureLayout(client, layout));
    } finally {
      client.disconnect();
    }
    process.stdout.write(
      [
        `Redis memory per record, ${RECORDS} records, ${Buffer.byteLength(PAYLOAD)}-byte payload:`,
        "",
        "| layout | bytes per pending request | bytes per tombstone |",
        "| --- | ---: | ---: |",
        ...rows.map((row) => `| ${row.layout} | ${row.pending.toFixed(0)} | ${row.tombstone.toFixed(0)} |`),
        "",
      ].join("\n"),
    );
  } finally {
    await server?.stop();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`layout-sketch failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
