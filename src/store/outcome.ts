/**
 * What became of a Redis call that failed (README, "Unknown outcomes").
 *
 * - not-executed: Redis answered with an error (a script error, OOM, READONLY, CLUSTERDOWN...: the script did
 *   not run), or the command was never written (no connection, and the client keeps no offline queue).
 * - unknown: the command was written and no answer came: a timeout (the script may still run later: a timeout
 *   does not cancel it) or a connection that closed under it. The caller must not guess.
 */
import { ReplyError } from "ioredis";

const NEVER_SENT = [
  "Stream isn't writeable",
  "enableOfflineQueue",
  "None of startup nodes is available",
  "Failed to refresh slots cache",
  "Cluster isn't ready",
];

export function outcomeOf(err: unknown): "not-executed" | "unknown" {
  if (err instanceof ReplyError) return "not-executed";
  const message = err instanceof Error ? err.message : String(err);
  return NEVER_SENT.some((text) => message.includes(text)) ? "not-executed" : "unknown";
}

export function describeRedisError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // ioredis messages may quote the connection URL; keep only the reason.
  return message.replace(/rediss?:\/\/\S*/g, "<redis>").slice(0, 200);
}
