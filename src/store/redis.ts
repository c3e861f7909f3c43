/**
 * The Redis store: shared by every replica of one component domain. Each multi-step change is one Lua script
 * (./lua, one typed method each in scripts.ts); every key comes from keys.ts and carries a TTL as a safety net.
 * This file holds the request lifecycle; the presence side (redis-presence.ts) and the messages
 * (redis-messages.ts) are spread into the same Store, all talking to Redis through redis-calls.ts.
 */
import { randomUUID } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import { bareOf } from "../xmpp/jid.js";
import { type Keys, requestOfMember } from "./keys.js";
import { createRedisCalls } from "./redis-calls.js";
import { closeRedisClient } from "./redis-client.js";
import { createRedisMessages } from "./redis-messages.js";
import { createRedisPresence } from "./redis-presence.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type DueAnswer,
  type FailoverResult,
  type ForwardResult,
  type IqRequestType,
  type PendingRequest,
  RANDOM_POLICY,
  type Store,
  type StoreLimits,
  type StoreTtls,
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

export function createRedisStore(deps: RedisStoreDeps): Store {
  const { redis: client, keys, ttls = DEFAULT_TTLS, limits = NO_LIMITS, wait } = deps;
  const calls = createRedisCalls({ client, wait });
  const { redis, call, write } = calls;
  const indexTtl = ttls.presenceMs + ttls.recordGraceMs;
  /**
   * The deadline index and the counts get their safety-net TTL from forward-8.lua about once a second (and
   * whenever the index was empty), not on every request: two commands fewer per request.
   */
  let indexRefreshedAt = 0;
  const refreshIndexTtl = (now: number): "1" | "0" => {
    if (now - indexRefreshedAt < 1_000) return "0";
    indexRefreshedAt = now;
    return "1";
  };
  const leaseEnd = (now: number) => now + ttls.answerLeaseMs;

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
    ...createRedisPresence({ calls, keys, ttls }),
    ...createRedisMessages({ calls, keys }),

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
        refreshIndexTtl(now),
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
