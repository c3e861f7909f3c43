/**
 * The XEP-0114 connection to the XMPP server, with our own lifecycle instead of xmpp.js's fixed 1 s loop:
 * - backoff with jitter after failures, a short standby interval while another replica holds the domain
 *   (`conflict`), and exit on misconfiguration (`not-authorized`, `host-unknown`);
 * - TCP keepalive, so a dead peer is noticed instead of black-holing stanzas;
 * - raw stanzas only: the library's middleware, which would answer IQs itself, is removed.
 */
import { EventEmitter } from "node:events";
import { component, xml } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { CorkableStream, TurnWrites } from "../util/turn-writes.js";
import { type BackoffSettings, failureDelay, standbyDelay } from "./backoff.js";
import { type TlsSettings, useTls } from "./tls.js";

export type ConnectionState = "down" | "connecting" | "connected" | "standby" | "stopped";

/** RFC 6120 section 4.9.3: stream errors that retrying cannot fix. */
const FATAL_CONDITIONS = new Set([
  "not-authorized",
  "host-unknown",
  "improper-addressing",
  "invalid-namespace",
]);
/** How long one attempt may take from TCP connect to accepted handshake. */
const ATTEMPT_TIMEOUT_MS = 10_000;
/** TCP keepalive idle time; libuv then probes every second, ten times, before the socket is reset. */
const KEEPALIVE_MS = 10_000;

export interface XmppConnection {
  readonly state: ConnectionState;
  /** Sends a stanza; false when not connected (the stanza is not sent). */
  send(stanza: Element): boolean;
  /** Writes stanzas as one socket write; resolves true once Node handed them to the kernel, false if it could not. */
  writeBatch(stanzas: readonly Element[]): Promise<boolean>;
  /**
   * null when nothing is queued in the process for the socket (a write now goes to the kernel at once), else
   * a promise that resolves when the queue has drained or the socket closed.
   */
  whenIdle(): Promise<void> | null;
  start(): void;
  stop(): Promise<void>;
  on(event: "online", listener: () => void): void;
  /** The established connection was lost (not emitted for failed attempts or a stop). */
  on(event: "offline", listener: () => void): void;
  on(event: "state", listener: (state: ConnectionState) => void): void;
}

export interface ConnectionDeps {
  service: string;
  domain: string;
  password: string;
  backoff: BackoffSettings;
  log: Logger;
  onStanza: (stanza: Element) => void;
  /** Called on a stream error that retrying cannot fix; the caller exits. */
  onFatal: (condition: string) => void;
  /** `xmpps://`: TLS from the first byte, certificate verified (see tls.ts); null or absent: plain TCP. */
  tls?: TlsSettings | null;
  /** Batches the link's writes per event-loop turn (util/turn-writes.ts). */
  turnWrites?: TurnWrites;
}

export { xml };

