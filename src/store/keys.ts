/**
 * Every Redis key of the service is built here.
 *
 * All keys of one component domain share the hash tag `{domain}`, so each Lua script touches a single slot and
 * works on Redis Cluster. The prefix (REDIS_PREFIX) lets several deployments share one Redis.
 */
export interface Keys {
  /** Hash: resource of the implementing account -> epoch ms it was last seen available. */
  readonly resources: string;
  /**
   * Sorted set: resource -> epoch ms its unavailable presence was seen (decides whether a `set` may be re-sent);
   * entries older than a request's lifetime are dropped.
   */
  readonly gone: string;
  /** Hash: requester bare JID -> its pending requests (the per-requester admission limit). */
  readonly counts: string;
  /** Hash: resource -> its presence's priority, show, status and caps ver (0x1F between them). */
  readonly presence: string;
  /**
   * Hash: XEP-0115 `ver` -> its features as verified, or "!" until when they are held unverifiable; "?" + ver ->
   * until when one replica's disco#info query stands for all (store/caps-entry.ts).
   */
  readonly caps: string;
  /** Sorted set: `ver` -> when its features were stored: the oldest go first beyond MAX_CAPS_CACHED. */
  readonly capsOrder: string;
  /** String: the service's own presence as last computed (service-state-3.lua). */
  readonly service: string;
  /** Set: bare JIDs subscribed to the service's presence (no TTL: they are the subscribers' own state). */
  readonly subscribers: string;
  /** List: messages of requesters kept while no resource was online, oldest first. */
  readonly queue: string;
  /** Hash: requester bare JID -> its messages in the queue. */
  readonly queued: string;
  /** String: the identity of the data set (see the epoch script). */
  readonly epoch: string;
  /** String "1" when the implementing account approved the component's subscription. */
  readonly subscription: string;
  /**
   * Sorted set: request member -> when the sweep must look at it: the deadline of a pending request, the lease
   * end of an answer being delivered (epoch ms). Any replica sweeps it.
   */
  readonly deadlines: string;
  /** Prefix of the pending request records; the Lua scripts append a member to it. */
  readonly recordPrefix: string;
  /** String: the resource of the implementing account that sent a message to a requester (for its bounce). */
  message(requester: string, id: string): string;
  /** Hash: one pending (or recently answered) request. */
  record(member: string): string;
  /** The deadline index member of a request: the requester's full JID (escaped), a space, the IQ id. */
  member(requester: string, id: string): string;
  /**
   * The keys of pending requests as versions before 0.2 wrote them (`deadlines`, `req:<requester>\n<id>`):
   * swept and acknowledged during a rolling update, never written (README, "Keys").
   */
  readonly legacy: {
    readonly deadlines: string;
    readonly recordPrefix: string;
    member(requester: string, id: string): string;
  };
}

/**
 * The member of a request, in the deadline index and every store: the requester's full JID, a space, the IQ
 * id; printable, so that `redis-cli --scan` shows one key per line. A resourcepart may hold spaces (RFC 7622
 * section 3.4, OpaqueString) and an id anything XML allows, a newline included: `%`, control characters and,
 * in the requester, the space are written `%XX` (upper-case hex), so the first space ends the requester.
 */
export const memberOf = (requester: string, id: string): string =>
  `${escapeMember(requester, true)} ${escapeMember(id, false)}`;

/** `%`, control characters (C0 and DEL) and, when asked, the space as `%XX`. */
function escapeMember(text: string, space: boolean): string {
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    const special = char === "%" || code < 0x20 || code === 0x7f || (space && char === " ");
    out += special ? `%${code.toString(16).toUpperCase().padStart(2, "0")}` : char;
  }
  return out;
}

const unescapeMember = (text: string) =>
  text.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));

/** The requester and id a member was built from (memberOf). */
export function requestOfMember(member: string): { requester: string; id: string } {
  const space = member.indexOf(" ");
  return { requester: unescapeMember(member.slice(0, space)), id: unescapeMember(member.slice(space + 1)) };
}

export function createKeys(prefix: string, domain: string): Keys {
  const base = `${prefix}:{${domain}}:`;
  const recordPrefix = `${base}request:`;
  return Object.freeze({
    resources: `${base}resources`,
    subscription: `${base}subscription`,
    gone: `${base}left`,
    counts: `${base}counts`,
    presence: `${base}presence`,
    caps: `${base}caps`,
    capsOrder: `${base}caps-order`,
    queue: `${base}queue`,
    queued: `${base}queued`,
    service: `${base}service`,
    subscribers: `${base}subscribers`,
    epoch: `${base}epoch`,
    deadlines: `${base}due`,
    recordPrefix,
    record: (member: string) => recordPrefix + member,
    member: memberOf,
    message: (requester: string, id: string) => `${base}message:${memberOf(requester, id)}`,
    legacy: Object.freeze({
      deadlines: `${base}deadlines`,
      recordPrefix: `${base}req:`,
      member: (requester: string, id: string) => `${requester}\n${id}`,
    }),
  });
}
