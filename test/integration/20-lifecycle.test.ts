/**
 * Connection lifecycle against a real Prosody: restarts of the server and of the service, misconfiguration,
 * a second instance standing by, and the store going away.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Element } from "@xmpp/xml";
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
  NS_SILENT,
  receivedBy,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";

const receivedCount = (prefix: string) => [...receivedBy.keys()].filter((id) => id.startsWith(prefix)).length;

type Client = Awaited<ReturnType<typeof connectClient>>;

describe("connection lifecycle with Prosody", { timeout: 180_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let requester: Client | undefined;
  const impl: Client[] = [];
  const services: ServiceProcess[] = [];
  let proxy: string;

  const connect = (username: string, resource: string) => connectUser(prosody, username, resource);

  async function connectClients(): Promise<void> {
    for (const resource of ["r1", "r2"]) impl.push(await connectImplementing(prosody, resource));
    requester = await connect("requester", "desk");
  }

  async function disconnectClients(): Promise<void> {
    for (const client of impl.splice(0)) await stopClient(client);
    if (requester) await stopClient(requester);
    requester = undefined;
  }

  function start(httpPort: number, extra: Record<string, string> = {}): ServiceProcess {
    const service = startService({
      XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
      XMPP_DOMAIN: proxy,
      XMPP_PASSWORD: prosody.componentSecret,
      TARGET_JID: `impl@${prosody.domain}`,
      IQ_TIMEOUT_MS: "2000",
      HTTP_PORT: String(httpPort),
      RECONNECT_MIN_MS: "200",
      RECONNECT_MAX_MS: "2000",
      STANDBY_RETRY_MS: "500",
      LOG_LEVEL: "debug",
      ...extra,
    });
    services.push(service);
    return service;
  }

  const ready = (port: number, timeoutMs = 15_000) =>
    until(
      `readiness on ${port}`,
      async () => (await httpStatus(port, "/readyz")).status === 200 || undefined,
      timeoutMs,
    );

  /** A request succeeds end to end (retried while presence settles). */
  const serves = () =>
    until(
      "a proxied answer",
      async () => {
        const answer = await sendIq(requester as Client, echo(`ping-${Date.now()}`, proxy, "x"), 3000);
        return answer.getChild("echo", NS_ECHO) ? answer : undefined;
      },
      15_000,
    );

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    proxy = prosody.componentDomain;
    redis = await startRedis();
    await connectClients();
  });

  after(async () => {
    await disconnectClients();
    for (const service of services) await service.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  it("exits with code 2 and a clear message when the server refuses the secret", async () => {
    const service = start(await freePort(), { XMPP_PASSWORD: "wrong-secret" });
    const code = await Promise.race([
      service.exited,
      new Promise((resolve) => setTimeout(() => resolve("hung"), 15_000)),
    ]);
    assert.equal(code, 2);
    assert.match(service.output(), /not-authorized/);
    assert.ok(!service.output().includes("wrong-secret"));
  });

  it("serves with the in-process store, and relearns resources after being killed and started again", async () => {
    const port = await freePort();
    const first = start(port);
    await ready(port);
    assert.equal((await httpStatus(port, "/healthz")).status, 200);
    await serves();
    await first.kill();
    const second = start(port);
    await ready(port);
    await serves();
    await second.stop();
    assert.equal(await second.exited, 0, "SIGTERM stops the service cleanly");
  });

  it("stands a second instance by while the first holds the domain, and fails over to it", async () => {
    const portA = await freePort();
    const portB = await freePort();
    const a = start(portA, { REDIS_URL: redis.url, JAT_KEYS: "k:0123456789abcdef0123456789abcdef" });
    await ready(portA);
    const b = start(portB, { REDIS_URL: redis.url, JAT_KEYS: "k:0123456789abcdef0123456789abcdef" });
    await b.waitForLog((line) => line.msg === "another connection holds the domain: standing by", 10_000);
    const standby = await httpStatus(portB, "/readyz");
    assert.equal(standby.status, 503);
    assert.match(standby.body, /standby/);
    assert.equal(
      (await httpStatus(portB, "/readyz?standby=ready")).status,
      200,
      "ready as a standby, if asked so",
    );
    await serves();
    // Requests the active replica forwarded and never saw answered: the survivor must answer each, once.
    const left = collectStanzas(
      requester as Client,
      (st: Element) => st.attrs.id?.startsWith("left-") ?? false,
    );
    for (let i = 0; i < 3; i++) await (requester as Client).send(echo(`left-${i}`, proxy, "x", NS_SILENT));
    await until("the three requests recorded", () => (receivedCount("left-") === 3 ? true : undefined), 5000);
    await a.kill();
    const killedAt = Date.now();
    await ready(portB, 10_000);
    assert.ok(Date.now() - killedAt < 5_000, `standby took over after ${Date.now() - killedAt} ms`);
    await serves();
    await until("timeouts from the survivor", () => (left.length >= 3 ? true : undefined), 10_000);
    await sleep(500);
    assert.equal(left.length, 3, "exactly one answer each");
    for (const answer of left) {
      assert.deepEqual(errorCondition(answer), {
        type: "wait",
        condition: "remote-server-timeout",
        by: proxy,
      });
    }
    await b.stop();
  });

  it("answers at once with a wait error while Redis is down, and serves again when it returns", async () => {
    const port = await freePort();
    const service = start(port, { REDIS_URL: redis.url, JAT_KEYS: "k:0123456789abcdef0123456789abcdef" });
    await ready(port);
    await serves();
    await redis.stop();
    const started = Date.now();
    const answer = await sendIq(requester as Client, echo("redis-down-1", proxy, "x"), 5000);
    assert.ok(Date.now() - started < 1500, `answered after ${Date.now() - started} ms`);
    assert.deepEqual(errorCondition(answer), { type: "wait", condition: "internal-server-error", by: proxy });
    const readiness = await httpStatus(port, "/readyz");
    assert.equal(readiness.status, 503);
    assert.match(readiness.body, /store unavailable/);
    await redis.restart();
    await ready(port);
    await serves();
    await service.stop();
  });

  it("reconnects by itself after Prosody restarts, and serves again", async () => {
    const port = await freePort();
    const service = start(port);
    await ready(port);
    await serves();
    await disconnectClients();
    await prosody.restart();
    await ready(port, 20_000);
    await connectClients();
    await serves();
    assert.ok(service.output().includes("lost the XMPP connection"));
    await service.stop();
  });
});
