/**
 * JID splitting for the per-stanza path (RFC 7622 section 3.1): the resourcepart starts at the first '/', the
 * localpart ends at the first '@' before it. Addresses on incoming stanzas were already prepared by the server,
 * so no stringprep happens here; configured addresses are normalised once with @xmpp/jid (see `normalizeBare`).
 */
import xmppJid from "@xmpp/jid";

export interface JidParts {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
}

/** RFC 7622 section 3.1: each part is 1 to 1023 octets. */
export const MAX_PART_OCTETS = 1023;

/** Splits a JID, or returns null when a part is empty or too long. */
export function jid(value: string): JidParts | null {
  const slash = value.indexOf("/");
  const head = slash < 0 ? value : value.slice(0, slash);
  const resource = slash < 0 ? "" : value.slice(slash + 1);
  const at = head.indexOf("@");
  const local = at < 0 ? "" : head.slice(0, at);
  const domain = at < 0 ? head : head.slice(at + 1);
  if (domain === "" || (at >= 0 && local === "") || (slash >= 0 && resource === "")) return null;
  if (!fits(local) || !fits(domain) || !fits(resource)) return null;
  return { local, domain, resource };
}

/** The bare JID (localpart@domainpart, or the domain) of an address. */
export function bareOf(value: string): string {
  const slash = value.indexOf("/");
  return slash < 0 ? value : value.slice(0, slash);
}

/** The domainpart of an address. */
export function domainOf(value: string): string {
  const bare = bareOf(value);
  return bare.slice(bare.indexOf("@") + 1);
}

/** The resourcepart of an address, or "" when it has none. */
export function resourceOf(value: string): string {
  const slash = value.indexOf("/");
  return slash < 0 ? "" : value.slice(slash + 1);
}

/** Lower-cases domain and localpart as the server does for ASCII addresses (RFC 7622 sections 3.2, 3.3). */
export function normalizeBare(value: string): string {
  return xmppJid.parse(value).bare().toString();
}

function fits(part: string): boolean {
  return part.length <= MAX_PART_OCTETS && Buffer.byteLength(part, "utf8") <= MAX_PART_OCTETS;
}
