/**
 * The baseline of the bench: the least an external component (XEP-0114) can do to proxy IQs to a client
 * account. No store, no signing, no timeouts, no presence: the requester's full JID goes verbatim into the
 * resource of the translated address (as mod_client_proxy does), requests go round-robin to the resources
 * named in TARGET_RESOURCES, and an answer to `domain/<requester>` goes back to that requester.
 *
 *   XMPP_SERVICE=xmpp://127.0.0.1:5347 XMPP_DOMAIN=proxy.localhost XMPP_PASSWORD=secret \
 *   TARGET_JID=impl@localhost TARGET_RESOURCES=r1,r2 node --import tsx bench/minimal-component.ts
 *
 * ADDRESS_FORMAT=token: the resource has the shape and length of the service's JAT token instead
 * (`j1.bench.<22 characters>.<requester, %XX-escaped>`, with a constant in place of the MAC, nothing verified),
 * to tell what the longer address costs the XMPP server from what the service itself costs.
 *
 * Prints `online` on stdout once the server accepted it; exits on SIGTERM/SIGINT.
 */
import { component } from "@xmpp/component";
import type { Element } from "@xmpp/xml";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`minimal-component: ${name} is required\n`);
    process.exit(2);
  }
  return value;
};

const domain = env("XMPP_DOMAIN");
const target = env("TARGET_JID");
const resources = env("TARGET_RESOURCES").split(",");
const xmpp = component({ service: env("XMPP_SERVICE"), domain, password: env("XMPP_PASSWORD") });
xmpp.reconnect.stop();
// Raw stanzas only: the library's middleware would answer IQ requests with service-unavailable itself.
xmpp.removeAllListeners("element");

const FAKE_MAC = "N2VqalW-1ypoZLwtTUMrJQ";
const tokenShaped = process.env.ADDRESS_FORMAT === "token";
const TOKEN_PREFIX = `j1.bench.${FAKE_MAC}.`;
// encodeURIComponent escapes what the service's token escapes for the JIDs of the bench (`@` and `/`).
const encode = (requester: string) =>
  tokenShaped ? `${TOKEN_PREFIX}${encodeURIComponent(requester)}` : requester;
const decode = (resource: string) =>
  tokenShaped ? decodeURIComponent(resource.slice(TOKEN_PREFIX.length)) : resource;

let next = 0;
xmpp.on("stanza", (stanza: Element) => {
  if (stanza.name !== "iq") return;
  const { type, from, to } = stanza.attrs;
  if (!from || !to) return;
  if (type === "get" || type === "set") {
    if (to !== domain) return;
    const resource = resources[next++ % resources.length];
    stanza.attrs.to = `${target}/${resource}`;
    stanza.attrs.from = `${domain}/${encode(from)}`;
  } else {
    const slash = to.indexOf("/");
    if (slash < 0 || to.slice(0, slash) !== domain) return;
    stanza.attrs.to = decode(to.slice(slash + 1));
    stanza.attrs.from = domain;
  }
  xmpp.send(stanza).catch(() => {});
});
xmpp.on("error", (err: Error) => process.stderr.write(`minimal-component: ${err.message}\n`));
xmpp.on("online", () => process.stdout.write("online\n"));
xmpp.on("offline", () => process.exit(0));

const stop = () => {
  xmpp.stop().then(
    () => process.exit(0),
    () => process.exit(0),
  );
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

xmpp.start().catch((err: Error) => {
  process.stderr.write(`minimal-component: ${err.message}\n`);
  process.exit(1);
});
