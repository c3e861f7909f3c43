/**
 * An implementing client for xmpp-client-proxy, written with @xmpp/client: one resource of the account that
 * the proxy forwards requests to (the proxy's TARGET_JID). Run one process per resource.
 *
 *     node --import tsx examples/implementing-client/index.ts
 *
 * Settings (environment): XMPP_SERVICE (xmpp://host:port of the server's c2s listener), XMPP_DOMAIN,
 * XMPP_USERNAME, XMPP_PASSWORD or XMPP_PASSWORD_FILE, XMPP_RESOURCE (default: the host name), PROXY_DOMAIN.
 *
 * What it does:
 * - approves the presence subscription of PROXY_DOMAIN (and declines everyone else's), and sends initial
 *   presence (status "ready") on every (re)connect: the proxy routes only to resources whose presence it sees;
 * - answers XEP-0092 software version, and `<greet xmlns='urn:example:greeting'/>` with a greeting that names
 *   the requester, read from the address the proxy forwarded the request from;
 * - answers anything else with service-unavailable, the request's payload included;
 * - answers a chat or normal `<message>` with a `<body>` that the proxy forwards with an echo to the address it
 *   came from, naming the requester and this resource (the thread kept); never a message error (that would
 *   answer an error), a headline or groupchat, or a message without body (chat states, receipts);
 * - the first time it sees a requester (a request, or a message other than an error, forwarded by the proxy),
 *   asks that requester once for its XEP-0092 software version through the proxy (an IQ to the address the
 *   stanza came from) and logs the answer: `user@example.org/phone runs Some Client 1.2` or the error;
 * - on SIGTERM or SIGINT: unavailable presence, closes the stream, exits 0.
 */
import { randomUUID } from "node:crypto";
import { release, type } from "node:os";
import { type XmppClient, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
// The proxy's public API. An implementing client installed from npm imports it from "xmpp-client-proxy";
// this example imports it from the repository so that it runs without a build.
import { decodeToken } from "../../src/index.js";
import { createClient, logger, readSettings } from "./env.js";

const NS_GREETING = "urn:example:greeting";
const NS_VERSION = "jabber:iq:version";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const SOFTWARE = { name: "xmpp-client-proxy example implementing client", version: "1.0.0" };

// The parts of @xmpp/client's iqCallee and iqCaller (and its middleware context) used here; types/xmpp.d.ts has no
// declaration of them, and this example does not extend that file.
interface IqContext {
  /** The whole <iq/>. */
  readonly stanza: Element;
  /** Its one child, the payload. */
  readonly element?: Element;
}
type IqHandler = (ctx: IqContext) => Element | Promise<Element>;
interface IqCallee {
  get(xmlns: string, name: string, handler: IqHandler): void;
  set(xmlns: string, name: string, handler: IqHandler): void;
}
interface IqCaller {
  /** Resolves with the result <iq/>; rejects with the error (a StanzaError, with `condition`) or on timeout. */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
}

const settings = readSettings(process.env, "implementing-client");
const log = logger(settings);
const xmpp = createClient(settings);
const { iqCallee, iqCaller } = xmpp as XmppClient & { iqCallee: IqCallee; iqCaller: IqCaller };

/** The bare address of a JID, lowercased: enough to compare a domain JID such as the proxy's. */
const bare = (address: string | undefined) => (address ?? "").split("/")[0]?.toLowerCase() ?? "";
const fromProxy = (stanza: Element) => bare(stanza.attrs.from) === settings.proxyDomain.toLowerCase();

/**
 * Who is asking. A request forwarded by the proxy comes from `PROXY_DOMAIN/<token>`, and the token carries
 * the requester's full JID (README: "For implementing-client authors: the token"); decodeToken reads it
 * without a key (only the proxy verifies tokens, and it forwards only requests it signed itself). Anyone
 * else who asks directly is their own requester.
 */
function requesterOf(stanza: Element): string | null {
  const from = stanza.attrs.from ?? "";
  if (!fromProxy(stanza)) return from || null;
  return decodeToken(from)?.requester ?? null;
}

// Requests of our own: the first time a requester shows up, ask it for its software version. An IQ to the
// address a requester's stanzas come from (`PROXY_DOMAIN/<token>`) goes to that requester, from PROXY_DOMAIN
// (README: "Requests from the implementing client"); its answer comes back here from that same address, with
// our id, and the proxy answers `remote-server-timeout` itself when the requester says nothing in time.
/** Requesters asked already, oldest first; the oldest are forgotten past MAX_SEEN (then asked again). */
const seen = new Set<string>();
const MAX_SEEN = 10_000;
function meet(stanza: Element): void {
  if (!fromProxy(stanza)) return;
  const requester = requesterOf(stanza);
  if (requester === null || seen.has(requester)) return;
  seen.add(requester);
  if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value as string);
  const to = stanza.attrs.from as string;
  iqCaller.request(xml("iq", { type: "get", to }, xml("query", { xmlns: NS_VERSION })), 30_000).then(
    (answer) => {
      const query = answer.getChild("query", NS_VERSION);
      log.info(`${requester} runs ${query?.getChildText("name")} ${query?.getChildText("version")}`);
    },
    (err: Error & { condition?: string }) =>
      log.info(`${requester} did not tell its version: ${err.condition ?? err.message}`),
  );
}
// Every request (get or set) and every message but an error that the proxy forwards; the handlers below answer
// them as before.
xmpp.on("stanza", (stanza: Element) => {
  if (stanza.name === "iq" && (stanza.attrs.type === "get" || stanza.attrs.type === "set")) meet(stanza);
  else if (stanza.name === "message" && stanza.attrs.type !== "error") meet(stanza);
});

