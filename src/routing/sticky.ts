/**
 * Which resource a requester sticks to: rendezvous (highest random weight) hashing of the requester's full JID
 * with each candidate resource. Every replica computes the same choice from the same list, with no state per
 * requester; a requester stays with its resource while that resource is a candidate, and when a resource comes
 * or goes only the requesters it wins or loses move.
 *
 * The weight is the first 32 bits of SHA-1 over the UTF-8 bytes of `requester "\n" resource`: the Redis store
 * computes the same in Lua (`redis.sha1hex`, src/store/lua/lib/choose.lua), so requests and messages of one
 * requester meet on one resource whichever store decides. A weight, not a security measure.
 */
import { createHash } from "node:crypto";

export function stickyWeight(requester: string, resource: string): number {
  return createHash("sha1").update(`${requester}\n${resource}`).digest().readUInt32BE(0);
}

/** The resource for this requester among the candidates (ties: the first in byte order); null when none. */
export function stickyResource(requester: string, resources: readonly string[]): string | null {
  let best: string | null = null;
  let bestWeight = -1;
  for (const resource of resources) {
    const w = stickyWeight(requester, resource);
    if (w > bestWeight || (w === bestWeight && best !== null && byteOrder(resource, best) < 0)) {
      best = resource;
      bestWeight = w;
    }
  }
  return best;
}

/** Byte order of the UTF-8 encodings, as the Lua scripts compare resource names. */
export const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
