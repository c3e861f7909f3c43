/**
 * Messages in both directions (RFC 6121 section 5), on the same translated addresses as IQ requests:
 * - in: a requester's message to the domain goes to one online resource of the implementing account, from
 *   `domain/<token>`, keeping id, type, xml:lang and every child; a requester's messages stay with one resource
 *   while it is online and takes new work (sticky, whatever BALANCE says, with the same presence rules as requests:
 *   routing/choose.ts), so a conversation is not split across resources;
 * - out: a message of a resource to `domain/<token>` goes to the requester the token names, from the domain;
 *   the store remembers which resource sent it, so that an error the requester's side returns for it (a bounce)
 *   goes back to that resource, from `domain/<token>`.
 * Messages are not answered (RFC 6120 section 8.3.1: an error is never answered); a message that cannot be
 * forwarded gets a message error from the address it was sent to, once.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import { type Candidate, choose } from "../routing/choose.js";
import type { Decision } from "../routing/classify.js";
import type { Store } from "../store/types.js";
import { ERRORS, type ErrorName, errorReply } from "../xmpp/errors.js";
import { resourceOf } from "../xmpp/jid.js";
import { parse, readdress } from "../xmpp/stanzas.js";
import type { Send } from "./send-error.js";

type In = Extract<Decision, { kind: "message-in" }>;
type Out = Extract<Decision, { kind: "message-out" }>;
type Bounce = Extract<Decision, { kind: "message-bounce" }>;

export interface MessengerDeps {
  store: Store;
  jat: Jat;
  send: Send;
  domain: string;
  target: string;
  /** How long a sent message's resource is remembered for its bounce. */
  rememberMs: number;
  /** Messages kept while no resource is online: MAX_QUEUED_*, MESSAGE_LIFETIME_MS. */
  queue: { perRequester: number; total: number; lifetimeMs: number; maxBytes: number };
  clock: () => number;
  /** PRIORITY_ROUTING=highest: messages too go to the highest priority only (RFC 6121 section 8.5.2.1.1). */
  highest: boolean;
  log: Logger;
  metrics: Metrics;
}

/** Queued messages taken per store call. */
const BATCH = 100;

