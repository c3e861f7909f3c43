/**
 * examples/implementing-client as a user runs it (`node --import tsx examples/implementing-client/index.ts`,
 * one process per resource), behind the service, against a real Prosody and redis-server: a requester gets the
 * version and a greeting naming its own full JID through the proxy, an echo of its chat messages (and no answer
 * to a headline, an error or a message without body), sees the example's status as the service's presence,
 * is asked for its own software version once through the proxy, and the example leaves cleanly on SIGTERM.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { type Client, collectStanzas, sendIq, serveIq, stopClient } from "../harness/clients.js";
import { freePort } from "../harness/ports.js";
import { terminate, track } from "../harness/processes.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { type ServiceProcess, startService } from "../harness/service.js";
import {
  connectUser,
  errorCondition,
  httpStatus,
  NS_STANZAS,
  NS_VERSION,
  PASSWORD,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NS_GREETING = "urn:example:greeting";
const NS_UNKNOWN = "urn:xmpp-client-proxy:test:unknown";

interface Example {
  readonly resource: string;
  readonly child: ChildProcess;
  /** Exit code and signal, once the process has ended and its output is read. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly lines: string[];
}

describe("the example implementing client", { timeout: 120_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let service: ServiceProcess;
  let httpPort: number;
  let requester: Client;
  let proxy: string;
  let me: string;
  const examples = new Map<string, Example>();

  /** The example as a child process, exactly as its README says to run it (never npx: see FIELD-NOTES). */
  function startExample(resource: string): Example {
    const child = track(
      spawn(process.execPath, ["--import", "tsx", "examples/implementing-client/index.ts"], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "/tmp",
          XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.c2sPort}`,
          XMPP_DOMAIN: prosody.domain,
          XMPP_USERNAME: "impl",
          XMPP_PASSWORD: PASSWORD,
          XMPP_RESOURCE: resource,
          PROXY_DOMAIN: prosody.componentDomain,
        },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    const lines: string[] = [];
    if (child.stdout) createInterface({ input: child.stdout }).on("line", (line) => lines.push(line));
    if (child.stderr) createInterface({ input: child.stderr }).on("line", (line) => lines.push(line));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("close", (code, signal) => resolve({ code, signal })),
    );
    const example = { resource, child, exited, lines };
    examples.set(resource, example);
    return example;
  }

  const output = () =>
    [...examples.values()].map((e) => `--- ${e.resource}:\n${e.lines.slice(-30).join("\n")}`).join("\n");
  const count = (resource: string, text: string) =>
    examples.get(resource)?.lines.filter((line) => line.includes(text)).length ?? 0;

  /** RFC 6121 section 2.1.6: only a resource that requested the roster is sent subscription state changes. */
  const askRoster = () =>
    sendIq(requester, xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), 5000);
  const greet = (id: string) =>
    xml("iq", { type: "get", id, to: proxy }, xml("greet", { xmlns: NS_GREETING }));

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    proxy = prosody.componentDomain;
    redis = await startRedis();
    httpPort = await freePort();
    startExample("r1");
    startExample("r2");
    requester = await connectUser(prosody, "requester", "desk");
    me = `requester@${prosody.domain}/desk`;
    service = startService({
      XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
      XMPP_DOMAIN: proxy,
      XMPP_PASSWORD: prosody.componentSecret,
      TARGET_JID: `impl@${prosody.domain}`,
      REDIS_URL: redis.url,
      REDIS_PREFIX: "example",
      JAT_KEYS: "k1:0123456789abcdef0123456789abcdef",
      IQ_TIMEOUT_MS: "3000",
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "debug",
    });
    await until("readiness", async () => (await httpStatus(httpPort, "/readyz")).status === 200 || undefined);
    for (const resource of ["r1", "r2"]) {
      await until(
        `${resource} online\n${output()}`,
        () => count(resource, "online as") > 0 || undefined,
        15_000,
      );
    }
    // The proxy learns the resources from presence, a moment after they are online: wait until it routes.
    let n = 0;
    await until(
      `the proxy routing to the example\n${output()}`,
      async () => (await sendIq(requester, greet(`warm-${n++}`), 3000)).attrs.type === "result" || undefined,
      15_000,
    );
  });

  after(async () => {
    await stopClient(requester);
    for (const example of examples.values()) await terminate(example.child, 5000);
    await service?.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  it("approves the proxy's subscription and answers XEP-0092 software version through the proxy", async () => {
    // Prosody shows a pending subscription request to the resources online when it arrives (or, when none is,
    // to the first that comes online); once one resource has approved it, the others never see it.
    const approvals = ["r1", "r2"].map((r) => count(r, `approving the presence subscription of ${proxy}`));
    assert.ok(
      approvals.some((n) => n > 0),
      output(),
    );
    const answer = await sendIq(
      requester,
      xml("iq", { type: "get", id: "version-1", to: proxy }, xml("query", { xmlns: NS_VERSION })),
      5000,
    );
    assert.equal(answer.attrs.type, "result", answer.toString());
    assert.equal(answer.attrs.from, proxy);
    const query = answer.getChild("query", NS_VERSION);
    assert.equal(query?.getChildText("name"), "xmpp-client-proxy example implementing client");
    assert.equal(query?.getChildText("version"), "1.0.0");
    assert.ok((query?.getChildText("os") ?? "") !== "", "an os element");
  });

  it("greets the requester by its own full JID, from both resources", async () => {
    let n = 0;
    await until(
      `greetings from r1 and r2\n${output()}`,
      async () => {
        const answer = await sendIq(requester, greet(`greet-${n++}`), 5000);
        assert.equal(answer.attrs.type, "result", answer.toString());
        assert.equal(answer.attrs.from, proxy);
        assert.equal(answer.getChildText("greeting", NS_GREETING), `Hello, ${me}`);
        return (count("r1", `greeting ${me}`) > 0 && count("r2", `greeting ${me}`) > 0) || undefined;
      },
      20_000,
    );
    // Another resource of the same account is another requester.
    const phone = await connectUser(prosody, "requester", "phone");
    try {
      const answer = await sendIq(phone, greet("greet-phone"), 5000);
      assert.equal(answer.getChildText("greeting", NS_GREETING), `Hello, requester@${prosody.domain}/phone`);
    } finally {
      await stopClient(phone);
    }
  });

  it("answers anything else with service-unavailable and the payload, which the proxy passes through", async () => {
    const request = xml(
      "iq",
      { type: "get", id: "unknown-1", to: proxy },
      xml("query", { xmlns: NS_UNKNOWN }, "payload"),
    );
    const answer = await sendIq(requester, request, 5000);
    assert.equal(answer.attrs.type, "error");
    assert.equal(answer.attrs.from, proxy);
    // The implementing client's own error, unchanged: no `by` of the proxy.
    assert.deepEqual(errorCondition(answer), {
      type: "cancel",
      condition: "service-unavailable",
      by: undefined,
    });
    assert.equal(answer.getChild("query", NS_UNKNOWN)?.getText(), "payload", "the payload is echoed");
    // Not taken for a bounce from a resource that is gone: asked once, not moved to the other resource.
    await sleep(300);
    const asked = count("r1", "service-unavailable for get") + count("r2", "service-unavailable for get");
    assert.equal(asked, 1, output());
  });

  it("declines presence subscriptions from anyone but the proxy", async () => {
    const presences = collectStanzas(
      requester,
      (s: Element) => s.name === "presence" && s.attrs.from === `impl@${prosody.domain}`,
    );
    await askRoster();
    await requester.send(xml("presence", { to: `impl@${prosody.domain}`, type: "subscribe" }));
    await until("unsubscribed", () => presences.find((p) => p.attrs.type === "unsubscribed"), 5000);
    assert.ok(!presences.some((p) => p.attrs.type === "subscribed"));
  });

  it("echoes a chat message through the proxy, naming the requester, from the resource that got it", async () => {
    const inbox = collectStanzas(requester, (s: Element) => s.name === "message");
    await requester.send(
      xml(
        "message",
        { to: proxy, id: "chat-1", type: "chat" },
        xml("body", {}, "hello"),
        xml("thread", {}, "thread-50"),
      ),
    );
    const echo = await until(`the echo\n${output()}`, () => inbox[0], 10_000);
    assert.equal(echo.attrs.from, proxy, echo.toString());
    assert.equal(echo.attrs.type, "chat");
    assert.equal(echo.getChildText("thread"), "thread-50", "the thread kept");
    const [, resource = "", named] =
      /^echo from (\S+) to (\S+): hello$/.exec(echo.getChildText("body") ?? "") ?? [];
    assert.equal(named, me, "the requester decoded from the token");
    const other = resource === "r1" ? "r2" : "r1";
    assert.ok(["r1", "r2"].includes(resource), echo.toString());
    assert.equal(count(resource, `echoing a chat message from ${me}`), 1, output());
    assert.equal(count(other, "echoing"), 0, `only the resource that got it answered\n${output()}`);

    // A message without type is normal (RFC 6121 section 5.2.2): answered without type, by the same resource.
    await requester.send(xml("message", { to: proxy, id: "normal-1" }, xml("body", {}, "again")));
    const second = await until(`the second echo\n${output()}`, () => inbox[1], 10_000);
    assert.equal(second.attrs.from, proxy);
    assert.equal(second.attrs.type, undefined, second.toString());
    assert.equal(second.getChildText("body"), `echo from ${resource} to ${me}: again`);
    assert.equal(second.getChild("thread"), undefined);
    await sleep(300);
    assert.equal(inbox.length, 2, "one echo each");
  });

  it("never answers a headline, a message without body, a message error or a groupchat", async () => {
    const inbox = collectStanzas(requester, (s: Element) => s.name === "message");
    const logged = (text: string) => count("r1", text) + count("r2", text);
    await requester.send(
      xml("message", { to: proxy, id: "headline-1", type: "headline" }, xml("body", {}, "news")),
    );
    await requester.send(
      xml(
        "message",
        { to: proxy, id: "state-1", type: "chat" },
        xml("composing", { xmlns: "http://jabber.org/protocol/chatstates" }),
      ),
    );
    // The proxy forwards no groupchat: it reaches neither resource.
    await requester.send(
      xml("message", { to: proxy, id: "gc-1", type: "groupchat" }, xml("body", {}, "room")),
    );
    await until(
      `both ignored\n${output()}`,
      () =>
        (logged(`not answering a message of type headline from ${me}`) === 1 &&
          logged(`not answering a message without body from ${me}`) === 1) ||
        undefined,
    );

    // An error the requester's side returns for an echo goes back to the resource that sent the echo, which
    // does not answer it.
    await requester.send(
      xml("message", { to: proxy, id: "bounce-1", type: "chat" }, xml("body", {}, "bounce")),
    );
    const echo = await until(`the echo\n${output()}`, () => inbox[0], 10_000);
    assert.match(echo.getChildText("body") ?? "", new RegExp(`^echo from r[12] to ${me}: bounce$`));
    assert.ok(echo.attrs.id, "the echo has an id, for its errors");
    await requester.send(
      xml(
        "message",
        { to: proxy, id: echo.attrs.id, type: "error" },
        xml("body", {}, "bounce"),
        xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS })),
      ),
    );
    await until(
      `the error at the example\n${output()}`,
      () => logged(`not answering a message of type error from ${me}`) === 1 || undefined,
    );
    await sleep(500);
    assert.deepEqual(
      inbox.map((s) => s.attrs.id),
      [echo.attrs.id],
      `nothing but the one echo\n${inbox.join("\n")}`,
    );
    assert.equal(logged("groupchat"), 0, output());
    assert.equal(logged("echoing a chat message"), 2, "chat-1 and bounce-1 only");
  });

  it("the service's presence shows the status the example sends", async () => {
    const presences = collectStanzas(
      requester,
      (s: Element) => s.name === "presence" && s.attrs.from === proxy,
    );
    // As requester.ts does it: the roster, then initial presence (presence goes only to an available resource).
    await askRoster();
    await requester.send(xml("presence"));
    await requester.send(xml("presence", { to: proxy, type: "subscribe" }));
    await until(`subscribed\n${presences.join("\n")}`, () =>
      presences.find((p) => p.attrs.type === "subscribed"),
    );
    const available = await until(
      `the service available\n${presences.join("\n")}`,
      () => presences.find((p) => p.attrs.type === undefined),
      10_000,
    );
    // Both resources say "ready" (priority 0): whichever the proxy takes for the highest.
    assert.equal(available.getChildText("status"), "ready", available.toString());
    assert.equal(available.getChild("show"), undefined);
  });

  it("asks each new requester once for its software version through the proxy, and logs the answer", async () => {
    const laptop = await connectUser(prosody, "requester", "laptop");
    const who = `requester@${prosody.domain}/laptop`;
    const queries: Element[] = [];
    serveIq(laptop, (iq) => {
      if (iq.attrs.type === "get" && iq.getChild("query", NS_VERSION)) {
        queries.push(iq);
        return xml(
          "query",
          { xmlns: NS_VERSION },
          xml("name", {}, "test requester software"),
          xml("version", {}, "4.2"),
        );
      }
      return xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS }));
    });
    const inbox = collectStanzas(laptop, (s: Element) => s.name === "message");
    const logged = (text: string) => count("r1", text) + count("r2", text);
    const answered = `${who} runs test requester software 4.2`;
    try {
      // Messages stay with one resource while it is online: that resource asks once, at the first.
      await laptop.send(xml("message", { to: proxy, id: "v-1", type: "chat" }, xml("body", {}, "first")));
      await until(`the echo\n${output()}`, () => inbox[0], 10_000);
      await until(`the version logged\n${output()}`, () => logged(answered) === 1 || undefined, 10_000);
      assert.equal(queries.length, 1, queries.join("\n"));
      const [query] = queries as [Element];
      assert.equal(query.attrs.from, proxy, `from the bare proxy domain: ${query}`);
      assert.equal(query.attrs.to, who);
      const asker = count("r1", answered) === 1 ? "r1" : "r2";
      assert.ok(count(asker, `echoing a chat message from ${who}`) === 1, output());

      await laptop.send(xml("message", { to: proxy, id: "v-2", type: "chat" }, xml("body", {}, "second")));
      await until(`the second echo\n${output()}`, () => inbox[1], 10_000);
      await sleep(500);
      assert.equal(queries.length, 1, `not asked again\n${queries.join("\n")}`);
      assert.equal(logged(answered), 1, output());

      // Requests are spread over both resources; each resource asks a requester at most once.
      for (let i = 0; i < 6; i++) {
        const answer = await sendIq(laptop, greet(`v-greet-${i}`), 5000);
        assert.equal(answer.getChildText("greeting", NS_GREETING), `Hello, ${who}`, answer.toString());
      }
      await sleep(500);
      for (const resource of ["r1", "r2"]) assert.ok(count(resource, answered) <= 1, output());
      assert.equal(queries.length, logged(answered), `one query per resource that asked\n${output()}`);
    } finally {
      await stopClient(laptop);
    }
    // The first requester's client answers no version query (the library's service-unavailable): logged as such.
    assert.ok(logged(`${me} did not tell its version: service-unavailable`) >= 1, output());
    assert.equal(logged(`${me} runs`), 0, output());
  });

  it("goes offline on SIGTERM and exits 0; the proxy then routes to the other resource, then to none", async () => {
    const unavailable = collectStanzas(
      requester,
      (s: Element) => s.name === "presence" && s.attrs.from === proxy,
    );
    const r1 = examples.get("r1") as Example;
    r1.child.kill("SIGTERM");
    const first = await Promise.race([r1.exited, sleep(8000).then(() => null)]);
    assert.deepEqual(first, { code: 0, signal: null }, output());
    assert.ok(r1.lines.some((line) => line.includes("SIGTERM: going offline")));
    assert.ok(r1.lines.some((line) => line.includes("stopped")));

    // The unavailable presence reached the proxy: every request goes to r2 at once.
    const before = count("r2", `greeting ${me}`);
    for (let i = 0; i < 6; i++) {
      const answer = await sendIq(requester, greet(`after-r1-${i}`), 5000);
      assert.equal(answer.getChildText("greeting", NS_GREETING), `Hello, ${me}`, answer.toString());
    }
    assert.equal(count("r2", `greeting ${me}`) - before, 6, output());

    const r2 = examples.get("r2") as Example;
    r2.child.kill("SIGINT");
    const second = await Promise.race([r2.exited, sleep(8000).then(() => null)]);
    assert.deepEqual(second, { code: 0, signal: null }, output());
    await sleep(300);
    const none = await sendIq(requester, greet("none-1"), 5000);
    assert.deepEqual(errorCondition(none), { type: "cancel", condition: "service-unavailable", by: proxy });
    // A subscriber of the service (the test before) learns it is gone.
    await until(
      "the service unavailable",
      () => unavailable.find((p) => p.attrs.type === "unavailable"),
      10_000,
    );
  });
});
