/**
 * The in-process store: the same semantics as the Redis store, for a single replica (REDIS_URL unset).
 * Everything happens synchronously inside one call, so each method is atomic as the Lua scripts are.
 * This file holds the request lifecycle over the records of memory-records.ts; the presence side
 * (memory-presence.ts) and the messages (memory-messages.ts) are spread into the same Store.
 */
import { randomUUID } from "node:crypto";
import { type BalancePolicy, choose } from "../routing/choose.js";
import { bareOf } from "../xmpp/jid.js";
import { knowledgeOf } from "./caps-entry.js";
import { memberOf, requestOfMember } from "./keys.js";
import { createMemoryMessages } from "./memory-messages.js";
import { createMemoryPresence } from "./memory-presence.js";
import { createMemoryRecords } from "./memory-records.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type DueAnswer,
  type FailoverResult,
  type ForwardResult,
  type MovedRequest,
  RANDOM_POLICY,
  type Store,
  type StoreLimits,
  type StoreTtls,
} from "./types.js";

/** Tombstones kept at most; beyond it the oldest go first, and a reply to them counts as unknown. */
export const MAX_TOMBSTONES = 100_000;

export function createMemoryStore({
  ttls = DEFAULT_TTLS,
  limits = { perRequester: Number.POSITIVE_INFINITY, total: Number.POSITIVE_INFINITY },
  maxTombstones = MAX_TOMBSTONES,
}: {
  ttls?: StoreTtls;
  limits?: StoreLimits;
  maxTombstones?: number;
} = {}): Store {
  const presence = createMemoryPresence({ ttls });
  const { resources, gone, caps, asking, candidates } = presence.state;
  const records = createMemoryRecords({ ttls, maxTombstones });
  const { live, deadlines, leases, tombstones, counts, loads, count, load, move } = records;
  const { bury, hold, purge, liveEntry, liveTombstone, pendingFrom, pending } = records;
  /** The round-robin rotation. */
  let rotation = 0;
  /** An in-process store loses its data only with its process, so its epoch never changes. */
  const epoch = randomUUID();

  /** Where a moved request goes: chosen as a new one would be, without a namespace (lib/choose.lua likewise). */
  const another = (requester: string, pick: number, policy: BalancePolicy): string | null => {
    const choice = choose({
      candidates: candidates(),
      policy,
      pick,
      requester,
      namespace: "",
      load: (name) => loads.get(name) ?? 0,
      rotation: () => ++rotation,
    });
    return choice.kind === "chosen" ? choice.resource : null;
  };

  return {
    ...presence.methods,
    ...createMemoryMessages({ candidates }),
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
      if (resources.size === 0)
        return { status: presence.state.approved() ? "no-resource" : "presence-unknown" };
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
