/**
 * The in-process store's request records: one per request forwarded and not yet answered ("pending") or whose
 * answer is being delivered ("answering"), their deadline and lease indexes, the tombstones of answered ones,
 * and the pending counts per requester and per resource. The changes every request operation of memory.ts
 * shares are here: a record held for delivery, buried, or forgotten when its safety-net expiry passed.
 */
import { evictOldest } from "../util/evict.js";
import { bareOf } from "../xmpp/jid.js";
import type { PendingRequest, StoreTtls } from "./types.js";

/** A request forwarded and not yet answered ("pending"), or whose answer is being delivered ("answering"). */
export interface Live {
  state: "pending" | "answering";
  request: PendingRequest;
  payload: string;
  retried: boolean;
  /** Counted in its resource's load (least-pending) while pending. */
  counted: boolean;
  /** Earlier requests with this member whose tombstones lived when it was forwarded (forward-5.lua). */
  readonly gen: number;
  /** The forward's op (kept in the tombstone), and the op of whoever holds the answer. */
  readonly fop: string;
  op: string;
  /** While answering: the reply kept for redelivery (null: the timeout answer), what it is, and its lease. */
  answer: string | null;
  outcome: "replied" | "timeout";
  tries: number;
  /** Safety net, as the Redis record's TTL: forgotten after this even if no sweep claimed it. */
  expires: number;
}

/** What is left of an answered request: enough to tell a duplicate or late reply from an unknown one. */
export interface Tombstone {
  readonly state: "replied" | "timeout";
  readonly gen: number;
  /** The forward's op: a retried forward learns that it was answered. */
  readonly fop: string;
  readonly expires: number;
}

export function createMemoryRecords({ ttls, maxTombstones }: { ttls: StoreTtls; maxTombstones: number }) {
  const live = new Map<string, Live>();
  /**
   * Deadline index of pending requests: member -> deadline. One process with one IQ_TIMEOUT_MS inserts
   * deadlines in increasing order, so insertion order is deadline order and a sweep stops at the first entry
   * not yet due. Leases of answers being delivered, likewise, in their own index.
   */
  const deadlines = new Map<string, number>();
  const leases = new Map<string, number>();
  /** Answered requests in the order they were answered, i.e. by expiry; purged from the front. */
  const tombstones = new Map<string, Tombstone>();
  const counts = new Map<string, number>();
  /** Resource -> pending requests counted under least-pending. */
  const loads = new Map<string, number>();

  const count = (requester: string, delta: number) => {
    const bare = bareOf(requester);
    const next = (counts.get(bare) ?? 0) + delta;
    if (next > 0) counts.set(bare, next);
    else counts.delete(bare);
  };

  const load = (resource: string, delta: number) => {
    const next = (loads.get(resource) ?? 0) + delta;
    if (next > 0) loads.set(resource, next);
    else loads.delete(resource);
  };
  /** A pending request moves to another resource: its load moves with it. */
  const move = (entry: Live, resource: string) => {
    if (entry.counted) {
      load(entry.request.resource, -1);
      load(resource, 1);
    }
    entry.request = { ...entry.request, resource };
    entry.retried = true;
  };

  const bury = (member: string, state: Tombstone["state"], fop: string, gen: number, now: number) => {
    live.delete(member);
    deadlines.delete(member);
    leases.delete(member);
    tombstones.delete(member);
    tombstones.set(member, { state, fop, gen, expires: now + ttls.tombstoneMs });
    evictOldest(tombstones, maxTombstones);
  };

  /** The record leaves "pending": its answer is held under `op` until acknowledged or its lease ends. */
  const hold = (member: string, entry: Live, op: string, answer: string | null, now: number) => {
    if (entry.state === "pending") count(entry.request.requester, -1);
    if (entry.state === "pending" && entry.counted) load(entry.request.resource, -1);
    entry.counted = false;
    entry.state = "answering";
    entry.op = op;
    entry.answer = answer;
    entry.tries++;
    deadlines.delete(member);
    leases.delete(member);
    leases.set(member, now + ttls.answerLeaseMs);
  };

  const purge = (now: number) => {
    for (const [member, { expires }] of tombstones) {
      if (expires > now) break;
      tombstones.delete(member);
    }
  };

  const liveEntry = (member: string, now: number): Live | undefined => {
    const entry = live.get(member);
    if (entry && entry.expires <= now) {
      if (entry.state === "pending") count(entry.request.requester, -1);
      if (entry.state === "pending" && entry.counted) load(entry.request.resource, -1);
      live.delete(member);
      deadlines.delete(member);
      leases.delete(member);
      return undefined;
    }
    return entry;
  };

  const liveTombstone = (member: string, now: number): Tombstone | undefined => {
    const tombstone = tombstones.get(member);
    return tombstone && tombstone.expires > now ? tombstone : undefined;
  };

  /** The pending record of a request sent to `resource`, or why an answer from it is not accepted. */
  const pendingFrom = (member: string, resource: string, op: string, gen: number, now: number) => {
    const entry = liveEntry(member, now);
    if (entry?.state === "answering") {
      const lease = leases.get(member) ?? 0;
      if (entry.op === op && lease > now) return { status: "claimed", request: entry.request } as const;
      return { status: entry.outcome === "timeout" ? "late" : "duplicate" } as const;
    }
    if (!entry) {
      const state = liveTombstone(member, now)?.state;
      if (state === "replied") return { status: "duplicate" } as const;
      if (state === "timeout") return { status: "late" } as const;
      return { status: "unknown" } as const;
    }
    if (entry.gen !== gen) return { status: "stale" } as const;
    if (entry.request.resource !== resource) return { status: "wrong-resource" } as const;
    return entry;
  };

  /** A new pending record, as forward-5.lua and request-out-3.lua write it. */
  const pending = (request: PendingRequest, payload: string, gen: number, fop: string): Live => ({
    state: "pending",
    request,
    payload,
    retried: false,
    counted: false,
    gen,
    fop,
    op: "",
    answer: null,
    outcome: "replied",
    tries: 0,
    expires: request.deadline + ttls.recordGraceMs,
  });

  return {
    live,
    deadlines,
    leases,
    tombstones,
    counts,
    loads,
    count,
    load,
    move,
    bury,
    hold,
    purge,
    liveEntry,
    liveTombstone,
    pendingFrom,
    pending,
  };
}
