/**
 * The in-process store's presence side: the resources of the implementing account and their presence, the
 * XEP-0115 capabilities, the subscription, and the service's own presence and its subscribers. Its state is
 * shared with the request lifecycle (memory.ts), which chooses among the resources and moves requests.
 */
import type { Candidate } from "../routing/choose.js";
import { knowledgeOf } from "./caps-entry.js";
import {
  PLAIN_PRESENCE,
  type ResourcePresence,
  type ServiceState,
  type StorePresence,
  type StoreTtls,
} from "./types.js";

/** What the request lifecycle reads and changes of the presence state. */
export interface PresenceState {
  /** Resource -> when it was last seen available. */
  readonly resources: Map<string, number>;
  /** Resource -> when its unavailable presence was seen. */
  readonly gone: Map<string, number>;
  /** XEP-0115 ver -> entry (caps-entry.ts), in the order stored; ver -> until when a query stands. */
  readonly caps: Map<string, string>;
  readonly asking: Map<string, number>;
  /** The online resources as routing/choose.ts sees them. */
  candidates(): Candidate[];
  /** Whether the implementing account approved the subscription (its presence is known). */
  approved(): boolean;
}

export function createMemoryPresence({ ttls }: { ttls: StoreTtls }): {
  state: PresenceState;
  methods: StorePresence;
} {
  const resources = new Map<string, number>();
  /** Resource -> when its unavailable presence was seen. */
  const gone = new Map<string, number>();
  const presences = new Map<string, ResourcePresence>();
  /** XEP-0115 ver -> entry (caps-entry.ts), in the order stored; ver -> until when a query stands. */
  const caps = new Map<string, string>();
  const asking = new Map<string, number>();
  const subscribed = new Set<string>();
  /** The service state last computed (serviceState), to tell a change. */
  let serviceKey = "";
  let approved = false;

  const candidates = () =>
    [...resources.keys()].map((name) => {
      const { priority, show, ver } = presences.get(name) ?? PLAIN_PRESENCE;
      return { name, priority, show, ver };
    });

  const state: PresenceState = { resources, gone, caps, asking, candidates, approved: () => approved };
  const methods: StorePresence = {
    async resourceAvailable(resource, now, info = PLAIN_PRESENCE) {
      resources.set(resource, now);
      presences.set(resource, info);
      gone.delete(resource);
      approved = true;
      const { ver } = info;
      if (ver === "" || knowledgeOf(caps.get(ver), asking.get(ver), now).kind !== "unknown") return false;
      asking.set(ver, now + ttls.capsAskMs);
      return true;
    },
    async storeCaps(ver, entry, _now, max) {
      asking.delete(ver);
      caps.delete(ver);
      caps.set(ver, entry);
      // Exactly `max`, as caps-store-2.lua (a few thousand at most: no amortizing needed).
      for (const oldest of caps.keys()) {
        if (caps.size <= max) break;
        caps.delete(oldest);
      }
    },
    async routingView() {
      const view = candidates();
      const known = new Map<string, string>();
      for (const { ver } of view) {
        const entry = caps.get(ver);
        if (entry !== undefined) known.set(ver, entry);
      }
      return { candidates: view, caps: known };
    },
    async serviceState() {
      let best: [string, ResourcePresence] | undefined;
      for (const name of resources.keys()) {
        const info = presences.get(name) ?? PLAIN_PRESENCE;
        if (
          !best ||
          info.priority > best[1].priority ||
          (info.priority === best[1].priority && name < best[0])
        )
          best = [name, info];
      }
      const state: ServiceState = best
        ? { available: true, show: best[1].show, status: best[1].status }
        : { available: false };
      const key = JSON.stringify(state);
      const changed = key !== serviceKey;
      serviceKey = key;
      return { changed, state };
    },
    async addSubscriber(bare, max) {
      if (subscribed.has(bare)) return true;
      if (subscribed.size >= max) return false;
      subscribed.add(bare);
      return true;
    },
    async removeSubscriber(bare) {
      subscribed.delete(bare);
    },
    async isSubscriber(bare) {
      return subscribed.has(bare);
    },
    async subscribers() {
      return [...subscribed];
    },
    async expireResources(since, now) {
      const removed = [...resources].filter(([, seen]) => seen < since).map(([resource]) => resource);
      for (const resource of removed) {
        resources.delete(resource);
        gone.set(resource, now);
      }
      return removed;
    },
    async clearResources(now) {
      for (const resource of resources.keys()) gone.set(resource, now);
      resources.clear();
    },
    async onlineResources() {
      return [...resources.keys()].sort();
    },
    async setSubscriptionApproved(value) {
      approved = value;
    },
    async subscriptionApproved() {
      return approved;
    },
  };
  return { state, methods };
}
