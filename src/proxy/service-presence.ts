/**
 * The service's own presence (RFC 6121 sections 3 and 4), which mod_client_proxy never had: requesters may
 * subscribe to the domain and learn whether the service is up, that is whether the implementing account has an
 * online resource, with the show and status of its highest-priority resource.
 * - `subscribe` is approved (`subscribed`, then the current presence) and the subscriber remembered in the
 *   store, unless SERVICE_SUBSCRIPTIONS=refuse, the allow/deny lists or MAX_SUBSCRIBERS refuse it
 *   (`unsubscribed`);
 * - `unsubscribe` forgets the subscriber; a `probe` is answered with the current presence (RFC 6121 4.3.2), or
 *   `unsubscribed` from a non-subscriber;
 * - a change of the target's presence is broadcast to every subscriber once, by the one replica whose
 *   computation saw the change (service-state-3.lua), not once per replica.
 */
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { type AdmissionPolicy, admit } from "../routing/admission.js";
import type { ServiceState, Store } from "../store/types.js";
import { bareOf } from "../xmpp/jid.js";
import { availablePresence, presence } from "../xmpp/stanzas.js";
import type { Send } from "./send-error.js";

export interface ServicePresenceDeps {
  store: Store;
  send: Send;
  domain: string;
  /** SERVICE_SUBSCRIPTIONS: approve subscription requests (true) or refuse them. */
  approve: boolean;
  /** MAX_SUBSCRIBERS. */
  maxSubscribers: number;
  admission: AdmissionPolicy;
  log: Logger;
  metrics: Metrics;
}

export function createServicePresence(deps: ServicePresenceDeps) {
  const { store, send, domain, log, metrics } = deps;

  const stanzaOf = (state: ServiceState, to: string) =>
    state.available
      ? availablePresence(to, domain, state.show, state.status)
      : presence("unavailable", to, domain);

  /** The current state; a change nobody has broadcast yet is broadcast now, by this caller. */
  async function current(): Promise<ServiceState> {
    const { changed, state } = await store.serviceState();
    if (changed) await broadcast(state);
    return state;
  }

  async function broadcast(state: ServiceState): Promise<void> {
    const subscribers = await store.subscribers();
    log.info({ available: state.available, subscribers: subscribers.length }, "service presence changed");
    metrics.presenceBroadcasts.inc();
    for (const subscriber of subscribers) send(stanzaOf(state, subscriber));
  }

  return {
    /** After any change of the target's resources: broadcast the service's presence if it changed. */
    async refresh(): Promise<void> {
      await current();
    },

    async handle(type: "subscribe" | "unsubscribe" | "probe", from: string): Promise<void> {
      const bare = bareOf(from);
      switch (type) {
        case "subscribe": {
          const refused = !deps.approve || admit({ requester: bare, id: "" }, deps.admission) !== null;
          if (refused || !(await store.addSubscriber(bare, deps.maxSubscribers))) {
            log.debug({ from: bare, full: !refused }, "subscription to the service refused");
            metrics.subscriptions.inc({ outcome: "refused" });
            send(presence("unsubscribed", bare, domain));
            return;
          }
          metrics.subscriptions.inc({ outcome: "approved" });
          send(presence("subscribed", bare, domain));
          send(stanzaOf(await current(), bare));
          return;
        }
        case "unsubscribe":
          metrics.subscriptions.inc({ outcome: "cancelled" });
          await store.removeSubscriber(bare);
          return;
        case "probe":
          if (await store.isSubscriber(bare)) send(stanzaOf(await current(), from));
          else send(presence("unsubscribed", bare, domain));
          return;
      }
    },
  };
}

export type ServicePresence = ReturnType<typeof createServicePresence>;
