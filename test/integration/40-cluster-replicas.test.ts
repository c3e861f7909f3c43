/**
 * Two replicas behind ejabberd sharing their state in a Redis Cluster (three masters, REDIS_CLUSTER_NODES):
 * the same behaviour as with one Redis, the domain's keys all on the one shard that owns its slot.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { Cluster } from "ioredis";
import { type Client, collectStanzas, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";
import { type RedisCluster, startRedisCluster } from "../harness/redis-cluster.js";
import {
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  load,
  NS_ECHO,
  NS_SILENT,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";
import { type Replica, servedBy, startReplicas } from "./replicas.js";

const TIMEOUT_MS = 3000;
const PREFIX = "xcp40";

describe("two replicas behind ejabberd on a Redis Cluster", { timeout: 180_000 }, () => {
  let ejabberd: EjabberdServer;
  let cluster: RedisCluster;
  const replicas: Replica[] = [];
  const impl: Client[] = [];
  const requesters: Client[] = [];
  let proxy: string;

  before(async () => {
    [ejabberd, cluster] = await Promise.all([startEjabberd({ users: TEST_USERS }), startRedisCluster()]);
    proxy = ejabberd.componentDomain;
    replicas.push(
      ...(await startReplicas(ejabberd, 2, {
        REDIS_CLUSTER_NODES: cluster.spec,
        REDIS_PREFIX: PREFIX,
        IQ_TIMEOUT_MS: String(TIMEOUT_MS),
      })),
    );
    for (const resource of ["r1", "r2"]) impl.push(await connectImplementing(ejabberd, resource));
    for (let i = 0; i < 3; i++) requesters.push(await connectUser(ejabberd, "requester", `load${i}`));
    await servedBy(requesters[0] as Client, proxy, ["r1", "r2"]);
  });

  after(async () => {
    for (const client of [...requesters, ...impl]) await stopClient(client);
    for (const { service } of replicas) await service.stop();
    await cluster?.stop();
    await ejabberd?.stop();
  });

  it("says it runs on the cluster", () => {
    for (const { service } of replicas) {
      assert.ok(
        service.lines().some((line) => line.msg === "starting" && line.store === "redis cluster"),
        service.output().slice(0, 2000),
      );
    }
  });

  it("answers hundreds of requests exactly once and correctly, from both replicas", async () => {
    const started = Date.now();
    const { answers, expected } = await load(requesters, proxy, "cl", 600, 6);
    const elapsed = Date.now() - started;
    // Nothing may come late or twice.
    await sleep(500);
    const resources = new Set<string>();
    for (const [id, payload] of expected) {
      const list = answers.get(id) ?? [];
      assert.equal(list.length, 1, `${id} was answered ${list.length} times`);
      const answer = list[0] as Element;
      assert.equal(answer.attrs.type, "result", answer.toString());
      assert.equal(answer.attrs.from, proxy);
      const echo = answer.getChild("echo", NS_ECHO);
      assert.equal(echo?.getText(), payload, `${id} got another request's answer`);
      assert.equal(echo?.attrs.requester, `requester@${ejabberd.domain}/load${id.split("-")[1]}`);
      resources.add(echo?.attrs.resource ?? "");
    }
    assert.equal(expected.size, 600);
    assert.deepEqual([...resources].sort(), ["r1", "r2"]);
    const forwarded = await Promise.all(
      replicas.map(async ({ port }) =>
        Number(
          /^xcp_requests_forwarded_total (\d+)/m.exec((await httpStatus(port, "/metrics")).body)?.[1] ?? 0,
        ),
      ),
    );
    console.log(`cluster: 600 requests in ${elapsed} ms, forwarded per replica ${forwarded.join(", ")}`);
    assert.ok(
      forwarded.every((count) => count > 0),
      `ejabberd spreads requests: ${forwarded.join(", ")}`,
    );
  });

  it("answers a request nobody answers with one timeout", async () => {
    const requester = requesters[0] as Client;
    const answers = collectStanzas(requester, (st: Element) => st.attrs.id === "silent-1");
    const sent = Date.now();
    await requester.send(
      xml("iq", { type: "get", id: "silent-1", to: proxy }, xml("echo", { xmlns: NS_SILENT })),
    );
    await until("the timeout", () => (answers.length > 0 ? true : undefined), TIMEOUT_MS + 5_000);
    const after = Date.now() - sent;
    assert.ok(after >= TIMEOUT_MS - 100, `answered after ${after} ms`);
    // Both replicas sweep the same deadline index: still one answer.
    await sleep(1500);
    assert.equal(answers.length, 1, answers.map(String).join("\n"));
    assert.deepEqual(errorCondition(answers[0] as Element), {
      type: "wait",
      condition: "remote-server-timeout",
      by: proxy,
    });
    assert.equal(answers[0]?.attrs.from, proxy);
  });

  it("keeps every key of the domain on the one master that owns its slot", async () => {
    const admin = new Cluster(cluster.nodes);
    try {
      const slot = Number(await admin.cluster("KEYSLOT", `${PREFIX}:{${proxy}}:resources`));
      const owner = admin.slots[slot]?.[0];
      const holders: string[] = [];
      for (const node of admin.nodes("master")) {
        const keys = await node.keys(`${PREFIX}:*`);
        if (keys.length === 0) continue;
        holders.push(`${node.options.host}:${node.options.port}`);
        for (const key of keys) assert.ok(key.startsWith(`${PREFIX}:{${proxy}}:`), key);
      }
      assert.deepEqual(holders, [owner]);
    } finally {
      admin.disconnect();
    }
  });
});
