/**
 * Shared pieces of the integration tests: the implementing client's behaviour, and waiting for the proxy.
 */
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { decodeToken } from "../../src/index.js";
import { autoApprove, type Client, connectClient, serveIq } from "../harness/clients.js";

export const NS_ECHO = "urn:xmpp-client-proxy:test:echo";
export const NS_SILENT = "urn:xmpp-client-proxy:test:silent";
export const NS_FAIL = "urn:xmpp-client-proxy:test:fail";
export const NS_TWICE = "urn:xmpp-client-proxy:test:twice";
export const NS_SLOW = "urn:xmpp-client-proxy:test:slow";
export const NS_VERSION = "jabber:iq:version";
export const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/**
 * What the implementing client does with a request, by namespace:
 * - echo: answers with the payload's text, the resource that served it and the requester read from the token;
 * - version: XEP-0092 answer naming the resource;
 * - silent: never answers;
 * - fail: answers with an application error;
 * - twice: answers twice (the second must never reach the requester);
 * - slow: answers as echo does, after the number of milliseconds the payload's text starts with ("1500:abc").
 */
/** Which resource received each request id, across all implementing clients of a test file. */
export const receivedBy = new Map<string, string>();

export function implementingBehaviour(resource: string, sendExtra: (stanza: Element) => void) {
  return (iq: Element): Element | null => {
    receivedBy.set(iq.attrs.id ?? "", resource);
    const payload = iq.getChildElements()[0];
    switch (payload?.attrs.xmlns) {
      case NS_ECHO:
        return xml(
          "echo",
          { xmlns: NS_ECHO, resource, requester: decodeToken(iq.attrs.from ?? "")?.requester ?? "?" },
          payload?.getText() ?? "",
        );
      case NS_VERSION:
        return xml("query", { xmlns: NS_VERSION }, xml("name", {}, "impl"), xml("version", {}, resource));
      case NS_SILENT:
        return null;
      case NS_FAIL:
        return xml(
          "error",
          { type: "modify" },
          xml("not-acceptable", { xmlns: NS_STANZAS }),
          xml("reason", { xmlns: NS_FAIL }, "nope"),
        );
      case NS_TWICE:
        setTimeout(() => {
          sendExtra(
            xml(
              "iq",
              { type: "result", id: iq.attrs.id, to: iq.attrs.from },
              xml("n", { xmlns: NS_TWICE }, "2"),
            ),
          );
        }, 50);
        return xml("n", { xmlns: NS_TWICE }, "1");
      case NS_SLOW: {
        const text = payload?.getText() ?? "";
        const { id, from } = iq.attrs;
        setTimeout(() => {
          sendExtra(
            xml(
              "iq",
              { type: "result", id, to: from },
              xml(
                "echo",
                { xmlns: NS_SLOW, resource, requester: decodeToken(from ?? "")?.requester ?? "?" },
                text,
              ),
            ),
          );
        }, Number.parseInt(text, 10) || 0);
        return null;
      }
      default:
        return xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS }));
    }
  };
}

export function echo(id: string, to: string, text: string, ns = NS_ECHO): Element {
  return xml("iq", { type: "get", id, to }, xml("echo", { xmlns: ns }, text));
}

export function errorCondition(stanza: Element): {
  type: string | undefined;
  condition: string | undefined;
  by?: string;
} {
  const error = stanza.getChild("error");
  const condition = error
    ?.getChildElements()
    .find((child) => child.attrs.xmlns === NS_STANZAS && child.name !== "text");
  return { type: error?.attrs.type, condition: condition?.name, by: error?.attrs.by };
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function httpStatus(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

export const PASSWORD = "pw-test-123";

/** What the integration tests need of a running XMPP server (Prosody or ejabberd harness). */
export interface TestServer {
  readonly c2sPort: number;
  readonly domain: string;
  readonly componentDomain: string;
}

/** A started Prosody or ejabberd, as the tests that run on both use it. */
export type RunningServer = TestServer & {
  readonly componentPort: number;
  readonly componentSecret: string;
  stop(): Promise<void>;
};

/** The accounts to register: these names, each with PASSWORD. */
export const accounts = (...usernames: string[]) =>
  usernames.map((username) => ({ username, password: PASSWORD }));

/** A user of the test server logged in as `username/resource` (all test accounts share PASSWORD). */
export function connectUser(server: TestServer, username: string, resource: string): Promise<Client> {
  return connectClient({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: server.domain,
    username,
    password: PASSWORD,
    resource,
  });
}

/**
 * A resource of the implementing account `impl`: approves the proxy's subscription, serves requests with
 * `implementingBehaviour`, and is online (initial presence sent).
 */
export async function connectImplementing(server: TestServer, resource: string): Promise<Client> {
  const client = await connectUser(server, "impl", resource);
  autoApprove(client, server.componentDomain);
  serveIq(
    client,
    implementingBehaviour(resource, (stanza) => void client.send(stanza)),
  );
  await client.send(xml("presence"));
  return client;
}

/** The accounts every integration test registers: a requester and the implementing account. */
export const TEST_USERS = [
  { username: "requester", password: PASSWORD },
  { username: "impl", password: PASSWORD },
];

/** Sends `count` echo requests from the clients, `window` in flight per client; records every answer by id. */
export async function load(
  clients: Client[],
  proxy: string,
  prefix: string,
  count: number,
  window: number,
  answerWithinMs = 6000,
) {
  const answers = new Map<string, Element[]>();
  const expected = new Map<string, string>();
  let sent = 0;
  await Promise.all(
    clients.map((client, c) => {
      client.on("stanza", (stanza: Element) => {
        const id = stanza.attrs.id;
        if (stanza.name !== "iq" || !id?.startsWith(prefix)) return;
        answers.set(id, [...(answers.get(id) ?? []), stanza]);
      });
      return Promise.all(
        Array.from({ length: window }, async () => {
          while (sent < count) {
            const n = sent++;
            const id = `${prefix}-${c}-${n}`;
            expected.set(id, `payload-${n}`);
            await client.send(
              xml("iq", { type: "get", id, to: proxy }, xml("echo", { xmlns: NS_ECHO }, `payload-${n}`)),
            );
            await until(`answer to ${id}`, () => answers.has(id) || undefined, answerWithinMs).catch(
              () => {},
            );
          }
        }),
      );
    }),
  );
  return { answers, expected };
}
