/**
 * The in-process store: the same semantics as the Redis store, for a single replica (REDIS_URL unset).
 * Everything happens synchronously inside one call, so each method is atomic as the Lua scripts are.
 */
import { randomUUID } from "node:crypto";
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

interface RecordEntry {
  request: PendingRequest;
  payload: string;
  retried: boolean;
  state: "pending" | "replied" | "timeout";
  /** When the record (pending or tombstone) is forgotten. */
  expires: number;
}

const memberOf = (requester: string, id: string) => `${requester}\n${id}`;

export function createMemoryStore({ ttls = DEFAULT_TTLS }: { ttls?: StoreTtls } = {}): Store {
  const resources = new Map<string, number>();
  const records = new Map<string, RecordEntry>();
  /**
   * Deadline index: member -> deadline. One process with one IQ_TIMEOUT_MS inserts deadlines in increasing
   * order, so insertion order is deadline order and a sweep stops at the first entry not yet due.
   */
  const deadlines = new Map<string, number>();
  /** Answered records in the order they were answered, i.e. by tombstone expiry; purged from the front. */
  const tombstones = new Map<string, number>();
  /** Resource -> when its unavailable presence was seen. */
  const gone = new Map<string, number>();
  let approved = false;
  /** An in-process store loses its data only with its process, so its epoch never changes. */
  const epoch = randomUUID();

  const settle = (member: string, entry: RecordEntry, state: "replied" | "timeout", now: number) => {
    entry.state = state;
    entry.expires = now + ttls.tombstoneMs;
    deadlines.delete(member);
    tombstones.delete(member);
    tombstones.set(member, entry.expires);
  };

  const purge = (now: number) => {
    for (const [member, expires] of tombstones) {
      if (expires > now) break;
      tombstones.delete(member);
      if (records.get(member)?.state !== "pending") records.delete(member);
    }
  };

  /** The pending record of a request sent to `resource`, or why an answer from it is not accepted. */
  const pendingFrom = (member: string, resource: string, now: number) => {
    const entry = live(member, now);
    if (!entry) return { status: "unknown" } as const;
    if (entry.state === "replied") return { status: "duplicate" } as const;
    if (entry.state === "timeout") return { status: "late" } as const;
    if (entry.request.resource !== resource) return { status: "wrong-resource" } as const;
    return entry;
  };

  const live = (member: string, now: number): RecordEntry | undefined => {
    const entry = records.get(member);
    if (entry && entry.expires <= now) {
      records.delete(member);
      return undefined;
    }
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
        const entry = records.get(member);
        const request = entry?.request;
        if (!entry || !request || entry.state !== "pending" || request.resource !== resource) continue;
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
      if (live(member, now)?.state === "pending") return { status: "duplicate" };
      const online = [...resources.keys()].sort();
      const resource = online[Math.min(online.length - 1, Math.floor(pick * online.length))];
      if (resource === undefined) return { status: approved ? "no-resource" : "presence-unknown" };
      const request = { requester, id, to, type, resource, deadline };
      records.set(member, {
        request,
        payload,
        retried: false,
        state: "pending",
        expires: deadline + ttls.recordGraceMs,
      });
      deadlines.set(member, deadline);
      return { status: "forwarded", resource };
    },

    async claimReply({ requester, id, resource, now }): Promise<ClaimResult> {
      const member = memberOf(requester, id);
      const entry = pendingFrom(member, resource, now);
      if (!("request" in entry)) return entry;
      settle(member, entry, "replied", now);
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
      settle(member, entry, "replied", now);
      return { status: "claimed", request: entry.request };
    },

    async claimExpired(now, limit) {
      purge(now);
      const claimed: PendingRequest[] = [];
      for (const [member, deadline] of deadlines) {
        if (deadline > now || claimed.length >= limit) break;
        deadlines.delete(member);
        const entry = live(member, now);
        if (entry?.state === "pending") {
          settle(member, entry, "timeout", now);
          claimed.push(entry.request);
        }
      }
      return claimed;
    },

    async epoch() {
      return epoch;
    },
    async claimLost({ requester, id, to }, now) {
      const member = memberOf(requester, id);
      const entry = live(member, now);
      if (entry && entry.state !== "pending") return false;
      const request = entry?.request ?? {
        requester,
        id,
        to,
        type: "get" as const,
        resource: "",
        deadline: now,
      };
      const fresh = entry ?? {
        request,
        payload: "",
        retried: false,
        state: "pending" as const,
        expires: now,
      };
      records.set(member, fresh);
      settle(member, fresh, "timeout", now);
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
      records.clear();
      deadlines.clear();
      tombstones.clear();
    },
  };
}
