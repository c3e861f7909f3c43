/**
 * The Redis store: shared by every replica of one component domain. Each multi-step change is one Lua script
 * (./lua, one typed method each in scripts.ts); every key comes from keys.ts and carries a TTL as a safety net.
 */
import { randomUUID } from "node:crypto";
import { Cluster, type Redis } from "ioredis";
import type { BalancePolicy } from "../routing/choose.js";
import { type Keys, requestOfMember } from "./keys.js";
import { describeRedisError, outcomeOf } from "./outcome.js";
import { candidateOf, encodePresence } from "./presence-entry.js";
import { closeRedisClient } from "./redis-client.js";
import { defineScripts, type ScriptCommands } from "./scripts.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type DueAnswer,
  type FailoverResult,
  type ForwardResult,
  type IqRequestType,
  type MovedRequest,
  type PendingRequest,
  PLAIN_PRESENCE,
  RANDOM_POLICY,
  type Store,
  type StoreLimits,
  type StoreTtls,
  StoreUnavailableError,
  type SweepResult,
} from "./types.js";

export interface RedisStoreDeps {
  redis: Redis | Cluster;
  keys: Keys;
  ttls?: StoreTtls;
  limits?: StoreLimits;
  /**
   * Durability (REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS): every script that changes state is followed, in the
   * same round trip, by `WAIT replicas timeout`; fewer acknowledging replicas make the outcome unknown.
   */
  wait?: { readonly replicas: number; readonly timeoutMs: number };
}

export const NO_LIMITS: StoreLimits = Object.freeze({ perRequester: 1e12, total: 1e12 });

/** Pending records scanned per call when a resource goes away: a few ms of Redis time each. */
const GONE_CHUNK = 200;

type Script = keyof ScriptCommands;

