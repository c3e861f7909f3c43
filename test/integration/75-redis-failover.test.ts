/**
 * Redis failovers under load, with REDIS_WAIT_REPLICAS=1: three replicas behind ejabberd, two implementing
 * resources, three requesters with 8 requests in flight each, while the Redis master that holds the domain
 * is SIGKILLed or handed over in a planned failover (Sentinel: SENTINEL FAILOVER; Cluster: CLUSTER FAILOVER).
 *
 * The guarantee under test (RFC 6120 section 8.2.3, README "Failover and durability"): every request gets
 * exactly one answer, counted per request id: a result carrying its own echo payload, or a `wait` error of
 * the kinds a store outage explains. Afterwards the replicas serve results again.
 *
 * Topologies: Sentinel with a master, one replica and three sentinels (quorum 2, down-after 500 ms); a
 * Cluster of three masters with one replica each (cluster-node-timeout 1000 ms). A SIGKILLed master comes
 * back empty as a replica of its successor, so that writes can be durable again.
 *
 * A failure prints, for the first ids without exactly one answer: the answers, every log line of the replicas
 * about the id, the store's record of the request over time, and what the replicas complained about.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Element } from "@xmpp/xml";
import { Redis } from "ioredis";
import { createKeys } from "../../src/store/keys.js";
import { type Client, collectStanzas, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";
import { type RedisCluster, startRedisCluster } from "../harness/redis-cluster.js";
import { type RedisSentinelGroup, startSentinelGroup } from "../harness/redis-sentinel.js";
import {
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  load,
  NS_ECHO,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";
import { type Replica, servedBy, startReplicas } from "./replicas.js";

const TIMEOUT_MS = 3000;
const REQUESTS = 2000;
const WINDOW = 8;
const REQUESTERS = 3;
/** The load runs this long before the fault. */
const FAULT_AFTER_MS = 1200;
/** The load may take this long (a failover stalls it for a while), or the service does not serve again. */
const LOAD_LIMIT_MS = 75_000;
/** After the load, every request has its answer within this time. */
const ANSWERED_WITHIN_MS = 45_000;
/** After every request has its answer: long enough for a stray second answer (lease 3 s, then a sweep). */
const QUIET_MS = TIMEOUT_MS + 5000;
const ALLOWED_ERRORS = [
  "wait/internal-server-error",
  "wait/remote-server-timeout",
  "wait/service-unavailable",
];
const METRICS = [
  "xcp_store_retries_total",
  "xcp_store_errors_total",
  "xcp_answers_redelivered_total",
  "xcp_store_data_losses_total",
  "xcp_replies_dropped_total",
];

/** ejabberd, three replicas with `env`, two implementing resources and the requesters. */
class Stand {
  ejabberd!: EjabberdServer;
  replicas: Replica[] = [];
  impl: Client[] = [];
  requesters: Client[] = [];
  /** The state of Redis, for a failure report. */
  redisState: () => Promise<string> = async () => "";
  /** The port of the Redis master that holds the domain's keys now. */
  masterPort: () => Promise<number> = async () => 0;

  get proxy(): string {
    return this.ejabberd.componentDomain;
  }

  async start(ejabberd: EjabberdServer, env: Record<string, string>): Promise<void> {
    this.ejabberd = ejabberd;
    this.replicas = await startReplicas(ejabberd, 3, {
      REDIS_WAIT_REPLICAS: "1",
      IQ_TIMEOUT_MS: String(TIMEOUT_MS),
      LOG_LEVEL: "debug",
      ...env,
    });
    for (const resource of ["r1", "r2"]) this.impl.push(await connectImplementing(ejabberd, resource));
    for (let i = 0; i < REQUESTERS; i++) {
      this.requesters.push(await connectUser(ejabberd, "requester", `load${i}`));
    }
    await servedBy(this.requesters[0] as Client, this.proxy, ["r1", "r2"]);
  }

  async stop(): Promise<void> {
    for (const client of [...this.requesters, ...this.impl]) await stopClient(client);
    for (const { service } of this.replicas) await service.stop();
    await this.ejabberd?.stop();
  }

