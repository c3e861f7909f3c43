/**
 * The ejabberd harness itself: a private ejabberd accepts two component connections for one domain, routes a
 * presence subscription between the component and a client account, survives a restart with its accounts,
 * and leaves no Erlang process behind.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { xml as clientXml } from "@xmpp/client";
import { type Component, component, xml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import { autoApprove, type Client, connectClient, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";

const USERS = [
  { username: "impl", password: "impl-pw" },
  { username: "requester", password: "requester-pw" },
];

/** Stanzas received by one connection, with a way to wait for one that matches. */
class Inbox {
  readonly stanzas: Element[] = [];
  private waiters: Array<{ match: (s: Element) => boolean; resolve: (s: Element) => void }> = [];

  push(stanza: Element): void {
    this.stanzas.push(stanza);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(stanza)) return true;
      w.resolve(stanza);
      return false;
    });
  }

  wait(match: (s: Element) => boolean, timeoutMs: number, what: string): Promise<Element> {
    const seen = this.stanzas.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${what} within ${timeoutMs} ms; got:\n${this.stanzas.join("\n")}`)),
        timeoutMs,
      );
      this.waiters.push({
        match,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      });
    });
  }
}

function beamProcesses(node: string): string[] {
  return execFileSync("ps", ["-eo", "pid=,user=,args="], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.includes(node));
}

function epmdPids(): string[] {
  return execFileSync("ps", ["-eo", "pid=,comm="], { encoding: "utf8" })
    .split("\n")
    .filter((line) => / epmd$/.test(line))
    .map((line) => line.trim().split(/\s+/)[0] ?? "");
}

function login(server: EjabberdServer, username: string, resource: string): Promise<Client> {
  const user = USERS.find((u) => u.username === username);
  assert.ok(user);
  return connectClient({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: server.domain,
    username,
    password: user.password,
    resource,
  });
}

describe("ejabberd test harness", { timeout: 90_000 }, () => {
  let server: EjabberdServer | undefined;
  const components: Component[] = [];
  const clients: Client[] = [];
  let epmdBefore: string[] = [];
  let startMs = 0;

  before(async () => {
    epmdBefore = epmdPids();
    const t0 = performance.now();
    server = await startEjabberd({ users: USERS, componentSecret: "s3cret-component" });
    startMs = Math.round(performance.now() - t0);
  });

  after(async () => {
    for (const c of components) await c.stop().catch(() => {});
    for (const c of clients) await stopClient(c);
    await server?.stop();
  });

  test("two component connections for the same domain are both accepted", { timeout: 15_000 }, async (t) => {
    assert.ok(server);
    t.diagnostic(`ejabberd started, ${USERS.length} users registered, in ${startMs} ms`);
    const s = server;
    for (let i = 0; i < 2; i++) {
      const c = component({
        service: `xmpp://127.0.0.1:${s.componentPort}`,
        domain: s.componentDomain,
        password: s.componentSecret,
      });
      c.reconnect.stop();
      c.on("error", () => {});
      components.push(c);
    }
    await Promise.all(components.map((c) => c.start()));
    for (const c of components) assert.equal(c.status, "online");
  });

  test("a subscription from the component domain brings subscribed, then the resource's presence", {
    timeout: 15_000,
  }, async () => {
    assert.ok(server);
    const s = server;
    const [first, second] = components;
    assert.ok(first && second, "needs the two component connections of the previous test");
    const received = new Inbox();
    const via = new Map<Element, number>();
    components.forEach((c, i) => {
      c.on("stanza", (stanza: Element) => {
        via.set(stanza, i);
        received.push(stanza);
      });
    });

    const impl = await login(s, "impl", "res1");
    clients.push(impl);
    autoApprove(impl, s.componentDomain);
    await impl.send(clientXml("presence"));

    await first.send(xml("presence", { type: "subscribe", to: "impl@localhost", from: s.componentDomain }));

    const fromImpl = (stanza: Element) => (stanza.attrs.from ?? "").split("/")[0] === "impl@localhost";
    const subscribed = await received.wait(
      (st) => st.is("presence") && st.attrs.type === "subscribed" && fromImpl(st),
      5000,
      "subscribed",
    );
    const available = await received.wait(
      (st) => st.is("presence") && st.attrs.type === undefined && st.attrs.from === "impl@localhost/res1",
      5000,
      "available presence of impl@localhost/res1",
    );
    assert.equal(subscribed.attrs.to, s.componentDomain);
    assert.equal(available.attrs.to, s.componentDomain);
    // Each stanza goes to a random one of the two connections, so only one connection's order is defined.
    if (via.get(subscribed) === via.get(available)) {
      assert.ok(
        received.stanzas.indexOf(subscribed) < received.stanzas.indexOf(available),
        "subscribed first",
      );
    }
  });

  test("after a restart the accounts and rosters are kept", { timeout: 30_000 }, async (t) => {
    assert.ok(server);
    for (const c of clients.splice(0)) await stopClient(c);
    for (const c of components.splice(0)) await c.stop().catch(() => {});
    const ports = [server.c2sPort, server.componentPort];

    const t0 = performance.now();
    await server.restart();
    t.diagnostic(`ejabberd restarted in ${Math.round(performance.now() - t0)} ms`);
    assert.deepEqual([server.c2sPort, server.componentPort], ports);

    const requester = await login(server, "requester", "r");
    clients.push(requester);
    assert.equal(requester.status, "online");

    // The roster survived too: the impl's new resource is announced to the component without a new subscribe.
    const c = component({
      service: `xmpp://127.0.0.1:${server.componentPort}`,
      domain: server.componentDomain,
      password: server.componentSecret,
    });
    c.reconnect.stop();
    c.on("error", () => {});
    components.push(c);
    const received = new Inbox();
    c.on("stanza", (stanza: Element) => received.push(stanza));
    await c.start();
    const impl = await login(server, "impl", "res2");
    clients.push(impl);
    assert.equal(impl.status, "online");
    await impl.send(clientXml("presence"));
    await received.wait(
      (st) => st.is("presence") && st.attrs.type === undefined && st.attrs.from === "impl@localhost/res2",
      5000,
      "available presence of impl@localhost/res2 after the restart",
    );
  });

  test("stop leaves no process of the node and no temp dir", { timeout: 30_000 }, async (t) => {
    assert.ok(server);
    for (const c of clients.splice(0)) await stopClient(c);
    for (const c of components.splice(0)) await c.stop().catch(() => {});
    const { node, dir } = server;
    assert.ok(
      beamProcesses(node).some((line) => line.includes("beam.smp")),
      "the node runs before stop()",
    );

    const t0 = performance.now();
    await server.stop();
    t.diagnostic(`ejabberd stopped in ${Math.round(performance.now() - t0)} ms`);
    server = undefined;

    assert.deepEqual(beamProcesses(node), []);
    assert.equal(existsSync(dir), false);
    // An epmd daemon would stay; a short-lived `epmd` command (ejabberdctl asking for names) may be caught by
    // ps on its way out: look again until only daemons could be left.
    let newEpmd = epmdPids().filter((pid) => !epmdBefore.includes(pid));
    for (let i = 0; i < 20 && newEpmd.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      newEpmd = epmdPids().filter((pid) => !epmdBefore.includes(pid));
    }
    assert.deepEqual(newEpmd, [], "no epmd was started");
  });
});
