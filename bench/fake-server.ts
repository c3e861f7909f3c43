/**
 * The fake XMPP server of the capacity mode (bench/capacity.ts): it speaks the component protocol (XEP-0114)
 * itself and plays every other party. It accepts the service's streams (one per replica: `components`), checks
 * each handshake (hex SHA-1 of stream id + secret), sends available presence of impl@localhost/r1 and /r2, and
 * then plays both sides: fake requesters send IQ requests to the service's domain, and every request the
 * service forwards to a resource is answered at once. A stanza addressed to the domain goes to the component
 * links in turn, as a server balancing several connections of one component would send it (ejabberd picks one
 * per stanza): with several replicas, most answers reach another replica than the one that forwarded the
 * request. Stanzas are written and scanned as strings (no DOM), so the fake server costs little next to the
 * service.
 *
 * The load is either closed (`rate` null: each requester keeps `window` requests in flight, an answer sends the
 * next: the service's capacity) or open (`rate` requests per second, spread evenly over time whatever the
 * answers do: the cost of a request when the service is far from busy and each request wakes it on its own).
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createJat } from "../src/jat/token.js";
import { JAT_KEYS } from "./services.js";
import { Samples } from "./stats.js";

export const DOMAIN = "proxy.localhost";
export const TARGET = "impl@localhost";
export const RESOURCES = ["r1", "r2"];
const NS_ECHO = "urn:xmpp-client-proxy:test:echo";
/** Timer period of the open load; the requests due since the last tick go out together. */
const TICK_MS = 1;

export interface FakeServerOptions {
  /** Fake requesters, and requests in flight per requester (closed load). */
  requesters: number;
  window: number;
  /**
   * What the fake requesters send: IQ requests, messages (RFC 6121 section 5) that the fake resource answers
   * with a message of the same id to the address it came from, `domain/<token>` (one round: a message in and
   * one out), or requests of the fake resources to the requesters' `domain/<token>` (one round: the request
   * and its answer).
   */
  stanza: "iq" | "message" | "request-out";
  /** Component connections to wait for (replicas). */
  components: number;
  /** Requests per second of an open load; null: closed load. */
  rate: number | null;
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

export interface FakeServer {
  port: number;
  secret: string;
  server: Server;
  /** Resolves once every component completed the handshake. */
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

/** One component connection: its socket, what is to be written to it, its stream id. */
interface Link {
  socket: Socket;
  out: string;
  streamId: string;
  online: boolean;
}

export async function startFakeServer(opts: FakeServerOptions): Promise<FakeServer> {
  const { requesters, window, stanza, components, rate } = opts;
  const secret = randomBytes(12).toString("hex");
  const links: Link[] = [];
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
  let turn = 0;
  let ticker: NodeJS.Timeout | null = null;
  // Unique across rounds: the service's tombstones are keyed by requester and id.
  const tag = randomBytes(3).toString("hex");
  /** Requester k of an id `c<tag><k>-<n>`: the next request goes out from the same requester (or for it). */
  const requesterOf = (id: string) => Number(id.slice(1 + tag.length, id.indexOf("-")));
  const tokens: string[] = [];
  const inFlight = new Map<string, number>();
  const latency = new Samples();
  const pings = new Map<string, (type: string) => void>();
  let drained: (() => void) | null = null;

  /** A stanza to the component's domain: to the online links in turn. */
  const toDomain = (xml: string) => {
    const ready = links.filter((link) => link.online);
    const link = ready[turn++ % ready.length];
    if (link) link.out += xml;
  };

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
      toDomain(
        `<iq type="get" id="${id}" from="${TARGET}/${RESOURCES[k % RESOURCES.length]}" to="${DOMAIN}/${token}"><echo xmlns="${NS_ECHO}">x</echo></iq>`,
      );
      return;
    }
    toDomain(
      stanza === "message"
        ? `<message type="chat" id="${id}" from="req${k}@localhost/bench" to="${DOMAIN}"><body>x</body></message>`
        : `<iq type="get" id="${id}" from="req${k}@localhost/bench" to="${DOMAIN}"><echo xmlns="${NS_ECHO}">x</echo></iq>`,
    );
  };
  const presences = () => RESOURCES.map((r) => `<presence from="${TARGET}/${r}" to="${DOMAIN}"/>`).join("");

