/**
 * Messages in both directions (RFC 6121 section 5), on the same translated addresses as IQ requests:
 * - in: a requester's message to the domain goes to one online resource of the implementing account, from
 *   `domain/<token>`, keeping id, type, xml:lang and every child; a requester's messages stay with one resource
 *   while it is online (routing/sticky.ts), so a conversation is not split across resources;
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
import type { Decision } from "../routing/classify.js";
import { stickyResource } from "../routing/sticky.js";
import type { Store } from "../store/types.js";
import { ERRORS, type ErrorName, errorReply } from "../xmpp/errors.js";
import { resourceOf } from "../xmpp/jid.js";
import { readdress } from "../xmpp/stanzas.js";
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
  log: Logger;
  metrics: Metrics;
}

export function createMessenger({
  store,
  jat,
  send,
  domain,
  target,
  rememberMs,
  log,
  metrics,
}: MessengerDeps) {
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
      const [approved, resources] = await Promise.all([
        store.subscriptionApproved(),
        store.onlineResources(),
      ]);
      const resource = stickyResource(requester, resources);
      if (resource === null) return refuse(stanza, approved ? "noResource" : "presenceUnknown");
      log.debug({ requester, id: stanza.attrs.id, resource }, "message forwarded");
      metrics.messagesIn.inc();
      send(readdress(stanza, `${target}/${resource}`, `${domain}/${token}`));
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
