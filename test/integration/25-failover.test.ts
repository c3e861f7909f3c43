/**
 * Failover of a request whose resource turned out to be gone, against a real Prosody: the store is made to
 * believe in a resource "ghost" that is not online (as after missed presence); Prosody bounces what is sent
 * to it with service-unavailable.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import { Redis } from "ioredis";
import { createKeys } from "../../src/store/keys.js";
import { type Client, sendIq, stopClient } from "../harness/clients.js";
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
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";

describe("failover when the chosen resource is gone", { timeout: 120_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  let admin: Redis;
  let service: ServiceProcess;
  let httpPort: number;
  let requester: Client;
  const impl: Client[] = [];
  let keys: ReturnType<typeof createKeys>;
  let proxy: string;

  const serviceEnv = (): Record<string, string> => ({
    XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
    XMPP_DOMAIN: proxy,
    XMPP_PASSWORD: prosody.componentSecret,
    TARGET_JID: `impl@${prosody.domain}`,
    REDIS_URL: redis.url,
    REDIS_PREFIX: "fo",
    JAT_KEYS: "k1:0123456789abcdef0123456789abcdef",
    IQ_TIMEOUT_MS: "3000",
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: "debug",
  });

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    proxy = prosody.componentDomain;
    keys = createKeys("fo", proxy);
    redis = await startRedis();
    admin = new Redis(redis.url);
    httpPort = await freePort();
    service = startService(serviceEnv());
    for (const resource of ["r1", "r2"]) impl.push(await connectImplementing(prosody, resource));
    requester = await connectUser(prosody, "requester", "desk");
    await until("both resources known", async () =>
      (await admin.hlen(keys.resources)) === 2 ? true : undefined,
    );
  });

  after(async () => {
    for (const client of [requester, ...impl]) await stopClient(client);
    admin?.disconnect();
    await service?.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  it("re-sends a bounced get to an online resource, and stops routing to the gone one", async () => {
    await admin.hset(keys.resources, "ghost", Date.now());
    for (let i = 0; i < 30; i++) {
      const answer = await sendIq(requester, echo(`get-${i}`, proxy, `n${i}`), 5000);
      assert.equal(answer.attrs.type, "result", answer.toString());
      assert.equal(answer.getChild("echo", NS_ECHO)?.getText(), `n${i}`);
      assert.match(answer.getChild("echo", NS_ECHO)?.attrs.resource ?? "", /^r[12]$/);
    }
    assert.equal(await admin.hexists(keys.resources, "ghost"), 0, "the gone resource was removed");
    const metrics = (await httpStatus(httpPort, "/metrics")).body;
    assert.match(metrics, /^xcp_retries_total [1-9]/m);
  });

  it("passes the bounce of a set that may have been delivered to the requester, and relearns the others", async () => {
    // Only the ghost is known: the set goes to it, and nothing proves it was not delivered.
    await admin.del(keys.resources);
    await admin.hset(keys.resources, "ghost", Date.now());
    const set = xml("iq", { type: "set", id: "set-1", to: proxy }, xml("echo", { xmlns: NS_ECHO }, "once"));
    const answer = await sendIq(requester, set, 5000);
    assert.deepEqual(errorCondition(answer), {
      type: "cancel",
      condition: "service-unavailable",
      by: undefined,
    });
    assert.equal(answer.attrs.from, proxy);
    // The bounce made the proxy probe the target's presence: the real resources come back by themselves.
    await until("resources relearned", async () =>
      (await admin.hlen(keys.resources)) === 2 ? true : undefined,
    );
    const again = await sendIq(requester, echo("after-1", proxy, "x"), 5000);
    assert.equal(again.attrs.type, "result");
  });

  it("forgets a resource whose unavailable presence was missed while no replica was connected", async () => {
    await until("both resources known", async () =>
      (await admin.hlen(keys.resources)) === 2 ? true : undefined,
    );
    await service.stop();
    const gone = impl.shift();
    await stopClient(gone);
    assert.equal(await admin.hlen(keys.resources), 2, "the store still believes in the resource that left");
    // Confirmations up to 2 s older than the probe count (replicas' clocks differ): let that pass.
    await sleep(2500);
    service = startService({ ...serviceEnv(), RESOURCE_CONFIRM_MS: "1000" });
    await until("the missed resource forgotten", async () => {
      const left = await admin.hkeys(keys.resources);
      return left.length === 1 && left[0] === "r2" ? true : undefined;
    });
    const answer = await sendIq(requester, echo("after-reconcile", proxy, "x"), 5000);
    assert.equal(answer.getChild("echo", NS_ECHO)?.attrs.resource, "r2");
    assert.doesNotMatch(
      (await httpStatus(httpPort, "/metrics")).body,
      /^xcp_retries_total [1-9]/m,
      "no bounce was needed",
    );
  });
});