// XEP-0092: name, version, os.
iqCallee.get(NS_VERSION, "query", ({ stanza }) => {
  log.info(`version requested by ${requesterOf(stanza) ?? stanza.attrs.from}`);
  return xml(
    "query",
    { xmlns: NS_VERSION },
    xml("name", {}, SOFTWARE.name),
    xml("version", {}, SOFTWARE.version),
    xml("os", {}, `${type()} ${release()}`),
  );
});

// The custom namespace: <greet xmlns='urn:example:greeting'/> -> <greeting>Hello, user@domain/resource</greeting>
iqCallee.get(NS_GREETING, "greet", ({ stanza }) => {
  const requester = requesterOf(stanza);
  if (requester === null) {
    // From the proxy but without a readable token: cannot happen with a proxy that works as documented.
    return xml("error", { type: "modify" }, xml("bad-request", { xmlns: NS_STANZAS }));
  }
  log.info(`greeting ${requester}`);
  return xml("greeting", { xmlns: NS_GREETING }, `Hello, ${requester}`);
});

// Everything else: service-unavailable (RFC 6120 section 8.2.3: every get/set gets one answer). Registered
// after the handlers above, so only requests none of them took get here. The library's iqCallee builds the
// <iq type='error'/> around this <error/> and puts the request's payload before it (RFC 6120 section 8.3.1).
// That echoed payload matters to the proxy: a service-unavailable WITHOUT the payload is what the server
// answers for a resource that has gone offline, and the proxy would take this resource for gone and send a
// get to another resource (README, "When the chosen resource is gone").
xmpp.middleware.use((ctx: IqContext, next: () => Promise<unknown>) => {
  const { stanza } = ctx;
  if (stanza.name !== "iq" || (stanza.attrs.type !== "get" && stanza.attrs.type !== "set")) return next();
  const payload = ctx.element;
  log.info(
    `service-unavailable for ${stanza.attrs.type} ${payload?.name ?? "?"} xmlns=${payload?.attrs.xmlns}`,
  );
  return xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS }));
});

