/**
 * Requester -> implementing client. The request keeps its id, type, xml:lang and payload; its `from` becomes
 * `XMPP_DOMAIN/<token>` and it goes to the resource the store chose while recording it as pending.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import type { Decision } from "../routing/classify.js";
import type { Store } from "../store/types.js";
import { readdress } from "../xmpp/stanzas.js";
import type { AnswerError, Send } from "./answer.js";
import type { Tracker } from "./tracker.js";

type ForwardDecision = Extract<Decision, { kind: "forward" }>;

export interface ForwarderDeps {
  store: Store;
  jat: Jat;
  send: Send;
  answerError: AnswerError;
  pick: () => number;
  clock: () => number;
  domain: string;
  target: string;
  timeoutMs: number;
  log: Logger;
  metrics: Metrics;
  tracker: Tracker;
}

export function createForwarder(deps: ForwarderDeps) {
  const { store, jat, send, answerError, pick, clock, domain, target, timeoutMs, log, metrics, tracker } =
    deps;

  return async function forward(stanza: Element, decision: ForwardDecision): Promise<void> {
    const { requester, id, type, to } = decision;
    const request = { name: "iq", id, from: requester, to };
    const token = jat.sign(requester);
    if (token === null) {
      log.debug({ requester, id }, "requester address too long for a token");
      answerError(request, "requesterTooLong");
      return;
    }
    const now = clock();
    let result: Awaited<ReturnType<Store["forward"]>>;
    try {
      const payload = stanza.getChildElements()[0]?.toString() ?? "";
      result = await store.forward({
        requester,
        id,
        to,
        type,
        now,
        deadline: now + timeoutMs,
        pick: pick(),
        payload,
      });
    } catch (err) {
      metrics.storeErrors.inc();
      log.warn({ err: { message: (err as Error).message } }, "store unavailable: request refused");
      answerError(request, "storeUnavailable");
      return;
    }
    switch (result.status) {
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
      case "forwarded":
        log.debug({ requester, id, resource: result.resource }, "forwarded");
        metrics.forwarded.inc();
        tracker.track({ requester, id, to, deadline: now + timeoutMs });
        // If the connection dropped meanwhile, the record stays pending and the sweep answers it.
        send(readdress(stanza, `${target}/${result.resource}`, `${domain}/${token}`));
        return;
    }
  };
}
