/**
 * Implementing client -> requester. A reply is accepted only with a token we signed, only from the resource
 * the request went to, only while pending and only once (the store's atomic claim). Everything else is
 * dropped without an answer: RFC 6120 section 8.2.3 forbids answering a result or an error.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Decision } from "../routing/classify.js";
import type { FailoverResult, Store } from "../store/types.js";
import { NS_STANZAS } from "../xmpp/errors.js";
import { readdress } from "../xmpp/stanzas.js";
import type { Send } from "./answer.js";
import type { Resender } from "./resend.js";
import type { Tracker } from "./tracker.js";

type ReplyDecision = Extract<Decision, { kind: "reply" }>;

export type DroppedReply =
  | "forged"
  | "unknown"
  | "duplicate"
  | "late"
  | "store-unavailable"
  | "not-connected";

export interface ReplierDeps {
  store: Store;
  jat: Jat;
  send: Send;
  clock: () => number;
  log: Logger;
  metrics: Metrics;
  pick: () => number;
  resend: Resender;
  tracker: Tracker;
  /** Whether an answer can be sent now. A reply is not claimed when it could not be delivered. */
  canSend: () => boolean;
  /** IQ_TIMEOUT_MS: the forwarding time is the record's deadline minus it. */
  timeoutMs: number;
  /** A resource bounced a request as unavailable: check the target's presence again. */
  onBounce: (resource: string) => void;
}

export function createReplier(deps: ReplierDeps) {
  const { store, jat, send, clock, log, metrics, pick, resend, tracker, timeoutMs, canSend, onBounce } = deps;
  const drop = (reason: DroppedReply, details: object) => {
    log.debug({ reason, ...details }, "reply dropped");
    metrics.dropped.inc({ reason });
  };

  return async function reply(stanza: Element, decision: ReplyDecision): Promise<void> {
    const { token, id, resource } = decision;
    const requester = jat.verify(token);
    if (requester === null) {
      drop("forged", { id, resource, tokenLength: token.length });
      return;
    }
    if (!canSend()) {
      // Leaving the server: claiming would swallow the answer. Left pending, it gets a timeout from a replica
      // that is connected.
      drop("not-connected", { requester, id, resource });
      return;
    }
    const bounced = isUnavailableBounce(stanza);
    let claim: FailoverResult;
    try {
      const now = clock();
      claim = bounced
        ? await store.failover({ requester, id, resource, pick: pick(), now })
        : await store.claimReply({ requester, id, resource, now });
    } catch (err) {
      // The record stays pending; the requester gets the timeout answer once the store is back.
      log.warn({ err: { message: (err as Error).message }, id }, "store unavailable: reply not routed");
      metrics.storeErrors.inc();
      metrics.dropped.inc({ reason: "store-unavailable" });
      return;
    }
    if (bounced) onBounce(resource);
    switch (claim.status) {
      case "resent":
        resend({ requester, id, type: claim.type, resource: claim.resource, payload: claim.payload });
        return;
      case "claimed":
        log.debug({ requester, id, resource }, "reply routed");
        metrics.routed.inc();
        metrics.roundTrip.observe(Math.max(0, clock() - (claim.request.deadline - timeoutMs)) / 1000);
        tracker.answered(requester, id);
        send(readdress(stanza, claim.request.requester, claim.request.to));
        return;
      case "wrong-resource":
        drop("forged", { requester, id, resource });
        return;
      default:
        drop(claim.status, { requester, id, resource });
    }
  };
}

/**
 * RFC 6120 sections 8.3.3.19 and 8.3.3.15: the server answers an IQ to a full JID that is not online with
 * `service-unavailable` (Prosody, ejabberd) or `recipient-unavailable`, from that full JID, without `by` and
 * without the request's payload. A client answering an unsupported request says the same (RFC 6120 8.2.3),
 * unless it echoes the payload; so such an answer is treated as "this resource is gone", and a presence probe
 * re-adds the resource at once if it is in fact online.
 */
export function isUnavailableBounce(stanza: Element): boolean {
  if (stanza.attrs.type !== "error") return false;
  const children = stanza.getChildElements();
  // A client that echoes the request's payload (RFC 6120 8.3.1 allows it; xmpp.js does) is answering itself.
  if (children.length !== 1) return false;
  const error = children[0]?.name === "error" ? children[0] : undefined;
  return (
    error?.getChildElements().some((child) => child.attrs.xmlns === NS_STANZAS && BOUNCES.has(child.name)) ??
    false
  );
}

const BOUNCES = new Set(["service-unavailable", "recipient-unavailable"]);
