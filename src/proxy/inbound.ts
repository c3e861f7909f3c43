/**
 * The entry of every stanza: view it, decide (routing/classify), act. Each action catches its own failures:
 * a stanza never crashes the process.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import { type AdmissionPolicy, admit } from "../routing/admission.js";
import { classify, type RoutingContext, type StanzaView } from "../routing/classify.js";
import { type ResourcePresence, StoreUnavailableError } from "../store/types.js";
import { detach } from "../util/detach.js";
import { type Caps, capsOf, DISCO_INFO_NS } from "../xmpp/caps.js";
import type { Capabilities } from "./capabilities.js";
import type { createForwarder } from "./forward.js";
import type { Messenger } from "./messages.js";
import type { PresenceTracker } from "./presence.js";
import type { RequestsOut } from "./requests-out.js";
import type { createReplier } from "./route-reply.js";
import type { AnswerError } from "./send-error.js";
import type { ServicePresence } from "./service-presence.js";

export interface InboundDeps {
  ctx: RoutingContext;
  admission: AdmissionPolicy;
  forward: ReturnType<typeof createForwarder>;
  reply: ReturnType<typeof createReplier>;
  messages: Messenger;
  requestsOut: RequestsOut;
  presence: PresenceTracker;
  servicePresence: ServicePresence;
  answerError: AnswerError;
  capabilities: Capabilities;
  /** CAPS_ROUTING and DISCO_INFO_FROM_CACHE. */
  caps: { readonly routing: boolean; readonly discoFromCache: boolean };
  log: Logger;
}

export function viewOf(stanza: Element): StanzaView {
  let childElements = 0;
  for (const child of stanza.children) if (typeof child !== "string") childElements++;
  const { type, id, from, to } = stanza.attrs;
  // What is decided on may be kept long after the stanza: copies, not slices of the parser's chunk.
  return { name: stanza.name, type, id: detach(id), from: detach(from), to: detach(to), childElements };
}

/**
 * RFC 6121 section 4.7.2: priority (-128..127, 0 when absent or invalid), show and status of a presence; and the
 * XEP-0115 caps ver when `caps` is given (capsOf of the same presence).
 */
export function resourcePresenceOf(stanza: Element, caps: Caps | null = null): ResourcePresence {
  const priority = Number.parseInt(stanza.getChildText("priority") ?? "", 10);
  return {
    priority: Number.isInteger(priority) && priority >= -128 && priority <= 127 ? priority : 0,
    show: (stanza.getChildText("show") ?? "").slice(0, 16),
    status: (stanza.getChildText("status") ?? "").slice(0, 1024),
    ver: caps?.ver ?? "",
  };
}

/** XEP-0030 section 3.1: a disco#info request to the domain itself, without a node. */
function isDomainDiscoInfo(stanza: Element, to: string, domain: string): boolean {
  const query = stanza.getChild("query", DISCO_INFO_NS);
  return (
    to === domain && stanza.attrs.type === "get" && query !== undefined && query.attrs.node === undefined
  );
}

export function createInbound({
  ctx,
  admission,
  forward,
  reply,
  messages,
  requestsOut,
  presence,
  servicePresence,
  answerError,
  capabilities,
  caps,
  log,
}: InboundDeps) {
  const fail = (err: unknown) =>
    err instanceof StoreUnavailableError
      ? log.warn({ err }, "store unavailable: stanza not handled")
      : log.error({ err }, "stanza handling failed");

  // Handlers still waiting for the store: a replica that stops lets them finish.
  const inFlight = new Set<Promise<void>>();
  const run = (work: Promise<void>) => {
    const tracked = work.catch(fail).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };

  function inbound(stanza: Element): void {
    const view = viewOf(stanza);
    const decision = classify(view, ctx);
    switch (decision.kind) {
      case "forward": {
        const refused = admit(decision, admission);
        if (refused !== null) {
          log.debug({ from: view.from, id: view.id?.slice(0, 64), error: refused }, "request not admitted");
          answerError({ name: "iq", id: decision.id, from: decision.requester, to: decision.to }, refused);
        } else if (caps.discoFromCache && isDomainDiscoInfo(stanza, decision.to, ctx.domain)) {
          const fromCache = capabilities
            .answerDiscoInfo(stanza, decision.requester, decision.to)
            .catch((err) => {
              log.warn({ err }, "store unavailable: disco#info forwarded instead of answered from the cache");
              return false;
            });
          run(fromCache.then((answered) => (answered ? undefined : forward(stanza, decision))));
        } else run(forward(stanza, decision));
        return;
      }
      case "caps-reply":
        run(capabilities.reply(stanza, decision));
        return;
      case "reply":
        run(reply(stanza, decision));
        return;
      case "request-out":
        run(requestsOut.out(stanza, decision));
        return;
      case "reply-in":
        run(requestsOut.replyIn(stanza, decision));
        return;
      case "reject":
        log.debug({ from: view.from, id: view.id, error: decision.error }, "request rejected");
        answerError(
          { name: view.name, id: view.id, from: view.from ?? "", to: view.to ?? ctx.domain },
          decision.error,
        );
        return;
      case "message-in": {
        // The same allow and deny lists as for requests (an id, when there is one, bounded the same way).
        const refused = admit({ requester: decision.requester, id: view.id ?? "" }, admission);
        if (refused === null) run(messages.in(stanza, decision));
        else {
          log.debug({ from: view.from, error: refused }, "message not admitted");
          messages.refuse(stanza, refused);
        }
        return;
      }
      case "message-out":
        run(messages.out(stanza, decision));
        return;
      case "message-bounce":
        run(messages.bounce(stanza, decision));
        return;
      case "target-presence":
        {
          const announced = caps.routing && decision.type === "available" ? capsOf(stanza) : null;
          run(presence.handle(decision, resourcePresenceOf(stanza, announced), announced));
        }
        return;
      case "service-presence":
        run(servicePresence.handle(decision.type, decision.from));
        return;
      case "drop":
        log.debug(
          { name: view.name, type: view.type, from: view.from, reason: decision.reason },
          "stanza dropped",
        );
        return;
    }
  }

  return Object.assign(inbound, {
    /** Resolves when every handler started so far has finished. */
    async drained(): Promise<void> {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
  });
}
