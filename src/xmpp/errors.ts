/**
 * Every stanza error this service sends, in one table (RFC 6120 section 8.3). The README's error table is
 * written from this one.
 */

import { xml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";

export const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

export interface StanzaErrorSpec {
  /** RFC 6120 section 8.3.2: how the requester should react. */
  readonly type: "cancel" | "wait" | "modify" | "auth";
  /** RFC 6120 section 8.3.3 defined condition. */
  readonly condition: string;
  readonly text: string;
}

export const ERRORS = Object.freeze({
  /** No resource of the implementing account is online (as mod_client_proxy answers). */
  noResource: {
    type: "cancel",
    condition: "service-unavailable",
    text: "No resource of the implementing client is online",
  },
  /**
   * Resources are online, but none takes new requests: each has negative priority (RFC 6121 section 4.7.2.3).
   */
  noEligibleResource: {
    type: "cancel",
    condition: "service-unavailable",
    text: "No resource of the implementing client takes new requests now",
  },
  /**
   * XEP-0115 and XEP-0030: no online resource lists the namespace of the request's payload among its features.
   * The implementing client is not disturbed.
   */
  noCapableResource: {
    type: "cancel",
    condition: "service-unavailable",
    text: "No resource of the implementing client supports this request",
  },
  /** The proxy does not know yet which resources are online (starting, or relearning after data loss). */
  presenceUnknown: {
    type: "wait",
    condition: "service-unavailable",
    text: "The proxy is learning which resources of the implementing client are online; retry shortly",
  },
  /** The implementing client did not answer within IQ_TIMEOUT_MS (as Prosody's component bounce). */
  timeout: {
    type: "wait",
    condition: "remote-server-timeout",
    text: "The implementing client did not answer in time",
  },
  /** The shared store could not be reached: nothing was forwarded, retry later. */
  storeUnavailable: {
    type: "wait",
    condition: "internal-server-error",
    text: "The proxy's request store is unavailable; retry later",
  },
  /** A request with this id from this requester is still pending. */
  duplicateId: {
    type: "cancel",
    condition: "conflict",
    text: "A request with this id from this address is already pending",
  },
  /** The requester's full JID is too long to be carried in a token. */
  requesterTooLong: {
    type: "cancel",
    condition: "not-acceptable",
    text: "The requesting address is too long to be translated by the proxy",
  },
  /** The implementing account itself sent a request to the proxy. */
  requestFromTarget: {
    type: "cancel",
    condition: "feature-not-implemented",
    text: "The implementing client cannot send requests through the proxy",
  },
  /** The implementing account wrote to the bare domain, or from its bare JID: nobody to forward to. */
  messageFromTarget: {
    type: "modify",
    condition: "jid-malformed",
    text: "Messages from the implementing client go to the address of a requester, domain/<token>",
  },
  /** The implementing account wrote to `domain/<token>` with a token that does not verify. */
  badToken: {
    type: "modify",
    condition: "jid-malformed",
    text: "This address is not one the proxy gave out (the token does not verify)",
  },
  /** No resource online and the queue's bound (per requester or in total) is reached: not kept. */
  queueFull: {
    type: "wait",
    condition: "resource-constraint",
    text: "Too many messages are waiting for the implementing client to come online; retry later",
  },
  /** Kept while no resource was online, and none came within MESSAGE_LIFETIME_MS. */
  messageExpired: {
    type: "cancel",
    condition: "service-unavailable",
    text: "No resource of the implementing client came online in time to receive this message",
  },
  /** No resource online and the message is larger than MAX_QUEUED_MESSAGE_BYTES: not kept. */
  messageTooLarge: {
    type: "modify",
    condition: "not-acceptable",
    text: "The message is too large to be kept until the implementing client comes online",
  },
  /** A requester wrote to an address of another requester: only the implementing client may. */
  notYours: {
    type: "cancel",
    condition: "forbidden",
    text: "Only the implementing client may write to the addresses of requesters",
  },
  /** The requester has MAX_PENDING_PER_REQUESTER requests pending already: nothing was forwarded. */
  requesterLimit: {
    type: "wait",
    condition: "resource-constraint",
    text: "Too many requests from this address are pending; retry when some are answered",
  },
  /** MAX_PENDING_TOTAL requests are pending: nothing was forwarded. */
  totalLimit: {
    type: "wait",
    condition: "resource-constraint",
    text: "The proxy has too many requests pending; retry later",
  },
  /** REQUESTER_ALLOW / REQUESTER_DENY refuse this requester. */
  forbidden: {
    type: "cancel",
    condition: "forbidden",
    text: "This address may not use the service",
  },
  /** The IQ id is longer than MAX_ID_LENGTH. */
  idTooLong: {
    type: "modify",
    condition: "bad-request",
    text: "The request id is too long for the proxy",
  },
  /** The payload cannot be handled (e.g. nested too deeply to serialize). */
  unreadablePayload: {
    type: "modify",
    condition: "bad-request",
    text: "The request's payload cannot be handled by the proxy",
  },
  /** RFC 6120 section 8.2.3: an IQ get/set must carry an id and exactly one child element. */
  badRequest: {
    type: "modify",
    condition: "bad-request",
    text: "An IQ request needs an id, a type of get or set, and exactly one child element",
  },
} satisfies Record<string, StanzaErrorSpec>);

export type ErrorName = keyof typeof ERRORS;

/**
 * The error answer to a stanza (RFC 6120 section 8.3.1): same name and id, addresses swapped, type "error",
 * the `by` attribute naming the proxy that generated it.
 */
export function errorReply(
  request: { name: string; id: string | undefined; from: string; to: string },
  spec: StanzaErrorSpec,
  by: string,
): Element {
  return xml(
    request.name,
    { type: "error", id: request.id, to: request.from, from: request.to },
    xml(
      "error",
      { type: spec.type, by },
      xml(spec.condition, { xmlns: NS_STANZAS }),
      xml("text", { xmlns: NS_STANZAS, "xml:lang": "en" }, spec.text),
    ),
  );
}
