/**
 * Capacity mode: how many proxied requests one replica handles per core, with no real XMPP server in the way.
 *
 * A fake XMPP server in this process speaks the component protocol (XEP-0114) itself: it accepts the
 * service's stream, checks the handshake (hex SHA-1 of stream id + secret), sends available presence of
 * impl@localhost/r1 and /r2, and then plays both sides: many fake requesters send IQ requests to the service's
 * domain, each keeping a few in flight, and every request the service forwards to a resource is answered at
 * once. Stanzas are written and scanned as strings (no DOM), so the fake server costs little next to the
 * service. The result is the service's CPU time per request, and requests per second per core (1 / that).
 * Two resources are online so that a balancing strategy (BALANCE, set through `env`) has a choice to make;
 * the requests forwarded to each during the window are counted (Measurement.byResource).
 *
 * The same fake server and load also measure the baselines (`component`): the minimal stateless component
 * (bench/minimal-component.ts), and the Redis floor (the same with a SET per request and a GETDEL per answer),
 * so that the service's CPU and its Redis's CPU per request at capacity can be set against theirs.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createJat } from "../src/jat/token.js";
import { until } from "../test/integration/helpers.js";
import { onCleanup } from "./cleanup.js";
import { type Measurement, measure } from "./measure.js";
import type { RedisProbe } from "./redis-stats.js";
import { JAT_KEYS, startMinimal, startReplica } from "./services.js";
import { Samples } from "./stats.js";

const DOMAIN = "proxy.localhost";
const TARGET = "impl@localhost";
const RESOURCES = ["r1", "r2"];
const NS_ECHO = "urn:xmpp-client-proxy:test:echo";

export interface CapacityOptions {
  redis: { url: string; probe: RedisProbe; pids: number[] } | null;
  warmupSeconds: number;
  seconds: number;
  /** Fake requesters, and requests in flight per requester. */
  requesters: number;
  window: number;
  /** Further settings of the replica, e.g. { BALANCE: "sticky" }. */
  env?: Record<string, string>;
  /**
   * What connects to the fake server: a replica of the service (the default), the minimal stateless component,
   * or the Redis floor (the minimal component with a SET and a GETDEL per request on `redis`).
   */
  component?: "service" | "minimal" | "floor";
  /**
   * What the fake requesters send: IQ requests (the default), or messages (RFC 6121 section 5) that the fake
   * resource answers with a message of the same id to the address it came from, `domain/<token>`: one round
   * is then a message in and a message out through the service, as an IQ round is a request and its answer.
   */
  stanza?: "iq" | "message" | "request-out";
}

/**
 * The requests of `request-out`: the fake resources r1 and r2 ask the fake requesters through the service, at
 * `domain/<token>` (README, "Requests from the implementing client"); the tokens are signed with the replicas'
 * JAT key (services.ts), as the service itself would have handed them out.
 */
const jat = (() => {
  const colon = JAT_KEYS.indexOf(":");
  return createJat({
    domain: DOMAIN,
    keys: [{ kid: JAT_KEYS.slice(0, colon), secret: Buffer.from(JAT_KEYS.slice(colon + 1), "utf8") }],
  });
})();

/**
 * Splits a stream into its top-level elements. Enough for what xmpp.js (ltx) writes: no comments or CDATA,
 * and '>' escaped in attribute values and text.
 */
export class ElementScanner {
  private buf = "";
  private pos = 0;
  private depth = 0;
  private start = 0;

  constructor(
    private readonly onHeader: (tag: string) => void,
    private readonly onElement: (xml: string) => void,
    private readonly onEnd: () => void,
  ) {}

