/**
 * The other side, for the docker-compose demo: an ordinary user (a requester) who subscribes to the presence of
 * PROXY_DOMAIN, then every INTERVAL_MS (default 5000) asks it for its software version and a greeting, sends it
 * a chat message, and prints the answers and every presence of PROXY_DOMAIN. It answers the software version
 * query that the implementing client sends it through the proxy (from PROXY_DOMAIN) with its own name and
 * version, and prints that it did. Same settings as index.ts
 * (XMPP_SERVICE, XMPP_DOMAIN, XMPP_USERNAME, XMPP_PASSWORD or _FILE, XMPP_RESOURCE, PROXY_DOMAIN).
 *
 *     node --import tsx examples/implementing-client/requester.ts
 */
import { randomUUID } from "node:crypto";
import { type XmppClient, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { createClient, logger, readSettings } from "./env.js";

const NS_GREETING = "urn:example:greeting";
const NS_VERSION = "jabber:iq:version";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const SOFTWARE = { name: "xmpp-client-proxy example requester", version: "1.0.0" };

// The parts of @xmpp/client's iqCaller and iqCallee used here (types/xmpp.d.ts does not declare them).
interface IqCaller {
  /** Resolves with the result <iq/>; rejects with the error (a StanzaError) or on timeout. */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
}
interface IqCallee {
  /** `handler` answers with the result's payload; `next()` leaves the request to the library (service-unavailable). */
  get(
    xmlns: string,
    name: string,
    handler: (ctx: { stanza: Element }, next: () => Promise<unknown>) => unknown,
  ): void;
}

const settings = readSettings(process.env, "requester");
const log = logger(settings);
const intervalMs = Number(process.env.INTERVAL_MS || 5000);
const xmpp = createClient(settings);
const { iqCaller, iqCallee } = xmpp as XmppClient & { iqCaller: IqCaller; iqCallee: IqCallee };
const to = settings.proxyDomain;
let round = 0;
let timer: NodeJS.Timeout | undefined;

/** The messages come from PROXY_DOMAIN itself, whichever resource of the implementing account answers. */
const fromProxy = (stanza: Element) =>
  (stanza.attrs.from ?? "").split("/")[0]?.toLowerCase() === to.toLowerCase();

// One conversation with the service: every chat message carries this thread, and the echoes keep it.
const thread = randomUUID();
/** Chat messages sent and not answered yet, oldest first: an echo answers the oldest, an error its own id. */
const awaiting: Array<{ id: string; settle: (answer: Element | Error) => void }> = [];

/** Sends `text` as a chat message to PROXY_DOMAIN; resolves with the echo, rejects with the error or on timeout. */
function chat(id: string, text: string, timeoutMs: number): Promise<Element> {
  return new Promise<Element>((resolve, reject) => {
    const entry = {
      id,
      settle: (answer: Element | Error) => {
        clearTimeout(timeout);
        const index = awaiting.indexOf(entry);
        if (index >= 0) awaiting.splice(index, 1);
        if (answer instanceof Error) reject(answer);
        else resolve(answer);
      },
    };
    const timeout = setTimeout(() => entry.settle(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
    awaiting.push(entry);
    const message = xml(
      "message",
      { to, id, type: "chat" },
      xml("body", {}, text),
      xml("thread", {}, thread),
    );
    xmpp.send(message).catch((err: Error) => entry.settle(err));
  });
}

async function ask(): Promise<void> {
  round += 1;
  try {
    const version = await iqCaller.request(
      xml("iq", { type: "get", to }, xml("query", { xmlns: NS_VERSION })),
      10_000,
    );
    const query = version.getChild("query", NS_VERSION);
    log.info(
      `#${round} version from ${version.attrs.from}: ${query?.getChildText("name")} ` +
        `${query?.getChildText("version")} (${query?.getChildText("os")})`,
    );
    const greeting = await iqCaller.request(
      xml("iq", { type: "get", to }, xml("greet", { xmlns: NS_GREETING })),
      10_000,
    );
    log.info(
      `#${round} greeting from ${greeting.attrs.from}: ${greeting.getChildText("greeting", NS_GREETING)}`,
    );
    const other = await iqCaller
      .request(xml("iq", { type: "get", to }, xml("query", { xmlns: "urn:example:unknown" })), 10_000)
      .then(
        () => "a result (unexpected)",
        (err: Error & { condition?: string }) => `${err.condition ?? err.message}`,
      );
    log.info(`#${round} unknown namespace: ${other}`);
    const echo = await chat(`chat-${round}`, `hello #${round}`, 10_000);
    log.info(`#${round} chat from ${echo.attrs.from}: ${echo.getChildText("body")}`);
  } catch (err) {
    // e.g. service-unavailable while no resource of the implementing account is online yet.
    const { condition, message } = err as Error & { condition?: string };
    log.error(`#${round} ${condition ?? message}`);
  }
}

// XEP-0092 software version, asked by the implementing client: its IQ reaches us from PROXY_DOMAIN (the proxy
// sends it under an id of its own and passes our answer back). Anyone else gets the library's
// service-unavailable.
iqCallee.get(NS_VERSION, "query", ({ stanza }, next) => {
  if (!fromProxy(stanza)) return next();
  log.info(`answered a version query from ${stanza.attrs.from}`);
  return xml(
    "query",
    { xmlns: NS_VERSION },
    xml("name", {}, SOFTWARE.name),
    xml("version", {}, SOFTWARE.version),
  );
});

xmpp.on("stanza", (stanza: Element) => {
  if (!fromProxy(stanza)) return;
  if (stanza.name === "presence") {
    // subscribed or unsubscribed (the answer to the subscription request), then available (with the show and
    // status of the implementing account's highest-priority resource) or unavailable, at every change.
    const parts = [stanza.attrs.type ?? "available"];
    const show = stanza.getChildText("show");
    const status = stanza.getChildText("status");
    if (show) parts.push(`show: ${show}`);
    if (status) parts.push(`status: ${status}`);
    log.info(`presence from ${stanza.attrs.from}: ${parts.join(", ")}`);
    return;
  }
  if (stanza.name !== "message") return;
  if (stanza.attrs.type === "error") {
    // A chat message the proxy could not deliver, e.g. service-unavailable while no resource is online.
    const condition = stanza
      .getChild("error")
      ?.getChildElements()
      .find((child) => child.attrs.xmlns === NS_STANZAS && child.name !== "text");
    const error = Object.assign(new Error("message error"), { condition: condition?.name ?? "error" });
    awaiting.find((entry) => entry.id === stanza.attrs.id)?.settle(error);
    return;
  }
  const body = stanza.getChildText("body");
  if (body === null) return;
  const waiting = stanza.getChildText("thread") === thread ? awaiting[0] : undefined;
  if (waiting) waiting.settle(stanza);
  else log.info(`message from ${stanza.attrs.from}: ${body}`);
});

xmpp.on("online", async () => {
  log.info(`online; asking ${to} every ${intervalMs} ms`);
  await xmpp.send(xml("presence"));
  // The service's own presence: approved with `subscribed`, then its current presence and every change. The
  // server passes the answer (subscribed or unsubscribed) only to resources that have asked for the roster
  // (RFC 6121 section 2.1.6), so ask for it first.
  await iqCaller
    .request(xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })), 10_000)
    .catch((err: Error) => log.error(`roster: ${err.message}`));
  await xmpp.send(xml("presence", { to, type: "subscribe" }));
  clearInterval(timer);
  timer = setInterval(() => void ask(), intervalMs);
  void ask();
});
xmpp.on("offline", () => clearInterval(timer));
xmpp.on("error", (err: Error) => log.error(`error: ${err.message}`));

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  xmpp.reconnect.stop();
  await Promise.race([xmpp.stop().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(0);
};
process.on("SIGTERM", () => void shutdown());
process.on("SIGINT", () => void shutdown());

xmpp.start().catch((err: Error) => {
  if (err.name === "SASLError") {
    log.error(`login failed: ${err.message}`);
    process.exit(1);
  }
  log.error(`could not connect (${err.message}); retrying`);
});
