/**
 * Exactly one answer per request under link faults, counted per request id:
 * - replicas SIGKILLed with replies in flight (ejabberd, three replicas sharing Redis);
 * - the component links cut under load by a TCP relay between each replica and ejabberd;
 * - SIGTERM of a single replica with the in-process store and requests pending (Prosody).
 *
 * A request that reached the implementing client was recorded by a replica first, so it must get exactly one
 * answer: its reply (with its own payload) or wait/remote-server-timeout from the proxy. A request that never
 * reached it may have been lost in transit (XEP-0114 has no acknowledgements: stanzas the server routed to a
 * connection that died are gone); those are counted and reported, and may not be answered twice either.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { Redis } from "ioredis";
import { createKeys } from "../../src/store/keys.js";
import { storeTtls } from "../../src/store/types.js";
import { type Client, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";
import { freePort } from "../harness/ports.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { type ServiceProcess, startService } from "../harness/service.js";
import { startTcpProxy, type TcpProxy } from "../harness/tcp-proxy.js";
import {
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  NS_ECHO,
  NS_SILENT,
  receivedBy,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";
import { type Replica, running, servedBy, startReplicas } from "./replicas.js";

const IQ_TIMEOUT_MS = 3000;
/** Every request that reached the implementing client is answered within this time after it was sent. */
const ANSWER_BOUND_MS = IQ_TIMEOUT_MS + 5000;
/** The store's answer lease: an unacknowledged answer is handed out again after it. */
const LEASE_MS = storeTtls(IQ_TIMEOUT_MS).answerLeaseMs;
/** A second answer would come one lease (plus a sweep interval) after the first: wait that long, and more. */
const DUPLICATE_WINDOW_MS = LEASE_MS + 2000;
/** A slot of the load moves on to its next request after this long without an answer. */
const SLOT_WAIT_MS = 1500;

// ---------------------------------------------------------------------------------------------------------
// Bookkeeping per request id, across the whole file.

interface Sent {
  readonly at: number;
  readonly payload: string;
}
interface Answer {
  readonly stanza: Element;
  readonly at: number;
}

const sent = new Map<string, Sent>();
const answers = new Map<string, Answer[]>();
const waiters = new Map<string, () => void>();

/** Records every answer (result or error) to a request of ours that reaches the client. */
function recordAnswers(client: Client): void {
  client.on("stanza", (stanza: Element) => {
    const id = stanza.attrs.id;
    if (stanza.name !== "iq" || id === undefined || !sent.has(id)) return;
    if (stanza.attrs.type !== "result" && stanza.attrs.type !== "error") return;
    answers.set(id, [...(answers.get(id) ?? []), { stanza, at: Date.now() }]);
    waiters.get(id)?.();
  });
}

interface Run {
  /** Ids sent so far (grows while the run goes on). */
  readonly ids: string[];
  readonly done: Promise<void>;
}

/**
 * Sends echo requests from every client, `window` in flight per client: each slot sends its next request when
 * the previous one is answered, or after SLOT_WAIT_MS without an answer (the id stays counted).
 */
function drive(
  clients: Client[],
  to: string,
  prefix: string,
  window: number,
  more: (sentSoFar: number) => boolean,
): Run {
  const ids: string[] = [];
  let n = 0;
  const slot = async (client: Client, c: number) => {
    while (more(n)) {
      const id = `${prefix}-${c}-${n++}`;
      const payload = `payload of ${id}`;
      let timer: NodeJS.Timeout | undefined;
      const answered = new Promise<void>((resolve) => {
        waiters.set(id, resolve);
        timer = setTimeout(resolve, SLOT_WAIT_MS);
      });
      sent.set(id, { at: Date.now(), payload });
      ids.push(id);
      await client.send(xml("iq", { type: "get", id, to }, xml("echo", { xmlns: NS_ECHO }, payload)));
      await answered;
      clearTimeout(timer);
      waiters.delete(id);
    }
  };
  const done = Promise.all(
    clients.flatMap((client, c) => Array.from({ length: window }, () => slot(client, c))),
  ).then(() => {});
  return { ids, done };
}

