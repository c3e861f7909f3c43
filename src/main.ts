/**
 * Wiring only: XMPP in -> routing decision -> store -> XMPP out.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { createHttpServer } from "./http/server.js";
import { createJat } from "./jat/token.js";
import { createMetrics } from "./metrics.js";
import { createAnswerer } from "./proxy/answer.js";
import { createForwarder } from "./proxy/forward.js";
import { createInbound } from "./proxy/inbound.js";
import { createPresence } from "./proxy/presence.js";
import { createReplier } from "./proxy/reply.js";
import { createResender } from "./proxy/resend.js";
import { createSweeper } from "./proxy/sweeper.js";
import { createTracker, NO_TRACKER } from "./proxy/tracker.js";
import { createBalancer } from "./routing/balance.js";
import { createKeys } from "./store/keys.js";
import { createMemoryStore } from "./store/memory.js";
import { createRedisStore } from "./store/redis.js";
import { createRedisClient, onRedisReconnect } from "./store/redis-client.js";
import { type Store, storeTtls } from "./store/types.js";
import { type ConnectionState, createXmppConnection } from "./xmpp/connection.js";
import { normalizeBare } from "./xmpp/jid.js";

export interface Service {
  /** The bound HTTP port. */
  readonly httpPort: number;
  stop(): Promise<void>;
}

export async function startService(
  config: Config,
  log: Logger,
  onFatal: (code: number) => void,
): Promise<Service> {
  const { domain } = config.xmpp;
  const target = normalizeBare(config.target);
  const clock = Date.now;
  const { store, onStoreReconnect } = createStore(config, log);
  const jat = createJat({ domain, keys: config.jatKeys });
  let connectionState: () => ConnectionState = () => "down";
  const metrics = createMetrics({
    onlineResources: async () => (await store.onlineResources()).length,
    pendingRequests: () => store.pendingCount(),
    connectionState: () => {
      const state = connectionState();
      return state === "connected" || state === "standby" ? state : "down";
    },
  });

  let sendStanza: (stanza: Element) => boolean = () => false;
  const send = (stanza: Element) => sendStanza(stanza);
  const answerError = createAnswerer({ send, domain, metrics });
  // The fallback for a store that loses its data (Redis). Long enough for the shared sweep to answer first.
  const tracker = !config.redis
    ? NO_TRACKER
    : createTracker({
        store,
        answerError,
        clock,
        graceMs: 2 * config.sweepIntervalMs + 1_000,
        rememberMs: config.iqTimeoutMs + 2 * config.sweepIntervalMs + 1_000,
        // Replicas reconnect to Redis at most 2 s apart (retry cap): wait for all of them to restore.
        settleMs: 5_000,
        log,
      });
  const balance = createBalancer(config.balance);
  const resend = createResender({ jat, send, domain, target, metrics, log });
  const presence = createPresence({
    store,
    send,
    clock,
    domain,
    target,
    log,
    pick: balance,
    resend,
    confirmMs: config.resourceConfirmMs,
  });
  const inbound = createInbound({
    ctx: { domain, target },
    forward: createForwarder({
      store,
      jat,
      send,
      answerError,
      pick: balance,
      clock,
      domain,
      target,
      timeoutMs: config.iqTimeoutMs,
      log,
      metrics,
      tracker,
    }),
    reply: createReplier({
      timeoutMs: config.iqTimeoutMs,
      canSend: () => connectionState() === "connected",
      store,
      jat,
      send,
      clock,
      log,
      metrics,
      pick: balance,
      resend,
      tracker,
      onBounce: () => presence.probe(),
    }),
    presence,
    answerError,
    log,
  });

  const connection = createXmppConnection({
    ...config.xmpp,
    backoff: config.reconnect,
    log,
    onStanza: inbound,
    onFatal: () => onFatal(2),
  });
  sendStanza = connection.send;
  connectionState = () => connection.state;
  let connections = 0;
  connection.on("online", () => {
    if (connections++ > 0) metrics.reconnects.inc();
    void presence.onOnline();
  });
  // A Redis that comes back may have lost the resource set: ask the server again.
  onStoreReconnect(() => {
    tracker.checkEpoch().catch(() => {});
    if (connection.state === "connected") void presence.onOnline();
  });

  const sweeper = createSweeper({
    store,
    answerError,
    canSend: () => connection.state === "connected",
    clock,
    intervalMs: config.sweepIntervalMs,
    log,
    tracker,
  });

  let stopped = false;
  const http = createHttpServer({
    port: config.httpPort,
    metrics: metrics.registry,
    readiness: async ({ standbyIsReady }) => {
      if (stopped) return { ready: false, reason: "shutting down" };
      const acceptable =
        connection.state === "connected" || (standbyIsReady && connection.state === "standby");
      if (!acceptable) return { ready: false, reason: `xmpp ${connection.state}` };
      try {
        await store.ping();
        return { ready: true };
      } catch {
        return { ready: false, reason: "store unavailable" };
      }
    },
    log,
  });
  const httpPort = await http.listen();

  log.info(
    {
      domain,
      target,
      service: config.xmpp.service,
      store: config.redis ? `redis ${config.redis.mode}` : "memory",
      jatKeyIds: config.jatKeys.map((key) => key.kid),
      iqTimeoutMs: config.iqTimeoutMs,
    },
    "starting",
  );
  if (config.jatKeysGenerated)
    log.info("no JAT_KEYS given: tokens are signed with a random key of this process");
  sweeper.start();
  // XMPP in -> store: presence that arrives before the store answers would be lost, so connect after it does.
  void waitForStore(store, log, () => stopped)
    .then(() => tracker.checkEpoch())
    .catch(() => {})
    .then(() => stopped || connection.start());

  return {
    httpPort,
    /**
     * Graceful stop: readiness turns 503, the component leaves the server (which balances to the other
     * replicas, or lets a Prosody standby take over), handlers finish their store work, Redis closes. What this
     * replica forwarded stays in the store: the others route its replies and sweep its timeouts.
     */
    async stop() {
      stopped = true;
      sweeper.stop();
      presence.stop();
      await connection.stop();
      await inbound.drained();
      await http.close();
      await store.close();
    },
  };
}

async function waitForStore(store: Store, log: Logger, cancelled: () => boolean): Promise<void> {
  for (let attempt = 0; !cancelled(); attempt++) {
    try {
      await store.ping();
      return;
    } catch (err) {
      if (attempt === 5)
        log.warn({ err: { message: (err as Error).message } }, "waiting for the store before connecting");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function createStore(
  config: Config,
  log: Logger,
): { store: Store; onStoreReconnect: (fn: () => void) => void } {
  if (!config.redis)
    return { store: createMemoryStore({ ttls: storeTtls(config.iqTimeoutMs) }), onStoreReconnect: () => {} };
  // Single, Cluster or Sentinel: the same store, every key of the domain in one slot.
  const redis = createRedisClient({ ...config.redis, log });
  return {
    store: createRedisStore({
      redis,
      keys: createKeys(config.redis.prefix, config.xmpp.domain),
      ttls: storeTtls(config.iqTimeoutMs),
    }),
    onStoreReconnect: (fn) => onRedisReconnect(redis, fn),
  };
}
