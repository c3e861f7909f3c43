/**
 * Operations against ejabberd with two replicas: what /metrics reports, readiness, and SIGTERM under load.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Client, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  load,
  NS_ECHO,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";
import { type Replica, startReplicas } from "./replicas.js";

const TIMEOUT_MS = 3000;

describe("operations with two replicas behind ejabberd", { timeout: 180_000 }, () => {
  let ejabberd: EjabberdServer;
  let redis: RedisServer;
  const replicas: Replica[] = [];
  const clients: Client[] = [];
  const requesters: Client[] = [];
  let proxy: string;

  before(async () => {
    ejabberd = await startEjabberd({ users: TEST_USERS });
    proxy = ejabberd.componentDomain;
    redis = await startRedis();
    replicas.push(
      ...(await startReplicas(ejabberd, 2, {
        REDIS_URL: redis.url,
        IQ_TIMEOUT_MS: String(TIMEOUT_MS),
        SHUTDOWN_GRACE_MS: "8000",
      })),
    );
    clients.push(await connectImplementing(ejabberd, "r1"), await connectImplementing(ejabberd, "r2"));
    for (let i = 0; i < 2; i++) requesters.push(await connectUser(ejabberd, "requester", `ops${i}`));
    await until("both resources serving", async () => {
      const metrics = (await httpStatus(replicas[0]?.port ?? 0, "/metrics")).body;
      return /^xcp_target_resources_online 2$/m.test(metrics) || undefined;
    });
  });

  after(async () => {
    for (const client of [...requesters, ...clients]) await stopClient(client);
    for (const { service } of replicas) await service.stop();
    await redis?.stop();
    await ejabberd?.stop();
  });

  it("reports shared state and its own connection in Prometheus format, without addresses", async () => {
    await load(requesters, proxy, "metrics", 200, 5);
    for (const { port } of replicas) {
      const { status, body } = await httpStatus(port, "/metrics");
      assert.equal(status, 200);
      assert.match(
        body,
        /^xcp_target_resources_online 2$/m,
        "read from the store: the same on every replica",
      );
      assert.match(body, /^xcp_requests_pending \d+$/m);
      assert.match(body, /^xcp_xmpp_connected 1$/m);
      assert.match(body, /^xcp_xmpp_connection_state\{state="connected"\} 1$/m);
      assert.match(body, /^xcp_xmpp_connection_state\{state="standby"\} 0$/m);
      assert.match(body, /^process_cpu_seconds_total /m);
      assert.match(body, /^# TYPE xcp_round_trip_seconds histogram$/m);
      assert.ok(!body.includes(ejabberd.domain), "no JID in any label");
    }
    const counts = await Promise.all(
      replicas.map(async ({ port }) => {
        const body = (await httpStatus(port, "/metrics")).body;
        return Number(/^xcp_round_trip_seconds_count (\d+)$/m.exec(body)?.[1] ?? "0");
      }),
    );
    assert.ok(counts.reduce((a, b) => a + b, 0) >= 200, `round trips observed: ${counts.join(", ")}`);
  });

  it("stops on SIGTERM under load: exits 0, leaves the server, and no request loses its answer", async () => {
    const victim = replicas[0];
    assert.ok(victim);
    const run = load(requesters, proxy, "term", 1000, 6, TIMEOUT_MS + 3000);
    await sleep(700);
    victim.service.child.kill("SIGTERM");
    const started = Date.now();
    const code = await victim.service.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 8000, `exited after ${Date.now() - started} ms`);
    assert.ok(
      victim.service.output().includes('"msg":"stopped"'),
      "finished its work within the grace period",
    );
    await assert.rejects(httpStatus(victim.port, "/readyz"), "its HTTP endpoints are gone");
    const { answers, expected } = await run;
    await sleep(TIMEOUT_MS + 1500);
    let results = 0;
    for (const [id, payload] of expected) {
      const list = answers.get(id) ?? [];
      assert.equal(list.length, 1, `${id} was answered ${list.length} times`);
      const answer = list[0];
      if (answer?.attrs.type === "result") {
        assert.equal(answer.getChild("echo", NS_ECHO)?.getText(), payload);
        results++;
      } else {
        assert.deepEqual(
          errorCondition(answer as NonNullable<typeof answer>).condition,
          "remote-server-timeout",
        );
      }
    }
    console.log(`SIGTERM under load: ${results} results of ${expected.size}, the rest timeouts`);
    assert.ok(results >= expected.size - 20, `only ${results} results`);
  });
});
