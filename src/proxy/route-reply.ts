/**
 * Implementing client -> requester. A reply is accepted only with a token we signed, only from the resource
 * the request went to, only while pending and only once (the store's atomic claim). Everything else is
 * dropped without an answer: RFC 6120 section 8.2.3 forbids answering a result or an error.
 *
 * The claim keeps the reply in the store until the outbox has written it and acknowledged it, so a replica that
 * dies or loses its link after claiming does not lose the answer (delivery/outbox.ts). A claim of unknown
 * outcome is repeated with the same op for a short while; given up, the request is still answered exactly once:
 * pending, it times out; claimed, the sweep hands the kept reply to a replica when the lease ends.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Outbox } from "../delivery/outbox.js";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Tracker } from "../recovery/tracker.js";
import type { BalancePolicy } from "../routing/choose.js";
import type { Decision } from "../routing/classify.js";
import { requestIdOf } from "../routing/ids.js";
import { untilKnown } from "../store/retry.js";
import type { FailoverResult, Store } from "../store/types.js";
import { NS_STANZAS } from "../xmpp/errors.js";
import { readdress } from "../xmpp/stanzas.js";
import { newOp } from "./forward.js";
import type { Resender } from "./resend.js";

type ReplyDecision = Extract<Decision, { kind: "reply" }>;

export type DroppedReply =
  | "forged"
  | "stale"
  | "unreadable"
  | "unknown"
  | "duplicate"
  | "late"
  | "store-unavailable"
  | "not-connected";

export interface ReplierDeps {
  store: Store;
  jat: Jat;
  outbox: Outbox;
  clock: () => number;
  log: Logger;
  metrics: Metrics;
  pick: () => number;
  /** BALANCE and PRIORITY_ROUTING: requests moved off a resource that went away are placed as new ones. */
  balance?: BalancePolicy;
  resend: Resender;
  tracker: Tracker;
  /** Sends a stanza at once (the fallback path after data loss). */
  send: (stanza: Element) => boolean;
  /** Whether an answer can be sent now. A reply is not claimed when it could not be delivered. */
  canSend: () => boolean;
  /** IQ_TIMEOUT_MS: the forwarding time is the record's deadline minus it. */
  timeoutMs: number;
  /** The store's answer lease: a claim of unknown outcome is retried within half of it. */
  leaseMs: number;
  /** A resource bounced a request as unavailable: check the target's presence again. */
  onBounce: (resource: string) => void;
}

export function createReplier(deps: ReplierDeps) {
  const {
    store,
    jat,
    outbox,
    send,
    clock,
    log,
    metrics,
    pick,
    resend,
    tracker,
    timeoutMs,
    canSend,
    onBounce,
  } = deps;
  const drop = (reason: DroppedReply, details: object) => {
    log.debug({ reason, ...details }, "reply dropped");
    metrics.dropped.inc({ reason });
  };

  return async function reply(stanza: Element, decision: ReplyDecision): Promise<void> {
    const { token, resource } = decision;
    // The id the request was forwarded with carries its generation (routing/ids.ts).
    const { id, gen } = requestIdOf(decision.id);
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
    let answer: string;
    try {
      answer = stanza.toString();
    } catch {
      // Not the store's fault: the request stays pending and times out.
      drop("unreadable", { requester, id, resource });
      return;
    }
    let claim: FailoverResult;
    const op = newOp();
    const started = clock();
    try {
      const input = { requester, id, gen, resource, op, answer, pick: pick(), balance: deps.balance };
      claim = await untilKnown(
        () =>
          bounced ? store.failover({ ...input, now: clock() }) : store.claimReply({ ...input, now: clock() }),
        {
          clock,
          giveUpAt: started + deps.leaseMs / 2,
          onRetry: () => metrics.storeRetries.inc({ operation: "claim" }),
        },
      );
    } catch (err) {
      // Pending still, the requester gets the timeout; claimed, the sweep hands the kept reply out again.
      log.warn({ err, id }, "store unavailable: reply not routed");
      metrics.storeErrors.inc({ operation: "claim" });
      metrics.dropped.inc({ reason: "store-unavailable" });
      return;
    }
    if (bounced) onBounce(resource);
    switch (claim.status) {
      case "resent":
        resend({ requester, id, gen, type: claim.type, resource: claim.resource, payload: claim.payload });
        return;
      case "claimed":
        log.debug({ requester, id, resource }, "reply routed");
        metrics.routed.inc();
        metrics.roundTrip.observe(Math.max(0, clock() - (claim.request.deadline - timeoutMs)) / 1000);
        tracker.answered(requester, id);
        outbox.deliver(
          { requester, id, op },
          readdress(stanza, claim.request.requester, claim.request.to, id),
        );
        return;
      case "wrong-resource":
        drop("forged", { requester, id, resource });
        return;
      case "unknown": {
        // The store lost the record (data loss): the replica that forwarded it still knows where it came from.
        const lost = tracker.forwarded(requester, id);
        if (lost && (await tracker.claimLost(lost))) {
          log.info({ requester, id }, "reply routed after the store lost its record");
          metrics.routed.inc();
          send(readdress(stanza, lost.requester, lost.to, id));
          return;
        }
        drop("unknown", { requester, id, resource });
        return;
      }
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
