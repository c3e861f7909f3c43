/**
 * What is wrong with Redis, in plain words, from the errors ioredis reports: the reason `/readyz` and the log
 * give while the store is unavailable. Never contains a URL or a password.
 */

export interface RedisProblem {
  /** For people: what is wrong, and where to look. */
  readonly words: string;
  /** Redis refused the credentials (WRONGPASS, NOAUTH): a configuration problem, not an outage. */
  readonly credentials: boolean;
}

/** `where`: the address that was tried (`host:port`), for the connection errors that do not name it. */
export function explainRedisError(err: Error & { code?: string }, where?: string): RedisProblem {
  const message = err.message.replace(/rediss?:\/\/\S*/g, "<redis>");
  const at = where === undefined ? "" : ` at ${where}`;
  if (message.startsWith("WRONGPASS"))
    return { words: "Redis refused the user name or password (WRONGPASS)", credentials: true };
  if (message.startsWith("NOAUTH"))
    return { words: "Redis requires a password and none was given (NOAUTH)", credentials: true };
  if (/^ERR (invalid password|.*called without any password configured)/.test(message))
    return { words: "a password was given but Redis has none configured", credentials: true };
  switch (err.code) {
    case "ECONNREFUSED":
      return {
        words: `nothing accepts connections${at || extractAddress(message)} (connection refused)`,
        credentials: false,
      };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return { words: `the Redis host name does not resolve (${err.code})`, credentials: false };
    case "ETIMEDOUT":
      return { words: `no answer from Redis${at} within the connect timeout`, credentials: false };
    case "ECONNRESET":
    case "EPIPE":
      return { words: `Redis closed the connection${at} (${err.code})`, credentials: false };
  }
  if (message.startsWith("LOADING"))
    return { words: "Redis is loading its data set from disk", credentials: false };
  if (message.startsWith("MASTERDOWN") || message.startsWith("CLUSTERDOWN"))
    return { words: `Redis says it cannot serve: ${message.split("\n")[0]}`, credentials: false };
  if (/All sentinels are unreachable/.test(message))
    return { words: "no sentinel of REDIS_SENTINELS answers", credentials: false };
  if (/Failed to refresh slots cache/.test(message))
    return { words: "no node of REDIS_CLUSTER_NODES answers", credentials: false };
  return { words: `Redis error: ${message.split("\n")[0]?.slice(0, 200)}`, credentials: false };
}

function extractAddress(message: string): string {
  const match = / ((?:\d{1,3}\.){3}\d{1,3}:\d+|\[[0-9a-f:]+\]:\d+)$/i.exec(message);
  return match ? ` at ${match[1]}` : "";
}