  /**
   * A load of REQUESTS echo requests with `fault` run FAULT_AFTER_MS into it; waits until every request has an
   * answer (at most ANSWERED_WITHIN_MS after the load), then QUIET_MS more, and checks one answer per id.
   */
  async underLoad(label: string, fault: () => Promise<void>): Promise<void> {
    const prefix = `${label}${Date.now() % 100_000}`;
    const marks = this.replicas.map(({ service }) => service.lines().length);
    const answersSoFar = this.requesters.map((requester) =>
      collectStanzas(requester, (stanza) => stanza.attrs.id?.startsWith(prefix) ?? false),
    );
    const received = () => answersSoFar.reduce((sum, list) => sum + list.length, 0);
    const started = Date.now();
    const run = load(this.requesters, this.proxy, prefix, REQUESTS, WINDOW);
    // Should the load outlive the test (it failed), its clients are closed under it: not a test of its own.
    run.catch(() => {});
    await sleep(FAULT_AFTER_MS);
    const answeredBefore = received();
    const faultAt = Date.now();
    await fault();
    const done = await Promise.race([run, sleep(LOAD_LIMIT_MS).then(() => undefined)]);
    if (!done) {
      assert.fail(
        `${label}: the load of ${REQUESTS} requests did not finish within ${LOAD_LIMIT_MS} ms ` +
          `(${received()} answers received so far): ` +
          `the service does not serve again after the failover\n${this.logSummary(marks)}\n${await this.redisState()}`,
      );
    }
    const { answers, expected } = done;
    const loadMs = Date.now() - started;
    // What the store says about requests without an answer yet, while their records or tombstones live.
    const pending = [...expected.keys()].filter((id) => !answers.has(id));
    const atLoadEnd = await this.records(pending.slice(0, 50));
    const everyone = () => [...expected.keys()].every((id) => answers.has(id)) || undefined;
    await until("an answer to every request", everyone, ANSWERED_WITHIN_MS).catch(() => {});
    const allAnsweredMs = Date.now() - started;
    const unanswered = [...expected.keys()].filter((id) => !answers.has(id));
    const atWaitEnd = await this.records(unanswered.slice(0, 50));
    await sleep(QUIET_MS);
    console.log(
      `${label}: fault at ${faultAt - started} ms (${answeredBefore} answers by then), ` +
        `load done after ${loadMs} ms, every request answered after ${allAnsweredMs} ms`,
    );
    await this.check(label, answers, expected, marks, [
      ["at the end of the load", atLoadEnd],
      ["when the wait for answers ended", atWaitEnd],
    ]);
  }

