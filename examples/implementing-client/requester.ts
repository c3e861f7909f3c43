/**
 * The other side, for the docker-compose demo: an ordinary user (a requester) who asks PROXY_DOMAIN for its
 * software version and a greeting every INTERVAL_MS (default 5000), and prints the answers. Same settings as
 * index.ts (XMPP_SERVICE, XMPP_DOMAIN, XMPP_USERNAME, XMPP_PASSWORD or _FILE, XMPP_RESOURCE, PROXY_DOMAIN).
 *
 *     node --import tsx examples/implementing-client/requester.ts
 */
import { type XmppClient, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { createClient, logger, readSettings } from "./env.js";

const NS_GREETING = "urn:example:greeting";
const NS_VERSION = "jabber:iq:version";

// The part of @xmpp/client's iqCaller used here (types/xmpp.d.ts does not declare it).
interface IqCaller {
  /** Resolves with the result <iq/>; rejects with the error (a StanzaError) or on timeout. */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
}

const settings = readSettings(process.env, "requester");
const log = logger(settings);
const intervalMs = Number(process.env.INTERVAL_MS || 5000);
const xmpp = createClient(settings);
const { iqCaller } = xmpp as XmppClient & { iqCaller: IqCaller };
const to = settings.proxyDomain;
let round = 0;
let timer: NodeJS.Timeout | undefined;

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
  } catch (err) {
    // e.g. service-unavailable while no resource of the implementing account is online yet.
    const { condition, message } = err as Error & { condition?: string };
    log.error(`#${round} ${condition ?? message}`);
  }
}

xmpp.on("online", async () => {
  log.info(`online; asking ${to} every ${intervalMs} ms`);
  await xmpp.send(xml("presence"));
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
