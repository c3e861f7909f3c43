/**
 * The in-process store's messages: those of requesters kept while no resource is online (as
 * queue-message-4.lua, a resource of negative priority counts as none), and which resource sent a message to a
 * requester, for its bounce.
 */
import type { Candidate } from "../routing/choose.js";
import { evictOldest } from "../util/evict.js";
import { bareOf } from "../xmpp/jid.js";
import { memberOf } from "./keys.js";
import type { QueuedMessage, StoreMessages } from "./types.js";

/** Messages remembered for their bounces, at most (the oldest are forgotten first). */
const MAX_REMEMBERED_MESSAGES = 100_000;

export function createMemoryMessages({ candidates }: { candidates: () => Candidate[] }): StoreMessages {
  /** Messages kept while no resource is online, oldest first, and how many per bare JID. */
  const queue: QueuedMessage[] = [];
  const queuedCounts = new Map<string, number>();
  /** Messages sent by the implementing account: member -> [resource, forget after (epoch ms)]. */
  const messages = new Map<string, [string, number]>();

  return {
    async queueMessage(message, { perRequester, total }) {
      if (candidates().some((c) => c.priority >= 0)) return "online";
      const bare = bareOf(message.requester);
      if ((queuedCounts.get(bare) ?? 0) >= perRequester) return "requester";
      if (queue.length >= total) return "total";
      queue.push(message);
      queuedCounts.set(bare, (queuedCounts.get(bare) ?? 0) + 1);
      return "queued";
    },
    async takeMessages(count, before) {
      let taken = 0;
      while (
        taken < count &&
        taken < queue.length &&
        (before === undefined || (queue[taken]?.queuedAt ?? 0) < before)
      )
        taken++;
      const out = queue.splice(0, taken);
      for (const { requester } of out) {
        const bare = bareOf(requester);
        const left = (queuedCounts.get(bare) ?? 1) - 1;
        if (left > 0) queuedCounts.set(bare, left);
        else queuedCounts.delete(bare);
      }
      return out;
    },
    async rememberMessage(requester, id, resource, ttlMs) {
      const member = memberOf(requester, id);
      messages.delete(member);
      messages.set(member, [resource, Date.now() + ttlMs]);
      evictOldest(messages, MAX_REMEMBERED_MESSAGES);
    },
    async takeMessageSender(requester, id) {
      const member = memberOf(requester, id);
      const entry = messages.get(member);
      messages.delete(member);
      return entry && entry[1] > Date.now() ? entry[0] : null;
    },
  };
}
