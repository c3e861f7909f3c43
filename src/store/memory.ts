/**
 * The in-process store: the same semantics as the Redis store, for a single replica (REDIS_URL unset).
 * Everything happens synchronously inside one call, so each method is atomic as the Lua scripts are.
 */
import { randomUUID } from "node:crypto";
import { type BalancePolicy, choose } from "../routing/choose.js";
import { evictOldest } from "../util/evict.js";
import { knowledgeOf, settled } from "./caps-entry.js";
import { memberOf, requestOfMember } from "./keys.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type DueAnswer,
  type FailoverResult,
  type ForwardResult,
  type MovedRequest,
  type PendingRequest,
  PLAIN_PRESENCE,
  type QueuedMessage,
  RANDOM_POLICY,
  type ResourcePresence,
  type ServiceState,
  type Store,
  type StoreLimits,
  type StoreTtls,
} from "./types.js";

/** A request forwarded and not yet answered ("pending"), or whose answer is being delivered ("answering"). */
interface Live {
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
interface Tombstone {
  readonly state: "replied" | "timeout";
  readonly gen: number;
  /** The forward's op: a retried forward learns that it was answered. */
  readonly fop: string;
  readonly expires: number;
}

/** Tombstones kept at most; beyond it the oldest go first, and a reply to them counts as unknown. */
export const MAX_TOMBSTONES = 100_000;

/** Messages remembered for their bounces, at most (the oldest are forgotten first). */
const MAX_REMEMBERED_MESSAGES = 100_000;

export function createMemoryStore({
  ttls = DEFAULT_TTLS,
  limits = { perRequester: Number.POSITIVE_INFINITY, total: Number.POSITIVE_INFINITY },
  maxTombstones = MAX_TOMBSTONES,
}: {
  ttls?: StoreTtls;
  limits?: StoreLimits;
  maxTombstones?: number;
} = {}): Store {
  const resources = new Map<string, number>();
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
  /** Resource -> when its unavailable presence was seen. */
  const gone = new Map<string, number>();
  const presences = new Map<string, ResourcePresence>();
  /** XEP-0115 ver -> entry (caps-entry.ts), in the order stored; ver -> until when a query stands. */
  const caps = new Map<string, string>();
  const asking = new Map<string, number>();
  /** Resource -> pending requests counted under least-pending; and the round-robin rotation. */
  const loads = new Map<string, number>();
  let rotation = 0;
  /** Messages kept while no resource is online, oldest first, and how many per bare JID. */
  const queue: QueuedMessage[] = [];
  const queuedCounts = new Map<string, number>();
  const subscribed = new Set<string>();
  /** The service state last computed (serviceState), to tell a change. */
  let serviceKey = "";
  /** Messages sent by the implementing account: member -> [resource, forget after (epoch ms)]. */
  const messages = new Map<string, [string, number]>();
  let approved = false;
  /** An in-process store loses its data only with its process, so its epoch never changes. */
  const epoch = randomUUID();

  const bareOf = (jid: string) => jid.split("/", 1)[0] ?? jid;
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
  /** Where a moved request goes: chosen as a new one would be, without a namespace (lib/choose.lua likewise). */
  const another = (requester: string, pick: number, policy: BalancePolicy): string | null => {
    const choice = choose({
      candidates: candidates(),
      policy,
      pick,
      requester,
      namespace: "",
      caps: () => ({ kind: "unknown" }),
      load: (name) => loads.get(name) ?? 0,
      rotation: () => ++rotation,
    });
    return choice.kind === "chosen" ? choice.resource : null;
  };
  const candidates = () =>
    [...resources.keys()].map((name) => {
      const { priority, show, ver } = presences.get(name) ?? PLAIN_PRESENCE;
      return { name, priority, show, ver };
    });

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
    async resourceAvailable(resource, now, info = PLAIN_PRESENCE) {
      resources.set(resource, now);
      presences.set(resource, info);
      gone.delete(resource);
      approved = true;
      const { ver } = info;
      if (ver === "" || settled(caps.get(ver), now) || (asking.get(ver) ?? 0) > now) return false;
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
    async resourceUnavailable(resource, now, pick, balance = RANDOM_POLICY) {
      resources.delete(resource);
      gone.set(resource, now);
      for (const [name, when] of gone) if (when < now - ttls.goneMs) gone.delete(name);
      const moved: MovedRequest[] = [];
      if (resources.size === 0) return moved;
      for (const [member] of deadlines) {
        const entry = live.get(member);
        const request = entry?.request;
        if (!entry || !request || request.resource !== resource) continue;
        if (request.type !== "get" || entry.retried || entry.payload === "") continue;
        const x = pick + moved.length * 0.6180339887498949;
        const next = another(request.requester, x - Math.floor(x), balance);
        if (next === null) break;
        move(entry, next);
        moved.push({
          requester: request.requester,
          id: request.id,
          resource: next,
          payload: entry.payload,
          gen: entry.gen,
        });
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
    async queueMessage(message, { perRequester, total }) {
      if (candidates().some((c) => c.priority >= 0)) return "online";
      const bare = bareOf(message.requester);
      if ((queuedCounts.get(bare) ?? 0) >= perRequester) return "requester";
      if (queue.length >= total) return "total";
      queue.push(message);
      queuedCounts.set(bare, (queuedCounts.get(bare) ?? 0) + 1);
      return "queued";
    },
    async takeMessages(count, before) {
      let taken = 0;
      while (
        taken < count &&
        taken < queue.length &&
        (before === undefined || (queue[taken]?.queuedAt ?? 0) < before)
      )
        taken++;
      const out = queue.splice(0, taken);
      for (const { requester } of out) {
        const bare = bareOf(requester);
        const left = (queuedCounts.get(bare) ?? 1) - 1;
        if (left > 0) queuedCounts.set(bare, left);
        else queuedCounts.delete(bare);
      }
      return out;
    },
    async rememberMessage(requester, id, resource, ttlMs) {
      const member = memberOf(requester, id);
      messages.delete(member);
      messages.set(member, [resource, Date.now() + ttlMs]);
      evictOldest(messages, MAX_REMEMBERED_MESSAGES);
    },
    async takeMessageSender(requester, id) {
      const member = memberOf(requester, id);
      const entry = messages.get(member);
      messages.delete(member);
      return entry && entry[1] > Date.now() ? entry[0] : null;
    },
    async setSubscriptionApproved(value) {
      approved = value;
    },
    async subscriptionApproved() {
      return approved;
    },

    async requestOut({ asker, askerId, to, answerer, sentId, type, now, deadline, op }) {
      const member = memberOf(answerer, sentId);
      const entry = liveEntry(member, now);
      if (entry?.fop === op) return entry.state === "pending" ? "forwarded" : "answered";
      if (liveTombstone(member, now)?.fop === op) return "answered";
      if (entry) return "duplicate";
      if (deadlines.size + leases.size >= limits.total) return "limited";
      tombstones.delete(member);
      live.set(
        member,
        pending({ requester: asker, id: askerId, to, type, resource: answerer, deadline }, "", 0, op),
      );
      deadlines.set(member, deadline);
      count(asker, 1);
      return "forwarded";
    },

    async forward(input): Promise<ForwardResult> {
      const { requester, id, to, type, now, deadline, payload, op } = input;
      const member = memberOf(requester, id);
      const entry = liveEntry(member, now);
      const none = { negative: 0, capability: 0, drained: 0, priority: 0 };
      if (entry?.fop === op)
        return entry.state === "pending"
          ? {
              status: "forwarded",
              resource: entry.request.resource,
              gen: entry.gen,
              skipped: none,
              moved: false,
            }
          : { status: "answered" };
      if (liveTombstone(member, now)?.fop === op) return { status: "answered" };
      if (entry) return { status: "duplicate" };
      if (resources.size === 0) return { status: approved ? "no-resource" : "presence-unknown" };
      if ((counts.get(bareOf(requester)) ?? 0) >= limits.perRequester)
        return { status: "limited", scope: "requester" };
      if (deadlines.size + leases.size >= limits.total) return { status: "limited", scope: "total" };
      const choice = choose({
        candidates: candidates(),
        policy: input.balance,
        pick: input.pick,
        requester,
        namespace: input.namespace,
        caps: (ver) => knowledgeOf(caps.get(ver), asking.get(ver), now),
        load: (name) => loads.get(name) ?? 0,
        rotation: () => ++rotation,
        gone: [...gone.keys()],
      });
      if (choice.kind === "none")
        return choice.reason === "no-resource"
          ? { status: "no-resource" }
          : { status: "none", reason: choice.reason };
      const { resource } = choice;
      const request = { requester, id, to, type, resource, deadline };
      // A tombstone of an earlier request with the same id is replaced, as in forward-8.lua.
      const earlier = liveTombstone(member, now);
      const gen = earlier ? earlier.gen + 1 : 0;
      tombstones.delete(member);
      const record = pending(request, payload, gen, op);
      if (input.balance.strategy === "least-pending") {
        record.counted = true;
        load(resource, 1);
      }
      live.set(member, record);
      deadlines.set(member, deadline);
      count(requester, 1);
      return { status: "forwarded", resource, gen, skipped: choice.skipped, moved: choice.moved };
    },

    async claimReply({ requester, id, resource, now, op, answer, gen }): Promise<ClaimResult> {
      const member = memberOf(requester, id);
      const entry = pendingFrom(member, resource, op, gen, now);
      if (!("state" in entry)) return entry;
      entry.outcome = "replied";
      hold(member, entry, op, answer, now);
      return { status: "claimed", request: entry.request };
    },

    async failover(input): Promise<FailoverResult> {
      const { requester, id, resource, now, op, answer, gen } = input;
      const member = memberOf(requester, id);
      const entry = pendingFrom(member, resource, op, gen, now);
      if (!("state" in entry)) return entry;
      resources.delete(resource);
      const next = another(requester, input.pick, input.balance ?? RANDOM_POLICY);
      const movable = entry.request.type === "get" || gone.has(resource);
      if (!entry.retried && movable && entry.payload !== "" && next !== null) {
        move(entry, next);
        return { status: "resent", resource: next, type: entry.request.type, payload: entry.payload };
      }
      entry.outcome = "replied";
      hold(member, entry, op, answer, now);
      return { status: "claimed", request: entry.request };
    },

    async sweep(now, limit, op) {
      purge(now);
      const due: DueAnswer[] = [];
      // Collected first: handing out re-inserts into the lease index being walked.
      const expired: string[] = [];
      for (const [member, lease] of leases) {
        if (lease > now || expired.length >= limit) break;
        expired.push(member);
      }
      for (const [member, deadline] of deadlines) {
        if (deadline > now || expired.length >= limit) break;
        expired.push(member);
      }
      for (const member of expired) {
        const entry = liveEntry(member, now);
        if (!entry) {
          deadlines.delete(member);
          leases.delete(member);
          continue;
        }
        const redelivery = entry.state === "answering";
        if (redelivery && entry.tries >= ttls.maxHandouts) {
          bury(member, entry.outcome, entry.fop, entry.gen, now);
          continue;
        }
        if (!redelivery) entry.outcome = "timeout";
        hold(member, entry, op, redelivery ? entry.answer : null, now);
        due.push({ request: entry.request, answer: entry.answer, redelivery, key: requestOfMember(member) });
      }
      return { epoch, due };
    },

    async ack(answers) {
      const now = Date.now();
      for (const { requester, id, op } of answers) {
        const member = memberOf(requester, id);
        const entry = live.get(member);
        if (entry?.state === "answering" && entry.op === op)
          bury(member, entry.outcome, entry.fop, entry.gen, now);
      }
    },

    async epoch() {
      return epoch;
    },
    async claimLost({ requester, id }, now) {
      const member = memberOf(requester, id);
      const entry = liveEntry(member, now);
      if (entry?.state === "answering" || (!entry && liveTombstone(member, now))) return false;
      if (entry) count(requester, -1);
      bury(member, "timeout", "", 0, now);
      return true;
    },
    async restoreAnswered() {
      // The in-process store never loses its data without its process.
    },
    async pendingCount() {
      return deadlines.size + leases.size;
    },
    async ping() {},
    async close() {
      resources.clear();
      live.clear();
      deadlines.clear();
      leases.clear();
      tombstones.clear();
      counts.clear();
      loads.clear();
    },
  };
}
