/**
 * The Prosody test harness itself, before any test relies on it: a private Prosody routes a component's
 * subscription and presence, IQs in both directions reach serveIq and come back through sendIq (errors and
 * silence included), a restart keeps the ports and the accounts, and stop leaves no process or directory.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import { type Component, component, xml as componentXml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import {
  autoApprove,
  type Client,
  collectStanzas,
  connectClient,
  sendIq,
  serveIq,
  stopClient,
} from "../harness/clients.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";

const PASSWORD = "harness-pw";
const NS = "urn:xmpp-client-proxy:test:harness";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Prosody processes still running with this server's config (its temp dir is in their command line). */
function prosodyProcesses(dir: string): string[] {
  const ps = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" });
  return ps.split("\n").filter((line) => line.includes(dir) && !line.includes("ps -eo"));
}

describe("Prosody harness", { timeout: 60_000 }, () => {
  let prosody: ProsodyServer;
  let proxy: string;
  const clients: Client[] = [];
  let comp: Component | undefined;

  const connect = async (username: string, resource: string): Promise<Client> => {
    const client = await connectClient({
      service: `xmpp://127.0.0.1:${prosody.c2sPort}`,
      domain: prosody.domain,
      username,
      password: PASSWORD,
      resource,
    });
    clients.push(client);
    return client;
  };

  /** An implementing resource: approves the component, answers `harness` IQs, stays silent on `silent`. */
  const connectImpl = async (resource: string): Promise<Client> => {
    const client = await connect("impl", resource);
    autoApprove(client, proxy);
    serveIq(client, (iq) =>
      iq.getChild("silent", NS) ? null : xml("served", { xmlns: NS, resource, from: iq.attrs.from }),
    );
    await client.send(xml("presence"));
    return client;
  };

  /** A bare XEP-0114 component, without reconnect, recording everything it receives. */
  const connectComponent = async (): Promise<{ entity: Component; seen: Element[] }> => {
    const entity = component({
      service: `xmpp://127.0.0.1:${prosody.componentPort}`,
      domain: proxy,
      password: prosody.componentSecret,
    });
    entity.reconnect.stop();
    entity.on("error", () => {});
    const seen: Element[] = [];
    entity.on("stanza", (stanza: Element) => seen.push(stanza));
    await entity.start();
    comp = entity;
    return { entity, seen };
  };

  const disconnectAll = async () => {
    for (const client of clients.splice(0)) await stopClient(client);
    await comp?.stop().catch(() => {});
    comp = undefined;
  };

  before(async () => {
    const started = Date.now();
    prosody = await startProsody({
      users: [
        { username: "requester", password: PASSWORD },
        { username: "impl", password: PASSWORD },
      ],
    });
    console.log(`# prosody: registered 2 users and accepting connections in ${Date.now() - started} ms`);
    proxy = prosody.componentDomain;
  });

  after(async () => {
    await disconnectAll();
    await prosody?.stop();
  });

  it("routes the component's subscription, then presence of every online resource", async () => {
    await connectImpl("r1");
    await connectImpl("r2");
    const { entity, seen } = await connectComponent();
    const impl = `impl@${prosody.domain}`;
    await entity.send(componentXml("presence", { type: "subscribe", to: impl, from: proxy }));

    const presences = () => seen.filter((s) => s.name === "presence");
    const indexOf = (what: string, match: (p: Element) => boolean) =>
      waitFor(what, () => {
        const index = presences().findIndex(match);
        return index >= 0 ? index : undefined;
      });
    const subscribed = await indexOf(
      "subscribed",
      (p) => p.attrs.type === "subscribed" && p.attrs.from === impl,
    );
    for (const resource of ["r1", "r2"]) {
      const full = `${impl}/${resource}`;
      const index = await indexOf(`presence of ${resource}`, (p) => p.attrs.from === full && !p.attrs.type);
      assert.ok(index > subscribed, `presence of ${resource} comes after subscribed`);
    }
  });

  it("carries IQs both ways; sendIq returns error answers and rejects on silence", async () => {
    assert.ok(comp, "the component of the previous test is connected");
    const impl = `impl@${prosody.domain}`;
    const get = (to: string, child: string, from?: string) =>
      componentXml("iq", { type: "get", to, from }, componentXml(child, { xmlns: NS }));

    const fromComponent = await sendIq(comp, get(`${impl}/r1`, "harness", proxy), 3000);
    assert.equal(fromComponent.attrs.type, "result");
    assert.equal(fromComponent.attrs.from, `${impl}/r1`);
    assert.deepEqual(fromComponent.getChild("served", NS)?.attrs, { xmlns: NS, resource: "r1", from: proxy });

    const requester = await connect("requester", "desk");
    const fromClient = await sendIq(requester, get(`${impl}/r2`, "harness"), 3000);
    assert.equal(fromClient.getChild("served", NS)?.attrs.resource, "r2");

    const offline = await sendIq(comp, get(`${impl}/gone`, "harness", proxy), 3000);
    assert.equal(offline.attrs.type, "error");
    assert.ok(offline.getChild("error")?.getChild("service-unavailable", NS_STANZAS), offline.toString());

    const heard = collectStanzas(requester, (s) => s.name === "iq" && s.attrs.id === "silent-1");
    const silent = get(`${impl}/r1`, "silent");
    silent.attrs.id = "silent-1";
    await assert.rejects(sendIq(requester, silent, 500), /no answer to IQ silent-1 within 500 ms/);
    assert.equal(heard.length, 0, "serveIq returning null sends nothing, and the library answers nothing");
  });

  it("restarts on the same ports with the accounts and the subscription kept", async () => {
    await disconnectAll();
    const ports = [prosody.c2sPort, prosody.componentPort];
    const started = Date.now();
    await prosody.restart();
    console.log(`# prosody: restarted in ${Date.now() - started} ms`);
    assert.deepEqual([prosody.c2sPort, prosody.componentPort], ports);

    await connectImpl("r1");
    await connect("requester", "desk");
    const { entity, seen } = await connectComponent();
    // Only an approved subscription makes Prosody answer a probe with the resource's presence.
    const impl = `impl@${prosody.domain}`;
    await entity.send(componentXml("presence", { type: "probe", to: impl, from: proxy }));
    await waitFor("presence of r1 after the restart", () =>
      seen.find((s) => s.name === "presence" && s.attrs.from === `${impl}/r1` && !s.attrs.type),
    );
  });

  it("stops without leaving a process or the temp dir", async () => {
    await disconnectAll();
    const { dir } = prosody;
    assert.ok(prosodyProcesses(dir).length > 0, "the server runs before stop");
    await prosody.stop();
    assert.deepEqual(prosodyProcesses(dir), []);
    assert.equal(existsSync(dir), false);
  });
});