export function createRedisStore(deps: RedisStoreDeps): Store {
  const { redis: client, keys, ttls = DEFAULT_TTLS, limits = NO_LIMITS, wait } = deps;
  const redis = defineScripts(client);
  const indexTtl = ttls.presenceMs + ttls.recordGraceMs;

  /** Every failure of the store becomes one error type, with no URL or password in its message. */
  async function call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      throw new StoreUnavailableError(`Redis ${what} failed: ${describeRedisError(err)}`, {
        cause: err,
        outcome: outcomeOf(err),
      });
    }
  }

  /** A script that changes state, made durable with WAIT when configured (one round trip either way). */
  async function write<K extends Script>(
    what: string,
    name: K,
    ...args: Parameters<ScriptCommands[K]>
  ): Promise<Awaited<ReturnType<ScriptCommands[K]>>> {
    type R = Awaited<ReturnType<ScriptCommands[K]>>;
    const script = redis[name] as unknown as (...a: unknown[]) => Promise<R>;
    if (!wait || wait.replicas === 0) return call<R>(what, () => script.apply(redis, args));
    const durable = async (): Promise<unknown> => {
      const pipeline = client.pipeline() as unknown as Record<string, (...a: unknown[]) => unknown> & {
        wait(replicas: number, timeout: number): unknown;
        exec(): Promise<Array<[Error | null, unknown]> | null>;
      };
      (pipeline[name] as (...a: unknown[]) => unknown)(...args);
      pipeline.wait(wait.replicas, wait.timeoutMs);
      const results = (await pipeline.exec()) ?? [];
      const [scriptError, result] = results[0] ?? [new Error("no reply"), null];
      const [waitError, acknowledged] = results[1] ?? [new Error("no reply"), 0];
      if (client instanceof Cluster && [scriptError, result, waitError, acknowledged].some(isRedirection)) {
        // ioredis 5.11 does not follow MOVED/ASK in a pipeline mixing a script and WAIT, and after a failover it
        // may even hand one command's reply to the other: refresh the slot map and retry with the same op.
        client.refreshSlotsCache();
        throw new StoreUnavailableError(`Redis ${what}: the domain's slot moved`, { outcome: "unknown" });
      }
      if (scriptError) throw scriptError;
      if (waitError || Number(acknowledged) < wait.replicas) {
        throw new StoreUnavailableError(
          `Redis ${what}: acknowledged by ${Number(acknowledged) || 0} of ${wait.replicas} replicas`,
          { outcome: "unknown" },
        );
      }
      return result;
    };
    return call<R>(what, durable as () => Promise<R>);
  }

  const leaseEnd = (now: number) => now + ttls.answerLeaseMs;

  async function resourceGone(
    resource: string,
    now: number,
    pick: number,
    balance: BalancePolicy = RANDOM_POLICY,
  ): Promise<MovedRequest[]> {
    const moved: MovedRequest[] = [];
    let cursor = 0;
    let count = 0;
    do {
      const flat = await write(
        "presence",
        "resourceGone",
        keys.resources,
        keys.gone,
        keys.deadlines,
        keys.counts,
        keys.presence,
        now,
        ttls.presenceMs,
        resource,
        keys.recordPrefix,
        pick,
        cursor,
        GONE_CHUNK,
        ttls.goneMs,
        balance.strategy,
        balance.highest ? "1" : "0",
        count,
      );
      cursor = Number(flat[0] ?? 0);
      count = Number(flat[1] ?? 0);
      for (let i = 2; i + 5 <= flat.length; i += 5) {
        moved.push({
          requester: flat[i] ?? "",
          id: flat[i + 1] ?? "",
          resource: flat[i + 2] ?? "",
          payload: flat[i + 3] ?? "",
          gen: Number(flat[i + 4] ?? 0),
        });
      }
    } while (cursor > 0);
    return moved;
  }

  /** One sweep-3 call over a deadline index and its records (legacy: the keys of versions before 0.2). */
  async function sweepIndex(
    now: number,
    limit: number,
    op: string,
    index: string,
    recordPrefix: string,
    legacy: boolean,
  ): Promise<SweepResult> {
    const flat = await write(
      "sweep",
      "sweep",
      index,
      keys.epoch,
      keys.counts,
      now,
      limit,
      recordPrefix,
      op,
      leaseEnd(now),
      randomUUID(),
      indexTtl,
      ttls.tombstoneMs,
      ttls.maxHandouts,
      legacy ? "1" : "0",
    );
    const due: DueAnswer[] = [];
    for (let i = 1; i + 9 <= flat.length; i += 9) {
      const answer = flat[i + 6] ?? "";
      const request = decode(flat, i);
      due.push({
        request,
        answer: answer === "" ? null : answer,
        redelivery: flat[i + 7] === "1",
        // Acknowledged under the key it is kept under: the requester that must answer, for a request of the
        // implementing account (request-out-3.lua); legacy records were never of that kind.
        key: legacy ? { requester: request.requester, id: request.id } : requestOfMember(flat[i + 8] ?? ""),
        ...(legacy ? { legacy: true as const } : {}),
      });
    }
    return { epoch: flat[0] ?? "", due };
  }

  return {
    resourceAvailable: (resource, now, presence = PLAIN_PRESENCE) =>
      write(
        "presence",
        "resourceAvailable",
        keys.resources,
        keys.subscription,
        keys.gone,
        keys.presence,
        keys.caps,
        resource,
        now,
        ttls.presenceMs,
        encodePresence(presence),
        presence.ver,
        ttls.capsAskMs,
      ).then((ask) => ask === 1),
    storeCaps: (ver, entry, now, max) =>
      write("caps", "capsStore", keys.caps, keys.capsOrder, ver, entry, now, max, ttls.presenceMs).then(
        () => {},
      ),
    async routingView() {
      const flat = await call("presence", () => redis.routingView(keys.resources, keys.presence, keys.caps));
      const count = Number(flat[0] ?? 0);
      const candidates = [];
      for (let i = 0; i < count; i++) candidates.push(candidateOf(flat[1 + 2 * i] ?? "", flat[2 + 2 * i]));
      const caps = new Map<string, string>();
      for (let i = 1 + 2 * count; i + 1 < flat.length; i += 2) caps.set(flat[i] ?? "", flat[i + 1] ?? "");
      return { candidates, caps };
    },
    async serviceState() {
      const [changed, state] = await write(
        "presence",
        "serviceState",
        keys.resources,
        keys.presence,
        keys.service,
        ttls.presenceMs,
      );
      const [kind, show = "", status = ""] = state.split("\x1f");
      return {
        changed: changed === "1",
        state: kind === "available" ? { available: true, show, status } : { available: false },
      };
    },
    addSubscriber: (bare, max) =>
      write("subscriber", "subscribe", keys.subscribers, bare, max).then((added) => added === 1),
    async removeSubscriber(bare) {
      await call("subscriber", () => redis.srem(keys.subscribers, bare));
    },
    isSubscriber: (bare) =>
      call("subscriber", () => redis.sismember(keys.subscribers, bare)).then((member) => member === 1),
    subscribers: () => call("subscriber", () => redis.smembers(keys.subscribers)),
    resourceUnavailable: (resource, now, pick, balance) => resourceGone(resource, now, pick, balance),
    clearResources: (now) => resourceGone("", now, 0).then(() => {}),
    expireResources: (since, now) =>
      write("presence", "expireResources", keys.resources, keys.gone, since, now, ttls.presenceMs),
    onlineResources: () => call("presence", () => redis.hkeys(keys.resources)).then((list) => list.sort()),
    queueMessage: ({ queuedAt, requester, to, stanza }, { perRequester, total, ttlMs }) =>
      write(
        "message",
        "queueMessage",
        keys.queue,
        keys.queued,
        keys.resources,
        keys.presence,
        [queuedAt, requester, to, stanza].join("\x1f"),
        bareOf(requester),
        perRequester,
        total,
        ttlMs,
      ) as Promise<"queued" | "online" | "requester" | "total">,
    async takeMessages(count, before) {
      const entries = await write("message", "takeMessages", keys.queue, keys.queued, count, before ?? "");
      return entries.map((entry) => {
        // queued-at, requester and address hold no 0x1F (digits, JIDs); the message is the rest.
        const [queuedAt = "0", requester = "", to = ""] = entry.split("\x1f", 3);
        const stanza = entry.slice(queuedAt.length + requester.length + to.length + 3);
        return { queuedAt: Number(queuedAt), requester, to, stanza };
      });
    },
    async rememberMessage(requester, id, resource, ttlMs) {
      await call("message", () => redis.set(keys.message(requester, id), resource, "PX", ttlMs));
    },
    takeMessageSender: (requester, id) => call("message", () => redis.getdel(keys.message(requester, id))),
    async setSubscriptionApproved(approved) {
      if (approved)
        await call("subscription", () => redis.set(keys.subscription, "1", "PX", ttls.presenceMs));
      else await call("subscription", () => redis.del(keys.subscription));
    },
    subscriptionApproved: () =>
      call("subscription", () => redis.get(keys.subscription)).then((v) => v === "1"),

    async requestOut({ asker, askerId, to, answerer, sentId, type, now, deadline, op }) {
      const member = keys.member(answerer, sentId);
      const [status] = await write(
        "forward",
        "requestOut",
        keys.record(member),
        keys.deadlines,
        keys.counts,
        asker,
        askerId,
        to,
        type,
        deadline,
        member,
        Math.max(1, deadline - now) + ttls.recordGraceMs,
        indexTtl,
        op,
        bareOf(asker),
        answerer,
        limits.total,
      );
      return status as Awaited<ReturnType<Store["requestOut"]>>;
    },

    async forward(input): Promise<ForwardResult> {
      const { requester, id, now, deadline, balance } = input;
      const member = keys.member(requester, id);
      const recordTtl = Math.max(1, deadline - now) + ttls.recordGraceMs;
      const [status, detail, generation, negative, capability, drained, priority, moved] = await write(
        "forward",
        "forward",
        keys.resources,
        keys.record(member),
        keys.deadlines,
        keys.subscription,
        keys.counts,
        keys.presence,
        keys.caps,
        keys.gone,
        requester,
        id,
        input.to,
        input.type,
        deadline,
        input.pick,
        member,
        recordTtl,
        indexTtl,
        input.payload,
        input.op,
        bareOf(requester),
        limits.perRequester,
        limits.total,
        balance.strategy,
        balance.highest ? "1" : "0",
        input.namespace,
        now,
      );
      if (status === "forwarded" && detail) {
        const skipped = {
          negative: Number(negative ?? 0),
          capability: Number(capability ?? 0),
          drained: Number(drained ?? 0),
          priority: Number(priority ?? 0),
        };
        return { status, resource: detail, gen: Number(generation ?? 0), skipped, moved: moved === "1" };
      }
      if (status === "limited") return { status, scope: detail === "total" ? "total" : "requester" };
      if (
        status === "none" &&
        (detail === "no-eligible" || detail === "no-capable" || detail === "capabilities-pending")
      )
        return { status, reason: detail };
      if (status === "duplicate" || status === "presence-unknown" || status === "answered") return { status };
      return { status: "no-resource" };
    },

    async claimReply({ requester, id, resource, now, op, answer, gen }): Promise<ClaimResult> {
      const member = keys.member(requester, id);
      const reply = await write(
        "claim",
        "claim",
        keys.record(member),
        keys.deadlines,
        keys.counts,
        resource,
        member,
        op,
        answer,
        now,
        leaseEnd(now),
        gen,
      );
      return claimOf(reply);
    },

    async failover({
      requester,
      id,
      resource,
      pick,
      now,
      op,
      answer,
      gen,
      balance = RANDOM_POLICY,
    }): Promise<FailoverResult> {
      const member = keys.member(requester, id);
      const reply = await write(
        "failover",
        "failover",
        keys.resources,
        keys.record(member),
        keys.gone,
        keys.deadlines,
        keys.counts,
        keys.presence,
        resource,
        pick,
        member,
        op,
        answer,
        now,
        leaseEnd(now),
        gen,
        balance.strategy,
        balance.highest ? "1" : "0",
      );
      if (reply[0] === "resent") {
        return {
          status: "resent",
          resource: reply[1] ?? "",
          type: reply[2] as IqRequestType,
          payload: reply[3] ?? "",
        };
      }
      return claimOf(reply);
    },

    async sweep(now, limit, op) {
      const current = await sweepIndex(now, limit, op, keys.deadlines, keys.recordPrefix, false);
      // Requests written by versions before 0.2 are answered too while a rolling update leaves any: a script
      // call per sweep on an index that is soon empty. Its failure only delays those.
      const legacy = await sweepIndex(
        now,
        limit,
        op,
        keys.legacy.deadlines,
        keys.legacy.recordPrefix,
        true,
      ).catch(() => ({ epoch: "", due: [] as DueAnswer[] }));
      return { epoch: current.epoch, due: [...current.due, ...legacy.due] };
    },

    async ack(answers) {
      const current = answers.filter((answer) => !answer.legacy);
      const legacy = answers.filter((answer) => answer.legacy);
      for (const [list, index, prefix, member] of [
        [current, keys.deadlines, keys.recordPrefix, keys.member],
        [legacy, keys.legacy.deadlines, keys.legacy.recordPrefix, keys.legacy.member],
      ] as const) {
        for (let i = 0; i < list.length; i += 500) {
          const pairs = list
            .slice(i, i + 500)
            .flatMap(({ requester, id, op }) => [member(requester, id), op]);
          await write("ack", "ack", index, prefix, ttls.tombstoneMs, ...pairs);
        }
      }
    },

    epoch: () => write("epoch", "epoch", keys.epoch, randomUUID(), indexTtl),
    async claimLost({ requester, id }) {
      const member = keys.member(requester, id);
      return (
        (await write("claim", "claimLost", keys.record(member), keys.deadlines, member, ttls.tombstoneMs)) ===
        1
      );
    },
    async restoreAnswered(answered) {
      for (let i = 0; i < answered.length; i += 500) {
        const members = answered.slice(i, i + 500).map(({ requester, id }) => keys.member(requester, id));
        await write(
          "restore",
          "restoreAnswered",
          keys.deadlines,
          keys.recordPrefix,
          ttls.tombstoneMs,
          ...members,
        );
      }
    },
    pendingCount: () => call("count", () => redis.zcard(keys.deadlines)),
    // A key of the domain, so that on a Cluster it is the shard holding the domain that must answer.
    ping: () => call("ping", () => redis.exists(keys.epoch)).then(() => {}),
    close: () => closeRedisClient(client),
  };
}

/** A reply, or a reply in the wrong place, that says the slot lives elsewhere or the cluster is changing. */
const isRedirection = (value: unknown): boolean => {
  const text = value instanceof Error ? value.message : typeof value === "string" ? value : "";
  return /^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN) /.test(text) || text.includes("replica instances");
};

/** The bare JID of a full JID (RFC 7622 section 3.1: the resource starts at the first '/'). */
const bareOf = (jid: string) => {
  const slash = jid.indexOf("/");
  return slash < 0 ? jid : jid.slice(0, slash);
};

function claimOf(reply: Array<string | null>): ClaimResult {
  const status = reply[0];
  if (status === "claimed") return { status, request: decode(reply, 1) };
  if (status === "duplicate" || status === "late" || status === "wrong-resource" || status === "stale")
    return { status };
  return { status: "unknown" };
}

/** Six fields from a script reply: requester, id, to, type, resource, deadline. */
function decode(fields: Array<string | null>, at: number): PendingRequest {
  const field = (offset: number) => fields[at + offset] ?? "";
  return {
    requester: field(0),
    id: field(1),
    to: field(2),
    type: field(3) as IqRequestType,
    resource: field(4),
    deadline: Number(field(5)),
  };
}
