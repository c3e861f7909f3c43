/**
 * The in-process store: the same semantics as the Redis store, for a single replica (REDIS_URL unset).
 * Everything happens synchronously inside one call, so each method is atomic as the Lua scripts are.
 */
import { randomUUID } from "node:crypto";
import { evictOldest } from "../util/evict.js";
import { memberOf } from "./keys.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type FailoverResult,
  type ForwardResult,
  type MovedRequest,
  type PendingRequest,
  type Store,
  type StoreTtls,
} from "./types.js";

/** A request forwarded and not yet answered. */
interface Pending {
  request: PendingRequest;
  payload: string;
  retried: boolean;
  /** Safety net, as the Redis record's TTL: forgotten after this even if no sweep claimed it. */
  expires: number;
}

/** What is left of an answered request: enough to tell a duplicate or late reply from an unknown one. */
interface Tombstone {
  readonly state: "replied" | "timeout";
  readonly expires: number;
}

/** Tombstones kept at most; beyond it the oldest go first, and a reply to them counts as unknown. */
export const MAX_TOMBSTONES = 100_000;

export function createMemoryStore({
  ttls = DEFAULT_TTLS,
  maxTombstones = MAX_TOMBSTONES,
}: {
  ttls?: StoreTtls;
  maxTombstones?: number;
} = {}): Store {
  const resources = new Map<string, number>();
  const pending = new Map<string, Pending>();
  /**
   * Deadline index: member -> deadline. One process with one IQ_TIMEOUT_MS inserts deadlines in increasing
   * order, so insertion order is deadline order and a sweep stops at the first entry not yet due.
   */
  const deadlines = new Map<string, number>();
  /** Answered requests in the order they were answered, i.e. by expiry; purged from the front. */
  const tombstones = new Map<string, Tombstone>();
  /** Resource -> when its unavailable presence was seen. */
  const gone = new Map<string, number>();
  let approved = false;
  /** An in-process store loses its data only with its process, so its epoch never changes. */
  const epoch = randomUUID();

  const settle = (member: string, state: Tombstone["state"], now: number) => {
    pending.delete(member);
    deadlines.delete(member);
    tombstones.delete(member);
    tombstones.set(member, { state, expires: now + ttls.tombstoneMs });
    evictOldest(tombstones, maxTombstones);
  };

  const purge = (now: number) => {
    for (const [member, { expires }] of tombstones) {
      if (expires > now) break;
      tombstones.delete(member);
    }
  };

  const livePending = (member: string, now: number): Pending | undefined => {
    const entry = pending.get(member);
    if (entry && entry.expires <= now) {
      pending.delete(member);
      deadlines.delete(member);
      return undefined;
    }
    return entry;
  };

  const liveTombstone = (member: string, now: number): Tombstone | undefined => {
    const tombstone = tombstones.get(member);
    return tombstone && tombstone.expires > now ? tombstone : undefined;
  };

  /** The pending record of a request sent to `resource`, or why an answer from it is not accepted. */
  const pendingFrom = (member: string, resource: string, now: number) => {
    const entry = livePending(member, now);
    if (!entry) {
      const state = liveTombstone(member, now)?.state;
      if (state === "replied") return { status: "duplicate" } as const;
      if (state === "timeout") return { status: "late" } as const;
      return { status: "unknown" } as const;
    }
    if (entry.request.resource !== resource) return { status: "wrong-resource" } as const;
    return entry;
  };

  return {
    async resourceAvailable(resource, now) {
      resources.set(resource, now);
      gone.delete(resource);
      approved = true;
    },
    async resourceUnavailable(resource, now, pick) {
      resources.delete(resource);
      gone.set(resource, now);
      const names = [...resources.keys()];
      const moved: MovedRequest[] = [];
      if (names.length === 0) return moved;
      const base = Math.floor(pick * names.length);
      for (const [member] of deadlines) {
        const entry = pending.get(member);
        const request = entry?.request;
        if (!entry || !request || request.resource !== resource) continue;
        if (request.type !== "get" || entry.retried) continue;
        const next = names[(base + moved.length + 1) % names.length] as string;
        entry.request = { ...request, resource: next };
        entry.retried = true;
        moved.push({ requester: request.requester, id: request.id, resource: next, payload: entry.payload });
      }
      return moved;
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

    async forward({ requester, id, to, type, now, deadline, pick, payload }): Promise<ForwardResult> {
      const member = memberOf(requester, id);
      if (livePending(member, now)) return { status: "duplicate" };
      const online = [...resources.keys()].sort();
      const resource = online[Math.min(online.length - 1, Math.floor(pick * online.length))];
      if (resource === undefined) return { status: approved ? "no-resource" : "presence-unknown" };
      const request = { requester, id, to, type, resource, deadline };
      // A tombstone of an earlier request with the same id is replaced, as in forward-4.lua.
      tombstones.delete(member);
      pending.set(member, { request, payload, retried: false, expires: deadline + ttls.recordGraceMs });
      deadlines.set(member, deadline);
      return { status: "forwarded", resource };
    },

    async claimReply({ requester, id, resource, now }): Promise<ClaimResult> {
      const member = memberOf(requester, id);
      const entry = pendingFrom(member, resource, now);
      if (!("request" in entry)) return entry;
      settle(member, "replied", now);
      return { status: "claimed", request: entry.request };
    },

    async failover({ requester, id, resource, pick, now }): Promise<FailoverResult> {
      const member = memberOf(requester, id);
      const entry = pendingFrom(member, resource, now);
      if (!("request" in entry)) return entry;
      resources.delete(resource);
      const others = [...resources.keys()];
      const next = others[Math.min(others.length - 1, Math.floor(pick * others.length))];
      const movable = entry.request.type === "get" || gone.has(resource);
      if (!entry.retried && movable && next !== undefined) {
        entry.request = { ...entry.request, resource: next };
        entry.retried = true;
        return { status: "resent", resource: next, type: entry.request.type, payload: entry.payload };
      }
      settle(member, "replied", now);
      return { status: "claimed", request: entry.request };
    },

    async claimExpired(now, limit) {
      purge(now);
      const claimed: PendingRequest[] = [];
      for (const [member, deadline] of deadlines) {
        if (deadline > now || claimed.length >= limit) break;
        deadlines.delete(member);
        const entry = livePending(member, now);
        if (entry) {
          settle(member, "timeout", now);
          claimed.push(entry.request);
        }
      }
      return claimed;
    },

    async epoch() {
      return epoch;
    },
    async claimLost({ requester, id }, now) {
      const member = memberOf(requester, id);
      if (!livePending(member, now) && liveTombstone(member, now)) return false;
      settle(member, "timeout", now);
      return true;
    },
    async restoreAnswered() {
      // The in-process store never loses its data without its process.
    },
    async pendingCount() {
      return deadlines.size;
    },
    async ping() {},
    async close() {
      resources.clear();
      pending.clear();
      deadlines.clear();
      tombstones.clear();
    },
  };
}