  /** Exactly one answer per id, of an expected kind; prints a summary, and the evidence of a failure. */
  async check(
    label: string,
    answers: Map<string, Element[]>,
    expected: Map<string, string>,
    marks: number[],
    snapshots: Array<[string, Map<string, string>]>,
  ): Promise<void> {
    assert.equal(expected.size, REQUESTS);
    const kinds = new Map<string, number>();
    const bad: Array<{ id: string; why: string }> = [];
    for (const [id, payload] of expected) {
      const list = answers.get(id) ?? [];
      const kindsOf = list.map(kindOf);
      for (const kind of kindsOf) kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      if (list.length !== 1) {
        bad.push({ id, why: `${list.length} answers: ${kindsOf.join(", ") || "-"}` });
        continue;
      }
      const answer = list[0] as Element;
      const kind = kindsOf[0] as string;
      if (answer.attrs.from !== this.proxy) bad.push({ id, why: `from ${answer.attrs.from}` });
      else if (kind === "result") {
        const text = answer.getChild("echo", NS_ECHO)?.getText();
        if (text !== payload) bad.push({ id, why: `result for another request: ${answer.toString()}` });
      } else if (!ALLOWED_ERRORS.includes(kind)) bad.push({ id, why: `unexpected ${answer.toString()}` });
    }
    // Before anything else asks the replicas (a /metrics scrape makes store calls of its own).
    const counted = new Map(bad.map(({ id }) => [id, answers.get(id)?.length ?? 0]));
    const metrics = await this.metrics();
    console.log(`${label}: ${JSON.stringify(Object.fromEntries(kinds))}; ${metrics}`);
    if (bad.length === 0) return;
    const records = await this.records(bad.slice(0, 8).map(({ id }) => id));
    for (const [when, snapshot] of snapshots) console.log(`${label}: ${snapshot.get("") ?? "-"} ${when}`);
    console.log(`${label}: ${records.get("")} now`);
    const evidence = bad.slice(0, 8).map(({ id, why }) => {
      const lines = this.replicas.flatMap(({ service }, r) =>
        service
          .lines()
          .slice(marks[r])
          .filter((line) => line.id === id || String(line.id).startsWith(`${id}#`))
          .map((line) => `  replica ${r}: ${JSON.stringify(line)}`),
      );
      const raw = (answers.get(id) ?? []).map(
        (stanza, i) =>
          `  answer${i < (counted.get(id) ?? 0) ? "" : " that came after the count"}: ${stanza.toString()}`,
      );
      const store = [
        ...snapshots.flatMap(([when, snapshot]) =>
          snapshot.has(id) ? [`  store ${when}: ${snapshot.get(id)}`] : [],
        ),
        `  store now: ${records.get(id)}`,
      ];
      return `${id}: ${why}\n${[...store, ...raw, ...lines].join("\n")}`;
    });
    assert.fail(
      `${label}: ${bad.length} of ${expected.size} requests not answered exactly once correctly ` +
        `(${bad
          .slice(0, 30)
          .map(({ id, why }) => `${id}: ${why}`)
          .join("; ")})\n${evidence.join("\n")}\n${this.logSummary(marks)}\n${await this.redisState()}`,
    );
  }

  /** What the store holds now about requests (their record and deadline index entry), by id. */
  async records(ids: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const keys = createKeys("xcp", this.proxy);
    const admin = new Redis({ port: await this.masterPort().catch(() => 0), lazyConnect: true });
    admin.on("error", () => {});
    try {
      await admin.connect();
      for (const id of ids) {
        // Ids are `<prefix>-<requester index>-<n>` (load()), sent by requester/load<index>.
        const member = keys.member(`requester@${this.ejabberd.domain}/load${id.split("-").at(-2)}`, id);
        const [record, ttl, score] = await Promise.all([
          admin.hgetall(keys.record(member)),
          admin.pttl(keys.record(member)),
          admin.zscore(keys.deadlines, member),
        ]);
        out.set(id, `record ${JSON.stringify(record)} pttl ${ttl}, deadline index ${score}`);
      }
      // For scale: how many records of the same load the store holds (answered ones are tombstones).
      const prefix = ids[0]?.split("-").slice(0, -2).join("-");
      if (prefix) {
        let records = 0;
        const stream = admin.scanStream({ match: `${keys.recordPrefix}*\n${prefix}-*`, count: 1000 });
        for await (const batch of stream) records += (batch as string[]).length;
        out.set("", `${records} records of ${prefix} on port ${admin.options.port}`);
      }
    } catch (err) {
      for (const id of ids) out.set(id, `not read: ${(err as Error).message}`);
    } finally {
      admin.disconnect();
    }
    return out;
  }

  /**
   * What each replica complained about since `marks`: warnings and skipped sweeps, grouped by message, with
   * their count and first and last time.
   */
  logSummary(marks: number[]): string {
    return this.replicas
      .map(({ service }, r) => {
        const groups = new Map<string, { count: number; first: string; last: string }>();
        for (const line of service.lines().slice(marks[r])) {
          if (Number(line.level) < 40 && line.msg !== "sweep skipped: store unavailable") continue;
          const err = (line.err as { message?: string } | undefined)?.message ?? "";
          const key = `${line.msg}${err ? `: ${err}` : ""}`;
          const time = String(line.time ?? "").slice(11, 23);
          const group = groups.get(key) ?? { count: 0, first: time, last: time };
          group.count++;
          group.last = time;
          groups.set(key, group);
        }
        const top = [...groups]
          .sort((a, b) => b[1].count - a[1].count)
          .slice(0, 12)
          .map(([key, { count, first, last }]) => `    ${count}x ${first}-${last} ${key}`);
        return `  replica ${r}:\n${top.join("\n") || "    (nothing)"}`;
      })
      .join("\n");
  }