  const onElement = (link: Link, xml: string) => {
    const { name, attrs } = startTag(xml);
    if (name === "handshake") {
      const expected = createHash("sha1").update(`${link.streamId}${secret}`, "latin1").digest("hex");
      const got = xml.slice(xml.indexOf(">") + 1, xml.lastIndexOf("<"));
      if (got !== expected) {
        link.out +=
          "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        failOnline(new Error("the service's handshake did not match sha1(stream id + secret)"));
        return;
      }
      link.out += `<handshake/>${presences()}`;
      link.online = true;
      if (links.filter((l) => l.online).length >= components) markOnline();
      return;
    }
    if (name === "presence") {
      if (attrs.type === "probe") link.out += presences();
      else if (attrs.type === "subscribe")
        link.out += `<presence type="subscribed" from="${TARGET}" to="${DOMAIN}"/>`;
      return;
    }
    if (name !== "iq" && name !== "message") return;
    const { type, id = "", to = "", from = "" } = attrs;
    if (name === "message" && to.startsWith(`${TARGET}/`)) {
      // A message forwarded to a resource: the implementing client writes back to the address it came from.
      const resource = to.slice(to.indexOf("/") + 1);
      if (counting) byResource[resource] = (byResource[resource] ?? 0) + 1;
      toDomain(`<message type="chat" id="${id}" from="${to}" to="${from}"><body>x</body></message>`);
      return;
    }
    if (name === "iq" && (type === "get" || type === "set")) {
      // A request forwarded to a resource: the implementing client answers at once.
      const resource = to.slice(to.indexOf("/") + 1);
      if (counting) byResource[resource] = (byResource[resource] ?? 0) + 1;
      toDomain(
        `<iq type="result" id="${id}" from="${to}" to="${from}"><echo xmlns="${NS_ECHO}" resource="${resource}">x</echo></iq>`,
      );
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
    if (sending && rate === null) request(requesterOf(id));
    else if (!sending && inFlight.size === 0) drained?.();
  };

  const write = () => {
    for (const link of links) {
      if (link.out !== "") {
        link.socket.write(link.out);
        link.out = "";
      }
    }
  };

  const server = createServer((socket) => {
    if (links.length >= components) {
      socket.end("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
      return;
    }
    const link: Link = { socket, out: "", streamId: "", online: false };
    links.push(link);
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    const scanner = new ElementScanner(
      () => {
        link.streamId = randomBytes(8).toString("hex");
        link.out += `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='${DOMAIN}' id='${link.streamId}'>`;
      },
      (xml) => onElement(link, xml),
      () => socket.end("</stream:stream>"),
    );
    socket.on("data", (chunk: string) => {
      scanner.push(chunk);
      write();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      links.splice(links.indexOf(link), 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  /** Open load: every tick sends the requests due since the start, from the requesters in turn. */
  const startPaced = (perSecond: number) => {
    const startedAt = performance.now();
    let sent = 0;
    // Past this many unanswered, the service is not keeping up: stop adding (the measurement shows it).
    const ceiling = requesters * window * 4;
    ticker = setInterval(() => {
      const due = Math.floor(((performance.now() - startedAt) * perSecond) / 1000);
      for (; sent < due; sent++) if (inFlight.size < ceiling) request(sent % requesters);
      write();
    }, TICK_MS);
  };

  return {
    port,
    secret,
    server,
    online,
    startLoad() {
      sending = true;
      if (rate !== null) startPaced(rate);
      else for (let k = 0; k < requesters; k++) for (let i = 0; i < window; i++) request(k);
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
      if (ticker) clearInterval(ticker);
      ticker = null;
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
      toDomain(
        `<iq type="get" id="${id}" from="pinger@localhost/bench" to="${DOMAIN}"><echo xmlns="${NS_ECHO}">ping</echo></iq>`,
      );
      write();
      return answer;
    },
    close() {
      if (ticker) clearInterval(ticker);
      for (const link of links) link.socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
