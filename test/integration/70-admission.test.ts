/**
 * Admission and abuse, against a real Prosody and a real redis-server: a flooding requester is held at its cap
 * without slowing anyone else, the allow/deny lists and the id length are enforced, a payload the proxy cannot
 * serialize is the requester's problem (not a store outage), and a late answer to an earlier request never
 * answers a later request that reuses its id.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { Redis } from "ioredis";
import { createKeys } from "../../src/store/keys.js";
import { autoApprove, type Client, collectStanzas, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { freePort } from "../harness/ports.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { type ServiceProcess, startService } from "../harness/service.js";
import {
  connectImplementing,
  connectUser,
  echo,
  errorCondition,
  httpStatus,
  NS_ECHO,
  NS_SILENT,
  PASSWORD,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";

const CAP = 200;
const TIMEOUT_MS = 20_000;

describe("admission limits and abuse", { timeout: 180_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let admin: Redis;
  let service: ServiceProcess;
  let httpPort: number;
  let proxy: string;
  const clients: Client[] = [];

  const user = async (username: string, resource: string) => {
    const client = await connectUser(prosody, username, resource);
    clients.push(client);
    return client;
  };

  before(async () => {
    prosody = await startProsody({
      users: [
        ...TEST_USERS,
        { username: "flooder", password: PASSWORD },
        { username: "other", password: PASSWORD },
        { username: "spammer", password: PASSWORD },
      ],
    });
    proxy = prosody.componentDomain;
    redis = await startRedis();
    admin = new Redis(redis.url);
    httpPort = await freePort();
    service = startService({
      XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
      XMPP_DOMAIN: proxy,
      XMPP_PASSWORD: prosody.componentSecret,
      TARGET_JID: `impl@${prosody.domain}`,
      REDIS_URL: redis.url,
      JAT_KEYS: "k1:0123456789abcdef0123456789abcdef",
      IQ_TIMEOUT_MS: String(TIMEOUT_MS),
      MAX_PENDING_PER_REQUESTER: String(CAP),
      MAX_ID_LENGTH: "64",
      REQUESTER_DENY: `spammer@${prosody.domain}`,
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "info",
    });
    clients.push(await connectImplementing(prosody, "r1"));
    const probe = await user("other", "probe");
    await until("the proxy serves", async () => {
      const answer = await sendIq(probe, echo(`warm-${Date.now()}`, proxy, "x"), 3000).catch(() => undefined);
      return answer?.attrs.type === "result" || undefined;
    });
  });

  after(async () => {
    for (const client of clients) await stopClient(client);
    admin?.disconnect();
    await service?.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  /** Round trips of `count` echo requests, one after another, in ms. */
  async function roundTrips(client: Client, prefix: string, count: number): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const answer = await sendIq(client, echo(`${prefix}-${i}`, proxy, `p${i}`), 5000);
      times.push(performance.now() - started);
      assert.equal(answer.attrs.type, "result", answer.toString());
      assert.equal(answer.getChild("echo", NS_ECHO)?.getText(), `p${i}`);
    }
    return times.sort((a, b) => a - b);
  }
  const median = (sorted: number[]) => sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;

  it("holds a flooding requester at its cap, bounds Redis memory, and keeps another user's latency", async () => {
    const other = await user("other", "desk");
    const before = await roundTrips(other, "calm", 40);
    const memoryBefore = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1]);

    // Two resources of one account: the cap counts the bare JID.
    const flooders = [await user("flooder", "a"), await user("flooder", "b")];
    const answers = new Map<string, Element[]>();
    for (const client of flooders) {
      client.on("stanza", (stanza: Element) => {
        const id = stanza.attrs.id;
        if (stanza.name === "iq" && id?.startsWith("flood-"))
          answers.set(id, [...(answers.get(id) ?? []), stanza]);
      });
    }
    const TOTAL = 5000;
    let sent = 0;
    let during: number[] = [];
    const flood = Promise.all(
      flooders.flatMap((client, c) =>
        Array.from({ length: 32 }, async () => {
          while (sent < TOTAL) {
            const id = `flood-${c}-${sent++}`;
            await client.send(xml("iq", { type: "get", id, to: proxy }, xml("q", { xmlns: NS_SILENT })));
            // The capped ones are answered at once; the ones under the cap stay pending (silent client).
            await until(`answer to ${id}`, () => answers.has(id) || undefined, 300).catch(() => {});
          }
        }),
      ),
    );
    await until(
      "the flood at its cap",
      async () => Number(await admin.zcard(createKeys("xcp", proxy).deadlines)) >= CAP,
    );
    during = await roundTrips(other, "busy", 40);
    await flood;
    const memoryAfter = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1]);

    const kinds = new Map<string, number>();
    for (const list of answers.values()) {
      assert.equal(list.length, 1, "one answer each");
      const answer = list[0] as Element;
      const { type, condition } = errorCondition(answer);
      kinds.set(`${type}/${condition}`, (kinds.get(`${type}/${condition}`) ?? 0) + 1);
    }
    const pending = await admin.zcard(createKeys("xcp", proxy).deadlines);
    console.log(
      `flood: ${TOTAL} sent, answers ${JSON.stringify(Object.fromEntries(kinds))}, ${pending} pending; ` +
        `Redis +${((memoryAfter - memoryBefore) / 1024).toFixed(0)} KiB; other user's round trip median ` +
        `${median(before).toFixed(1)} ms before, ${median(during).toFixed(1)} ms during`,
    );
    assert.equal(pending, CAP, "exactly the cap is pending, whatever the flood");
    assert.equal(kinds.get("wait/resource-constraint"), TOTAL - CAP, "every request beyond the cap refused");
    assert.equal(answers.size, TOTAL - CAP, "the pending ones are not answered yet (silent client)");
    // About 1 KB per pending record: the cap bounds what the flood can hold, whatever its length.
    assert.ok(memoryAfter - memoryBefore < CAP * 4096, `Redis grew by ${memoryAfter - memoryBefore} bytes`);
    assert.ok(
      // The flood saturates this 2-core machine's XMPP server too: the bound is about the proxy, not the CPU.
      median(during) < Math.max(5 * median(before), median(before) + 50),
      `another user's round trip: ${median(before)} ms before, ${median(during)} ms during the flood`,
    );
    const metrics = (await httpStatus(httpPort, "/metrics")).body;
    assert.match(metrics, /^xcp_requests_rejected_total\{reason="requesterLimit"\} 4800$/m);
  });

  it("refuses a denied requester, an oversized id and a payload it cannot handle, without a store error", async () => {
    const spammer = await user("spammer", "x");
    const denied = await sendIq(spammer, echo("deny-1", proxy, "x"), 5000);
    assert.deepEqual(errorCondition(denied), { type: "cancel", condition: "forbidden", by: proxy });

    const other = await user("other", "ids");
    const long = await sendIq(other, echo("i".repeat(65), proxy, "x"), 5000);
    assert.deepEqual(errorCondition(long), { type: "modify", condition: "bad-request", by: proxy });
    const fits = await sendIq(other, echo("i".repeat(64), proxy, "x"), 5000);
    assert.equal(fits.attrs.type, "result");

    // 20,000 nested elements: the XML parser takes it, serializing it again overflows the stack.
    const depth = 20_000;
    const deep = `<iq type='get' id='deep-1' to='${proxy}'><q xmlns='urn:x:deep'>${"<a>".repeat(depth)}${"</a>".repeat(depth)}</q></iq>`;
    const answers = collectStanzas(other, (stanza) => stanza.attrs.id === "deep-1");
    await other.write(deep);
    await until("an answer to the deep payload", () => answers[0], 10_000);
    await sleep(300);
    assert.equal(answers.length, 1);
    assert.deepEqual(errorCondition(answers[0] as Element), {
      type: "modify",
      condition: "bad-request",
      by: proxy,
    });
    const metrics = (await httpStatus(httpPort, "/metrics")).body;
    assert.doesNotMatch(metrics, /^xcp_store_errors_total\{[^}]*\} [1-9]/m, "no store error was counted");
  });

  it("never delivers a late answer to an earlier request as the answer to a later one with the same id", async () => {
    // A hand-driven implementing resource: it answers only when told to.
    const slow = await user("impl", "slow");
    const received: Element[] = [];
    // Recorded, never answered by the library (whose middleware would say service-unavailable).
    serveIq(slow, (iq) => {
      received.push(iq);
      return null;
    });
    autoApprove(slow, proxy);
    await slow.send(xml("presence", {}, xml("priority", {}, "1")));
    // Only the slow resource: the other one leaves, so every request goes to `slow`.
    const others = clients.splice(0, 1);
    for (const client of others) await stopClient(client);
    const asker = await user("other", "reuse");
    await until("routed to the slow resource", async () => {
      const id = `probe-${Date.now()}`;
      void asker.send(echo(id, proxy, "x"));
      await sleep(300);
      return received.some((iq) => iq.attrs.id === id) || undefined;
    });

    const answers = collectStanzas(asker, (stanza) => stanza.attrs.id === "same");
    const reply = (iq: Element, text: string) =>
      slow.send(
        xml(
          "iq",
          { type: "result", id: iq.attrs.id, to: iq.attrs.from },
          xml("echo", { xmlns: NS_ECHO }, text),
        ),
      );
    await asker.send(echo("same", proxy, "first"));
    const first = await until("the first request", () => received.find((iq) => iq.attrs.id === "same"));
    // The first times out (IQ_TIMEOUT_MS): only then may the requester reuse the id.
    await until("the first request's timeout", () => answers[0], TIMEOUT_MS + 5000);
    assert.deepEqual(errorCondition(answers[0] as Element), {
      type: "wait",
      condition: "remote-server-timeout",
      by: proxy,
    });

    await asker.send(echo("same", proxy, "second"));
    const second = await until("the second request", () =>
      received.find((iq) => iq.attrs.id === "same#xcp1"),
    );
    assert.equal(second.getChild("echo", NS_ECHO)?.getText(), "second");
    await reply(first, "late answer to the first");
    await sleep(500);
    assert.equal(answers.length, 1, "the late answer to the first request is not delivered");
    await reply(second, "answer to the second");
    await until("the second answer", () => answers[1]);
    await sleep(300);
    assert.equal(answers.length, 2);
    const answer = answers[1] as Element;
    assert.equal(answer.attrs.type, "result");
    assert.equal(answer.attrs.id, "same", "the requester gets its own id back");
    assert.equal(answer.getChild("echo", NS_ECHO)?.getText(), "answer to the second");
    assert.match(
      (await httpStatus(httpPort, "/metrics")).body,
      /^xcp_replies_dropped_total\{reason="stale"\} 1$/m,
    );
  });
});
