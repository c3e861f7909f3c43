/**
 * The service's own presence, against real servers with real clients: a requester subscribes to the domain and
 * sees it available while the implementing account has a resource online (with the show and status of its
 * highest-priority resource), unavailable when none is; every change arrives once, however many replicas
 * (ejabberd: three, each stanza on a random one; Prosody: one connected).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { autoApprove, type Client, collectStanzas, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  accounts,
  connectUser,
  httpStatus,
  implementingBehaviour,
  type RunningServer,
  sleep,
  type TestServer,
  until,
} from "./helpers.js";
import { type Replica, startReplicas } from "./replicas.js";

type Server = RunningServer;

const USERS = accounts("requester", "impl", "alice", "carol");

/** A requester as a real client is: it asked for its roster and is available, so presence reaches it. */
async function connectRequester(server: TestServer, username: string, resource: string): Promise<Client> {
  const client = await connectUser(server, username, resource);
  await sendIq(client, xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), 5000);
  await client.send(xml("presence"));
  return client;
}

const resourcePresence = (priority: number, show: string, status: string) =>
  xml(
    "presence",
    {},
    xml("priority", {}, String(priority)),
    xml("show", {}, show),
    xml("status", {}, status),
  );

for (const [name, start, replicaCount] of [
  ["Prosody", () => startProsody({ users: USERS }), 1],
  ["ejabberd", () => startEjabberd({ users: USERS }), 3],
] as const) {
  describe(`the service's presence on ${name}`, { timeout: 180_000 }, () => {
    let server: Server;
    let redis: RedisServer;
    let replicas: Replica[] = [];
    const impl: Record<string, Client> = {};
    let alice: Client;
    let fromProxy: Element[];
    let proxy: string;

    const broadcasts = async () => {
      let total = 0;
      for (const { port } of replicas) {
        const body = (await httpStatus(port, "/metrics")).body;
        total += Number(/^xcp_service_presence_broadcasts_total (\d+)/m.exec(body)?.[1] ?? 0);
      }
      return total;
    };
    /** Does `action`, waits for the presence from the domain it causes, then checks no second one follows. */
    const next = async (what: string, action: () => Promise<void>): Promise<Element> => {
      const seen = fromProxy.length;
      await action();
      const stanza = await until(what, () => fromProxy[seen], 10_000);
      await sleep(1_000);
      assert.equal(fromProxy.length, seen + 1, `${what}: one presence, got ${fromProxy.length - seen}`);
      return stanza;
    };
    /** A resource of the implementing account whose first presence says priority, show and status. */
    const online = async (resource: string, priority: number, show: string, status: string) => {
      const client = await connectUser(server, "impl", resource);
      autoApprove(client, proxy);
      serveIq(
        client,
        implementingBehaviour(resource, (stanza) => void client.send(stanza)),
      );
      impl[resource] = client;
      await client.send(resourcePresence(priority, show, status));
    };
    const offline = async (resource: string) => {
      await stopClient(impl[resource]);
      delete impl[resource];
    };

    before(async () => {
      server = (await start()) as Server;
      proxy = server.componentDomain;
      redis = await startRedis();
      replicas = await startReplicas(server, replicaCount, {
        REDIS_URL: redis.url,
        REQUESTER_DENY: `carol@${server.domain}`,
      });
      await online("r1", 5, "chat", "ready");
      await online("r2", 1, "away", "busy");
      alice = await connectRequester(server, "alice", "phone");
      fromProxy = collectStanzas(
        alice,
        (stanza) => stanza.name === "presence" && stanza.attrs.from === proxy,
      );
    });

    after(async () => {
      await stopClient(alice);
      for (const client of Object.values(impl)) await stopClient(client);
      for (const { service } of replicas) await service.stop();
      await redis?.stop();
      await server?.stop();
    });

    it("approves a subscription and sends the presence of the highest-priority resource", async () => {
      await alice.send(xml("presence", { to: proxy, type: "subscribe" }));
      await until("subscribed", () => fromProxy.find((p) => p.attrs.type === "subscribed"));
      const presence = await until("available", () =>
        fromProxy.find((p) => p.attrs.type === undefined && p.getChildText("status") === "ready"),
      );
      assert.equal(presence.getChildText("show"), "chat");
    });

    it("sends each change once, whatever the replicas: the next resource, then none, then one again", async () => {
      await sleep(1_000);
      const before = await broadcasts();
      const second = await next("r2's presence", () => offline("r1"));
      assert.equal(second.attrs.type, undefined);
      assert.equal(second.getChildText("show"), "away");
      assert.equal(second.getChildText("status"), "busy");

      assert.equal((await next("unavailable", () => offline("r2"))).attrs.type, "unavailable");

      const back = await next("available again", () => online("r1", 5, "chat", "back"));
      assert.equal(back.attrs.type, undefined);
      assert.equal(back.getChildText("status"), "back");
      assert.equal((await broadcasts()) - before, 3, "one broadcast per change over all replicas");
    });

    it("answers the probe of a subscriber's new session with the current presence", async () => {
      const again = await connectUser(server, "alice", "desk");
      const seen = collectStanzas(
        again,
        (stanza) => stanza.name === "presence" && stanza.attrs.from === proxy,
      );
      try {
        await sendIq(again, xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), 5000);
        // Its initial presence makes its server probe the contacts it is subscribed to (RFC 6121 4.3.1).
        await again.send(xml("presence"));
        const presence = await until("the answer to the probe", () =>
          seen.find((p) => p.attrs.type === undefined),
        );
        assert.equal(presence.getChildText("status"), "back");
      } finally {
        await stopClient(again);
      }
    });

    it("forgets a subscriber that unsubscribes, and never tells it again", async () => {
      await alice.send(xml("presence", { to: proxy, type: "unsubscribe" }));
      await sleep(1_000);
      const seen = fromProxy.length;
      const before = await broadcasts();
      await online("r2", 1, "away", "busy");
      await offline("r1");
      await until("the change broadcast", async () => (await broadcasts()) > before || undefined);
      await sleep(1_000);
      assert.equal(fromProxy.length, seen, "nothing more to a former subscriber");
    });

    it("refuses a subscription from a denied requester with unsubscribed", async () => {
      const carol = await connectRequester(server, "carol", "pad");
      const seen = collectStanzas(
        carol,
        (stanza) => stanza.name === "presence" && stanza.attrs.from === proxy,
      );
      try {
        await carol.send(xml("presence", { to: proxy, type: "subscribe" }));
        await until("unsubscribed", () => seen.find((p) => p.attrs.type === "unsubscribed"));
        await sleep(1_000);
        assert.ok(!seen.some((p) => p.attrs.type === "subscribed" || p.attrs.type === undefined));
      } finally {
        await stopClient(carol);
      }
    });
  });
}