// Messages (RFC 6121 section 5). A requester's message to PROXY_DOMAIN arrives from `PROXY_DOMAIN/<token>`, like
// a request, and at the same resource every time while that resource is online; a message to that address goes
// to the requester, from PROXY_DOMAIN. Echoed: chat and normal (a message without type is normal, RFC 6121
// section 5.2.2). Never answered: errors (RFC 6120 section 8.3.1; an error the requester's side returns for one
// of our echoes comes back here), headline (no reply expected) and groupchat (a room's; the proxy forwards
// none), and any message without a body (chat states, receipts).
const ECHOED = new Set(["chat", "normal"]);
xmpp.on("stanza", (stanza: Element) => {
  if (stanza.name !== "message" || !fromProxy(stanza)) return;
  const type = stanza.attrs.type ?? "normal";
  const requester = requesterOf(stanza);
  if (requester === null) {
    // From the proxy's own address, not a requester's: nobody to echo to.
    log.info(`not answering a message of type ${type} from ${stanza.attrs.from}`);
    return;
  }
  const text = stanza.getChildText("body");
  if (!ECHOED.has(type)) {
    log.info(`not answering a message of type ${type} from ${requester}`);
    return;
  }
  if (text === null) {
    log.info(`not answering a message without body from ${requester}`);
    return;
  }
  log.info(`echoing a ${type} message from ${requester}`);
  const thread = stanza.getChild("thread");
  const attrs: Record<string, string> = { to: stanza.attrs.from as string, id: randomUUID() };
  // The same type, or none when it had none. A new id: the proxy remembers it, to return an error for it here.
  if (stanza.attrs.type !== undefined) attrs.type = stanza.attrs.type;
  const echo = xml(
    "message",
    attrs,
    xml("body", {}, `echo from ${settings.resource} to ${requester}: ${text}`),
    thread === undefined ? null : xml("thread", thread.attrs, thread.getText()),
  );
  xmpp.send(echo).catch((err: Error) => log.error(`echo to ${requester} failed: ${err.message}`));
});

// Presence subscriptions: approve the proxy's (it sends one on every connect; approving again is harmless),
// decline everyone else's.
xmpp.on("stanza", (stanza: Element) => {
  if (stanza.name !== "presence" || stanza.attrs.type !== "subscribe" || !stanza.attrs.from) return;
  const approve = fromProxy(stanza);
  log.info(`${approve ? "approving" : "declining"} the presence subscription of ${stanza.attrs.from}`);
  void xmpp.send(xml("presence", { to: stanza.attrs.from, type: approve ? "subscribed" : "unsubscribed" }));
});

// Initial presence after every (re)connect: without it the proxy does not route to this resource.
xmpp.on("online", (address: unknown) => {
  if (stopping) return;
  log.info(`online as ${String(address)}`);
  // The status is what requesters subscribed to PROXY_DOMAIN see (the proxy shows the show and status of the
  // highest-priority resource).
  xmpp
    .send(xml("presence", {}, xml("status", {}, "ready")))
    .catch((err: Error) => log.error(`initial presence failed: ${err.message}`));
});
xmpp.on("offline", () => log.info("offline"));
// Without a listener an 'error' event would end the process; the library reconnects by itself (every 1 s).
xmpp.on("error", (err: Error) => {
  if (!stopping) log.error(`error: ${err.message}`);
});

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info(`${signal}: going offline`);
  xmpp.reconnect.stop();
  const timer = setTimeout(() => {
    log.error("the stream did not close within 5 s");
    process.exit(1);
  }, 5000);
  try {
    // Unavailable presence first: the proxy stops routing to this resource at once, so no request arrives
    // between now and the end of the stream (the server would also send it on our behalf when the stream ends).
    if (xmpp.status === "online") await xmpp.send(xml("presence", { type: "unavailable" }));
    await xmpp.stop(); // </stream:stream>, wait for the server's, close the socket
  } catch (err) {
    log.error(`while closing: ${(err as Error).message}`);
  }
  clearTimeout(timer);
  log.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

log.info(`connecting to ${settings.service}`);
xmpp.start().catch((err: Error) => {
  if (stopping) return;
  if (err.name === "SASLError") {
    // Wrong password or unknown account: retrying will not help.
    log.error(`login failed: ${err.message}`);
    process.exit(1);
  }
  // The server is not up yet (a container starting beside it): the library's reconnect retries every second.
  log.error(`could not connect (${err.message}); retrying`);
});
