/**
 * Which resource a requester's messages go to: rendezvous (highest random weight) hashing of the requester's
 * full JID with each online resource. Every replica computes the same choice from the same resource list, with
 * no state per requester; a requester stays with its resource while that resource is online, and when a
 * resource comes or goes only the requesters it wins or loses move.
 */

/** FNV-1a, 32 bits, over the UTF-16 code units: a weight, not a security measure. */
function weight(requester: string, resource: string): number {
  let hash = 0x811c9dc5;
  const text = `${requester}\n${resource}`;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // A final mix, so that names that differ in their last characters still spread.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return hash >>> 0;
}

/** The resource for this requester among the online ones; null when none is online. */
export function stickyResource(requester: string, resources: readonly string[]): string | null {
  let best: string | null = null;
  let bestWeight = -1;
  for (const resource of resources) {
    const w = weight(requester, resource);
    if (w > bestWeight || (w === bestWeight && best !== null && resource < best)) {
      best = resource;
      bestWeight = w;
    }
  }
  return best;
}