  /** Sums of a few counters over the replicas, for the summary. */
  async metrics(): Promise<string> {
    const sums = new Map<string, number>();
    for (const { port, service } of this.replicas) {
      if (service.child.exitCode !== null || service.child.signalCode !== null) continue;
      const text = (await httpStatus(port, "/metrics").catch(() => ({ body: "" }))).body;
      for (const line of text.split("\n")) {
        const match = /^(xcp_[a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
        if (!match || !METRICS.includes(match[1] as string)) continue;
        const name = `${match[1]?.slice(4)}${match[2] ?? ""}`;
        sums.set(name, (sums.get(name) ?? 0) + Number(match[3]));
      }
    }
    return [...sums].map(([name, value]) => `${name}=${value}`).join(" ");
  }

  /** Requests get results again: a few small rounds until one is all results, then a full round. */
  async servesAgain(label: string): Promise<void> {
    const proxy = this.proxy;
    await until(
      `${label}: serving results again`,
      async () => {
        const { answers } = await load(this.requesters.slice(0, 1), proxy, `${label}try${Date.now()}`, 10, 2);
        return (
          (answers.size === 10 && [...answers.values()].every((l) => l[0]?.attrs.type === "result")) ||
          undefined
        );
      },
      40_000,
    );
    const { answers, expected } = await load(this.requesters, proxy, `${label}again`, 300, WINDOW);
    await sleep(500);
    for (const [id, payload] of expected) {
      const list = answers.get(id) ?? [];
      assert.equal(list.length, 1, `${label}: ${id} answered ${list.length} times`);
      assert.equal(list[0]?.getChild("echo", NS_ECHO)?.getText(), payload, list[0]?.toString());
    }
  }
}

/** An INFO section on one line, the interesting fields only. */
function oneLine(info: string): string {
  return info
    .split(/\r?\n/)
    .filter((line) => /^(role|connected_slaves|slave\d+|master_port|master_link_status)[:]/.test(line))
    .join(" ");
}

function tail(text: string, lines: number): string {
  return text
    .split("\n")
    .slice(-lines)
    .map((line) => `    ${line}`)
    .join("\n");
}

/** Both started, or neither left running. */
async function startBoth<A extends { stop(): Promise<void> }, B extends { stop(): Promise<void> }>(
  a: Promise<A>,
  b: Promise<B>,
): Promise<[A, B]> {
  const [first, second] = await Promise.allSettled([a, b]);
  if (first.status === "fulfilled" && second.status === "fulfilled") return [first.value, second.value];
  if (first.status === "fulfilled") await first.value.stop();
  if (second.status === "fulfilled") await second.value.stop();
  throw first.status === "rejected" ? first.reason : (second as PromiseRejectedResult).reason;
}

function kindOf(stanza: Element): string {
  if (stanza.attrs.type === "result") return "result";
  const { type, condition } = errorCondition(stanza);
  return `${type}/${condition}`;
}

describe("Redis Sentinel failovers under load, REDIS_WAIT_REPLICAS=1", { timeout: 270_000 }, () => {
  const stand = new Stand();
  let group: RedisSentinelGroup;

  before(async () => {
    const [ejabberd, sentinels] = await startBoth(
      startEjabberd({ users: TEST_USERS }),
      startSentinelGroup({ replicas: 1, sentinels: 3, quorum: 2, downAfterMs: 500, failoverTimeoutMs: 5000 }),
    );
    group = sentinels;
    await stand.start(ejabberd, { REDIS_SENTINELS: group.spec, REDIS_SENTINEL_NAME: group.name });
    stand.masterPort = async () => group.ports[await group.masterIndex()] as number;
    stand.redisState = async () => {
      const roles = await Promise.all(
        group.ports.map(async (port, i) => {
          const info = await group.replication(i).catch((err: Error) => err.message);
          return `  ${port}: ${oneLine(info)}`;
        }),
      );
      return `Redis:\n${roles.join("\n")}\n${tail(group.logs(), 40)}`;
    };
  });

  after(async () => {
    await stand.stop();
    await group?.stop();
  });

  it("answers every request exactly once while the master is SIGKILLed", async () => {
    const master = await group.ready(1);
    await stand.underLoad("sentinel-kill", async () => {
      await group.kill(master);
      const promoted = await group.switched(master);
      // The old master comes back empty as a replica of the new one: until then no write is durable.
      await group.restart(master);
      console.log(`sentinel-kill: ${group.ports[master]} killed, ${group.ports[promoted]} promoted`);
    });
    await group.ready(1);
    await stand.servesAgain("sentinel-kill");
  });

  it("answers every request exactly once through a planned SENTINEL FAILOVER", async () => {
    const master = await group.ready(1);
    await stand.underLoad("sentinel-planned", async () => {
      await group.failover();
      const promoted = await group.switched(master);
      console.log(`sentinel-planned: ${group.ports[master]} -> ${group.ports[promoted]}`);
    });
    // The sentinels make the old master a replica of the new one: WAIT is satisfied again.
    const now = await group.ready(1, 60_000);
    assert.notEqual(now, master);
    await stand.servesAgain("sentinel-planned");
  });
});

describe("Redis Cluster failovers under load, REDIS_WAIT_REPLICAS=1", { timeout: 270_000 }, () => {
  const stand = new Stand();
  let cluster: RedisCluster;
  let key: string;

  before(async () => {
    const [ejabberd, started] = await startBoth(
      startEjabberd({ users: TEST_USERS }),
      startRedisCluster({ replicasPerMaster: 1, nodeTimeoutMs: 1000 }),
    );
    cluster = started;
    // Every key of the domain shares its hash tag, so this one names the domain's slot.
    key = createKeys("xcp", ejabberd.componentDomain).deadlines;
    await stand.start(ejabberd, { REDIS_CLUSTER_NODES: cluster.spec });
    stand.masterPort = async () => cluster.nodes[await cluster.masterOf(key)]?.port as number;
    stand.redisState = async () => {
      const nodes = await Promise.all(
        cluster.nodes.map(async ({ port }, i) => {
          const info = await cluster.replication(i).catch((err: Error) => err.message);
          return `  node ${i} (${port}): ${oneLine(info)}\n${tail(cluster.logs(i), 12)}`;
        }),
      );
      return `Redis:\n${nodes.join("\n")}`;
    };
  });

  after(async () => {
    await stand.stop();
    await cluster?.stop();
  });

  it("answers every request exactly once while the domain's master is SIGKILLed", async () => {
    await cluster.ready();
    const master = await cluster.masterOf(key);
    const replica = await cluster.replicaOf(master);
    await stand.underLoad("cluster-kill", async () => {
      await cluster.kill(master);
      await until(
        "the replica promoted",
        async () => (await cluster.masterOf(key)) === replica || undefined,
        20_000,
      );
      // Back empty, as a replica of its successor: until then no write is durable.
      await cluster.restart(master);
      console.log(`cluster-kill: node ${master} killed, node ${replica} promoted`);
    });
    await cluster.ready();
    assert.equal(await cluster.masterOf(key), replica);
    await stand.servesAgain("cluster-kill");
  });

  it("answers every request exactly once through a planned CLUSTER FAILOVER", async () => {
    await cluster.ready();
    const master = await cluster.masterOf(key);
    const replica = await cluster.replicaOf(master);
    await stand.underLoad("cluster-planned", async () => {
      await cluster.failover(replica);
      await until(
        "the replica promoted",
        async () => (await cluster.masterOf(key)) === replica || undefined,
        20_000,
      );
      console.log(`cluster-planned: node ${master} -> node ${replica}`);
    });
    await cluster.ready();
    assert.equal(await cluster.replicaOf(replica), master, "the old master follows the new one");
    await stand.servesAgain("cluster-planned");
  });
});
