/**
 * The load generator (a child process of bench/run.ts, driven over IPC: see load-protocol.ts).
 *
 * Several requester connections (@xmpp/client, logged in as `requester`), each keeping a fixed number of echo
 * requests in flight: an answer, matched by id on the 'stanza' event, records the latency and sends the next
 * request at once. Requests are written as prebuilt strings; answers go through xmpp.js as for any client.
 */
import type { Element } from "@xmpp/xml";
import { type Client, stopClient } from "../test/harness/clients.js";
import { connectUser, NS_ECHO, NS_STANZAS } from "../test/integration/helpers.js";
import type { FromChild, LoadConfig, LoadResult, ToChild } from "./load-protocol.js";
import { Samples } from "./stats.js";

const reply = (msg: FromChild) => process.send?.(msg);
/**
 * Ids are unique across load processes too: the service keeps answered requests as tombstones for a minute or
 * more, keyed by requester and id, and a reused pair would overwrite one instead of adding a record.
 */
const RUN_TAG = Math.random().toString(36).slice(2, 8);

interface Writable {
  write(data: string): Promise<void>;
}

let clients: Client[] = [];
/** Per connection: sends its next request. */
const senders: Array<() => void> = [];
let sending = false;
let counting = false;
let completed = 0;
let errors = 0;
const errorConditions: Record<string, number> = {};
const latencies = new Samples();
/** Send times of the requests in flight, by id. */
const inFlight = new Map<string, number>();
let markedAt = 0;
let cpuAtMark = 0;
let drained: (() => void) | null = null;

async function connect(config: LoadConfig): Promise<void> {
  const server = { c2sPort: config.c2sPort, domain: config.domain, componentDomain: "" };
  clients = await Promise.all(
    Array.from({ length: config.connections }, (_, n) =>
      connectUser(server, "requester", `${config.resourcePrefix}${n}`),
    ),
  );
  clients.forEach((client, n) => {
    const raw = client as unknown as Writable;
    let seq = 0;
    let turn = n;
    const sendOne = () => {
      const id = `b${RUN_TAG}${n}-${seq++}`;
      const to = config.targets[turn++ % config.targets.length] ?? "";
      inFlight.set(id, performance.now());
      raw
        .write(`<iq type='get' id='${id}' to='${to}'><echo xmlns='${NS_ECHO}'>bench</echo></iq>`)
        .catch(() => {});
    };
    client.on("stanza", (stanza: Element) => {
      if (stanza.name !== "iq") return;
      const id = stanza.attrs.id;
      const sentAt = id === undefined ? undefined : inFlight.get(id);
      if (sentAt === undefined || id === undefined) return;
      inFlight.delete(id);
      if (counting) {
        latencies.add(performance.now() - sentAt);
        completed++;
        if (stanza.attrs.type === "error") {
          errors++;
          const condition =
            stanza
              .getChild("error")
              ?.getChildElements()
              .find((child) => child.attrs.xmlns === NS_STANZAS)?.name ?? "unknown";
          errorConditions[condition] = (errorConditions[condition] ?? 0) + 1;
        }
      }
      if (sending) sendOne();
      else if (inFlight.size === 0) drained?.();
    });
    senders.push(sendOne);
  });
  // Requests of a connection that failed would never be answered: report it rather than hang.
  for (const client of clients) {
    client.on("disconnect", () => {
      if (sending) reply({ type: "failed", message: "a requester connection was closed by the server" });
    });
  }
}

function start(window: number): void {
  sending = true;
  for (const sendOne of senders) for (let i = 0; i < window; i++) sendOne();
}

const cpu = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

async function stop(drainMs: number): Promise<LoadResult> {
  const seconds = (performance.now() - markedAt) / 1000;
  counting = false;
  sending = false;
  const cpuSeconds = cpu() - cpuAtMark;
  const result = {
    completed,
    errors,
    errorConditions,
    seconds,
    latency: latencies.summary(),
    cpuSeconds,
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
}

let config: LoadConfig | undefined;
process.on("message", (msg: ToChild) => {
  const run = async () => {
    switch (msg.type) {
      case "config":
        config = msg.config;
        await connect(msg.config);
        reply({ type: "ready" });
        return;
      case "start":
        start(config?.window ?? 1);
        return;
      case "mark":
        completed = 0;
        errors = 0;
        for (const key of Object.keys(errorConditions)) delete errorConditions[key];
        latencies.clear();
        markedAt = performance.now();
        cpuAtMark = cpu();
        counting = true;
        reply({ type: "marked" });
        return;
      case "stop":
        reply({ type: "result", result: await stop(msg.drainMs) });
        return;
      case "close":
        sending = false;
        await Promise.all(clients.map((client) => stopClient(client)));
        process.exit(0);
    }
  };
  run().catch((err: Error) => reply({ type: "failed", message: err.message }));
});
// The parent is gone (crash, SIGKILL): do not outlive it.
process.on("disconnect", () => process.exit(0));
// Ctrl-C reaches the whole process group: the parent stops us.
process.on("SIGINT", () => {});
