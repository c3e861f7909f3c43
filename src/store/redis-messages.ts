/**
 * The Redis store's messages: those of requesters kept while no resource is online (one queue entry each:
 * queued-at ms, requester, address it was sent to and message, 0x1F between them; queue-message-4.lua), and
 * which resource sent a message to a requester, for its bounce.
 */
import { bareOf } from "../xmpp/jid.js";
import type { Keys } from "./keys.js";
import type { RedisCalls } from "./redis-calls.js";
import type { StoreMessages } from "./types.js";

export function createRedisMessages({
  calls: { redis, call, write },
  keys,
}: {
  calls: RedisCalls;
  keys: Keys;
}): StoreMessages {
  return {
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
  };
}