  push(chunk: string): void {
    this.buf += chunk;
    const buf = this.buf;
    let pos = this.pos;
    for (;;) {
      const lt = buf.indexOf("<", pos);
      if (lt < 0) {
        pos = buf.length;
        break;
      }
      const gt = buf.indexOf(">", lt);
      if (gt < 0) {
        pos = lt;
        break;
      }
      pos = gt + 1;
      const next = buf.charCodeAt(lt + 1);
      if (next === 63 /* ? */ || next === 33 /* ! */) continue;
      if (next === 47 /* / */) {
        if (this.depth === 0) this.onEnd();
        else if (--this.depth === 0) this.onElement(buf.slice(this.start, gt + 1));
        continue;
      }
      if (this.depth === 0 && buf.startsWith("<stream:stream", lt)) {
        this.onHeader(buf.slice(lt, gt + 1));
        continue;
      }
      const selfClosing = buf.charCodeAt(gt - 1) === 47;
      if (this.depth === 0) {
        if (selfClosing) this.onElement(buf.slice(lt, gt + 1));
        else this.start = lt;
      }
      if (!selfClosing) this.depth++;
    }
    // Keep only what is still needed: the open top-level element, or the incomplete tag.
    const keep = this.depth > 0 ? this.start : pos;
    this.buf = buf.slice(keep);
    this.pos = pos - keep;
    this.start = this.depth > 0 ? this.start - keep : 0;
  }
}

const ATTR = /\s([\w:.-]+)=(?:"([^"]*)"|'([^']*)')/g;

/** The element's name and the attributes of its start tag (values left escaped, as they were written). */
export function startTag(xml: string): { name: string; attrs: Record<string, string> } {
  const end = xml.indexOf(">");
  const tag = xml.slice(1, end);
  const space = tag.search(/[\s/]/);
  const name = space < 0 ? tag : tag.slice(0, space);
  const attrs: Record<string, string> = {};
  for (const match of tag.matchAll(ATTR)) {
    if (match[1]) attrs[match[1]] = match[2] ?? match[3] ?? "";
  }
  return { name, attrs };
}

interface FakeServer {
  port: number;
  secret: string;
  server: Server;
  /** Resolves once a component completed the handshake. */
  online: Promise<void>;
  startLoad(): void;
  mark(): void;
  stop(drainMs: number): Promise<{
    completed: number;
    errors: number;
    errorConditions: Record<string, number>;
    seconds: number;
    unanswered: number;
    latency: Samples;
    /** Requests forwarded to each resource between mark and stop. */
    byResource: Record<string, number>;
  }>;
  /** Sends one request and resolves with its answer's type (readiness check). */
  ping(): Promise<string>;
  close(): Promise<void>;
}

