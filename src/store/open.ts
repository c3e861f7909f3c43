/**
 * Opens the configured store (in-process, or Redis in one of its topologies) and waits for it at start-up,
 * saying in plain words what keeps it unavailable.
 */
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { TurnWrites } from "../util/turn-writes.js";
import { createKeys } from "./keys.js";
import { createMemoryStore } from "./memory.js";
import { createRedisStore } from "./redis.js";
import { createRedisClient, onRedisReconnect, redisProblem } from "./redis-client.js";
import type { RedisProblem } from "./redis-problem.js";
import { type Store, storeTtls } from "./types.js";

export interface OpenedStore {
  readonly store: Store;
  /** What keeps the store unavailable right now; null when nothing is known to be wrong. */
  problem(): RedisProblem | null;
  /** The setting that holds the store's credentials, for a refusal at start-up. */
  readonly credentialsSetting: string;
  onReconnect(fn: () => void): void;
}

/** `turnWrites`: the Redis connections batch their writes per event-loop turn (util/turn-writes.ts). */
export function openStore(config: Config, log: Logger, turnWrites?: TurnWrites): OpenedStore {
  const ttls = storeTtls(config.iqTimeoutMs);
  const limits = { perRequester: config.limits.pendingPerRequester, total: config.limits.pendingTotal };
  if (!config.redis)
    return {
      store: createMemoryStore({ ttls, limits }),
      problem: () => null,
      credentialsSetting: "",
      onReconnect: () => {},
    };
  // Single, Cluster or Sentinel: the same store, every key of the domain in one slot.
  const redis = createRedisClient({ ...config.redis, log, turnWrites });
  return {
    store: createRedisStore({
      redis,
      keys: createKeys(config.redis.prefix, config.xmpp.domain),
      ttls,
      limits,
      wait: config.redis.wait,
    }),
    problem: () => redisProblem(redis),
    credentialsSetting: config.redis.mode === "single" ? "REDIS_URL" : "REDIS_PASSWORD",
    onReconnect: (fn) => onRedisReconnect(redis, fn),
  };
}

export type StoreWait = "ready" | "cancelled" | { readonly refused: RedisProblem };

/**
 * Resolves once the store answers; with `refused` when Redis refuses the credentials (a configuration
 * problem: retrying cannot fix it). Says after a second, and whenever the reason changes, why it waits.
 */
export async function waitForStore(
  opened: OpenedStore,
  log: Logger,
  cancelled: () => boolean,
): Promise<StoreWait> {
  let said = "";
  for (let attempt = 0; !cancelled(); attempt++) {
    try {
      await opened.store.ping();
      if (said !== "") log.info("the store answers: connecting to the XMPP server");
      return "ready";
    } catch (err) {
      const problem = opened.problem() ?? { words: (err as Error).message, credentials: false };
      if (problem.credentials) return { refused: problem };
      if (attempt >= 5 && problem.words !== said) {
        log.warn(
          { problem: problem.words },
          "store unavailable: waiting for it before connecting to the XMPP server",
        );
        said = problem.words;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  return "cancelled";
}
