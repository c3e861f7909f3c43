/**
 * Balancing that knows the implementing client, against real servers with real clients (README, "Balancing"):
 * each strategy, the presence rules (negative priority, dnd/xa drain, highest priority) and routing by XEP-0115
 * capability. Prosody with two replicas (one connected, one standing by), ejabberd with three (each stanza on a
 * random one): every decision comes from the shared store, so it is the same whichever replica takes a request.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { CAPS_NS, DISCO_INFO_NS, type DiscoInfo, verFor } from "../../src/xmpp/caps.js";
import { autoApprove, type Client, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  accounts,
  connectUser,
  echo,
  errorCondition,
  httpStatus,
  implementingBehaviour,
  NS_ECHO,
  NS_SLOW,
  NS_VERSION,
  type RunningServer,
  sleep,
  until,
} from "./helpers.js";
import { type Replica, servedBy, startReplicas } from "./replicas.js";

const USERS = accounts("requester", "impl");
const NS_NOBODY = "urn:xmpp-client-proxy:test:nobody";
const CAPS_NODE = "https://xmpp-client-proxy.test/impl";

/** What a resource says in its presence: priority and show, and the features it announces by XEP-0115. */
interface Announce {
  readonly priority?: number;
  readonly show?: string;
  readonly features?: readonly string[];
}

const infoOf = (resource: string, features: readonly string[]): DiscoInfo => ({
  identities: [{ category: "client", type: "bot", name: `impl ${resource}` }],
  features: [DISCO_INFO_NS, ...features],
});

function presenceOf(resource: string, { priority = 0, show, features }: Announce): Element {
  const children = [xml("priority", {}, String(priority))];
  if (show) children.push(xml("show", {}, show));
  if (features)
    children.push(
      xml("c", { xmlns: CAPS_NS, hash: "sha-1", node: CAPS_NODE, ver: verFor(infoOf(resource, features)) }),
    );
  return xml("presence", {}, ...children);
}

