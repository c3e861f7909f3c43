/**
 * Presence of the implementing account (RFC 6121 sections 3 and 4), kept in the store per resource.
 *
 * On every (re)connect the component sends `subscribe`: the server answers with `subscribed` and the current
 * presence of each online resource once the account has approved it. A probe is sent only after approval is
 * known: Prosody answers a probe from a non-subscriber with `unsubscribed`, which deletes the pending request.
 */
import type { Logger } from "pino";
import type { BalancePolicy } from "../routing/choose.js";
import type { Decision } from "../routing/classify.js";
import type { ResourcePresence, Store } from "../store/types.js";
import type { Caps } from "../xmpp/caps.js";
import { presence } from "../xmpp/stanzas.js";
import type { Resender } from "./resend.js";
import type { Send } from "./send-error.js";

type TargetPresence = Extract<Decision, { kind: "target-presence" }>;

export interface PresenceDeps {
  store: Store;
  send: Send;
  clock: () => number;
  domain: string;
  target: string;
  log: Logger;
  pick: () => number;
  /** BALANCE and PRIORITY_ROUTING: requests moved off a resource that went away are placed as new ones. */
  balance?: BalancePolicy;
  resend: Resender;
  /** After a (re)connect, resources not confirmed by presence within this time are forgotten. */
  confirmMs: number;
  /** After the target's resources changed: the service's own presence may have (service-presence.ts). */
  onChange?: () => Promise<void>;
  /** XEP-0115 section 6.3: this replica was chosen to ask a resource what its caps ver stands for. */
  askCaps?: (resource: string, caps: Caps) => void;
  /** How often to probe again while connected, refreshing the store's view. */
  reprobeMs?: number;
}

/** Replicas' clocks may differ a little: a confirmation this much older than the probe still counts. */
const CLOCK_SKEW_MS = 2_000;

export function createPresence({
  store,
  send,
  clock,
  domain,
  target,
  log,
  pick,
  balance,
  resend,
  confirmMs,
  onChange = async () => {},
  reprobeMs = 5 * 60_000,
  askCaps = () => {},
}: PresenceDeps) {
  let approved = false;
  let noneOnline = false;
  let reprobe: NodeJS.Timeout | undefined;
  let expiry: NodeJS.Timeout | undefined;

  /** Resources whose unavailable presence was missed while disconnected are not confirmed by the probe. */
  async function expireUnconfirmed(since: number): Promise<void> {
    try {
      const removed = await store.expireResources(since, clock());
      if (removed.length > 0) {
        log.info({ count: removed.length }, "forgot resources not confirmed after reconnecting");
        await onChange();
      }
    } catch (err) {
      log.warn({ err }, "store unavailable: resources not reconciled");
    }
  }

  const probe = () => send(presence("probe", target, domain));

  async function approve(): Promise<void> {
    if (approved) return;
    approved = true;
    await store.setSubscriptionApproved(true);
  }

  async function handle(
    decision: TargetPresence,
    info?: ResourcePresence,
    caps?: Caps | null,
  ): Promise<void> {
    await track(decision, info, caps ?? null);
    if (decision.type !== "subscribe") await onChange();
  }

  async function track(decision: TargetPresence, info: ResourcePresence | undefined, caps: Caps | null) {
    const { type, resource } = decision;
    switch (type) {
      case "available":
        await approve();
        noneOnline = false;
        if (resource !== "" && (await store.resourceAvailable(resource, clock(), info)) && caps)
          askCaps(resource, caps);
        return;
      case "unavailable":
      case "error":
        if (resource === "") {
          // RFC 6121 section 4.3.2: the answer to a probe while no resource is online, from the bare JID.
          // Each probe is answered so (one per subscribe and reconnect): said once until a resource comes.
          if (!noneOnline) log.debug({ type }, "no resource of the target online");
          noneOnline = true;
          await store.clearResources(clock());
          return;
        }
        log.debug({ resource, type }, "target resource gone");
        // Pending gets sent to it may never be answered: send them once more, elsewhere.
        for (const moved of await store.resourceUnavailable(resource, clock(), pick(), balance)) {
          resend({ ...moved, type: "get" });
        }
        return;
      case "subscribed":
        log.info({ target }, "subscription to the implementing account approved");
        await approve();
        probe();
        return;
      case "unsubscribed":
        log.warn({ target }, "the implementing account refused or cancelled the subscription");
        approved = false;
        await store.setSubscriptionApproved(false);
        await store.clearResources(clock());
        return;
      case "subscribe":
        // The implementing account may follow the component's presence; allow it.
        send(presence("subscribed", target, domain));
        return;
      default:
        return;
    }
  }

  return {
    handle,
    /** Ask the server for the current presence of every resource (only once the subscription is approved). */
    probe(): void {
      if (approved) probe();
    },
    /** After every (re)connect: re-subscribe, and probe once approval is known (in this or another replica). */
    async onOnline(): Promise<void> {
      send(presence("subscribe", target, domain));
      clearTimeout(expiry);
      const since = clock() - CLOCK_SKEW_MS;
      expiry = setTimeout(() => void expireUnconfirmed(since), confirmMs);
      expiry.unref();
      clearInterval(reprobe);
      reprobe = setInterval(() => approved && probe(), reprobeMs);
      reprobe.unref();
      try {
        approved = approved || (await store.subscriptionApproved());
        if (approved) probe();
      } catch (err) {
        log.warn({ err }, "store unavailable: presence not probed");
      }
    },
    stop(): void {
      clearInterval(reprobe);
      clearTimeout(expiry);
    },
  };
}

export type PresenceTracker = ReturnType<typeof createPresence>;