export function createMessenger(deps: MessengerDeps) {
  const { store, jat, send, domain, target, rememberMs, log, metrics, clock } = deps;
  const queueLimits = {
    perRequester: deps.queue.perRequester,
    total: deps.queue.total,
    ttlMs: deps.queue.lifetimeMs + 60_000,
  };

  const online = async () => (await store.routingView(clock())).candidates;

  /**
   * Sends a requester's message to the resource its requester sticks to; false when no resource takes new work
   * (none online, or all with negative priority: RFC 6121 section 8.5.2.1.1 treats that as offline).
   */
  function forwardTo(
    stanza: Element,
    requester: string,
    token: string,
    candidates: readonly Candidate[],
  ): boolean {
    const choice = choose({
      candidates,
      policy: { strategy: "sticky", highest: deps.highest },
      pick: 0,
      requester,
      namespace: "",
      load: () => 0,
      rotation: () => 1,
    });
    if (choice.kind === "none") return false;
    const { resource } = choice;
    log.debug({ requester, id: stanza.attrs.id, resource }, "message forwarded");
    metrics.messagesIn.inc();
    send(readdress(stanza, `${target}/${resource}`, `${domain}/${token}`));
    return true;
  }

  /** No resource online: the message waits in the store for one, within the bounds (README). */
  async function keep(stanza: Element, requester: string, to: string, token: string): Promise<void> {
    const serialized = stanza.toString();
    if (Buffer.byteLength(serialized) > deps.queue.maxBytes) return refuse(stanza, "messageTooLarge");
    const kept = { queuedAt: clock(), requester, to, stanza: serialized };
    switch (await store.queueMessage(kept, queueLimits)) {
      case "queued":
        log.debug({ requester, id: stanza.attrs.id }, "message kept until a resource comes online");
        metrics.messagesQueued.inc();
        return;
      case "online":
        // A resource came online meanwhile: forward it after all.
        if (!forwardTo(stanza, requester, token, await online())) refuse(stanza, "queueFull");
        return;
      default:
        refuse(stanza, "queueFull");
    }
  }
  /** A message error to the sender of `stanza`, from the address it wrote to (RFC 6120 section 8.3.1). */
  function refuse(stanza: Element, error: ErrorName): void {
    metrics.messagesRefused.inc({ reason: error });
    const { id, from = "", to = domain } = stanza.attrs;
    send(errorReply({ name: "message", id, from, to }, ERRORS[error], domain));
  }

  return {
    refuse,

    async in(stanza: Element, { requester, to }: In): Promise<void> {
      // `domain/<token>` is the address of a requester: only the implementing account writes to those.
      const addressed = resourceOf(to);
      if (addressed !== "" && jat.verify(addressed) !== null) return refuse(stanza, "notYours");
      const token = jat.sign(requester);
      if (token === null) return refuse(stanza, "requesterTooLong");
      if (!forwardTo(stanza, requester, token, await online())) await keep(stanza, requester, to, token);
    },

    /** A resource is online: the kept messages go to it (to their requesters' resources), oldest first. */
    async deliverKept(): Promise<void> {
      const resources = await online();
      if (!resources.some((c) => c.priority >= 0)) return;
      for (;;) {
        const batch = await store.takeMessages(BATCH);
        for (const kept of batch) {
          const stanza = parse(kept.stanza);
          const token = jat.sign(kept.requester);
          if (stanza === null || token === null) continue;
          metrics.messagesDelivered.inc();
          forwardTo(stanza, kept.requester, token, resources);
        }
        if (batch.length < BATCH) return;
      }
    },

    /** Kept messages whose lifetime is over: each sender gets one error, from the address it wrote to. */
    async expireKept(): Promise<void> {
      const before = clock() - deps.queue.lifetimeMs;
      for (;;) {
        const batch = await store.takeMessages(BATCH, before);
        for (const kept of batch) {
          metrics.messagesRefused.inc({ reason: "messageExpired" });
          const id = parse(kept.stanza)?.attrs.id;
          send(
            errorReply(
              { name: "message", id, from: kept.requester, to: kept.to },
              ERRORS.messageExpired,
              domain,
            ),
          );
        }
        if (batch.length < BATCH) return;
      }
    },

    async out(stanza: Element, { token, resource }: Out): Promise<void> {
      const requester = jat.verify(token);
      if (requester === null) {
        // The implementing client must learn that this address is not one the proxy gave out.
        log.debug(
          { resource, token: token.slice(0, 64) },
          "message to an address whose token does not verify",
        );
        return refuse(stanza, "badToken");
      }
      const { id } = stanza.attrs;
      if (id !== undefined) {
        // Remembered before it leaves: a bounce can come back faster than a store write after the send.
        await store
          .rememberMessage(requester, id, resource, rememberMs)
          .catch((err: unknown) =>
            log.warn({ err, requester, id }, "store unavailable: a bounce will not be returned"),
          );
      }
      log.debug({ requester, id, resource }, "message sent to a requester");
      metrics.messagesOut.inc();
      send(readdress(stanza, requester, domain));
    },

    /** A message error from a requester's side: returned to the resource whose message it answers, if any. */
    async bounce(stanza: Element, { requester, id }: Bounce): Promise<void> {
      const resource = await store.takeMessageSender(requester, id);
      const token = resource === null ? null : jat.sign(requester);
      if (resource === null || token === null) {
        log.debug({ requester, id }, "message error for no message of the implementing client: dropped");
        return;
      }
      log.debug({ requester, id, resource }, "message error returned to the resource that sent the message");
      metrics.messageErrorsReturned.inc();
      send(readdress(stanza, `${target}/${resource}`, `${domain}/${token}`));
    },
  };
}

export type Messenger = ReturnType<typeof createMessenger>;
