/**
 * The proxied request path against a real Prosody and a real redis-server, with real clients: a requester and
 * an implementing client with two resources.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { createJat } from "../../src/jat/token.js";
import { collectStanzas, type connectClient, sendIq, stopClient } from "../harness/clients.js";
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
  NS_FAIL,
  NS_SILENT,
  NS_TWICE,
  NS_VERSION,
  receivedBy,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";

const JAT_SECRET = "k1:0123456789abcdef0123456789abcdef";
const TIMEOUT_MS = 1500;
type Client = Awaited<ReturnType<typeof connectClient>>;

describe("proxying IQ requests through Prosody", { timeout: 120_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let service: ServiceProcess;
  let httpPort: number;
  let requester: Client;
  const impl: Record<string, Client> = {};
  let domain: string;
  let proxy: string;

  const connect = (username: string, resource: string) => connectUser(prosody, username, resource);

  async function connectImpl(resource: string): Promise<Client> {
    const client = await connectImplementing(prosody, resource);
    impl[resource] = client;
    return client;
  }

  /** Sends echo requests until every listed resource has answered one. */
  async function servedBy(resources: string[]): Promise<void> {
    const seen = new Set<string>();
    let n = 0;
    await until(
      `answers from ${resources.join(", ")}`,
      async () => {
        const answer = await sendIq(requester, echo(`warm-${n++}`, proxy, "hi"), 3000);
        const resource = answer.getChild("echo", NS_ECHO)?.attrs.resource;
        if (resource) seen.add(resource);
        return resources.every((r) => seen.has(r)) || undefined;
      },
      15_000,
    );
  }

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    domain = prosody.domain;
    proxy = prosody.componentDomain;
    redis = await startRedis();
    httpPort = await freePort();
    await connectImpl("r1");
    await connectImpl("r2");
    requester = await connect("requester", "desk");
    service = startService({
      XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
      XMPP_DOMAIN: proxy,
      XMPP_PASSWORD: prosody.componentSecret,
      TARGET_JID: `impl@${domain}`,
      REDIS_URL: redis.url,
      REDIS_PREFIX: "it",
      JAT_KEYS: JAT_SECRET,
      IQ_TIMEOUT_MS: String(TIMEOUT_MS),
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "debug",
    });
    await until("readiness", async () => (await httpStatus(httpPort, "/readyz")).status === 200 || undefined);
    await servedBy(["r1", "r2"]);
  });

  after(async () => {
    await stopClient(requester);
    for (const client of Object.values(impl)) await stopClient(client);
    await service?.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  it("forwards with a token, keeps id, type, xml:lang and payload, answers from the address used", async () => {
    for (const to of [proxy, `${proxy}/some/resource`, `svc@${proxy}`]) {
      const request = xml(
        "iq",
        { type: "set", id: `keep-${to}`, to, "xml:lang": "de" },
        xml("echo", { xmlns: NS_ECHO }, "payload <&> text"),
      );
      const answer = await sendIq(requester, request, 5000);
      assert.equal(answer.attrs.type, "result");
      assert.equal(answer.attrs.id, `keep-${to}`);
      assert.equal(answer.attrs.from, to, "the answer comes from the address the request was sent to");
      const payload = answer.getChild("echo", NS_ECHO);
      assert.equal(payload?.getText(), "payload <&> text");
      assert.equal(
        payload?.attrs.requester,
        `requester@${domain}/desk`,
        "the token names the full requester",
      );
    }
  });

  it("serves XEP-0092 software version from the implementing client", async () => {
    const answer = await sendIq(
      requester,
      xml("iq", { type: "get", id: "v1", to: proxy }, xml("query", { xmlns: NS_VERSION })),
      5000,
    );
    assert.equal(answer.attrs.type, "result");
    assert.match(answer.getChild("query", NS_VERSION)?.getChildText("version") ?? "", /^r[12]$/);
  });

  it("passes error replies through unchanged", async () => {
    const answer = await sendIq(requester, echo("fail-1", proxy, "x", NS_FAIL), 5000);
    assert.equal(answer.attrs.type, "error");
    assert.equal(answer.attrs.from, proxy);
    assert.deepEqual(errorCondition(answer), { type: "modify", condition: "not-acceptable", by: undefined });
    assert.equal(answer.getChild("error")?.getChildText("reason", NS_FAIL), "nope");
  });

  it("answers a request nobody answers with remote-server-timeout, once", async () => {
    const seen = collectStanzas(requester, (s: Element) => s.attrs.id === "silent-1");
    const started = Date.now();
    const answer = await sendIq(requester, echo("silent-1", proxy, "x", NS_SILENT), TIMEOUT_MS + 5000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= TIMEOUT_MS - 50, `answered after ${elapsed} ms`);
    assert.deepEqual(errorCondition(answer), { type: "wait", condition: "remote-server-timeout", by: proxy });
    assert.equal(answer.attrs.from, proxy);
    await sleep(TIMEOUT_MS);
    assert.equal(seen.length, 1, "exactly one answer");
  });

  it("delivers only the first of two replies", async () => {
    const seen = collectStanzas(requester, (s: Element) => s.attrs.id === "twice-1");
    const answer = await sendIq(requester, echo("twice-1", proxy, "x", NS_TWICE), 5000);
    assert.equal(answer.getChildText("n", NS_TWICE), "1");
    await sleep(500);
    assert.equal(seen.length, 1);
  });

  it("drops forged replies, and replies from another resource than the one asked", async () => {
    const seen = collectStanzas(requester, (s: Element) => s.attrs.id?.startsWith("forge-") ?? false);
    const pending = sendIq(requester, echo("forge-1", proxy, "x", NS_SILENT), TIMEOUT_MS + 5000);
    await sleep(200);
    const me = `requester@${domain}/desk`;
    const wrongKey = createJat({ domain: proxy, keys: [{ kid: "k1", secret: Buffer.from("f".repeat(32)) }] });
    const realKey = createJat({
      domain: proxy,
      keys: [{ kid: "k1", secret: Buffer.from(JAT_SECRET.slice(3)) }],
    });
    const forge = (from: Client, token: string) =>
      from.send(
        xml(
          "iq",
          { type: "result", id: "forge-1", to: `${proxy}/${token}` },
          xml("forged", { xmlns: NS_ECHO }),
        ),
      );
    await forge(impl.r1 as Client, wrongKey.sign(me) ?? "");
    await forge(impl.r1 as Client, `j1.k1.${"B".repeat(22)}.${"A".repeat(1100)}`);
    await forge(requester, realKey.sign(me) ?? "");
    // A validly signed answer from the resource that was not asked is not accepted either.
    const asked = await until("the request to arrive", () => receivedBy.get("forge-1"));
    const other = asked === "r1" ? "r2" : "r1";
    const token = realKey.sign(me) ?? "";
    await forge(impl[other] as Client, token);
    await sleep(300);
    assert.equal(seen.length, 0, "nothing forged reached the requester");
    await forge(impl[asked] as Client, token);
    const answer = await pending;
    assert.equal(answer.attrs.type, "result");
    assert.ok(answer.getChild("forged", NS_ECHO), "the asked resource's answer is delivered");
    await sleep(TIMEOUT_MS + 500);
    assert.equal(seen.length, 1, "exactly one answer reached the requester, and no timeout after it");
  });

  it("answers a second request with the same id while the first is pending with conflict", async () => {
    const seen = collectStanzas(requester, (s: Element) => s.attrs.id === "dup-1");
    const first = sendIq(requester, echo("dup-1", proxy, "x", NS_SILENT), TIMEOUT_MS + 5000);
    await sleep(200);
    await requester.send(echo("dup-1", proxy, "again", NS_SILENT));
    await until("conflict", () => seen.find((s) => errorCondition(s).condition === "conflict"), 3000);
    await first;
    await until(
      "timeout",
      () => seen.find((s) => errorCondition(s).condition === "remote-server-timeout"),
      TIMEOUT_MS + 3000,
    );
    await sleep(300);
    assert.equal(seen.length, 2, "one conflict error and one timeout, nothing else");
  });

  it("rejects requests from the implementing account to the domain with feature-not-implemented", async () => {
    const own = await sendIq(impl.r1 as Client, echo("own-1", proxy, "x"), 5000);
    assert.deepEqual(errorCondition(own), {
      type: "cancel",
      condition: "feature-not-implemented",
      by: proxy,
    });
  });

  // Prosody itself refuses some malformed IQs before they reach the component (with no `by`); the classifier's
  // unit tests cover the component's own answer. Either way the requester gets exactly this error.
  it("answers malformed requests with bad-request", async () => {
    const twoChildren = xml(
      "iq",
      { type: "get", id: "bad-1", to: proxy },
      xml("a", { xmlns: "urn:a" }),
      xml("b", { xmlns: "urn:b" }),
    );
    const answer = await sendIq(requester, twoChildren, 5000);
    const { type, condition } = errorCondition(answer);
    assert.deepEqual({ type, condition }, { type: "modify", condition: "bad-request" });
  });

  it("approves a subscription to the service's presence and sends it; ignores other presence", async () => {
    const presences = collectStanzas(
      requester,
      (s: Element) => s.name === "presence" && s.attrs.from === proxy,
    );
    // RFC 6121 section 2.1.6: only a resource that requested the roster is sent subscription state changes.
    await sendIq(requester, xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), 5000);
    // Presence to a bare JID reaches the available resources only (RFC 6121 section 8.5.2.1.1).
    await requester.send(xml("presence"));
    await requester.send(xml("presence", { to: proxy, type: "subscribe" }));
    await until("subscribed", () => presences.find((p) => p.attrs.type === "subscribed"), 3000);
    await until("the service's presence", () => presences.find((p) => p.attrs.type === undefined), 3000);
    const before = presences.length;
    await requester.send(xml("presence", { to: proxy }));
    await sleep(300);
    assert.equal(presences.length, before);
    await requester.send(xml("presence", { to: proxy, type: "unsubscribe" }));
  });

  it("answers a requester whose address cannot fit in a token with not-acceptable", async () => {
    const longOne = await connect("requester", "r".repeat(1000));
    try {
      const answer = await sendIq(longOne, echo("long-1", proxy, "x"), 5000);
      assert.deepEqual(errorCondition(answer), { type: "cancel", condition: "not-acceptable", by: proxy });
    } finally {
      await stopClient(longOne);
    }
  });

  it("keeps serving from the other resource when one goes offline, and says no resource when none is", async () => {
    await stopClient(impl.r1 as Client);
    delete impl.r1;
    await sleep(300);
    for (let i = 0; i < 10; i++) {
      const answer = await sendIq(requester, echo(`one-${i}`, proxy, "x"), 5000);
      assert.equal(answer.getChild("echo", NS_ECHO)?.attrs.resource, "r2");
    }
    await stopClient(impl.r2 as Client);
    delete impl.r2;
    await sleep(300);
    const none = await sendIq(requester, echo("none-1", proxy, "x"), 5000);
    assert.deepEqual(errorCondition(none), { type: "cancel", condition: "service-unavailable", by: proxy });
    await connectImpl("r1");
    await connectImpl("r2");
    await servedBy(["r1", "r2"]);
  });

  it("counts what it did in Prometheus metrics, without addresses in labels", async () => {
    const { status, body } = await httpStatus(httpPort, "/metrics");
    assert.equal(status, 200);
    const value = (series: string) => Number(new RegExp(`^${series} (\\S+)$`, "m").exec(body)?.[1] ?? "NaN");
    assert.ok(value("xcp_requests_forwarded_total") >= 20);
    assert.ok(value("xcp_replies_routed_total") >= 15);
    assert.ok(value("xcp_timeouts_total") >= 2);
    assert.ok(value('xcp_replies_dropped_total{reason="forged"}') >= 2, "forged and wrong-resource replies");
    assert.ok(value('xcp_replies_dropped_total{reason="duplicate"}') >= 1);
    assert.ok(value('xcp_requests_rejected_total{reason="noResource"}') >= 1);
    assert.ok(value('xcp_requests_rejected_total{reason="duplicateId"}') >= 1);
    assert.ok(!body.includes(domain), "no JID in any label");
  });

  it("keeps secrets out of its logs", () => {
    const output = service.output();
    assert.ok(output.includes("connected to the XMPP server"));
    assert.ok(!output.includes(prosody.componentSecret));
    assert.ok(!output.includes(JAT_SECRET.slice(3)));
  });
});
