/**
 * What to do with a stanza addressed to the component: a pure decision, no I/O.
 *
 * RFC 6120 section 8.2.3: a get or set gets exactly one answer; a result or an error is never answered.
 */
import type { ErrorName } from "../xmpp/errors.js";
import { bareOf, domainOf, resourceOf } from "../xmpp/jid.js";
import { capsQueryOf } from "./ids.js";

export interface StanzaView {
  readonly name: string;
  readonly type: string | undefined;
  readonly id: string | undefined;
  readonly from: string | undefined;
  readonly to: string | undefined;
  /** Number of child elements (text nodes do not count). */
  readonly childElements: number;
}

export interface RoutingContext {
  /** XMPP_DOMAIN. */
  readonly domain: string;
  /** TARGET_JID, normalised bare JID of the implementing account. */
  readonly target: string;
}

export type Decision =
  /** An IQ request to forward to a resource of the implementing account. */
  | { kind: "forward"; requester: string; id: string; type: "get" | "set"; to: string }
  /** A request of a resource of the implementing account to `domain/<token>`: to the requester it names. */
  | { kind: "request-out"; token: string; resource: string; id: string; type: "get" | "set" }
  /** A requester's answer to a request of the implementing account (sent to it from the bare domain). */
  | { kind: "reply-in"; replier: string; id: string }
  /** An answer from the implementing account to a translated address `domain/<token>`. */
  | { kind: "reply"; token: string; id: string; resource: string }
  /** Answer the sender with this error, from the address it wrote to. */
  | { kind: "reject"; error: ErrorName }
  /**
   * A message from a requester to the domain (or to `domain/<resource>`, which the handler checks is not a
   * token): to one resource of the implementing account, sticky per requester.
   */
  | { kind: "message-in"; requester: string; to: string }
  /** A message from a resource of the implementing account to `domain/<token>`: to the requester it names. */
  | { kind: "message-out"; token: string; resource: string }
  /** A message error from a requester's side, maybe for a message the implementing account sent. */
  | { kind: "message-bounce"; requester: string; id: string }
  /** The answer of a resource to the proxy's disco#info query for its caps ver (XEP-0115 section 6.3). */
  | { kind: "caps-reply"; resource: string; id: string }
  /** Presence of the implementing account (RFC 6121 section 4). */
  | { kind: "target-presence"; type: string; resource: string }
  /**
   * Presence from anyone else to the domain (RFC 6121 sections 3 and 4.3): a subscription request, its
   * cancellation, or a probe of the service's presence.
   */
  | { kind: "service-presence"; type: "subscribe" | "unsubscribe" | "probe"; from: string }
  | { kind: "drop"; reason: DropReason };

export type DropReason =
  | "no-from"
  | "unknown"
  | "presence"
  | "error-message"
  | "not-for-domain"
  | "bad-answer"
  | "groupchat";

/** RFC 6121 section 5.2.2: the message types that are forwarded; `groupchat` belongs to a room, not to us. */
const MESSAGE_TYPES = new Set(["chat", "normal", "headline"]);

function classifyMessage(stanza: StanzaView, from: string, to: string, fromTarget: boolean): Decision {
  const { type, id } = stanza;
  if (type === "error") {
    // RFC 6120 section 8.3.1: never answer an error with an error; one for a message we sent goes back.
    return !fromTarget && id !== undefined
      ? { kind: "message-bounce", requester: from, id }
      : { kind: "drop", reason: "error-message" };
  }
  if (type !== undefined && !MESSAGE_TYPES.has(type)) return { kind: "drop", reason: "groupchat" };
  if (!fromTarget) return { kind: "message-in", requester: from, to };
  const token = resourceOf(to);
  const resource = resourceOf(from);
  if (token === "" || resource === "") return { kind: "reject", error: "messageFromTarget" };
  return { kind: "message-out", token, resource };
}

export function classify(stanza: StanzaView, ctx: RoutingContext): Decision {
  const { from, to } = stanza;
  if (!from || !to) return { kind: "drop", reason: "no-from" };
  if (domainOf(to) !== ctx.domain) return { kind: "drop", reason: "not-for-domain" };
  const fromTarget = bareOf(from) === ctx.target;
  switch (stanza.name) {
    case "iq":
      return classifyIq(stanza, from, to, fromTarget, ctx);
    case "message":
      return classifyMessage(stanza, from, to, fromTarget);
    case "presence":
      if (fromTarget)
        return { kind: "target-presence", type: stanza.type ?? "available", resource: resourceOf(from) };
      if (stanza.type === "subscribe" || stanza.type === "unsubscribe" || stanza.type === "probe")
        return { kind: "service-presence", type: stanza.type, from };
      return { kind: "drop", reason: "presence" };
    default:
      return { kind: "drop", reason: "unknown" };
  }
}

function classifyIq(
  stanza: StanzaView,
  from: string,
  to: string,
  fromTarget: boolean,
  ctx: RoutingContext,
): Decision {
  const { type, id } = stanza;
  const token = resourceOf(to);
  if (type === "result" || type === "error") {
    if (id === undefined || bareOf(to) !== ctx.domain) return { kind: "drop", reason: "bad-answer" };
    // A requester answers a request of the implementing account, which went to it from the bare domain.
    if (!fromTarget)
      return token === "" ? { kind: "reply-in", replier: from, id } : { kind: "drop", reason: "bad-answer" };
    const resource = resourceOf(from);
    if (resource === "") return { kind: "drop", reason: "bad-answer" };
    if (token === "")
      return capsQueryOf(id) ? { kind: "caps-reply", resource, id } : { kind: "drop", reason: "bad-answer" };
    return { kind: "reply", token, id, resource };
  }
  if ((type !== "get" && type !== "set") || !id || stanza.childElements !== 1) {
    return { kind: "reject", error: "badRequest" };
  }
  if (fromTarget) {
    const resource = resourceOf(from);
    if (token === "" || resource === "") return { kind: "reject", error: "requestFromTarget" };
    return { kind: "request-out", token, resource, id, type };
  }
  return { kind: "forward", requester: from, id, type, to };
}
