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
 * REDIS_URL: the Redis floor, the least any correlating proxy must ask of Redis. For each request it sends
 * `SET <key> <100-byte value> PX <FLOOR_TTL_MS>` before forwarding it, and `GETDEL <key>` when its answer comes
 * (the answer goes back only when the key was there), the key shaped as the service's record keys
 * (`<prefix>:{<domain>}:request:<requester> <id>`). The client is the service's own (createRedisClient in
 * src/store/redis-client.ts: no auto-pipelining, one write per command, fail fast), so the commands reach Redis
 * as the service's would.
 *
 * Prints `online` on stdout once the server accepted it; exits on SIGTERM/SIGINT.
 */
import { component } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import type { Redis } from "ioredis";

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

/** The Redis floor (REDIS_URL): one SET per request, one GETDEL per answer; null for the plain minimal. */
const floor = process.env.REDIS_URL ? await connectFloor(process.env.REDIS_URL) : null;

async function connectFloor(url: string) {
  // Loaded only here: the plain minimal component stays as small as it was.
  const [{ createRedisClient }, { pino }] = await Promise.all([
    import("../src/store/redis-client.js"),
    import("pino"),
  ]);
  const redis: Redis = createRedisClient({ url, log: pino({ level: "warn" }, process.stderr) });
  // Without an offline queue (as in the service) commands fail until the connection is ready.
  await new Promise<void>((resolve, reject) => {
    redis.once("ready", resolve);
    setTimeout(() => reject(new Error(`Redis not ready within 10 s (${redis.status})`)), 10_000).unref();
  });
  const ttl = Number(process.env.FLOOR_TTL_MS ?? 630_000);
  const prefix = `${process.env.FLOOR_PREFIX ?? "xcp"}:{${domain}}:request:`;
  let failures = 0;
  const failed = (err: Error) => {
    if (failures++ === 0) process.stderr.write(`minimal-component: Redis: ${err.message}\n`);
  };
  return {
    /** Records the request; resolves false when Redis failed (the request is then dropped). */
    async record(requester: string, id: string, resource: string): Promise<boolean> {
      // 100 bytes, as a record of what to answer: the address asked, the resource, the deadline.
      const value = `${domain}\x1f${target}/${resource}\x1f${Date.now() + 30_000}\x1f`.padEnd(100, ".");
      try {
        await redis.set(`${prefix}${requester} ${id}`, value, "PX", ttl);
        return true;
      } catch (err) {
        failed(err as Error);
        return false;
      }
    },
    /** Takes the request's record; false when it was not there (or Redis failed): the answer is dropped. */
    async take(requester: string, id: string): Promise<boolean> {
      try {
        return (await redis.getdel(`${prefix}${requester} ${id}`)) !== null;
      } catch (err) {
        failed(err as Error);
        return false;
      }
    },
  };
}

let next = 0;
xmpp.on("stanza", (stanza: Element) => {
  if (stanza.name !== "iq") return;
  const { type, from, to, id = "" } = stanza.attrs;
  if (!from || !to) return;
  if (type === "get" || type === "set") {
    if (to !== domain) return;
    const resource = resources[next++ % resources.length] ?? "";
    stanza.attrs.to = `${target}/${resource}`;
    stanza.attrs.from = `${domain}/${encode(from)}`;
    if (floor) {
      void floor.record(from, id, resource).then((ok) => ok && send(stanza));
      return;
    }
  } else {
    const slash = to.indexOf("/");
    if (slash < 0 || to.slice(0, slash) !== domain) return;
    const requester = decode(to.slice(slash + 1));
    stanza.attrs.to = requester;
    stanza.attrs.from = domain;
    if (floor) {
      void floor.take(requester, id).then((ok) => ok && send(stanza));
      return;
    }
  }
  send(stanza);
});

function send(stanza: Element): void {
  xmpp.send(stanza).catch(() => {});
}
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
