/**
 * The Redis store's presence side: the resources of the implementing account and their presence, the routing
 * view with the XEP-0115 capabilities, the subscription, and the service's own presence and its subscribers.
 * A resource that goes away moves its pending requests in the same script calls (resource-gone-5.lua).
 */
import type { BalancePolicy } from "../routing/choose.js";
import type { Keys } from "./keys.js";
import { candidateOf, encodePresence } from "./presence-entry.js";
import type { RedisCalls } from "./redis-calls.js";
import {
  type MovedRequest,
  PLAIN_PRESENCE,
  RANDOM_POLICY,
  type Store,
  type StorePresence,
  type StoreTtls,
} from "./types.js";

/** Pending records scanned per call when a resource goes away: a few ms of Redis time each. */
const GONE_CHUNK = 200;

export type RedisPresence = StorePresence & Pick<Store, "resourceUnavailable">;

export function createRedisPresence({
  calls: { redis, call, write },
  keys,
  ttls,
}: {
  calls: RedisCalls;
  keys: Keys;
  ttls: StoreTtls;
}): RedisPresence {
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
    async setSubscriptionApproved(approved) {
      if (approved)
        await call("subscription", () => redis.set(keys.subscription, "1", "PX", ttls.presenceMs));
      else await call("subscription", () => redis.del(keys.subscription));
    },
    subscriptionApproved: () =>
      call("subscription", () => redis.get(keys.subscription)).then((v) => v === "1"),
  };
}
