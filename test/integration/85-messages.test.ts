/**
 * Messages through the service address, both ways, against real servers with real clients: Prosody with one
 * replica, ejabberd with two (each stanza lands on a random replica, so every decision must come from the
 * store and the token alone).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { decodeToken } from "../../src/index.js";
import { type Client, collectStanzas, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  accounts,
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  type RunningServer,
  sleep,
  until,
} from "./helpers.js";
import { type Replica, servedBy, startReplicas } from "./replicas.js";

type Server = RunningServer;

const NS_CUSTOM = "urn:xmpp-client-proxy:test:custom";
const QUEUED_PER_REQUESTER = 3;
const LIFETIME_MS = 4_000;
const USERS = accounts("requester", "impl", "alice", "bob");

const isMessage = (stanza: Element) => stanza.name === "message";
const chat = (to: string, id: string, text: string) =>
  xml(
    "message",
    { to, id, type: "chat", "xml:lang": "de" },
    xml("body", {}, text),
    xml("thread", {}, "t-1"),
    xml("x", { xmlns: NS_CUSTOM, n: "1" }, xml("deep", {}, "payload")),
  );

for (const [name, start, replicaCount] of [
  ["Prosody", () => startProsody({ users: USERS }), 1],
  ["ejabberd", () => startEjabberd({ users: USERS }), 2],
] as const) {
  describe(`messages through the service address on ${name}`, { timeout: 180_000 }, () => {
    let server: Server;
    let redis: RedisServer;
    let replicas: Replica[] = [];
    const impl: Record<string, Client> = {};
    const inbox: Record<string, Element[]> = {};
    let alice: Client;
    let bob: Client;
    let proxy: string;

    const connectImpl = async (resource: string) => {
      const client = await connectImplementing(server, resource);
      impl[resource] = client;
      inbox[resource] = collectStanzas(client, isMessage);
      return client;
    };
    /** Every message the resources received with this id, as [resource, stanza]. */
    const received = (id: string) =>
      Object.entries(inbox).flatMap(([resource, list]) =>
        list.filter((stanza) => stanza.attrs.id === id).map((stanza) => [resource, stanza] as const),
      );
    const metric = async (line: RegExp) => {
      let total = 0;
      for (const { port } of replicas) {
        const match = line.exec((await httpStatus(port, "/metrics")).body);
        total += Number(match?.[1] ?? 0);
      }
      return total;
    };

    before(async () => {
      server = (await start()) as Server;
      proxy = server.componentDomain;
      redis = await startRedis();
      replicas = await startReplicas(server, replicaCount, {
        REDIS_URL: redis.url,
        LOG_LEVEL: "debug",
        MAX_QUEUED_PER_REQUESTER: String(QUEUED_PER_REQUESTER),
        MESSAGE_LIFETIME_MS: String(LIFETIME_MS),
      });
      await connectImpl("r1");
      await connectImpl("r2");
      alice = await connectUser(server, "alice", "phone");
      bob = await connectUser(server, "bob", "laptop");
      await servedBy(alice, proxy, ["r1", "r2"]);
    });

    after(async () => {
      for (const client of [alice, bob, ...Object.values(impl)]) await stopClient(client);
      for (const { service } of replicas) await service.stop();
      await redis?.stop();
      await server?.stop();
    });

    it("forwards a requester's message to one resource, from domain/<token>, keeping id, type, lang and children", async () => {
      await alice.send(chat(proxy, "in-1", "hello service"));
      const [[resource, message] = []] = await until("the message at a resource", () => {
        const got = received("in-1");
        return got.length > 0 ? got : undefined;
      });
      await sleep(500);
      assert.equal(received("in-1").length, 1, "exactly one resource got it, once");
      assert.ok(message && resource);
      assert.equal(message.attrs.to, `impl@${server.domain}/${resource}`);
      assert.match(message.attrs.from ?? "", new RegExp(`^${proxy.replace(".", "\\.")}/j1\\.`));
      assert.equal(decodeToken(message.attrs.from ?? "")?.requester, `alice@${server.domain}/phone`);
      assert.equal(message.attrs.type, "chat");
      assert.equal(message.attrs["xml:lang"], "de");
      assert.equal(message.getChildText("body"), "hello service");
      assert.equal(message.getChildText("thread"), "t-1");
      assert.equal(message.getChild("x", NS_CUSTOM)?.getChildText("deep"), "payload");
    });

    it("keeps each requester's messages on one resource, and moves them only when it goes", async () => {
      const senders = { alice, bob } as const;
      const home: Record<string, string> = {};
      for (const [who, client] of Object.entries(senders)) {
        for (let i = 0; i < 8; i++) await client.send(chat(proxy, `sticky-${who}-${i}`, `m${i}`));
        const resources = await until(`${who}'s messages`, () => {
          const got = Array.from({ length: 8 }, (_, i) => received(`sticky-${who}-${i}`)[0]?.[0]);
          return got.every(Boolean) ? got : undefined;
        });
        assert.equal(new Set(resources).size, 1, `${who}'s messages went to ${resources.join(", ")}`);
        home[who] = resources[0] as string;
      }
      // The resource of alice goes: her messages move to the other one; bob's stay where they were if his
      // resource is still online.
      const gone = home.alice as string;
      const stay = gone === "r1" ? "r2" : "r1";
      await stopClient(impl[gone]);
      delete impl[gone];
      await until(
        "alice served by the remaining resource",
        async () => {
          await alice.send(chat(proxy, `moved-${Date.now()}`, "?"));
          await sleep(300);
          const latest = Object.entries(inbox)
            .flatMap(([resource, list]) => list.map((stanza) => [resource, stanza] as const))
            .filter(([, stanza]) => stanza.attrs.id?.startsWith("moved-"));
          return latest.at(-1)?.[0] === stay || undefined;
        },
        15_000,
      );
      for (let i = 0; i < 4; i++) await bob.send(chat(proxy, `bob-after-${i}`, "?"));
      const bobNow = await until("bob's messages after", () => {
        const got = Array.from({ length: 4 }, (_, i) => received(`bob-after-${i}`)[0]?.[0]);
        return got.every(Boolean) ? got : undefined;
      });
      assert.deepEqual(new Set(bobNow), new Set([stay]), "bob is on the one resource left");
      if (home.bob === stay) assert.equal(home.bob, bobNow[0], "bob did not move: his resource stayed");
      await connectImpl(gone);
      await servedBy(alice, proxy, ["r1", "r2"]);
    });

    it("sends a resource's message to domain/<token> to that requester, from the domain, as written", async () => {
      await alice.send(chat(proxy, "hello-2", "ping"));
      const [[resource, incoming] = []] = await until("alice's message", () => {
        const got = received("hello-2");
        return got.length > 0 ? got : undefined;
      });
      assert.ok(resource && incoming);
      const aliceInbox = collectStanzas(alice, (stanza) => isMessage(stanza) && stanza.attrs.id === "out-1");
      await (impl[resource] as Client).send(chat(incoming.attrs.from ?? "", "out-1", "pong"));
      const reply = await until("the reply at alice", () => aliceInbox[0]);
      await sleep(500);
      assert.equal(aliceInbox.length, 1);
      assert.equal(reply.attrs.from, proxy);
      assert.equal(reply.attrs.type, "chat");
      assert.equal(reply.attrs["xml:lang"], "de");
      assert.equal(reply.getChildText("body"), "pong");
      assert.equal(reply.getChild("x", NS_CUSTOM)?.getChildText("deep"), "payload");
      assert.ok((await metric(/^xcp_messages_out_total (\d+)/m)) >= 1);

      // An error alice's side returns for that message goes back to the resource that sent it.
      const bounced = collectStanzas(
        impl[resource] as Client,
        (stanza) => isMessage(stanza) && stanza.attrs.type === "error" && stanza.attrs.id === "out-1",
      );
      await alice.send(
        xml(
          "message",
          { to: proxy, id: "out-1", type: "error" },
          xml(
            "error",
            { type: "cancel" },
            xml("service-unavailable", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" }),
          ),
        ),
      );
      const error = await until("the bounce at the resource", () => bounced[0]);
      assert.equal(error.attrs.from, incoming.attrs.from, "from the requester's translated address");
      assert.equal(errorCondition(error).condition, "service-unavailable");
    });

    it("refuses a message to an address whose token does not verify, and tells the resource", async () => {
      const r1 = impl.r1 as Client;
      const errors = collectStanzas(r1, (stanza) => isMessage(stanza) && stanza.attrs.id === "forged-1");
      const aliceInbox = collectStanzas(alice, (stanza) => stanza.attrs.id === "forged-1");
      const forged = `${proxy}/j1.k1.AAAAAAAAAAAAAAAAAAAAAA.alice%40${server.domain}%2Fphone`;
      await r1.send(chat(forged, "forged-1", "spoof"));
      const error = await until("the error at the resource", () => errors[0]);
      await sleep(500);
      assert.equal(error.attrs.type, "error");
      assert.equal(error.attrs.from, forged);
      assert.deepEqual(
        { type: errorCondition(error).type, condition: errorCondition(error).condition },
        { type: "modify", condition: "jid-malformed" },
      );
      assert.equal(aliceInbox.length, 0, "nothing reached the requester");
      assert.ok((await metric(/^xcp_messages_refused_total\{reason="badToken"\} (\d+)/m)) >= 1);
    });

    it("never forwards groupchat, and refuses a requester writing to another requester's address", async () => {
      await alice.send(xml("message", { to: proxy, id: "gc-1", type: "groupchat" }, xml("body", {}, "x")));
      // bob writes to alice's translated address: only the implementing client may.
      await alice.send(chat(proxy, "addr-1", "who am I"));
      const [[, incoming] = []] = await until("alice's message", () => {
        const got = received("addr-1");
        return got.length > 0 ? got : undefined;
      });
      const bobErrors = collectStanzas(bob, (stanza) => stanza.attrs.id === "steal-1");
      await bob.send(chat(incoming?.attrs.from ?? "", "steal-1", "hi alice"));
      const error = await until("bob's error", () => bobErrors[0]);
      await sleep(500);
      assert.deepEqual(
        { type: errorCondition(error).type, condition: errorCondition(error).condition },
        { type: "cancel", condition: "forbidden" },
      );
      assert.equal(received("gc-1").length, 0, "groupchat reached no resource");
      assert.equal(received("steal-1").length, 0);
    });

    it("keeps messages while no resource is online and delivers them in order when one comes", async () => {
      for (const resource of Object.keys(impl)) {
        await stopClient(impl[resource]);
        delete impl[resource];
      }
      await until(
        "no resource online",
        async () => (await metric(/^xcp_target_resources_online (\d+)/m)) === 0 || undefined,
        15_000,
      );
      const errors = collectStanzas(alice, (stanza) => stanza.attrs.type === "error" && isMessage(stanza));
      // Apart in time: ejabberd hands each stanza to a random replica, so two sent back to back may reach the
      // store in either order (README); kept, they are delivered in the order they reached it.
      for (let i = 1; i <= QUEUED_PER_REQUESTER; i++) {
        await alice.send(chat(proxy, `kept-${i}`, `kept ${i}`));
        await sleep(200);
      }
      // One over the bound: refused at once, once, and never delivered.
      await alice.send(chat(proxy, "kept-over", "one too many"));
      const over = await until("the bound's error", () => errors.find((e) => e.attrs.id === "kept-over"));
      assert.equal(over.attrs.from, proxy);
      assert.deepEqual(errorCondition(over), { type: "wait", condition: "resource-constraint", by: proxy });
      assert.equal((await metric(/^xcp_messages_queued_total (\d+)/m)) >= QUEUED_PER_REQUESTER, true);

      await connectImpl("r1");
      const ids = Array.from({ length: QUEUED_PER_REQUESTER }, (_, i) => `kept-${i + 1}`);
      await until("the kept messages at r1", () => ids.every((id) => received(id).length > 0) || undefined);
      await sleep(1_000);
      const order = (inbox.r1 ?? []).map((stanza) => stanza.attrs.id).filter((id) => id?.startsWith("kept-"));
      assert.deepEqual(order, ids, "each once, in the order sent; the refused one never");
      const first = received("kept-1")[0]?.[1];
      assert.equal(decodeToken(first?.attrs.from ?? "")?.requester, `alice@${server.domain}/phone`);
      assert.equal(first?.getChild("x", NS_CUSTOM)?.getChildText("deep"), "payload");
      assert.ok(!errors.some((e) => e.attrs.id?.startsWith("kept-") && e.attrs.id !== "kept-over"));
    });

    it("answers a kept message whose lifetime ends with service-unavailable, once, and never delivers it", async () => {
      await stopClient(impl.r1);
      delete impl.r1;
      await until(
        "no resource online",
        async () => (await metric(/^xcp_target_resources_online (\d+)/m)) === 0 || undefined,
        15_000,
      );
      const errors = collectStanzas(alice, (stanza) => stanza.attrs.id === "expires-1");
      await alice.send(chat(proxy, "expires-1", "nobody will read this"));
      const error = await until("the lifetime's error", () => errors[0], LIFETIME_MS + 5_000);
      await sleep(1_500);
      assert.equal(errors.length, 1);
      assert.equal(error.attrs.from, proxy);
      assert.deepEqual(errorCondition(error), {
        type: "cancel",
        condition: "service-unavailable",
        by: proxy,
      });
      await connectImpl("r1");
      await sleep(1_500);
      assert.equal(received("expires-1").length, 0, "an expired message is never delivered");
    });
  });
}