const answeredCount = (ids: string[]) => ids.reduce((count, id) => count + (answers.has(id) ? 1 : 0), 0);

/**
 * Waits until every request of the run that reached the implementing client is answered (at most until the
 * bound for the last of them), then one duplicate window more.
 */
async function settle(ids: string[]): Promise<void> {
  const reached = ids.filter((id) => receivedBy.has(id));
  const lastSent = Math.max(0, ...reached.map((id) => sent.get(id)?.at ?? 0));
  const deadline = lastSent + ANSWER_BOUND_MS + 500;
  while (Date.now() < deadline && reached.some((id) => !answers.has(id))) await sleep(100);
  await sleep(DUPLICATE_WINDOW_MS);
}

/** "result", or "<type>/<condition>" of an error from the proxy, or a description of anything else. */
function kindOf(id: string, answer: Element, proxy: string): string {
  if (answer.attrs.type === "result") {
    if (answer.attrs.from !== proxy) return `result from ${answer.attrs.from}`;
    const text = answer.getChild("echo", NS_ECHO)?.getText();
    return text === sent.get(id)?.payload ? "result" : "result with another payload";
  }
  const { type, condition, by } = errorCondition(answer);
  const origin = answer.attrs.from !== proxy ? ` from ${answer.attrs.from}` : by !== proxy ? " (no by)" : "";
  return `${type}/${condition}${origin}`;
}

interface Verdict {
  readonly summary: string;
  readonly problems: string[];
}

/** Fails with the summary and the first problems (the evidence was printed by verify). */
function assertNoProblems({ summary, problems }: Verdict): void {
  assert.equal(problems.length, 0, `${summary}\n${problems.slice(0, 20).join("\n")}`);
}

/** What a failure report adds about one id (e.g. its record in Redis, where a cut discarded it). */
type Explain = (id: string) => Promise<string> | string;

/**
 * Checks every id: at most one answer; exactly one, of an allowed kind and within ANSWER_BOUND_MS, for every
 * id that reached the implementing client; unanswered ids that never reached it are counted. Prints a summary,
 * and the evidence for the ids with a problem.
 */
async function verify(
  label: string,
  ids: string[],
  proxy: string,
  allowed: { reached: string[]; unreached: string[] },
  services: ServiceProcess[],
  explain?: Explain,
  /** Second answers the service itself counted as possible (answers re-sent after a lost link). */
  doublesAllowed = 0,
): Promise<Verdict> {
  const kinds = new Map<string, number>();
  const doubles: string[] = [];
  const problems: string[] = [];
  const problemIds = new Set<string>();
  let reached = 0;
  let lostInTransit = 0;
  let slowest = 0;
  const problem = (id: string, text: string) => {
    problems.push(text);
    problemIds.add(id);
  };
  for (const id of ids) {
    const got = answers.get(id) ?? [];
    const wasReached = receivedBy.has(id);
    if (wasReached) reached++;
    if (got.length > 2) {
      problem(id, `${id} answered ${got.length} times: ${got.map((a) => kindOf(id, a.stanza, proxy))}`);
    } else if (got.length === 2) {
      doubles.push(`${id} answered 2 times: ${got.map((a) => kindOf(id, a.stanza, proxy))}`);
    }
    const first = got[0];
    if (!first) {
      if (wasReached) problem(id, `${id} reached ${receivedBy.get(id)} and was never answered`);
      else lostInTransit++;
      continue;
    }
    const kind = kindOf(id, first.stanza, proxy);
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    const allowedKinds = wasReached ? allowed.reached : [...allowed.reached, ...allowed.unreached];
    if (!allowedKinds.includes(kind)) {
      problem(id, `${id} (${wasReached ? "reached" : "not reached"}) got ${kind}: ${first.stanza}`);
    }
    const latency = first.at - (sent.get(id)?.at ?? first.at);
    if (wasReached) slowest = Math.max(slowest, latency);
    if (wasReached && latency > ANSWER_BOUND_MS) problem(id, `${id} answered after ${latency} ms`);
  }
  if (doubles.length > doublesAllowed) {
    for (const text of doubles) problem(text.split(" ")[0] ?? "", text);
  }
  const summary =
    `${label}: ${ids.length} requests, ${reached} reached the implementing client; ${doubles.length} answered ` +
    `twice (${doublesAllowed} allowed); answers by kind ` +
    `${JSON.stringify(Object.fromEntries(kinds))}; never reached and unanswered (lost in transit): ` +
    `${lostInTransit}; slowest answer to a reached request ${slowest} ms; problems ${problems.length}`;
  console.log(summary);
  if (problems.length > 0) {
    console.log(problems.slice(0, 30).join("\n"));
    console.log(await evidence([...problemIds].slice(0, 8), services, explain));
  }
  return { summary, problems };
}

