/**
 * Wiring only: XMPP in -> routing decision -> store -> XMPP out.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import { createOutbox } from "./delivery/outbox.js";
import { createHttpServer } from "./http/server.js";
import { createJat } from "./jat/token.js";
import { createMetrics } from "./metrics.js";
import { createHandlers } from "./proxy/handlers.js";
import { createAnswerer } from "./proxy/send-error.js";
import { createSweeper } from "./proxy/sweeper.js";
import { createTracker, NO_TRACKER } from "./recovery/tracker.js";
import { openStore, waitForStore } from "./store/open.js";
import { storeTtls } from "./store/types.js";
import { createTurnWrites } from "./util/turn-writes.js";
import { type ConnectionState, createXmppConnection, type XmppConnection } from "./xmpp/connection.js";
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
  const ttls = storeTtls(config.iqTimeoutMs);
  log.info(
    {
      domain,
      target,
      server: config.xmpp.service,
      store: config.redis ? `redis ${config.redis.mode}` : "memory",
      jatKeyIds: config.jatKeys.map((key) => key.kid),
      iqTimeoutMs: config.iqTimeoutMs,
    },
    "starting",
  );
  // One socket write per turn for the XMPP link and each Redis connection (util/turn-writes.ts).
  const turnWrites = createTurnWrites();
  const opened = openStore(config, log, turnWrites);
  const { store } = opened;
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
  let writeBatch: XmppConnection["writeBatch"] = () => Promise.resolve(false);
  let whenIdle: XmppConnection["whenIdle"] = () => null;
  const send = (stanza: Element) => sendStanza(stanza);
  const answerError = createAnswerer({ send, domain, metrics });
  const outbox = createOutbox({
    store,
    writeBatch: (stanzas) => writeBatch(stanzas),
    whenIdle: () => whenIdle(),
    flushTurn: turnWrites.flush,
    connected: () => connectionState() === "connected",
    lastInput: () => lastInput,
    clock,
    leaseMs: ttls.answerLeaseMs,
    log,
    metrics,
  });
  /** When the last stanza arrived (the outbox's measure of how long the link was known alive). */
  let lastInput = 0;
  // Set once presence exists: a data loss makes every replica learn the target's presence again.
  let relearnPresence = () => {};
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
        onDataLoss: () => {
          metrics.dataLosses.inc();
          relearnPresence();
        },
        log,
      });
  const { inbound, presence, messages } = createHandlers({
    config,
    store,
    jat,
    send,
    answerError,
    outbox,
    tracker,
    clock,
    ttls,
    domain,
    target,
    connected: () => connectionState() === "connected",
    log,
    metrics,
  });
  relearnPresence = () => {
    if (connectionState() === "connected") void presence.onOnline();
  };

  const connection = createXmppConnection({
    ...config.xmpp,
    backoff: config.reconnect,
    log,
    turnWrites,
    onStanza: (stanza) => {
      lastInput = clock();
      inbound(stanza);
    },
    onFatal: () => onFatal(2),
  });
  sendStanza = connection.send;
  writeBatch = connection.writeBatch;
  whenIdle = connection.whenIdle;
  connectionState = () => connection.state;
  let connections = 0;
  connection.on("offline", () => outbox.onDisconnect());
  connection.on("online", () => {
    if (connections++ > 0) metrics.reconnects.inc();
    outbox.onOnline();
    void presence.onOnline();
  });
  // A Redis that comes back may have lost the resource set: ask the server again.
  opened.onReconnect(() => {
    tracker.checkEpoch().catch(() => {});
    if (connection.state === "connected") void presence.onOnline();
  });

  const sweeper = createSweeper({
    store,
    outbox,
    canSend: () => connection.state === "connected",
    clock,
    domain,
    intervalMs: config.sweepIntervalMs,
    log,
    metrics,
    tracker,
  });

  let stopped = false;
  const http = createHttpServer({
    port: config.httpPort,
    host: config.httpHost,
    metrics: metrics.registry,
    readiness: async ({ standbyIsReady }) => {
      if (stopped) return { ready: false, reason: "shutting down" };
      // The store first: while it is unavailable the XMPP connection waits for it (or has lost its use).
      try {
        await store.ping();
      } catch (err) {
        const problem = opened.problem()?.words ?? (err as Error).message;
        return { ready: false, reason: `store unavailable: ${problem}` };
      }
      const acceptable =
        connection.state === "connected" || (standbyIsReady && connection.state === "standby");
      if (!acceptable) return { ready: false, reason: `xmpp ${connection.state}` };
      return { ready: true };
    },
    log,
  });
  const httpPort = await http.listen();

  if (config.jatKeysGenerated)
    log.info("no JAT_KEYS given: tokens are signed with a random key of this process");
  sweeper.start();
  // Kept messages whose lifetime ended are answered by whichever replica looks first (each is taken once).
  const expiry = setInterval(() => {
    if (connection.state === "connected")
      messages
        .expireKept()
        .catch((err: unknown) => log.debug({ err }, "kept messages not expired: store unavailable"));
  }, config.sweepIntervalMs);
  expiry.unref();
  // XMPP in -> store: presence that arrives before the store answers would be lost, so connect after it does.
  void waitForStore(opened, log, () => stopped).then(async (outcome) => {
    if (outcome === "cancelled") return;
    if (outcome !== "ready") {
      // A configuration problem: restarting with the same settings cannot help.
      log.fatal(
        { problem: outcome.refused.words, setting: opened.credentialsSetting },
        `the store refused the credentials: check ${opened.credentialsSetting}`,
      );
      onFatal(2);
      return;
    }
    await tracker.checkEpoch().catch(() => {});
    if (!stopped) connection.start();
  });

  return {
    httpPort,
    /**
     * Graceful stop: readiness turns 503 and the sweep stops. With Redis, the component leaves the server
     * (which balances to the other replicas, or lets a Prosody standby take over), handlers finish their store
     * work and the answers written are acknowledged: what this replica forwarded stays in the store, and the
     * others route its replies and sweep its timeouts. With the in-process store nobody is left to answer:
     * every request still pending is answered (`wait/remote-server-timeout`) before the component leaves.
     */
    async stop() {
      stopped = true;
      clearInterval(expiry);
      await sweeper.stop();
      presence.stop();
      if (!config.redis) {
        await inbound.drained();
        const answered = await sweeper.answerAll(config.iqTimeoutMs + 1_000).catch(() => 0);
        if (answered > 0) log.info({ answered }, "answered the requests still pending before stopping");
        await outbox.drained();
      }
      await connection.stop();
      await inbound.drained();
      await outbox.drained();
      await http.close();
      await store.close();
    },
  };
}
