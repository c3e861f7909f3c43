/**
 * Requests of the implementing client (README, "Requests from the implementing client"), which
 * mod_client_proxy refuses: an IQ get or set from a resource of the implementing account to `domain/<token>`
 * goes to the requester the token names, from the domain, under an id of the proxy's own (so that ids of
 * several resources cannot collide); the requester's answer comes back to the domain, is claimed once in the
 * store, and goes to the resource that asked, from `domain/<token>`, with that resource's id.
 *
 * The store keeps these requests as it keeps forwarded ones (request-out-3.lua), so they get the same
 * guarantees from the same machinery: an answer only from the requester it was sent to, once (claim-3), the
 * timeout from any replica (sweep-3), and the answer held until written (delivery/outbox.ts).
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Outbox } from "../delivery/outbox.js";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Decision } from "../routing/classify.js";
import { untilKnown } from "../store/retry.js";
import type { ClaimResult, Store } from "../store/types.js";
import { readdress } from "../xmpp/stanzas.js";
import { newOp } from "./forward.js";
import type { AnswerError, Send } from "./send-error.js";

type Out = Extract<Decision, { kind: "request-out" }>;
type ReplyIn = Extract<Decision, { kind: "reply-in" }>;

export interface RequestsOutDeps {
  store: Store;
  jat: Jat;
  send: Send;
  answerError: AnswerError;
  outbox: Outbox;
  clock: () => number;
  domain: string;
  timeoutMs: number;
  /** How long a store call of unknown outcome is retried: forwards, half a lease for claims. */
  retryGraceMs: number;
  leaseMs: number;
  canSend: () => boolean;
  log: Logger;
  metrics: Metrics;
}

export function createRequestsOut(deps: RequestsOutDeps) {
  const { store, jat, send, answerError, outbox, clock, domain, timeoutMs, log, metrics } = deps;
  const drop = (reason: string, details: object) => {
    log.debug({ reason, ...details }, "answer to a request of the implementing client dropped");
    metrics.dropped.inc({ reason });
  };

  return {
    async out(stanza: Element, { token, resource, id, type }: Out): Promise<void> {
      const asker = stanza.attrs.from ?? "";
      const to = stanza.attrs.to ?? domain;
      const request = { name: "iq", id, from: asker, to };
      const requester = jat.verify(token);
      if (requester === null) {
        log.debug(
          { resource, id },
          "request of the implementing client to an address whose token does not verify",
        );
        answerError(request, "badToken");
        return;
      }
      const now = clock();
      const deadline = now + timeoutMs;
      const input = {
        asker,
        askerId: id,
        to,
        answerer: requester,
        sentId: newOp(),
        type,
        now,
        deadline,
        op: newOp(),
      };
      let status: Awaited<ReturnType<Store["requestOut"]>>;
      try {
        status = await untilKnown(() => store.requestOut(input), {
          clock,
          giveUpAt: deadline + deps.retryGraceMs,
          onRetry: () => metrics.storeRetries.inc({ operation: "forward" }),
        });
      } catch (err) {
        metrics.storeErrors.inc({ operation: "forward" });
        log.warn({ err, resource, id }, "store unavailable: request of the implementing client refused");
        answerError(request, "storeUnavailable");
        return;
      }
      switch (status) {
        case "forwarded":
          if (clock() >= deadline) return; // Recorded too late to be useful: the sweep answers the timeout.
          log.debug(
            { requester, id, resource, sentId: input.sentId },
            "request of the implementing client forwarded",
          );
          metrics.requestsOut.inc();
          send(readdress(stanza, requester, domain, input.sentId));
          return;
        case "limited":
          answerError(request, "totalLimit");
          return;
        case "duplicate":
          answerError(request, "duplicateId");
          return;
        case "answered":
          return;
      }
    },

    async replyIn(stanza: Element, { replier, id }: ReplyIn): Promise<void> {
      if (!deps.canSend()) {
        drop("not-connected", { replier, id });
        return;
      }
      let answer: string;
      try {
        answer = stanza.toString();
      } catch {
        drop("unreadable", { replier, id });
        return;
      }
      const op = newOp();
      const started = clock();
      let claim: ClaimResult;
      try {
        // Kept under the requester that must answer and the id it was sent (request-out-3.lua): an answer from
        // anyone else, or to an id that was not sent to it, finds nothing.
        const input = { requester: replier, id, gen: 0, resource: replier, op, answer, pick: 0 };
        claim = await untilKnown(() => store.claimReply({ ...input, now: clock() }), {
          clock,
          giveUpAt: started + deps.leaseMs / 2,
          onRetry: () => metrics.storeRetries.inc({ operation: "claim" }),
        });
      } catch (err) {
        log.warn({ err, id }, "store unavailable: answer to a request of the implementing client not routed");
        metrics.storeErrors.inc({ operation: "claim" });
        metrics.dropped.inc({ reason: "store-unavailable" });
        return;
      }
      if (claim.status !== "claimed") {
        drop(claim.status, { replier, id });
        return;
      }
      const { requester: asker, to, id: askerId } = claim.request;
      log.debug({ replier, id, asker }, "answer routed to the implementing client");
      metrics.repliesIn.inc();
      outbox.deliver({ requester: replier, id, op }, readdress(stanza, asker, to, askerId));
    },
  };
}

export type RequestsOut = ReturnType<typeof createRequestsOut>;
