/**
 * Requester -> implementing client. The request keeps its id, type, xml:lang and payload; its `from` becomes
 * `XMPP_DOMAIN/<token>` and it goes to the resource the store chose while recording it as pending.
 *
 * Exactly one answer (RFC 6120 section 8.2.3) when the store misbehaves: a forward whose outcome is unknown is
 * repeated with the same op until the store answers (store/retry.ts); only a failure that certainly changed
 * nothing is answered with `internal-server-error` at once.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Tracker } from "../recovery/tracker.js";
import type { BalancePolicy } from "../routing/choose.js";
import type { Decision } from "../routing/classify.js";
import { forwardedId } from "../routing/ids.js";
import { untilKnown } from "../store/retry.js";
import { type ForwardResult, type Store, StoreUnavailableError } from "../store/types.js";
import { readdress } from "../xmpp/stanzas.js";
import { countDecisions } from "./decisions.js";
import type { AnswerError, Send } from "./send-error.js";

type ForwardDecision = Extract<Decision, { kind: "forward" }>;

export interface ForwarderDeps {
  store: Store;
  jat: Jat;
  send: Send;
  answerError: AnswerError;
  pick: () => number;
  /** BALANCE and PRIORITY_ROUTING. */
  balance: BalancePolicy;
  /** CAPS_ROUTING: route by the namespace of the payload (XEP-0115). */
  capsRouting: boolean;
  /** Waits this long between asks while only resources whose features are being learnt could take a request. */
  capsPollMs?: number;
  clock: () => number;
  domain: string;
  target: string;
  timeoutMs: number;
  /** MAX_KEPT_PAYLOAD_BYTES: larger payloads are forwarded but not kept for a failover. */
  maxKeptPayloadBytes: number;
  /** How long after its deadline a forward of unknown outcome is still retried (the tombstone lifetime). */
  retryGraceMs: number;
  log: Logger;
  metrics: Metrics;
  tracker: Tracker;
}

/** This process's random part of every op: ops of different replicas (and restarts) never meet. */
const OP_PREFIX = randomBytes(6).toString("base64url");
let opCount = 0;

/**
 * A short unique name for one store operation (a forwarding, a claim, a sweep), the same on every retry of it:
 * the process's random prefix and a counter, with no random draw on the per-request path.
 */
export const newOp = () => OP_PREFIX + (opCount++).toString(36);

export function createForwarder(deps: ForwarderDeps) {
  const { store, jat, send, answerError, pick, clock, domain, target, timeoutMs, log, metrics, tracker } =
    deps;

  const strategy = deps.balance.strategy;
  const pollMs = deps.capsPollMs ?? 50;

  return async function forward(stanza: Element, decision: ForwardDecision): Promise<void> {
    const { requester, id, type, to } = decision;
    const request = { name: "iq", id, from: requester, to };
    const token = jat.sign(requester);
    if (token === null) {
      log.debug({ requester, id }, "requester address too long for a token");
      answerError(request, "requesterTooLong");
      return;
    }
    const child = stanza.getChildElements()[0];
    let payload: string;
    try {
      payload = child?.toString() ?? "";
    } catch (err) {
      // A payload the serializer cannot handle (nested thousands deep) is the stanza's problem, not the store's.
      log.debug({ requester, id, err }, "payload cannot be serialized");
      answerError(request, "unreadablePayload");
      return;
    }
    const now = clock();
    const deadline = now + timeoutMs;
    const input = {
      requester,
      id,
      to,
      type,
      now,
      deadline,
      pick: pick(),
      balance: deps.balance,
      namespace: deps.capsRouting ? (child?.attrs.xmlns ?? "") : "",
      payload: Buffer.byteLength(payload) <= deps.maxKeptPayloadBytes ? payload : "",
      op: newOp(),
    };
    let result: ForwardResult;
    try {
      for (;;) {
        result = await untilKnown(() => store.forward(input), {
          clock,
          giveUpAt: deadline + deps.retryGraceMs,
          onRetry: () => metrics.storeRetries.inc({ operation: "forward" }),
        });
        // XEP-0115 section 6.3: only resources whose features are being asked for could take it; the answer
        // comes within milliseconds, or the ask lapses (StoreTtls.capsAskMs) and they take everything.
        if (result.status !== "none" || result.reason !== "capabilities-pending") break;
        if (clock() + pollMs >= deadline) break;
        metrics.balanceDecisions.inc({ strategy, decision: "capabilities_awaited" });
        await sleep(pollMs);
      }
    } catch (err) {
      metrics.storeErrors.inc({ operation: "forward" });
      const unknown = err instanceof StoreUnavailableError && err.outcome === "unknown";
      log.warn({ err, requester, id, outcomeUnknown: unknown }, "store unavailable: request refused");
      answerError(request, "storeUnavailable");
      return;
    }
    switch (result.status) {
      case "none":
        log.debug(
          { requester, id, namespace: input.namespace, reason: result.reason },
          "no eligible resource",
        );
        metrics.balanceDecisions.inc({
          strategy,
          decision: result.reason === "no-eligible" ? "no_eligible_resource" : "no_capable_resource",
        });
        answerError(request, result.reason === "no-eligible" ? "noEligibleResource" : "noCapableResource");
        return;
      case "no-resource":
        log.debug({ requester, id }, "no resource online");
        answerError(request, "noResource");
        return;
      case "presence-unknown":
        log.debug({ requester, id }, "presence of the target not known yet");
        answerError(request, "presenceUnknown");
        return;
      case "duplicate":
        log.debug({ requester, id }, "duplicate request id while pending");
        answerError(request, "duplicateId");
        return;
      case "limited":
        log.debug({ requester, id, scope: result.scope }, "admission limit reached");
        answerError(request, result.scope === "total" ? "totalLimit" : "requesterLimit");
        return;
      case "answered":
        // A retry found the first execution's record answered already (by the sweep): nothing left to do.
        log.debug({ requester, id }, "forward retried after it was answered");
        return;
      case "forwarded":
        tracker.track({ requester, id, to, deadline });
        if (clock() >= deadline) return; // Recorded too late to be useful: the sweep answers the timeout.
        log.debug({ requester, id, resource: result.resource }, "forwarded");
        metrics.forwarded.inc();
        countDecisions(metrics, strategy, result);
        // If the connection dropped meanwhile, the record stays pending and the sweep answers it.
        send(
          readdress(
            stanza,
            `${target}/${result.resource}`,
            `${domain}/${token}`,
            forwardedId(id, result.gen),
          ),
        );
        return;
    }
  };
}
