/**
 * Real XMPP clients (@xmpp/client) for the tests: requesters and implementing clients.
 */
import { client as createClient, type XmppClient, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";

export type Client = XmppClient;

/** What sendIq and collectStanzas need: an @xmpp/client or an @xmpp/component entity. */
export interface StanzaEntity {
  on(event: "stanza", listener: (stanza: Element) => void): unknown;
  removeListener(event: "stanza", listener: (stanza: Element) => void): unknown;
  send(stanza: Element): Promise<unknown>;
}

export interface ClientOptions {
  service: string;
  domain: string;
  username: string;
  password: string;
  resource: string;
  /** Send initial presence once online (default false: tests usually add their handlers first). */
  presence?: boolean;
}

/** Logs in with PLAIN (FIELD-NOTES: SCRAM costs 1-2 s per login here) and without auto-reconnect. */
export async function connectClient(opts: ClientOptions): Promise<Client> {
  const client = createClient({
    service: opts.service,
    domain: opts.domain,
    resource: opts.resource,
    credentials: (auth: (creds: object, mechanism: string) => Promise<void>) =>
      auth({ username: opts.username, password: opts.password }, "PLAIN"),
  });
  client.reconnect.stop();
  // Without a listener an 'error' event would crash the test process; start() still rejects on errors.
  client.on("error", () => {});
  try {
    await client.start();
  } catch (err) {
    // A failed login can leave the socket open, which keeps the test process alive.
    await stopClient(client);
    const who = `${opts.username}@${opts.domain}/${opts.resource}`;
    throw new Error(`${who} could not log in via ${opts.service}: ${(err as Error).message}`);
  }
  if (opts.presence) await client.send(xml("presence"));
  return client;
}

/** Sends an IQ and resolves with its answer (result or error), matched by id. */
export function sendIq(client: StanzaEntity, iq: Element, timeoutMs: number): Promise<Element> {
  const id = iq.attrs.id ?? `iq-${Math.random().toString(36).slice(2)}`;
  iq.attrs.id = id;
  return new Promise((resolve, reject) => {
    const onStanza = (stanza: Element) => {
      if (stanza.name !== "iq" || stanza.attrs.id !== id) return;
      if (stanza.attrs.type !== "result" && stanza.attrs.type !== "error") return;
      clearTimeout(timer);
      client.removeListener("stanza", onStanza);
      resolve(stanza);
    };
    const timer = setTimeout(() => {
      client.removeListener("stanza", onStanza);
      reject(new Error(`no answer to IQ ${id} within ${timeoutMs} ms`));
    }, timeoutMs);
    client.on("stanza", onStanza);
    client.send(iq).catch((err: Error) => {
      clearTimeout(timer);
      client.removeListener("stanza", onStanza);
      reject(err);
    });
  });
}

/** Records every incoming stanza that matches, in a live array. */
export function collectStanzas(client: StanzaEntity, predicate: (stanza: Element) => boolean): Element[] {
  const seen: Element[] = [];
  client.on("stanza", (stanza: Element) => {
    if (predicate(stanza)) seen.push(stanza);
  });
  return seen;
}

/** Approves presence subscriptions from the given domain (RFC 6121 section 3.1.4). */
export function autoApprove(client: Client, fromDomain: string): void {
  client.on("stanza", (stanza: Element) => {
    if (stanza.name === "presence" && stanza.attrs.type === "subscribe" && stanza.attrs.from === fromDomain) {
      void client.send(xml("presence", { to: fromDomain, type: "subscribed" }));
    }
  });
}

/**
 * Answers incoming IQ requests: the handler returns the payload of a result, an <error/> element for an error
 * answer, or null to never answer. It runs inside the library's iqCallee middleware, which builds the <iq/>
 * around the returned element; a promise that never settles keeps that middleware from answering
 * service-unavailable on our behalf.
 */
export function serveIq(client: Client, handler: (iq: Element) => Element | null): void {
  client.middleware.use((ctx: { stanza: Element }, next: () => Promise<unknown>) => {
    const { stanza } = ctx;
    if (stanza.name !== "iq" || (stanza.attrs.type !== "get" && stanza.attrs.type !== "set")) return next();
    const reply = handler(stanza);
    return reply === null ? new Promise(() => {}) : reply;
  });
}

/** Closes the stream; never throws. */
export async function stopClient(client: Client | undefined): Promise<void> {
  if (!client) return;
  await Promise.race([client.stop().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))]);
  client.socket?.destroy();
}
