/**
 * The proxy's stanza handlers, built from the configuration: capabilities, presence (the target's and the
 * service's own), messages, requests forwarded and their replies, requests out, and the inbound dispatch that
 * hands each stanza to one of them.
 */
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { Outbox } from "../delivery/outbox.js";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Tracker } from "../recovery/tracker.js";
import type { Store, StoreTtls } from "../store/types.js";
import { createCapabilities } from "./capabilities.js";
import { createForwarder } from "./forward.js";
import { createInbound } from "./inbound.js";
import { createMessenger } from "./messages.js";
import { createPresence } from "./presence.js";
import { createRequestsOut } from "./requests-out.js";
import { createResender } from "./resend.js";
import { createReplier } from "./route-reply.js";
import type { AnswerError, Send } from "./send-error.js";
import { createServicePresence } from "./service-presence.js";

export interface HandlersDeps {
  config: Config;
  store: Store;
  jat: Jat;
  send: Send;
  answerError: AnswerError;
  outbox: Outbox;
  tracker: Tracker;
  clock: () => number;
  ttls: StoreTtls;
  domain: string;
  /** The implementing account's bare JID, normalized. */
  target: string;
  /** Whether the XMPP connection is connected right now (neither down nor standing by). */
  connected: () => boolean;
  log: Logger;
  metrics: Metrics;
}

export function createHandlers({
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
  connected,
  log,
  metrics,
}: HandlersDeps) {
  /** The random part of balancing decisions (BALANCE=random; ties); the store applies it (routing/choose.ts). */
  const pick = Math.random;
  const resend = createResender({ jat, send, domain, target, metrics, log });
  const admission = {
    allow: config.requesters.allow,
    deny: config.requesters.deny,
    maxIdLength: config.limits.idLength,
  };
  const servicePresence = createServicePresence({
    store,
    send,
    domain,
    approve: config.servicePresence.approve,
    maxSubscribers: config.servicePresence.maxSubscribers,
    admission,
    log,
    metrics,
  });
  const messages = createMessenger({
    store,
    jat,
    send,
    domain,
    target,
    rememberMs: ttls.tombstoneMs,
    queue: config.messageQueue,
    clock,
    highest: config.balance.highest,
    log,
    metrics,
  });
  const capabilities = createCapabilities({
    store,
    send,
    clock,
    domain,
    target,
    maxCached: config.caps.maxCached,
    unverifiedMs: ttls.capsUnverifiedMs,
    log,
    metrics,
  });
  const presence = createPresence({
    store,
    send,
    clock,
    domain,
    target,
    log,
    pick,
    resend,
    balance: config.balance,
    confirmMs: config.resourceConfirmMs,
    askCaps: capabilities.ask,
    // The service's presence may have changed, and kept messages may have a resource now.
    onChange: () =>
      Promise.all([
        servicePresence
          .refresh()
          .catch((err: unknown) => log.warn({ err }, "store unavailable: service presence")),
        messages
          .deliverKept()
          .catch((err: unknown) => log.warn({ err }, "store unavailable: kept messages not delivered")),
      ]).then(() => {}),
  });
  const inbound = createInbound({
    ctx: { domain, target },
    capabilities,
    caps: config.caps,
    admission,
    forward: createForwarder({
      store,
      jat,
      send,
      answerError,
      pick,
      balance: config.balance,
      capsRouting: config.caps.routing,
      clock,
      domain,
      target,
      timeoutMs: config.iqTimeoutMs,
      maxKeptPayloadBytes: config.limits.keptPayloadBytes,
      retryGraceMs: ttls.tombstoneMs / 2,
      log,
      metrics,
      tracker,
    }),
    reply: createReplier({
      timeoutMs: config.iqTimeoutMs,
      leaseMs: ttls.answerLeaseMs,
      canSend: connected,
      store,
      jat,
      outbox,
      send,
      clock,
      log,
      metrics,
      pick,
      balance: config.balance,
      resend,
      tracker,
      onBounce: () => presence.probe(),
    }),
    messages,
    requestsOut: createRequestsOut({
      store,
      jat,
      send,
      answerError,
      outbox,
      clock,
      domain,
      timeoutMs: config.iqTimeoutMs,
      retryGraceMs: ttls.tombstoneMs / 2,
      leaseMs: ttls.answerLeaseMs,
      canSend: connected,
      log,
      metrics,
    }),
    presence,
    servicePresence,
    answerError,
    log,
  });
  return { inbound, presence, messages };
}

export type Handlers = ReturnType<typeof createHandlers>;
