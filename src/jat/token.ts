/**
 * JAT tokens: the resourcepart that stands for a requester in `XMPP_DOMAIN/<token>`.
 *
 *     j1.<kid>.<mac>.<requester>
 *
 * - `j1`: format version.
 * - `kid`: id of the JAT key that signed it (1-16 of A-Z a-z 0-9 _ -).
 * - `mac`: the first 16 bytes of HMAC-SHA256(key, `<XMPP_DOMAIN>\n<j1>.<kid>.<requester>`), base64url without
 *   padding (RFC 4648 section 5): 22 characters. 128 bits, half the hash, as RFC 2104 section 5 asks at least.
 * - `requester`: the requester's full JID as it is, except that every octet of its UTF-8 form outside printable
 *   ASCII (0x21-0x7E), and `%`, `@`, `/` and the XML specials `"&'<>`, are written `%XX` (RFC 3986 section
 *   2.1). Everything after the third `.`. Without `@` and `/` the proxy's address parses the same in any JID
 *   parser, even one that splits at `@` first.
 *
 * The token is printable ASCII, which resourceprep (RFC 6122 section B) and the OpaqueString profile (RFC 7622
 * section 3.4) leave unchanged, and at most MAX_TOKEN_OCTETS long, the limit of a resourcepart. The requester
 * stays readable and shorter than in base64, 32 characters instead of 38 for a 28-character JID (an XMPP server
 * works per octet of the address, twice per proxied request). Any replica verifies a token with the configured
 * keys alone; an implementing client reads the requester with `decodeToken` and no key.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { evictOldest } from "../util/evict.js";
import { MAX_PART_OCTETS } from "../xmpp/jid.js";

export const TOKEN_VERSION = "j1";
export const MAX_TOKEN_OCTETS = MAX_PART_OCTETS;
const MAC_BYTES = 16;
const MAC_CHARS = 22;
/** Printable ASCII but `"%&'/<>@`, which are written `%XX` (ESCAPED), and `%` for those escapes. */
const TOKEN =
  /^j1\.([A-Za-z0-9_-]{1,16})\.([A-Za-z0-9_-]{22})\.([\x21\x23-\x25\x28-\x2e\x30-\x3b\x3d\x3f\x41-\x7e]+)$/;
const ESCAPED = /[^\x21\x23\x24\x28-\x2e\x30-\x3b\x3d\x3f\x41-\x7e]/;

/** The requester part: the JID as it is, what ESCAPED matches written as `%XX` per octet of UTF-8. */
function encodeRequester(requester: string): string {
  if (!ESCAPED.test(requester)) return requester;
  let out = "";
  for (const char of requester) {
    if (!ESCAPED.test(char)) {
      out += char;
      continue;
    }
    for (const octet of Buffer.from(char, "utf8"))
      out += `%${octet.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * The JID back from the requester part; null when an escape is malformed, the octets are not UTF-8, or the
 * escapes are not the ones encodeRequester writes: one spelling per requester (lower-case hex, or an octet
 * escaped that stands as it is, would give a requester a second token).
 */
function decodeRequester(encoded: string): string | null {
  if (!encoded.includes("%")) return encoded;
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    return null;
  }
  return encodeRequester(decoded) === encoded ? decoded : null;
}

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
  const requester = match ? decodeRequester(match[3] ?? "") : null;
  if (!match || !requester) return null;
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
  /**
   * The longest requester part, in octets, that fits a token signed with the current key: the longest full JID
   * in printable ASCII; each octet written `%XX` takes three.
   */
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
  // The MAC is compared as its 22 characters, not decoded: 22 base64url characters carry 132 bits for 128, so
  // the last one has 4 unused bits and a lenient decoder reads 16 spellings of it alike. Only the canonical one
  // verifies.
  const remember = <V>(map: Map<string, V>, key: string, value: V) => {
    map.set(key, value);
    evictOldest(map, cacheSize);
  };
  const overhead = TOKEN_VERSION.length + signing.kid.length + MAC_CHARS + 3;
  const maxRequesterOctets = MAX_TOKEN_OCTETS - overhead;

  /** The MAC's canonical text (RFC 4648 section 5, no padding), as bytes for a constant-time comparison. */
  const mac = (secret: Buffer, signed: string): Buffer =>
    Buffer.from(
      createHmac("sha256", secret)
        .update(macPrefix + signed, "utf8")
        .digest()
        .subarray(0, MAC_BYTES)
        .toString("base64url"),
      "latin1",
    );

  return {
    maxRequesterOctets,
    sign(requester) {
      const cached = cache.get(requester);
      if (cached !== undefined) return cached;
      const encoded = encodeRequester(requester);
      if (encoded.length > maxRequesterOctets) return null;
      const signed = `${TOKEN_VERSION}.${signing.kid}.${encoded}`;
      const digest = mac(signing.secret, signed);
      const token = `${TOKEN_VERSION}.${signing.kid}.${digest.toString("latin1")}.${encoded}`;
      remember(cache, requester, token);
      remember(macs, signed, digest);
      return token;
    },
    verify(token) {
      if (token.length > MAX_TOKEN_OCTETS) return null;
      const match = TOKEN.exec(token);
      const [, kid = "", given = "", encoded = ""] = match ?? [];
      const secret = byKid.get(kid);
      if (!match || !secret) return null;
      const signed = `${TOKEN_VERSION}.${kid}.${encoded}`;
      const known = macs.get(signed);
      const expected = known ?? mac(secret, signed);
      const givenMac = Buffer.from(given, "latin1");
      if (givenMac.length !== MAC_CHARS || !timingSafeEqual(givenMac, expected)) return null;
      if (!known) remember(macs, signed, expected);
      return decodeRequester(encoded);
    },
  };
}