async function startFakeServer(
  requesters: number,
  window: number,
  stanza: "iq" | "message" | "request-out",
): Promise<FakeServer> {
  const secret = randomBytes(12).toString("hex");
  let socket: Socket | null = null;
  let markOnline: () => void = () => {};
  let failOnline: (err: Error) => void = () => {};
  const online = new Promise<void>((resolve, reject) => {
    markOnline = resolve;
    failOnline = reject;
  });
  // Awaited only once the service is started: a failure before that is still reported then.
  online.catch(() => {});

  let sending = false;
  let counting = false;
  let completed = 0;
  let errors = 0;
  const errorConditions: Record<string, number> = {};
  let byResource: Record<string, number> = {};
  let markedAt = 0;
  let seq = 0;
  // Unique across rounds: the service's tombstones are keyed by requester and id.
  const tag = randomBytes(3).toString("hex");
  /** Requester k of an id `c<tag><k>-<n>`: the next request goes out from the same requester (or for it). */
  const requesterOf = (id: string) => Number(id.slice(1 + tag.length, id.indexOf("-")));
  const tokens: string[] = [];
  const inFlight = new Map<string, number>();
  const latency = new Samples();
  const pings = new Map<string, (type: string) => void>();
  let drained: (() => void) | null = null;
  let out = "";

  const request = (k: number) => {
    const id = `c${tag}${k}-${seq++}`;
    inFlight.set(id, performance.now());
    if (stanza === "request-out") {
      // The fake requester's answer comes back through the same branch that answers forwarded requests.
      let token = tokens[k];
      if (token === undefined) {
        token = jat.sign(`req${k}@localhost/bench`) ?? "";
        tokens[k] = token;
      }
      out += `<iq type="get" id="${id}" from="${TARGET}/${RESOURCES[k % RESOURCES.length]}" to="${DOMAIN}/${token}"><echo xmlns="${NS_ECHO}">x</echo></iq>`;
      return;
    }
    out +=
      stanza === "message"
        ? `<message type="chat" id="${id}" from="req${k}@localhost/bench" to="${DOMAIN}"><body>x</body></message>`
        : `<iq type="get" id="${id}" from="req${k}@localhost/bench" to="${DOMAIN}"><echo xmlns="${NS_ECHO}">x</echo></iq>`;
  };
  const presences = () => RESOURCES.map((r) => `<presence from="${TARGET}/${r}" to="${DOMAIN}"/>`).join("");

  const onElement = (xml: string) => {
    const { name, attrs } = startTag(xml);
    if (name === "handshake") {
      const expected = createHash("sha1").update(`${streamId}${secret}`, "latin1").digest("hex");
      const got = xml.slice(xml.indexOf(">") + 1, xml.lastIndexOf("<"));
      if (got !== expected) {
        out +=
          "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        failOnline(new Error("the service's handshake did not match sha1(stream id + secret)"));
        return;
      }
      out += `<handshake/>${presences()}`;
      markOnline();
      return;
    }
    if (name === "presence") {
      if (attrs.type === "probe") out += presences();
      else if (attrs.type === "subscribe")
        out += `<presence type="subscribed" from="${TARGET}" to="${DOMAIN}"/>`;
      return;
    }
    if (name !== "iq" && name !== "message") return;
    const { type, id = "", to = "", from = "" } = attrs;
    if (name === "message" && to.startsWith(`${TARGET}/`)) {
      // A message forwarded to a resource: the implementing client writes back to the address it came from.
      const resource = to.slice(to.indexOf("/") + 1);
      if (counting) byResource[resource] = (byResource[resource] ?? 0) + 1;
      out += `<message type="chat" id="${id}" from="${to}" to="${from}"><body>x</body></message>`;
      return;
    }
    if (name === "iq" && (type === "get" || type === "set")) {
      // A request forwarded to a resource: the implementing client answers at once.
      const resource = to.slice(to.indexOf("/") + 1);
      if (counting) byResource[resource] = (byResource[resource] ?? 0) + 1;
      out += `<iq type="result" id="${id}" from="${to}" to="${from}"><echo xmlns="${NS_ECHO}" resource="${resource}">x</echo></iq>`;
      return;
    }
    const ping = pings.get(id);
    if (ping) {
      pings.delete(id);
      ping(type ?? "");
      return;
    }
    const sentAt = inFlight.get(id);
    if (sentAt === undefined) return;
    inFlight.delete(id);
    if (counting) {
      completed++;
      latency.add(performance.now() - sentAt);
      if (type === "error") {
        errors++;
        const condition = /<([a-z-]+) xmlns=["']urn:ietf:params:xml:ns:xmpp-stanzas["']/.exec(xml)?.[1];
        errorConditions[condition ?? "unknown"] = (errorConditions[condition ?? "unknown"] ?? 0) + 1;
      }
    }
    if (sending) request(requesterOf(id));
    else if (inFlight.size === 0) drained?.();
  };

  let streamId = "";
  const server = createServer((conn) => {
    if (socket) {
      conn.end("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
      return;
    }
    socket = conn;
    conn.setNoDelay(true);
    conn.setEncoding("utf8");
    const flush = () => {
      if (out !== "") {
        conn.write(out);
        out = "";
      }
    };
    const scanner = new ElementScanner(
      () => {
        streamId = randomBytes(8).toString("hex");
        out += `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='${DOMAIN}' id='${streamId}'>`;
      },
      onElement,
      () => conn.end("</stream:stream>"),
    );
    conn.on("data", (chunk: string) => {
      scanner.push(chunk);
      flush();
    });
    conn.on("error", () => {});
    conn.on("close", () => {
      socket = null;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  const write = () => {
    if (socket && out !== "") {
      socket.write(out);
      out = "";
    }
  };

  return {
    port,
    secret,
    server,
    online,
    startLoad() {
      sending = true;
      for (let k = 0; k < requesters; k++) for (let i = 0; i < window; i++) request(k);
      write();
    },
    mark() {
      completed = 0;
      errors = 0;
      byResource = {};
      latency.clear();
      markedAt = performance.now();
      counting = true;
    },
    async stop(drainMs) {
      const seconds = (performance.now() - markedAt) / 1000;
      counting = false;
      sending = false;
      const result = {
        completed,
        errors,
        errorConditions: { ...errorConditions },
        seconds,
        latency,
        byResource: { ...byResource },
      };
      if (inFlight.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, drainMs);
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return { ...result, unanswered: inFlight.size };
    },
    ping() {
      const id = `ping-${seq++}`;
      const answer = new Promise<string>((resolve) => pings.set(id, resolve));
      out += `<iq type="get" id="${id}" from="pinger@localhost/bench" to="${DOMAIN}"><echo xmlns="${NS_ECHO}">ping</echo></iq>`;
      write();
      return answer;
    },
    close() {
      (socket as Socket | null)?.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One capacity measurement: a fresh replica (or baseline component) against a fresh fake server. */
export async function runCapacity(opts: CapacityOptions): Promise<Measurement> {
  const kind = opts.component ?? "service";
  if (kind === "floor" && !opts.redis) throw new Error("the Redis floor needs Redis");
  const fake = await startFakeServer(opts.requesters, opts.window, opts.stanza ?? "iq");
  const closeFake = onCleanup("fake XMPP server", () => fake.close());
  try {
    if (opts.redis) await opts.redis.probe.flush();
    const xmpp = {
      componentPort: fake.port,
      componentDomain: DOMAIN,
      componentSecret: fake.secret,
      target: TARGET,
    };
    const replica: { pid: number; heapUsed?: () => Promise<number | null>; stop(): Promise<void> } =
      kind === "service"
        ? await startReplica(xmpp, opts.redis?.url ?? null, opts.env)
        : await startMinimal(xmpp, RESOURCES, "plain", kind === "floor" ? (opts.redis?.url ?? null) : null);
    // The floor runs no script: every command it sends is a round trip (SET is also called by the scripts).
    const redis = opts.redis;
    const probe: RedisProbe | null =
      redis === null
        ? null
        : kind === "floor"
          ? { ...redis.probe, diff: (before, after) => redis.probe.diff(before, after, { noScripts: true }) }
          : redis.probe;
    try {
      await withTimeout(fake.online, 15_000, "the service did not connect to the fake server");
      // Presence is stored asynchronously: wait until a request is forwarded and answered.
      await until(
        "the service to forward through the fake server",
        async () => {
          const type = await withTimeout(fake.ping(), 1000, "no answer").catch(() => "");
          return type === "result" || undefined;
        },
        15_000,
      );
      return await measure({
        componentPids: [replica.pid],
        serverPids: [],
        redisPids: opts.redis?.pids ?? [],
        redis: probe,
        ...(replica.heapUsed ? { heapUsed: replica.heapUsed } : {}),
        warmupSeconds: opts.warmupSeconds,
        seconds: opts.seconds,
        start: () => fake.startLoad(),
        mark: async () => fake.mark(),
        stop: async () => {
          const window = await fake.stop(5000);
          return { ...window, latency: window.latency.summary(), loadCpuSeconds: null };
        },
      });
    } finally {
      await replica.stop();
    }
  } finally {
    await closeFake();
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
