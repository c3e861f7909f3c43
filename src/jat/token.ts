/**
 * JAT tokens: the resourcepart that stands for a requester in `XMPP_DOMAIN/<token>`.
 *
 *     j1.<kid>.<requester>.<mac>
 *
 * - `j1`: format version.
 * - `kid`: id of the JAT key that signed it (1-16 of A-Z a-z 0-9 _ -).
 * - `requester`: the requester's full JID, UTF-8, base64url without padding (RFC 4648 section 5).
 * - `mac`: the first 16 bytes of HMAC-SHA256(key, `<XMPP_DOMAIN>\n<j1.kid.requester>`), base64url.
 *
 * The token is ASCII, so resourceprep (RFC 7622 section 3.4) leaves it unchanged, and it is at most
 * MAX_TOKEN_OCTETS long, the limit of a resourcepart. Any replica verifies it with the configured keys alone;
 * an implementing client reads the requester with `decodeToken` and no key.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { evictOldest } from "../util/evict.js";
import { MAX_PART_OCTETS } from "../xmpp/jid.js";

export const TOKEN_VERSION = "j1";
export const MAX_TOKEN_OCTETS = MAX_PART_OCTETS;
const MAC_BYTES = 16;
const TOKEN = /^j1\.([A-Za-z0-9_-]{1,16})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;

export interface DecodedToken {
  readonly version: string;
  readonly kid: string;
  /** The requester's full JID. Not verified: only the proxy holds the keys. */
  readonly requester: string;
}

/**
 * Reads the requester out of a token, or out of a whole proxy address (`proxy.example.org/<token>`), without
 * verifying it. For implementing clients: the proxy only forwards requests whose token it signed itself.
 */
export function decodeToken(tokenOrAddress: string): DecodedToken | null {
  const slash = tokenOrAddress.indexOf("/");
  const token = slash < 0 ? tokenOrAddress : tokenOrAddress.slice(slash + 1);
  const match = token.length <= MAX_TOKEN_OCTETS ? TOKEN.exec(token) : null;
  if (!match) return null;
  const requester = Buffer.from(match[2] ?? "", "base64url").toString("utf8");
  if (requester === "" || requester.includes("\uFFFD")) return null;
  return { version: TOKEN_VERSION, kid: match[1] ?? "", requester };
}

export interface JatKeyInput {
  readonly kid: string;
  readonly secret: Buffer;
}

export interface Jat {
  /** The token for a requester, or null when the requester's address is too long to fit a resourcepart. */
  sign(requester: string): string | null;
  /** The requester a token stands for, or null when the token is malformed, oversized or not ours. */
  verify(token: string): string | null;
  /** The longest requester address, in octets, that fits a token signed with the current key. */
  readonly maxRequesterOctets: number;
}

export function createJat({
  domain,
  keys,
  cacheSize = 10_000,
}: {
  domain: string;
  keys: readonly JatKeyInput[];
  cacheSize?: number;
}): Jat {
  const signing = keys[0];
  if (!signing) throw new Error("createJat: at least one key is required");
  const byKid = new Map(keys.map((key) => [key.kid, key.secret]));
  const macPrefix = `${domain}\n`;
  // Signing the same requester again is common (a requester sends many requests): keep recent tokens.
  const cache = new Map<string, string>();
  // And replies to them: keep the MACs of recently signed or verified tokens, keyed by their signed part, so
  // a reply costs a constant-time comparison instead of an HMAC. Only valid tokens get in.
  const macs = new Map<string, Buffer>();
  const remember = <V>(map: Map<string, V>, key: string, value: V) => {
    map.set(key, value);
    evictOldest(map, cacheSize);
  };
  const overhead = TOKEN_VERSION.length + signing.kid.length + 3 + Math.ceil((MAC_BYTES * 4) / 3);
  const maxRequesterOctets = Math.floor(((MAX_TOKEN_OCTETS - overhead) * 3) / 4);

  const mac = (secret: Buffer, signed: string): Buffer =>
    createHmac("sha256", secret)
      .update(macPrefix + signed, "utf8")
      .digest()
      .subarray(0, MAC_BYTES);

  return {
    maxRequesterOctets,
    sign(requester) {
      const cached = cache.get(requester);
      if (cached !== undefined) return cached;
      if (Buffer.byteLength(requester, "utf8") > maxRequesterOctets) return null;
      const signed = `${TOKEN_VERSION}.${signing.kid}.${Buffer.from(requester, "utf8").toString("base64url")}`;
      const digest = mac(signing.secret, signed);
      const token = `${signed}.${digest.toString("base64url")}`;
      remember(cache, requester, token);
      remember(macs, signed, digest);
      return token;
    },
    verify(token) {
      if (token.length > MAX_TOKEN_OCTETS) return null;
      const match = TOKEN.exec(token);
      const secret = match ? byKid.get(match[1] ?? "") : undefined;
      if (!match || !secret) return null;
      const given = Buffer.from(match[3] ?? "", "base64url");
      const signed = token.slice(0, token.length - (match[3] ?? "").length - 1);
      const known = macs.get(signed);
      const expected = known ?? mac(secret, signed);
      if (given.length !== MAC_BYTES || !timingSafeEqual(given, expected)) return null;
      if (!known) remember(macs, signed, expected);
      const requester = Buffer.from(match[2] ?? "", "base64url").toString("utf8");
      return requester === "" ? null : requester;
    },
  };
}
