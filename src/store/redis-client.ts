/**
 * The ioredis client for REDIS_URL, tuned so that nothing waits on a Redis that is down: a request is
 * answered with a `wait` error at once instead of hanging to its timeout, and service resumes by itself
 * when Redis returns.
 */
import { Redis } from "ioredis";
import type { Logger } from "pino";

export function createRedisClient({ url, log }: { url: string; log: Logger }): Redis {
  const redis = new Redis(url, {
    // Fail commands at once while disconnected instead of queueing them until Redis returns.
    enableOfflineQueue: false,
    // Do not resend a command that was in flight when the connection dropped: fail it, the caller answers.
    maxRetriesPerRequest: 0,
    // A Redis that accepts but does not answer (overloaded, half-open) must not stall requests.
    commandTimeout: 1_000,
    // A connection attempt that gets no answer is abandoned and retried.
    connectTimeout: 2_000,
    // Reconnect forever, quickly at first, at most every 2 s.
    retryStrategy: (attempt) => Math.min(100 * attempt, 2_000),
    // Report ready only once Redis has loaded its data set (INFO), so readiness is not claimed too early.
    enableReadyCheck: true,
    lazyConnect: false,
  });
  let down = false;
  redis.on("ready", () => {
    if (down) log.info("Redis connection restored");
    down = false;
  });
  redis.on("error", (err: Error) => {
    if (!down)
      log.warn({ err: { message: err.message.replace(/rediss?:\/\/\S*/g, "<redis>") } }, "Redis unavailable");
    down = true;
  });
  redis.on("end", () => {
    down = true;
  });
  return redis;
}
