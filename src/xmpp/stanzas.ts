/**
 * Stanza builders for the proxied path. Incoming stanzas are re-addressed in place: their id, type, xml:lang
 * and payload stay exactly as received, and no copy is made.
 */

import { xml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";

export { xml };

/** Parses one serialized element (a stored request payload); null when it is empty or not well-formed. */
export function parse(serialized: string): Element | null {
  if (serialized === "") return null;
  let root: Element | null = null;
  let closed = false;
  let failed = false;
  const parser = new xml.Parser();
  // The parser reports the root when it opens, each of its children when they close, and the root's end.
  parser.on("start", (element) => {
    failed ||= root !== null;
    root = element;
  });
  parser.on("element", (element) => {
    failed ||= closed;
    root?.append(element);
  });
  parser.on("end", () => {
    failed ||= closed;
    closed = true;
  });
  parser.on("error", () => {
    failed = true;
  });
  try {
    parser.write(serialized);
    parser.end();
  } catch {
    return null;
  }
  // Exactly one element, closed: a truncated or concatenated payload is not one.
  return failed || !closed ? null : root;
}

/**
 * Re-address a stanza (XEP-0114 section 3: every stanza from a component carries `to` and `from`); an answer
 * also gets back the id the requester used (routing/ids.ts).
 */
export function readdress(stanza: Element, to: string, from: string, id?: string): Element {
  stanza.attrs.to = to;
  stanza.attrs.from = from;
  if (id !== undefined) stanza.attrs.id = id;
  return stanza;
}

/** RFC 6121 section 3: presence subscription management and probes, always from the bare domain. */
export function presence(
  type: "subscribe" | "subscribed" | "unsubscribed" | "probe" | "unavailable",
  to: string,
  from: string,
) {
  return xml("presence", { type, to, from });
}

/** An available presence (RFC 6121 section 4.7): `show` and `status` only when they say something. */
export function availablePresence(to: string, from: string, show: string, status: string) {
  return xml(
    "presence",
    { to, from },
    show === "" ? null : xml("show", {}, show),
    status === "" ? null : xml("status", {}, status),
  );
}
