/**
 * Capacity mode: how many proxied requests one replica handles per core, with no real XMPP server in the way.
 *
 * The fake XMPP server of bench/fake-server.ts takes the service's component connection, sends the presence
 * of impl@localhost/r1 and /r2, and plays both sides: many fake requesters send IQ requests to the service's
 * domain, each keeping a few in flight, and every request the service forwards to a resource is answered at
 * once. The result is the service's CPU time per request, and requests per second per core (1 / that).
 * Two resources are online so that a balancing strategy (BALANCE, set through `env`) has a choice to make;
 * the requests forwarded to each during the window are counted (Measurement.byResource).
 *
 * Variants: several replicas on one Redis (`replicas`: the domain's ceiling, read as requests per second per
 * Redis core), and an open load at a fixed rate (`rate`: the cost of a request when each one wakes the
 * service on its own, against the cost at capacity).
 *
 * The same fake server and load also measure the baselines (`component`): the minimal stateless component
 * (bench/minimal-component.ts), and the Redis floor (the same with a SET per request and a GETDEL per answer),
 * so that the service's CPU and its Redis's CPU per request at capacity can be set against theirs.
 */
import { until } from "../test/integration/helpers.js";
import { onCleanup } from "./cleanup.js";
import { DOMAIN, RESOURCES, startFakeServer, TARGET } from "./fake-server.js";
import { type Measurement, measure } from "./measure.js";
import type { RedisProbe } from "./redis-stats.js";
import { startMinimal, startReplica, sumHeaps } from "./services.js";

export interface CapacityOptions {
  redis: { url: string; probe: RedisProbe; pids: number[] } | null;
  warmupSeconds: number;
  seconds: number;
  /** Fake requesters, and requests in flight per requester. */
  requesters: number;
  window: number;
  /** Further settings of the replica, e.g. { BALANCE: "sticky" }. */
  env?: Record<string, string>;
  /**
   * What connects to the fake server: a replica of the service (the default), the minimal stateless component,
   * or the Redis floor (the minimal component with a SET and a GETDEL per request on `redis`).
   */
  component?: "service" | "minimal" | "floor";
  /** What the fake requesters send (FakeServerOptions.stanza); IQ requests by default. */
  stanza?: "iq" | "message" | "request-out";
  /** Replicas of the service connected to the fake server at once (the service only; default 1). */
  replicas?: number;
  /** Requests per second of an open load, spread evenly (FakeServerOptions.rate); default: closed load. */
  rate?: number;
}

/** One capacity measurement: fresh replicas (or a baseline component) against a fresh fake server. */
export async function runCapacity(opts: CapacityOptions): Promise<Measurement> {
  const kind = opts.component ?? "service";
  if (kind === "floor" && !opts.redis) throw new Error("the Redis floor needs Redis");
  const replicas = kind === "service" ? (opts.replicas ?? 1) : 1;
  const fake = await startFakeServer({
    requesters: opts.requesters,
    window: opts.window,
    stanza: opts.stanza ?? "iq",
    components: replicas,
    rate: opts.rate ?? null,
  });
  const closeFake = onCleanup("fake XMPP server", () => fake.close());
  try {
    if (opts.redis) await opts.redis.probe.flush();
    const xmpp = {
      componentPort: fake.port,
      componentDomain: DOMAIN,
      componentSecret: fake.secret,
      target: TARGET,
    };
    const started: Array<{ pid: number; heapUsed?: () => Promise<number | null>; stop(): Promise<void> }> =
      [];
    try {
      for (let i = 0; i < replicas; i++) {
        started.push(
          kind === "service"
            ? await startReplica(xmpp, opts.redis?.url ?? null, opts.env)
            : await startMinimal(
                xmpp,
                RESOURCES,
                "plain",
                kind === "floor" ? (opts.redis?.url ?? null) : null,
              ),
        );
      }
    } catch (err) {
      await Promise.all(started.map((replica) => replica.stop()));
      throw err;
    }
    // The floor runs no script: every command it sends is a round trip (SET is also called by the scripts).
    const redis = opts.redis;
    const probe: RedisProbe | null =
      redis === null
        ? null
        : kind === "floor"
          ? { ...redis.probe, diff: (before, after) => redis.probe.diff(before, after, { noScripts: true }) }
          : redis.probe;
    try {
      await withTimeout(fake.online, 15_000, "the service did not connect to the fake server");
      // Presence is stored asynchronously: wait until a request is forwarded and answered.
      await until(
        "the service to forward through the fake server",
        async () => {
          const type = await withTimeout(fake.ping(), 1000, "no answer").catch(() => "");
          return type === "result" || undefined;
        },
        15_000,
      );
      return await measure({
        componentPids: started.map((replica) => replica.pid),
        serverPids: [],
        redisPids: opts.redis?.pids ?? [],
        redis: probe,
        ...(started.every((replica) => replica.heapUsed) ? { heapUsed: () => sumHeaps(started) } : {}),
        warmupSeconds: opts.warmupSeconds,
        seconds: opts.seconds,
        start: () => fake.startLoad(),
        mark: async () => fake.mark(),
        stop: async () => {
          const window = await fake.stop(5000);
          return { ...window, latency: window.latency.summary(), loadCpuSeconds: null };
        },
      });
    } finally {
      await Promise.all(started.map((replica) => replica.stop()));
    }
  } finally {
    await closeFake();
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