for (const [name, start, replicaCount] of [
  ["Prosody", () => startProsody({ users: USERS }), 2],
  ["ejabberd", () => startEjabberd({ users: USERS }), 3],
] as const) {
  describe(`balancing on ${name}`, { timeout: 300_000 }, () => {
    let server: RunningServer;
    let redis: RedisServer;
    let replicas: Replica[] = [];
    const impl: Record<string, Client> = {};
    /** disco#info queries each resource received (the proxy asks once per caps ver, for all replicas). */
    const discoQueries: Record<string, number> = {};
    const requesters: Client[] = [];
    let proxy: string;
    let prefix = 0;

    /** A resource of the implementing account, online with this presence; it answers disco#info as announced. */
    async function online(resource: string, announce: Announce = {}): Promise<void> {
      const client = await connectUser(server, "impl", resource);
      autoApprove(client, proxy);
      const behaviour = implementingBehaviour(resource, (stanza) => void client.send(stanza));
      serveIq(client, (iq) => {
        const query = iq.getChild("query", DISCO_INFO_NS);
        if (!query) return behaviour(iq);
        discoQueries[resource] = (discoQueries[resource] ?? 0) + 1;
        const info = infoOf(resource, announce.features ?? []);
        return xml(
          "query",
          { xmlns: DISCO_INFO_NS, node: query.attrs.node },
          ...info.identities.map((i) =>
            xml("identity", { category: i.category, type: i.type, name: i.name }),
          ),
          ...info.features.map((feature) => xml("feature", { var: feature })),
        );
      });
      impl[resource] = client;
      await client.send(presenceOf(resource, announce));
    }
    async function offline(resource: string): Promise<void> {
      await stopClient(impl[resource]);
      delete impl[resource];
    }
    async function offlineAll(): Promise<void> {
      for (const resource of Object.keys(impl)) await offline(resource);
    }
    /** Replicas with these settings (the ones before are stopped; the store and its presence stay). */
    async function withReplicas(env: Record<string, string>): Promise<void> {
      for (const { service } of replicas) await service.stop();
      replicas = await startReplicas(
        server,
        replicaCount,
        { REDIS_URL: redis.url, ...env },
        { standby: name === "Prosody" },
      );
    }
    /** Sends `count` requests one after another from `client`; the resource that answered each. */
    async function answeredBy(client: Client, count: number, ns = NS_ECHO): Promise<string[]> {
      const out: string[] = [];
      for (let i = 0; i < count; i++) {
        const id = `b${++prefix}`;
        const request =
          ns === NS_VERSION
            ? xml("iq", { type: "get", id, to: proxy }, xml("query", { xmlns: NS_VERSION }))
            : echo(id, proxy, "x", ns);
        const answer = await sendIq(client, request, 10_000);
        assert.equal(answer.attrs.type, "result", `request ${id}: ${answer.toString()}`);
        out.push(
          ns === NS_VERSION
            ? (answer.getChild("query", NS_VERSION)?.getChildText("version") ?? "?")
            : (answer.getChild("echo", ns)?.attrs.resource ?? "?"),
        );
      }
      return out;
    }
    const tally = (list: string[]) => {
      const counts: Record<string, number> = {};
      for (const resource of list) counts[resource] = (counts[resource] ?? 0) + 1;
      return counts;
    };
    /** A metric's value summed over the replicas. */
    async function metric(pattern: RegExp): Promise<number> {
      let total = 0;
      for (const { port } of replicas) {
        const body = (await httpStatus(port, "/metrics")).body;
        for (const line of body.split("\n")) if (pattern.test(line)) total += Number(line.split(" ").pop());
      }
      return total;
    }
    /** A presence change reaches the store through whichever replica the server hands it to. */
    const settle = () => sleep(1_000);

    before(async () => {
      server = (await start()) as RunningServer;
      proxy = server.componentDomain;
      redis = await startRedis();
      for (const resource of ["a", "b", "c", "d"])
        requesters.push(await connectUser(server, "requester", resource));
    });

    after(async () => {
      for (const client of requesters) await stopClient(client);
      await offlineAll();
      for (const { service } of replicas) await service.stop();
      await redis?.stop();
      await server?.stop();
    });

    it("round-robin: one rotation shared by the replicas spreads requests exactly evenly", async () => {
      await withReplicas({ BALANCE: "round-robin" });
      for (const resource of ["r1", "r2", "r3"]) await online(resource);
      const [alice, bob] = requesters as [Client, Client];
      await servedBy(alice, proxy, ["r1", "r2", "r3"]);
      const both = await Promise.all([answeredBy(alice, 15), answeredBy(bob, 15)]);
      assert.deepEqual(tally(both.flat()), { r1: 10, r2: 10, r3: 10 });
      assert.ok(
        (await metric(/^xcp_balance_decisions_total\{strategy="round-robin",decision="forwarded"\}/)) >= 30,
      );
    });

    it("least-pending: new requests avoid the resources that hold slow ones", async () => {
      await withReplicas({ BALANCE: "least-pending" });
      const [alice, bob] = requesters as [Client, Client];
      await sleep(500);
      // Two requests that take 4 s each: on two different resources (the second avoids the first's).
      const slow = [0, 1].map(() =>
        sendIq(bob, echo(`slow${++prefix}`, proxy, "4000", NS_SLOW), 15_000).then(
          (answer) => answer.getChild("echo", NS_SLOW)?.attrs.resource ?? "?",
        ),
      );
      await sleep(500);
      const fast = await answeredBy(alice, 12);
      const busy = await Promise.all(slow);
      assert.equal(new Set(busy).size, 2, `the slow requests went to ${busy}`);
      const free = ["r1", "r2", "r3"].find((r) => !busy.includes(r));
      assert.deepEqual(tally(fast), { [free as string]: 12 }, `busy: ${busy}`);
    });

    it("sticky: each requester stays on one resource; only the requesters of a resource that goes move", async () => {
      await withReplicas({ BALANCE: "sticky" });
      await sleep(500);
      const home: string[] = [];
      for (const client of requesters) {
        const seen = await answeredBy(client, 6);
        assert.equal(new Set(seen).size, 1, `one resource per requester: ${seen}`);
        home.push(seen[0] as string);
      }
      const leaving = home[0] as string;
      await offline(leaving);
      await settle();
      for (const [i, client] of requesters.entries()) {
        const seen = await answeredBy(client, 4);
        assert.equal(new Set(seen).size, 1, `still one resource per requester: ${seen}`);
        if (home[i] === leaving) assert.notEqual(seen[0], leaving, "its resource left: it moved");
        else assert.equal(seen[0], home[i], "its resource stayed: it stayed");
      }
      assert.ok(
        (await metric(/^xcp_balance_decisions_total\{strategy="sticky",decision="sticky_moved"\}/)) >= 4,
      );
      await online(leaving);
      await settle();
      const back = await answeredBy(requesters[0] as Client, 3);
      assert.deepEqual(back, [leaving, leaving, leaving], "its resource is back: so is the requester");
    });

    it("negative priority and dnd/xa take a resource out; available brings it back", async () => {
      await withReplicas({ BALANCE: "round-robin" });
      const alice = requesters[0] as Client;
      await servedBy(alice, proxy, ["r1", "r2", "r3"]);
      await impl.r1?.send(presenceOf("r1", { priority: -1 }));
      await impl.r2?.send(presenceOf("r2", { show: "dnd" }));
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 6)), { r3: 6 });
      await impl.r3?.send(presenceOf("r3", { show: "xa" }));
      await settle();
      assert.deepEqual(
        tally(await answeredBy(alice, 6)),
        { r2: 3, r3: 3 },
        "only draining resources left: they take requests; negative priority never",
      );
      await impl.r1?.send(presenceOf("r1", {}));
      await settle();
      assert.deepEqual(
        tally(await answeredBy(alice, 6)),
        { r1: 6 },
        "r1 is back and the only one not draining",
      );
      await impl.r2?.send(presenceOf("r2", {}));
      await impl.r3?.send(presenceOf("r3", { show: "away" }));
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 6)), { r1: 2, r2: 2, r3: 2 });
      assert.ok((await metric(/decision="drained_skipped"/)) > 0);
      assert.ok((await metric(/decision="negative_priority_skipped"/)) > 0);
    });

    it("highest priority: a backup stays idle until the primary leaves", async () => {
      await offlineAll();
      await withReplicas({ BALANCE: "round-robin", PRIORITY_ROUTING: "highest" });
      await online("primary", { priority: 10 });
      await online("backup", { priority: 5 });
      const alice = requesters[0] as Client;
      await servedBy(alice, proxy, ["primary"]);
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 8)), { primary: 8 });
      await offline("primary");
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 4)), { backup: 4 }, "the backup takes over");
      await online("primary", { priority: 10 });
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 4)), { primary: 4 }, "and hands back");
    });

    it("capabilities: each request goes to a resource that lists its namespace; none: service-unavailable", async () => {
      await offlineAll();
      await withReplicas({ BALANCE: "round-robin", DISCO_INFO_FROM_CACHE: "true" });
      for (const key of Object.keys(discoQueries)) delete discoQueries[key];
      await online("echoer", { features: [NS_ECHO] });
      await online("versioner", { features: [NS_VERSION] });
      await online("plain"); // no capabilities: accepts everything
      const alice = requesters[0] as Client;
      await until("both caps vers verified", async () =>
        (await metric(/^xcp_caps_queries_total\{outcome="verified"\}/)) >= 2 ? true : undefined,
      );
      assert.deepEqual(discoQueries, { echoer: 1, versioner: 1 }, "asked once per ver, for all replicas");
      assert.deepEqual(tally(await answeredBy(alice, 6)), { echoer: 3, plain: 3 });
      assert.deepEqual(tally(await answeredBy(alice, 6, NS_VERSION)), { versioner: 3, plain: 3 });

      await offline("plain");
      await settle();
      assert.deepEqual(tally(await answeredBy(alice, 4)), { echoer: 4 });
      assert.deepEqual(tally(await answeredBy(alice, 4, NS_VERSION)), { versioner: 4 });
      const refused = await sendIq(alice, echo(`none${++prefix}`, proxy, "x", NS_NOBODY), 10_000);
      assert.deepEqual(errorCondition(refused), {
        type: "cancel",
        condition: "service-unavailable",
        by: proxy,
      });
      assert.equal(refused.attrs.from, proxy, "from the address it was sent to");
      assert.equal((await metric(/decision="no_capable_resource"/)) >= 1, true);

      // disco#info to the domain: answered from the cache, the implementing client not asked again.
      const disco = await sendIq(
        alice,
        xml("iq", { type: "get", id: `disco${++prefix}`, to: proxy }, xml("query", { xmlns: DISCO_INFO_NS })),
        10_000,
      );
      assert.equal(disco.attrs.type, "result");
      const features = disco
        .getChild("query", DISCO_INFO_NS)
        ?.getChildren("feature")
        .map((f) => f.attrs.var)
        .sort();
      assert.deepEqual(features, [NS_ECHO, NS_VERSION, DISCO_INFO_NS].sort());
      assert.deepEqual(
        discoQueries,
        { echoer: 1, versioner: 1 },
        "the implementing client was not disturbed",
      );
      assert.equal(await metric(/^xcp_disco_info_answered_total/), 1);
    });
  });
}