export function createXmppConnection(deps: ConnectionDeps): XmppConnection {
  const { service, domain, password, backoff, log, onStanza, onFatal } = deps;
  const events = new EventEmitter();
  const client = useTls(component({ service, domain, password }), deps.tls);
  client.reconnect.stop();
  client.removeAllListeners("element");

  let state: ConnectionState = "down";
  /** The link's socket (net.Socket, or tls.ts's adapter), for the writes the outbox makes itself. */
  const linkSocket = () =>
    client.socket as
      | (NodeJS.WritableStream & NodeJS.EventEmitter & { writableLength: number })
      | null
      | undefined;
  let failures = 0;
  let refusedWithConflict = false;
  let standbyLogged = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let attemptTimer: NodeJS.Timeout | undefined;

  const setState = (next: ConnectionState) => {
    if (state === next) return;
    state = next;
    events.emit("state", next);
  };

  client.on("stanza", (stanza: Element) => {
    if (log.isLevelEnabled("trace")) log.trace({ stanza: stanza.toString() }, "stanza in");
    onStanza(stanza);
  });
  client.on("error", (err: Error & { condition?: string }) => {
    const condition = err.condition;
    if (condition && FATAL_CONDITIONS.has(condition)) {
      // The stream error and the closing of the stream both report it: say it once.
      if (state === "stopped") return;
      log.fatal(
        { condition, server: service, domain },
        "XMPP server refused the component: check XMPP_DOMAIN and XMPP_PASSWORD",
      );
      stopTimers();
      setState("stopped");
      onFatal(condition);
    } else if (condition === "conflict") {
      refusedWithConflict = true;
    } else if (state !== "stopped" && err.message !== "Unexpected server response") {
      log.warn({ err, server: service }, "XMPP connection error");
    }
  });
  client.on("online", () => {
    clearTimeout(attemptTimer);
    failures = 0;
    standbyLogged = false;
    client.socket?.setKeepAlive(true, KEEPALIVE_MS);
    // No Nagle: an answer is written the moment it is acknowledged in the store (delivery/outbox.ts). Held back
    // behind an unacknowledged segment (up to the peer's delayed-ACK time, 40 ms on Linux), it would die with a
    // replica killed meanwhile, whose close resets the connection and discards what it had not yet sent.
    client.socket?.setNoDelay(true);
    if (client.socket) deps.turnWrites?.register(client.socket as unknown as CorkableStream);
    log.info({ server: service, domain }, "connected to the XMPP server");
    setState("connected");
    events.emit("online");
  });
  client.on("disconnect", () => {
    clearTimeout(attemptTimer);
    if (state === "stopped") return;
    if (state === "connected") {
      log.warn({ server: service }, "lost the XMPP connection");
      events.emit("offline");
    }
    scheduleRetry();
  });

  function scheduleRetry() {
    clearTimeout(retryTimer);
    let delay: number;
    if (refusedWithConflict) {
      // XEP-0114 with Prosody: one connection per domain; another replica holds it, we are the standby.
      if (!standbyLogged) log.info({ domain }, "another connection holds the domain: standing by");
      standbyLogged = true;
      setState("standby");
      delay = standbyDelay(backoff);
    } else {
      setState("down");
      delay = failureDelay(failures++, backoff);
      log.debug({ delayMs: delay, attempt: failures }, "reconnecting after a delay");
    }
    refusedWithConflict = false;
    retryTimer = setTimeout(attempt, delay);
  }

  async function attempt() {
    if (state === "stopped") return;
    if (state !== "standby") setState("connecting");
    attemptTimer = setTimeout(() => client.socket?.destroy(), ATTEMPT_TIMEOUT_MS);
    try {
      await client.connect(service);
      await client.open({ domain });
    } catch {
      // Reported through the 'error' event; the socket's close schedules the next attempt. A stream that
      // never opened is torn down here so that it closes.
      if (client.status !== "disconnect" && client.status !== "online") client.socket?.destroy();
    }
  }

  function stopTimers() {
    clearTimeout(retryTimer);
    clearTimeout(attemptTimer);
  }

  return {
    get state() {
      return state;
    },
    send(stanza) {
      if (state !== "connected" || client.status !== "online") return false;
      if (log.isLevelEnabled("trace")) log.trace({ stanza: stanza.toString() }, "stanza out");
      client.send(stanza).catch((err: Error) => log.warn({ err }, "send failed"));
      return true;
    },
    writeBatch(stanzas) {
      const socket = linkSocket();
      if (state !== "connected" || client.status !== "online" || !socket) return Promise.resolve(false);
      let text = "";
      for (const stanza of stanzas) {
        const serialized = stanza.toString();
        if (log.isLevelEnabled("trace")) log.trace({ stanza: serialized }, "stanza out");
        text += serialized;
      }
      return new Promise<boolean>((resolve) => {
        socket.write(text, (err?: Error | null) => {
          if (err) log.warn({ err }, "send failed");
          resolve(!err);
        });
      });
    },
    whenIdle() {
      const socket = linkSocket();
      if (!socket || socket.writableLength === 0) return null;
      // 'drain' comes only after a write that passed the high-water mark: an empty write queued behind the
      // others calls back once they all reached the kernel (or failed), whatever their size.
      return new Promise<void>((resolve) => {
        const done = () => {
          socket.off("close", done);
          resolve();
        };
        socket.on("close", done);
        socket.write("", done);
      });
    },
    start() {
      void attempt();
    },
    async stop() {
      const wasOnline = client.status === "online";
      stopTimers();
      setState("stopped");
      if (wasOnline) await client.stop().catch(() => client.socket?.destroy());
      else client.socket?.destroy();
    },
    on(event: string, listener: (...args: unknown[]) => void) {
      events.on(event, listener);
    },
  } as XmppConnection;
}
