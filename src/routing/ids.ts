/**
 * The id a request is forwarded with. RFC 6120 section 8.2.3 lets a requester reuse an id once its request was
 * answered; a late answer of the implementing client to the earlier request (after its timeout) would then
 * carry the same id and be taken for the answer to the new one. So an id reused while the tombstone of its
 * earlier request lives is forwarded with its generation added, `<id>#xcp<generation>`, and the answer's id
 * tells which request it answers. A fresh id is forwarded unchanged, unless it already ends like a generation:
 * then it gets `#xcp0`, so the mapping stays one to one.
 */
const GENERATION = /^([\s\S]*)#xcp(0|[1-9]\d{0,8})$/;

export function forwardedId(id: string, gen: number): string {
  return gen === 0 && !GENERATION.test(id) ? id : `${id}#xcp${gen}`;
}

/** The requester's id and the generation an answer's id carries (the inverse of forwardedId). */
export function requestIdOf(forwarded: string): { id: string; gen: number } {
  const match = GENERATION.exec(forwarded);
  return match ? { id: match[1] ?? "", gen: Number(match[2]) } : { id: forwarded, gen: 0 };
}

/**
 * The id of the proxy's own disco#info query for a caps ver (XEP-0115 section 6.3): `xcp-caps.<hash>.<ver>.<n>`.
 * The answer may reach any replica; its id says what to verify it against, so no replica keeps the query.
 * Hash names and base64 hold no ".".
 */
const CAPS_QUERY = /^xcp-caps\.(sha-1|sha-256|sha-512)\.([^.]+)\.[0-9a-z]+$/;

export const capsQueryId = (hash: string, ver: string, n: number): string =>
  `xcp-caps.${hash}.${ver}.${n.toString(36)}`;

export function capsQueryOf(id: string): { hash: "sha-1" | "sha-256" | "sha-512"; ver: string } | null {
  const match = CAPS_QUERY.exec(id);
  return match ? { hash: match[1] as "sha-1" | "sha-256" | "sha-512", ver: match[2] ?? "" } : null;
}