/** Lines of a replica's log that place a problem in time. */
const LANDMARKS =
  /"msg":"(stopping|stopped|lost the XMPP connection|connected to the XMPP server|answers written after reconnecting|answered the requests still pending before stopping|answers sent but not acknowledged[^"]*|send failed|shutdown grace period over[^"]*)"/;

/** The replicas' log lines that name one of the ids, and their landmarks, for the report of a failure. */
async function evidence(ids: string[], services: ServiceProcess[], explain?: Explain): Promise<string> {
  const out: string[] = [];
  const iso = (ms: number | undefined) => (ms === undefined ? "-" : new Date(ms).toISOString());
  for (const id of ids) {
    out.push(
      `--- ${id}: sent ${iso(sent.get(id)?.at)}, reached ${receivedBy.get(id) ?? "nobody"}, answers: ` +
        `${(answers.get(id) ?? []).map((a) => `${iso(a.at)} ${a.stanza}`).join(" | ") || "none"}`,
    );
    if (explain) out.push(`    ${await explain(id)}`);
    services.forEach((service, i) => {
      for (const line of service.output().split("\n")) {
        if (line.includes(`"id":"${id}"`)) out.push(`    replica ${i}: ${line}`);
      }
    });
  }
  out.push("--- landmarks");
  services.forEach((service, i) => {
    for (const line of service.output().split("\n"))
      if (LANDMARKS.test(line)) out.push(`replica ${i}: ${line}`);
  });
  return out.join("\n");
}

async function metric(port: number, name: string): Promise<number> {
  try {
    const body = (await httpStatus(port, "/metrics")).body;
    return Number(new RegExp(`^${name} (\\d+)`, "m").exec(body)?.[1] ?? "0");
  } catch {
    return 0;
  }
}

/** A counter of each replica, by HTTP port. */
const metricByPort = async (replicas: Replica[], name: string) =>
  new Map(await Promise.all(replicas.map(async ({ port }) => [port, await metric(port, name)] as const)));

/** How much a counter grew on the replicas that still run (a killed replica's counts die with it). */
async function growth(replicas: Replica[], name: string, before: Map<number, number>): Promise<number> {
  let total = 0;
  for (const [port, value] of await metricByPort(replicas, name)) total += value - (before.get(port) ?? 0);
  return total;
}

const ready = (port: number, timeoutMs = 20_000) =>
  until(
    `readiness on ${port}`,
    async () => (await httpStatus(port, "/readyz")).status === 200 || undefined,
    timeoutMs,
  );

// ---------------------------------------------------------------------------------------------------------

describe("link faults behind ejabberd: exactly one answer per request", { timeout: 200_000 }, () => {
  let ejabberd: EjabberdServer;
  let redis: RedisServer;
  let admin: Redis | undefined;
  let proxy: string;
  /** Every replica started in this block, dead or alive, in start order (for logs and cleanup). */
  const replicas: Replica[] = [];
  const impl: Client[] = [];
  const requesters: Client[] = [];
  const relays: TcpProxy[] = [];

  const env = () => ({
    REDIS_URL: redis.url,
    IQ_TIMEOUT_MS: String(IQ_TIMEOUT_MS),
    LOG_LEVEL: "debug",
  });
  const services = () => replicas.map(({ service }) => service);
  const ANSWERED = { reached: ["result", "wait/remote-server-timeout"], unreached: [] };

  /** A request's record in Redis: "answering" holds an answer under a lease, "replied"/"timeout" were acked. */
  const recordOf = async (id: string) => {
    const requester =
      answers.get(id)?.[0]?.stanza.attrs.to ?? `requester@localhost/faults${id.split("-").at(-2)}`;
    const keys = createKeys("xcp", proxy);
    const record = await admin?.hgetall(keys.record(keys.member(requester, id)));
    const { answer: _answer, payload: _payload, ...fields } = record ?? {};
    return `record of ${requester} ${id} in Redis: ${JSON.stringify(fields)}`;
  };

  before(async () => {
    ejabberd = await startEjabberd({ users: TEST_USERS });
    proxy = ejabberd.componentDomain;
    redis = await startRedis();
    admin = new Redis(redis.url);
    replicas.push(...(await startReplicas(ejabberd, 3, env())));
    for (const resource of ["r1", "r2"]) impl.push(await connectImplementing(ejabberd, resource));
    for (let i = 0; i < 4; i++) {
      const requester = await connectUser(ejabberd, "requester", `faults${i}`);
      recordAnswers(requester);
      requesters.push(requester);
    }
    await servedBy(requesters[0] as Client, proxy, ["r1", "r2"]);
  });

  after(async () => {
    for (const client of [...requesters, ...impl]) await stopClient(client);
    for (const { service } of replicas) await service.stop();
    for (const relay of relays) await relay.close();
    admin?.disconnect();
    await redis?.stop();
    await ejabberd?.stop();
  });

  it("answers every request that reached the implementing client exactly once while replicas are SIGKILLed", async () => {
    const ROUNDS = 3;
    const PER_ROUND = 2000;
    const allIds: string[] = [];
    const verdicts: Verdict[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const alive = running(replicas);
      assert.equal(alive.length, 3);
      const redeliveredBefore = await metricByPort(alive, "xcp_answers_redelivered_total");
      // 4 requesters x 16 = 64 requests in flight.
      const run = drive(requesters, proxy, `kill${round}`, 16, (n) => n < PER_ROUND);
      // Mid-load, at a different point each round.
      const threshold = Math.round(PER_ROUND * (0.25 + 0.15 * round));
      await until(
        `${threshold} answers in round ${round}`,
        () => answeredCount(run.ids) >= threshold || undefined,
        60_000,
      );
      const victim = alive[0] as Replica;
      const sentBeforeKill = run.ids.length;
      const killedAt = new Date().toISOString();
      await victim.service.kill();
      await run.done;
      await settle(run.ids);
      const survivors = running(replicas);
      const redelivered = await growth(survivors, "xcp_answers_redelivered_total", redeliveredBefore);
      const verdict = await verify(
        `kill round ${round} (replica ${replicas.indexOf(victim)} killed at ${killedAt} after ${sentBeforeKill} sent, ` +
          `${redelivered} answers redelivered by the survivors)`,
        run.ids,
        proxy,
        ANSWERED,
        services(),
        recordOf,
      );
      assert.ok(sentBeforeKill < PER_ROUND, "the kill came mid-load");
      verdicts.push(verdict);
      allIds.push(...run.ids);
      // A replacement, as an orchestrator would start.
      replicas.push(...(await startReplicas(ejabberd, 1, env())));
    }
    // Late second answers to earlier rounds would have arrived by now.
    const overall = await verify("all kill rounds", allIds, proxy, ANSWERED, services(), recordOf);
    for (const verdict of [...verdicts, overall]) assertNoProblems(verdict);
    const results = allIds.filter((id) => answers.get(id)?.[0]?.stanza.attrs.type === "result").length;
    assert.ok(results >= allIds.length * 0.9, `only ${results} of ${allIds.length} results`);
  });

  /**
   * XEP-0114 has no acknowledgements: what is in flight when a link dies is lost, and nothing says which stanzas
   * those were. The service re-sends, after reconnecting, the answers written since just before the last input
   * on the lost link; one that had arrived is then answered twice, and every such re-send is counted. So: no
   * request that reached the implementing client is left without an answer, and a second answer only where the
   * service counted a re-send.
   */
  it("answers every request that reached the implementing client while the component links are cut", async () => {
    // Two replicas, each behind its own relay to the component port.
    for (const replica of running(replicas)) await replica.service.stop();
    const linked: Replica[] = [];
    for (let i = 0; i < 2; i++) {
      const relay = await startTcpProxy(ejabberd.componentPort);
      relays.push(relay);
      const [replica] = await startReplicas(ejabberd, 1, {
        ...env(),
        XMPP_SERVICE: `xmpp://127.0.0.1:${relay.port}`,
        RECONNECT_MIN_MS: "100",
        RECONNECT_MAX_MS: "1000",
      });
      linked.push(replica as Replica);
      replicas.push(replica as Replica);
    }
    await servedBy(requesters[0] as Client, proxy, ["r1", "r2"]);
    const strandedBefore = await metricByPort(linked, "xcp_answers_stranded_total");
    const redeliveredBefore = await metricByPort(linked, "xcp_answers_redelivered_total");

    let cutting = true;
    // 4 requesters x 6 = 24 requests in flight, for as long as the cuts go on and a second more.
    const run = drive(requesters, proxy, "cut", 6, () => cutting);
    await sleep(1000);
    // Both links at once (no replica connected for a moment), then one at a time, ~700 ms apart.
    const [relay0, relay1] = relays as [TcpProxy, TcpProxy];
    const plan = [[relay0, relay1], [relay0], [relay0, relay1], [relay1]];
    const cuts: string[] = [];
    for (const targets of plan) {
      const answered = answeredCount(run.ids);
      const links = targets.reduce((count, relay) => count + relay.cut(), 0);
      cuts.push(`${links} link(s) cut after ${run.ids.length} sent, ${answered} answered`);
      await sleep(700);
    }
    await sleep(1000);
    cutting = false;
    await run.done;
    await settle(run.ids);
    console.log(`cuts: ${cuts.join("; ")}`);
    const stranded = await growth(linked, "xcp_answers_stranded_total", strandedBefore);
    const redelivered = await growth(linked, "xcp_answers_redelivered_total", redeliveredBefore);
    /** Where a cut discarded text naming the id, if one did. */
    const discardedBy = (id: string) => {
      const found: string[] = [];
      relays.forEach((relay, r) => {
        for (const cut of relay.cuts) {
          const at = new Date(cut.at).toISOString();
          if (cut.towardTarget.includes(`id="${id}"`))
            found.push(`relay ${r} cut at ${at} discarded it toward ejabberd`);
          if (cut.towardClient.includes(`id="${id}"`))
            found.push(`relay ${r} cut at ${at} discarded it toward the replica`);
        }
      });
      return found.join("; ") || "not in what the relays discarded";
    };
    const cutTimes = relays.map(
      (relay, r) => `relay ${r}: ${relay.cuts.map((c) => new Date(c.at).toISOString()).join(", ")}`,
    );
    const verdict = await verify(
      `link cuts (${stranded} answers stranded by a cut, ${redelivered} redelivered; cuts at ${cutTimes.join("; ")})`,
      run.ids,
      proxy,
      // While no replica is connected, ejabberd itself bounces what is sent to the domain (no route).
      { reached: ANSWERED.reached, unreached: ["auth/forbidden (no by)"] },
      services(),
      async (id) => `${await recordOf(id)}; ${discardedBy(id)}`,
      redelivered,
    );
    assertNoProblems(verdict);
    assert.ok(run.ids.length > 500, `only ${run.ids.length} requests sent during the cuts`);
    for (const [i, relay] of relays.entries()) {
      assert.ok(relay.accepted >= 3, `relay ${i} relayed ${relay.accepted} connections`);
    }
    for (const { service, port } of linked) {
      await ready(port);
      assert.ok(service.output().includes("lost the XMPP connection"), `replica on :${port} lost no link`);
    }
    // Settled: both replicas serve every request again, exactly once.
    const again = drive(requesters, proxy, "after-cuts", 4, (n) => n < 400);
    await again.done;
    await sleep(500);
    for (const id of again.ids) {
      assert.equal(answers.get(id)?.length, 1, `${id}: ${answers.get(id)?.length ?? 0} answers`);
      assert.equal(kindOf(id, answers.get(id)?.[0]?.stanza as Element, proxy), "result");
    }
  });
});

describe("SIGTERM with the in-process store", { timeout: 60_000 }, () => {
  let prosody: ProsodyServer;
  let service: ServiceProcess | undefined;
  let requester: Client | undefined;
  let implementing: Client | undefined;
  let httpPort: number;

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    httpPort = await freePort();
    service = startService({
      XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
      XMPP_DOMAIN: prosody.componentDomain,
      XMPP_PASSWORD: prosody.componentSecret,
      TARGET_JID: `impl@${prosody.domain}`,
      IQ_TIMEOUT_MS: "30000",
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "debug",
    });
    implementing = await connectImplementing(prosody, "r1");
    requester = await connectUser(prosody, "requester", "pending");
    recordAnswers(requester);
    await ready(httpPort);
    await servedBy(requester, prosody.componentDomain, ["r1"]);
  });

  after(async () => {
    for (const client of [requester, implementing]) await stopClient(client);
    await service?.stop();
    await prosody?.stop();
  });

  it("answers every pending request with remote-server-timeout before it exits", async () => {
    const proxy = prosody.componentDomain;
    const client = requester as Client;
    const running = service as ServiceProcess;
    const ids = Array.from({ length: 20 }, (_, i) => `term-${i}`);
    for (const id of ids) {
      sent.set(id, { at: Date.now(), payload: "" });
      await client.send(xml("iq", { type: "get", id, to: proxy }, xml("echo", { xmlns: NS_SILENT }, id)));
    }
    await until("the 20 requests at the implementing client", () =>
      ids.every((id) => receivedBy.has(id)) ? true : undefined,
    );
    assert.equal(answeredCount(ids), 0, "nothing answered before the SIGTERM");
    const started = Date.now();
    running.child.kill("SIGTERM");
    const code = await running.exited;
    const exitedAt = Date.now();
    // The answers were written before the component left; give the server a moment to deliver them.
    await until("20 answers", () => (answeredCount(ids) === ids.length ? true : undefined), 3000).catch(
      () => {},
    );
    await sleep(500);
    const lastAnswer = Math.max(0, ...ids.flatMap((id) => (answers.get(id) ?? []).map((a) => a.at)));
    const lag =
      lastAnswer === 0
        ? "none"
        : lastAnswer > exitedAt
          ? `${lastAnswer - exitedAt} ms after the exit`
          : `${exitedAt - lastAnswer} ms before the exit`;
    const verdict = await verify(
      `SIGTERM: exit code ${code} after ${exitedAt - started} ms; last answer ${lag}`,
      ids,
      proxy,
      { reached: ["wait/remote-server-timeout"], unreached: [] },
      [running],
    );
    assertNoProblems(verdict);
    assert.equal(answeredCount(ids), ids.length);
    assert.equal(code, 0);
    assert.ok(exitedAt - started < 10_000, `took ${exitedAt - started} ms (SHUTDOWN_GRACE_MS 10 s)`);
    assert.ok(lastAnswer - exitedAt < 1000, `an answer came ${lastAnswer - exitedAt} ms after the exit`);
    assert.match(running.output(), /answered the requests still pending before stopping/);
  });
});
