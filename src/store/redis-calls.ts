/**
 * How every part of the Redis store talks to Redis: the client with one command per Lua script (scripts.ts),
 * `call` for any command and `write` for a script that changes state (made durable with WAIT when configured).
 */
import { Cluster, type Redis } from "ioredis";
import type { RedisWait } from "../config.js";
import { describeRedisError, outcomeOf } from "./outcome.js";
import { defineScripts, type ScriptCommands } from "./scripts.js";
import { StoreUnavailableError } from "./types.js";

type Script = keyof ScriptCommands;

export interface RedisCalls {
  /** The client, with the scripts defined on it. */
  readonly redis: Redis & ScriptCommands;
  /** Every failure of the store becomes one error type, with no URL or password in its message. */
  call<T>(what: string, op: () => Promise<T>): Promise<T>;
  /** A script that changes state, made durable with WAIT when configured (one round trip either way). */
  write<K extends Script>(
    what: string,
    name: K,
    ...args: Parameters<ScriptCommands[K]>
  ): Promise<Awaited<ReturnType<ScriptCommands[K]>>>;
}

export function createRedisCalls({
  client,
  wait,
}: {
  client: Redis | Cluster;
  wait?: RedisWait;
}): RedisCalls {
  const redis = defineScripts(client);

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

  return { redis, call, write };
}

/** A reply, or a reply in the wrong place, that says the slot lives elsewhere or the cluster is changing. */
const isRedirection = (value: unknown): boolean => {
  const text = value instanceof Error ? value.message : typeof value === "string" ? value : "";
  return /^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN) /.test(text) || text.includes("replica instances");
};
