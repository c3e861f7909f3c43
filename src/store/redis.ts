/**
 * The Redis store: shared by every replica of one component domain. Each multi-step change is one Lua script
 * (./lua); every key comes from keys.ts and carries a TTL as a safety net.
 */
import { randomUUID } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import type { Keys } from "./keys.js";
import { defineScripts } from "./scripts.js";
import {
  type ClaimResult,
  DEFAULT_TTLS,
  type FailoverResult,
  type ForwardResult,
  type IqRequestType,
  type MovedRequest,
  type PendingRequest,
  type Store,
  type StoreTtls,
  StoreUnavailableError,
} from "./types.js";

export interface RedisStoreDeps {
  redis: Redis | Cluster;
  keys: Keys;
  ttls?: StoreTtls;
}

export function createRedisStore({ redis: client, keys, ttls = DEFAULT_TTLS }: RedisStoreDeps): Store {
  const redis = defineScripts(client);
  const deadlineIndexTtl = ttls.presenceMs + ttls.recordGraceMs;

  /** Every failure of the store becomes one error type, with no URL or password in its message. */
  async function call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw new StoreUnavailableError(`Redis ${what} failed: ${describe(err)}`, { cause: err });
    }
  }

  return {
    resourceAvailable: (resource, now) =>
      call("presence", () =>
        redis.resourceAvailable(keys.resources, keys.subscription, keys.gone, resource, now, ttls.presenceMs),
      ).then(() => {}),
    async resourceUnavailable(resource, now, pick) {
      const flat = await call("presence", () =>
        redis.resourceGone(
          keys.resources,
          keys.gone,
          keys.deadlines,
          now,
          ttls.presenceMs,
          resource,
          keys.recordPrefix,
          pick,
        ),
      );
      const moved: MovedRequest[] = [];
      for (let i = 0; i + 4 <= flat.length; i += 4) {
        moved.push({
          requester: flat[i] ?? "",
          id: flat[i + 1] ?? "",
          resource: flat[i + 2] ?? "",
          payload: flat[i + 3] ?? "",
        });
      }
      return moved;
    },
    clearResources: (now) =>
      call("presence", () =>
        redis.resourceGone(
          keys.resources,
          keys.gone,
          keys.deadlines,
          now,
          ttls.presenceMs,
          "",
          keys.recordPrefix,
          0,
        ),
      ).then(() => {}),
    expireResources: (since, now) =>
      call("presence", () => redis.expireResources(keys.resources, keys.gone, since, now, ttls.presenceMs)),
    onlineResources: () => call("presence", () => redis.hkeys(keys.resources)).then((list) => list.sort()),
    async setSubscriptionApproved(approved) {
      if (approved)
        await call("subscription", () => redis.set(keys.subscription, "1", "PX", ttls.presenceMs));
      else await call("subscription", () => redis.del(keys.subscription));
    },
    subscriptionApproved: () =>
      call("subscription", () => redis.get(keys.subscription)).then((v) => v === "1"),

    async forward({ requester, id, to, type, now, deadline, pick, payload }): Promise<ForwardResult> {
      const member = keys.member(requester, id);
      const recordTtl = Math.max(1, deadline - now) + ttls.recordGraceMs;
      const [status, resource] = await call("forward", () =>
        redis.forward(
          keys.resources,
          keys.record(member),
          keys.deadlines,
          keys.subscription,
          requester,
          id,
          to,
          type,
          deadline,
          pick,
          member,
          recordTtl,
          deadlineIndexTtl,
          payload,
        ),
      );
      if (status === "forwarded" && resource !== undefined) return { status, resource };
      if (status === "duplicate" || status === "presence-unknown") return { status };
      return { status: "no-resource" };
    },

    async claimReply({ requester, id, resource }): Promise<ClaimResult> {
      const member = keys.member(requester, id);
      const reply = await call("claim", () =>
        redis.claim(keys.record(member), keys.deadlines, resource, member, ttls.tombstoneMs),
      );
      const status = reply[0];
      if (status === "claimed") return { status, request: decode(reply, 1) };
      if (status === "duplicate" || status === "late" || status === "wrong-resource") return { status };
      return { status: "unknown" };
    },

    async failover({ requester, id, resource, pick }): Promise<FailoverResult> {
      const member = keys.member(requester, id);
      const reply = await call("failover", () =>
        redis.failover(
          keys.resources,
          keys.record(member),
          keys.gone,
          keys.deadlines,
          resource,
          pick,
          member,
          ttls.tombstoneMs,
        ),
      );
      const status = reply[0];
      if (status === "resent") {
        return { status, resource: reply[1] ?? "", type: reply[2] as IqRequestType, payload: reply[3] ?? "" };
      }
      if (status === "claimed") return { status, request: decode(reply, 1) };
      if (status === "duplicate" || status === "late" || status === "wrong-resource") return { status };
      return { status: "unknown" };
    },

    async claimExpired(now, limit) {
      const flat = await call("sweep", () =>
        redis.sweep(keys.deadlines, now, limit, keys.recordPrefix, ttls.tombstoneMs),
      );
      const claimed: PendingRequest[] = [];
      for (let i = 0; i + 6 <= flat.length; i += 6) claimed.push(decode(flat, i));
      return claimed;
    },

    epoch: () =>
      call("epoch", () => redis.epoch(keys.epoch, randomUUID(), ttls.presenceMs + ttls.recordGraceMs)),
    async claimLost({ requester, id, to }) {
      const member = keys.member(requester, id);
      const claimed = await call("claim", () =>
        redis.claimLost(keys.record(member), keys.deadlines, member, ttls.tombstoneMs, requester, id, to),
      );
      return claimed === 1;
    },
    async restoreAnswered(answered) {
      for (let i = 0; i < answered.length; i += 500) {
        const members = answered.slice(i, i + 500).map(({ requester, id }) => keys.member(requester, id));
        await call("restore", () =>
          redis.restoreAnswered(keys.deadlines, keys.recordPrefix, ttls.tombstoneMs, ...members),
        );
      }
    },
    pendingCount: () => call("count", () => redis.zcard(keys.deadlines)),
    // A key of the domain, so that on a Cluster it is the shard holding the domain that must answer.
    ping: () => call("ping", () => redis.exists(keys.epoch)).then(() => {}),
    async close() {
      await client.quit().catch(() => client.disconnect());
    },
  };
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

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // ioredis messages may quote the connection URL; keep only the reason.
  return message.replace(/rediss?:\/\/\S*/g, "<redis>").slice(0, 200);
}
