/**
 * Requests of the implementing client to requesters, through `domain/<token>`, against real servers with real
 * clients: answered once, only by the requester they went to, the timeout when it is silent, and exactly one
 * answer per request while a replica is SIGKILLed (ejabberd, three replicas, each stanza on a random one).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { decodeToken } from "../../src/index.js";
import { type Client, collectStanzas, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  accounts,
  connectImplementing,
  connectUser,
  errorCondition,
  type RunningServer,
  sleep,
  until,
} from "./helpers.js";
import { type Replica, running, servedBy, startReplicas } from "./replicas.js";

type Server = RunningServer;

const USERS = accounts("requester", "impl", "alice", "bob");
const TIMEOUT_MS = 2_000;
const NS_ASK = "urn:xmpp-client-proxy:test:ask";

for (const [name, start, replicaCount] of [
  ["Prosody", () => startProsody({ users: USERS }), 1],
  ["ejabberd", () => startEjabberd({ users: USERS }), 3],
] as const) {
  describe(`requests of the implementing client on ${name}`, { timeout: 240_000 }, () => {
    let server: Server;
    let redis: RedisServer;
    let replicas: Replica[] = [];
    let r1: Client;
    let alice: Client;
    let bob: Client;
    /** What alice's client received: the requests as the proxy sent them. */
    let asked: Element[];
    /** alice's translated address, as the implementing client knows it. */
    let aliceAddress: string;
    let proxy: string;

    const ask = (id: string, text: string) =>
      xml("iq", { type: "get", to: aliceAddress, id }, xml("q", { xmlns: NS_ASK, n: id }, text));

    before(async () => {
      server = (await start()) as Server;
      proxy = server.componentDomain;
      redis = await startRedis();
      replicas = await startReplicas(server, replicaCount, {
        REDIS_URL: redis.url,
        IQ_TIMEOUT_MS: String(TIMEOUT_MS),
      });
      r1 = await connectImplementing(server, "r1");
      alice = await connectUser(server, "alice", "phone");
      bob = await connectUser(server, "bob", "laptop");
      asked = collectStanzas(alice, (stanza) => stanza.name === "iq" && stanza.attrs.type === "get");
      // alice answers what the implementing client asks, after `ms` if the text says so; silent when asked to be.
      serveIq(alice, (iq) => {
        const q = iq.getChild("q", NS_ASK);
        if (!q) return null;
        if (q.getText() === "silent") return null;
        const delay = Number.parseInt(q.getText(), 10);
        if (delay > 0) {
          setTimeout(
            () =>
              void alice.send(
                xml(
                  "iq",
                  { type: "result", id: iq.attrs.id, to: iq.attrs.from },
                  xml("a", { xmlns: NS_ASK }, "late"),
                ),
              ),
            delay,
          );
          return null;
        }
        return xml("a", { xmlns: NS_ASK, asked: q.getText() }, "answer");
      });
      serveIq(bob, () => null);
      await servedBy(alice, proxy, ["r1"]);
      // alice's address is the `from` of what the implementing client gets from her.
      const got = collectStanzas(r1, (stanza) => stanza.name === "message" && stanza.attrs.id === "hello");
      await alice.send(xml("message", { to: proxy, id: "hello", type: "chat" }, xml("body", {}, "hi")));
      aliceAddress = (await until("alice's address", () => got[0])).attrs.from ?? "";
      assert.equal(decodeToken(aliceAddress)?.requester, `alice@${server.domain}/phone`);
    });

    after(async () => {
      for (const client of [alice, bob, r1]) await stopClient(client);
      for (const { service } of replicas) await service.stop();
      await redis?.stop();
      await server?.stop();
    });

    it("sends the request to the requester from the domain, and its answer to the resource, once", async () => {
      const answers = collectStanzas(r1, (stanza) => stanza.attrs.id === "out-1" && stanza.name === "iq");
      const answer = await sendIq(r1, ask("out-1", "version?"), 5_000);
      await sleep(500);
      assert.equal(answers.length, 1, "one answer");
      assert.equal(answer.attrs.type, "result");
      assert.equal(answer.attrs.from, aliceAddress, "from the requester's translated address");
      assert.equal(answer.getChild("a", NS_ASK)?.attrs.asked, "version?");
      const request = asked.find((iq) => iq.getChild("q", NS_ASK)?.getText() === "version?");
      assert.ok(request);
      assert.equal(request.attrs.from, proxy, "the requester sees the service's address");
      assert.notEqual(request.attrs.id, "out-1", "under an id of the proxy's own");
    });

    it("answers the resource with remote-server-timeout, once, when the requester is silent", async () => {
      const answers = collectStanzas(
        r1,
        (stanza) => stanza.attrs.id === "out-silent" && stanza.name === "iq",
      );
      const answer = await sendIq(r1, ask("out-silent", "silent"), TIMEOUT_MS + 5_000);
      await sleep(1_500);
      assert.equal(answers.length, 1);
      assert.equal(answer.attrs.from, aliceAddress);
      assert.deepEqual(errorCondition(answer), {
        type: "wait",
        condition: "remote-server-timeout",
        by: proxy,
      });
    });

    it("accepts the answer only from the requester the request went to", async () => {
      const answers = collectStanzas(r1, (stanza) => stanza.attrs.id === "out-2" && stanza.name === "iq");
      const pending = sendIq(r1, ask("out-2", "800"), 5_000);
      const request = await until("the request at alice", () =>
        asked.find((iq) => iq.getChild("q", NS_ASK)?.getText() === "800"),
      );
      // bob answers with the id alice got: not his to answer.
      await bob.send(
        xml("iq", { type: "result", id: request.attrs.id, to: proxy }, xml("a", { xmlns: NS_ASK }, "forged")),
      );
      const answer = await pending;
      await sleep(500);
      assert.equal(answers.length, 1);
      assert.equal(answer.getChildText("a", NS_ASK), "late", "alice's answer, not bob's");
    });

    it("refuses a request to an address whose token does not verify", async () => {
      const forged = `${proxy}/j1.k1.AAAAAAAAAAAAAAAAAAAAAA.alice%40${server.domain}%2Fphone`;
      const answer = await sendIq(
        r1,
        xml("iq", { type: "get", to: forged, id: "out-forged" }, xml("q", { xmlns: NS_ASK }, "x")),
        5_000,
      );
      assert.deepEqual(errorCondition(answer), { type: "modify", condition: "jid-malformed", by: proxy });
      assert.ok(
        !asked.some((iq) => iq.getChild("q", NS_ASK)?.getText() === "x"),
        "nothing reached the requester",
      );
    });

    it("gives every request exactly one answer while a replica is SIGKILLed", {
      skip: replicaCount < 2,
    }, async () => {
      const total = 300;
      const answers = new Map<string, Element[]>();
      r1.on("stanza", (stanza: Element) => {
        const id = stanza.attrs.id ?? "";
        if (stanza.name === "iq" && id.startsWith("kill-"))
          answers.set(id, [...(answers.get(id) ?? []), stanza]);
      });
      let sent = 0;
      const sender = (async () => {
        while (sent < total) {
          const batch = Array.from({ length: 10 }, () => `kill-${sent++}`);
          for (const id of batch) void r1.send(ask(id, "30"));
          await sleep(25);
        }
      })();
      await until("a third sent", () => sent >= total / 3 || undefined);
      const victim = running(replicas)[0] as Replica;
      await victim.service.kill();
      await sender;
      // The bound: the timeout, a lease for answers the victim held, a sweep.
      await sleep(TIMEOUT_MS + 4_000 + 3_000);
      // XEP-0114 has no acknowledgements: a request the server had handed to the victim's socket when it died is
      // lost in transit, before the store knew of it; nothing can answer it (the implementing client's own
      // timeout does). Every request the store recorded gets exactly one answer, and every one that reached the
      // requester was recorded first.
      const reached = new Set(asked.map((iq) => iq.getChild("q", NS_ASK)?.attrs.n));
      const problems: string[] = [];
      let results = 0;
      let lost = 0;
      for (let i = 0; i < total; i++) {
        const id = `kill-${i}`;
        const got = answers.get(id) ?? [];
        if (got.length > 1 || (got.length === 0 && reached.has(id)))
          problems.push(`${id}: ${got.length} answers${reached.has(id) ? ", reached the requester" : ""}`);
        if (got.length === 0) lost++;
        if (got[0]?.attrs.type === "result") results++;
      }
      assert.deepEqual(problems, [], `${problems.length} of ${total} not answered exactly once`);
      assert.ok(lost <= 10, `${lost} lost in transit`);
      assert.ok(results > total / 2, `${results} results of ${total}`);
    });
  });
}
