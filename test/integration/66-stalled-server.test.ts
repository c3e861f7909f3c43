/**
 * A server that stops reading the component's stream (too busy, or its process stopped for a moment) while
 * large answers are on their way: the answers fill the kernel's buffers and then the service's own write queue.
 * The outbox must neither write behind that queue (what a killed process holds in it is lost) nor wait for an
 * event that does not come: every request gets exactly one answer, with its own result, once the server reads
 * again. Prosody behind a relay that can stall (test/harness/tcp-proxy.ts), Redis, one replica.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { autoApprove, type Client, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { startTcpProxy, type TcpProxy } from "../harness/tcp-proxy.js";
import { connectUser, echo, NS_ECHO, sleep, TEST_USERS, until } from "./helpers.js";
import { type Replica, running, startReplicas } from "./replicas.js";

/** Answers this large, this many at once: about 12 MiB, more than the loopback buffers hold. */
const ANSWER_BYTES = 64 * 1024;
const REQUESTS = 200;
/** How long the implementing client holds every answer: the stall begins meanwhile. */
const HOLD_MS = 1500;
/** How long the server does not read: below the answer lease (4 s), so the sweep does not hand them out. */
const STALL_MS = 3000;

describe("a server that stops reading the component's stream", { timeout: 120_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let relay: TcpProxy;
  let replica: Replica;
  let impl: Client;
  let requester: Client;

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    redis = await startRedis();
    relay = await startTcpProxy(prosody.componentPort);
    // The implementing client answers each echo request after HOLD_MS with ANSWER_BYTES of text.
    impl = await connectUser(prosody, "impl", "big");
    autoApprove(impl, prosody.componentDomain);
    const filler = "x".repeat(ANSWER_BYTES);
    serveIq(impl, (iq) => {
      const { id, from } = iq.attrs;
      setTimeout(() => {
        if (impl.status !== "online") return;
        void impl.send(xml("iq", { type: "result", id, to: from }, xml("echo", { xmlns: NS_ECHO }, filler)));
      }, HOLD_MS);
      return null;
    });
    await impl.send(xml("presence"));
    requester = await connectUser(prosody, "requester", "stall");
    [replica] = (await startReplicas(prosody, 1, {
      XMPP_SERVICE: `xmpp://127.0.0.1:${relay.port}`,
      REDIS_URL: redis.url,
      IQ_TIMEOUT_MS: "30000",
    })) as [Replica];
    // The target's presence reaches the store: a request is forwarded and answered.
    await until(
      "the first answer",
      async () => {
        const answer = await sendIq(
          requester,
          echo(`warm-${Date.now()}`, prosody.componentDomain, "w"),
          5000,
        );
        if (answer.attrs.type !== "result") throw new Error(answer.toString());
        return true;
      },
      20_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\nservice log:\n${replica?.service.output().slice(-3000)}`);
    });
  });

  after(async () => {
    for (const client of [requester, impl]) if (client) await stopClient(client);
    for (const { service } of running(replica ? [replica] : [])) await service.stop();
    await relay?.close();
    await redis?.stop();
    await prosody?.stop();
  });

  it("answers each request exactly once, with its own answer, after the server reads again", async () => {
    const answers = new Map<string, Element[]>();
    requester.on("stanza", (stanza: Element) => {
      const id = stanza.attrs.id ?? "";
      if (stanza.name === "iq" && id.startsWith("stall-"))
        answers.set(id, [...(answers.get(id) ?? []), stanza]);
    });
    const ids = Array.from({ length: REQUESTS }, (_, i) => `stall-${i}`);
    for (const id of ids) await requester.send(echo(id, prosody.componentDomain, id));
    // Every request is forwarded before the stall; their answers come back during it.
    await sleep(HOLD_MS / 3);
    relay.stall();
    const stalledAt = Date.now();
    await sleep(STALL_MS);
    const duringStall = answers.size;
    relay.resume();
    await until("every answer", () => (ids.every((id) => answers.has(id)) ? true : undefined), 30_000);
    // Late second answers (the sweep after a lease) would come within a lease and a sweep interval.
    await sleep(6000);

    const twice = ids.filter((id) => (answers.get(id)?.length ?? 0) > 1);
    assert.deepEqual(twice, [], "no request is answered twice");
    for (const id of ids) {
      const [answer] = answers.get(id) ?? [];
      assert.equal(answer?.attrs.type, "result", `${id} is answered with its result`);
      assert.equal(
        answer?.getChild("echo", NS_ECHO)?.getText().length,
        ANSWER_BYTES,
        `${id}: the whole answer`,
      );
    }
    assert.ok(
      duringStall < REQUESTS,
      `the stall held answers back (${duringStall} of ${REQUESTS} arrived in the ${STALL_MS} ms after ${new Date(
        stalledAt,
      ).toISOString()})`,
    );
  });
});
