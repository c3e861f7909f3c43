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
import type { Store } from "../store/types.js";
import { readdress } from "../xmpp/stanzas.js";
import type { Send } from "./answer.js";

type ReplyDecision = Extract<Decision, { kind: "reply" }>;

export type DroppedReply = "forged" | "unknown" | "duplicate" | "late" | "store-unavailable";

export interface ReplierDeps {
  store: Store;
  jat: Jat;
  send: Send;
  clock: () => number;
  log: Logger;
  metrics: Metrics;
}

export function createReplier({ store, jat, send, clock, log, metrics }: ReplierDeps) {
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
    let claim: Awaited<ReturnType<Store["claimReply"]>>;
    try {
      claim = await store.claimReply({ requester, id, resource, now: clock() });
    } catch (err) {
      // The record stays pending; the requester gets the timeout answer once the store is back.
      log.warn({ err: { message: (err as Error).message }, id }, "store unavailable: reply not routed");
      metrics.storeErrors.inc();
      metrics.dropped.inc({ reason: "store-unavailable" });
      return;
    }
    switch (claim.status) {
      case "claimed":
        log.debug({ requester, id, resource }, "reply routed");
        metrics.routed.inc();
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
