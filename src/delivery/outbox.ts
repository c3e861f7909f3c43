/**
 * Delivery of answers the store handed to this replica (a routed reply, a timeout, an answer redelivered).
 *
 * RFC 6120 section 8.2.3 asks for exactly one answer per request, but an answer lives in two systems that share
 * no transaction: the store, which must forget it once it is sent, and the XMPP stream, which has no
 * acknowledgements (XEP-0114). So the store keeps every claimed answer with a lease (claim-3.lua), and this
 * replica, for everything the store handed it during one event-loop turn:
 * 1. writes the answers to the XMPP socket as one write and then the acknowledgement (ack-1.lua, one call for
 *    the batch) to the Redis socket: in the same synchronous step when the answers' bytes went to the kernel at
 *    once, else when Node hands them over (its own queue dies with the process; the kernel's does not). Killed
 *    before the acknowledgement, the lease ends and another replica sends the answer again: a second answer
 *    only if the bytes had left (the microseconds between the two writes, or between Node's hand-over and its
 *    callback). Killed after it, both writes are in the kernel, which sends them on at once (no Nagle on the
 *    XMPP socket, connection.ts). Measured as the order was the other way round (acknowledgement first): 1-2
 *    answers of 6,000 lost in 2 of 5 runs of the kill test, none with this order in the runs since.
 * 2. if the XMPP link is down, acknowledges nothing and keeps the answers: it writes them as soon as the link is
 *    back, while it still holds their lease; after that the sweep of any connected replica hands them out.
 * 3. when the link is lost, writes again after reconnecting the answers written since shortly (SUSPECT_MS)
 *    before the last data received on it: the link was alive then, and what was written later may have been
 *    lost with it (the server drops what is in flight on a connection that dies, and nothing in XEP-0114 says
 *    which stanzas those were). Counting from the last input rather than from when the loss was noticed keeps
 *    a busy event loop's delay out of the window. An answer that did arrive is then sent twice; every such
 *    re-send, like every redelivery by the sweep, is counted (xcp_answers_redelivered_total).
 * If the acknowledgement itself fails (Redis unreachable), it is retried until shortly before the lease ends;
 * only an outage longer than that makes the sweep send the answer again, a possible second answer, counted when
 * the sweep hands it out.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { type AckInput, type Store, StoreUnavailableError } from "../store/types.js";

export interface OutboxDeps {
  store: Store;
  /** Writes stanzas to the XMPP connection as one socket write (connection.ts, writeBatch). */
  writeBatch: (stanzas: readonly Element[]) => {
    readonly inKernel: boolean;
    readonly written: Promise<boolean>;
  };
  /** Whether the XMPP link is up. */
  connected: () => boolean;
  /** When data was last received on the XMPP link. */
  lastInput: () => number;
  clock: () => number;
  /** The store's answer lease: an unacknowledged answer is written again by this replica only well within it. */
  leaseMs: number;
  log: Logger;
  metrics: Metrics;
}

interface Outgoing {
  readonly held: AckInput;
  readonly stanza: Element;
  /** Whether the store has been told (or is being told) that it was sent. */
  acked: boolean;
  /** Until when this replica may write it unacknowledged (after that the sweep hands it out). */
  readonly until: number;
  writtenAt: number;
}

/** Answers written this long before the last input of a link that was then lost may have been lost with it. */
export const SUSPECT_MS = 25;
/** Acknowledged answers kept for a re-send after reconnecting, at most. */
const MAX_KEPT = 10_000;

export function createOutbox({
  store,
  writeBatch,
  connected,
  lastInput,
  clock,
  leaseMs,
  log,
  metrics,
}: OutboxDeps) {
  let queue: Outgoing[] = [];
  let scheduled = false;
  const acking = new Set<Promise<void>>();
  /** Recently written answers, oldest first, for the suspect window of a lost link. */
  let recent: Outgoing[] = [];
  /** Answers to write once the link is back. */
  let waiting: Outgoing[] = [];

  /** Acknowledges, retrying until shortly before the lease ends: after it, the sweep sends the answers again. */
  async function ack(batch: AckInput[], giveUpAt: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await store.ack(batch);
        return;
      } catch (err) {
        // Idempotent (only the op that holds the lease is acknowledged): retrying is safe.
        const delay = Math.min(50 * 2 ** attempt, 500);
        if (clock() + delay > giveUpAt || !(err instanceof StoreUnavailableError)) {
          metrics.storeErrors.inc({ operation: "ack" });
          log.warn(
            { err, answers: batch.length },
            "answers sent but not acknowledged: the sweep sends them again when their lease ends",
          );
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  function flush(): void {
    scheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    if (!connected()) {
      keep(batch);
      return;
    }
    // 1. The answers, written to the XMPP socket as one write...
    const now = clock();
    for (const item of batch) item.writtenAt = now;
    const { inKernel, written } = writeBatch(batch.map((item) => item.stanza));
    // 2. ...and the acknowledgement once those bytes are in the kernel: at once when they went there now (the
    // same synchronous step), else when the write is handed over. Acknowledged earlier, answers still queued in
    // a process that is killed would be lost with it while the store thinks them sent.
    const unacked = batch.filter((item) => !item.acked);
    const acknowledge = () => {
      if (unacked.length === 0) return;
      const started = performance.now();
      // `until` is half the lease after the claim: retry until 250 ms before the lease ends (the sweep's turn).
      const giveUpAt =
        unacked.reduce((min, item) => Math.min(min, item.until), Number.POSITIVE_INFINITY) +
        leaseMs / 2 -
        250;
      const done = ack(
        unacked.map((item) => item.held),
        giveUpAt,
      ).then(() => metrics.ackWindow.observe((performance.now() - started) / 1000));
      for (const item of unacked) item.acked = true;
      const tracked = done.finally(() => acking.delete(tracked));
      acking.add(tracked);
    };
    if (inKernel) acknowledge();
    const settled = written.then((ok) => {
      if (!ok) {
        // Not written: nothing acknowledged is lost (the answers are kept for the reconnect or the sweep).
        keep(batch);
        return;
      }
      if (!inKernel) acknowledge();
    });
    const trackedWrite = settled.finally(() => acking.delete(trackedWrite));
    acking.add(trackedWrite);
    const oldest = recent[0];
    if (oldest && oldest.writtenAt < now - SUSPECT_MS)
      recent = recent.filter((item) => item.writtenAt >= now - SUSPECT_MS);
    recent.push(...batch);
    if (recent.length > MAX_KEPT) recent = recent.slice(-MAX_KEPT);
  }

  function keep(items: Outgoing[]): void {
    metrics.stranded.inc(items.length);
    waiting.push(...items);
    if (waiting.length > MAX_KEPT) waiting = waiting.slice(-MAX_KEPT);
  }

  return {
    /** Sends an answer the store handed to this replica under `held.op`. */
    deliver(held: AckInput, stanza: Element): void {
      queue.push({ held, stanza, acked: false, until: clock() + leaseMs / 2, writtenAt: 0 });
      if (!scheduled) {
        scheduled = true;
        // Everything handed over during this turn goes in one acknowledgement.
        setImmediate(flush);
      }
    },
    /** The XMPP link was lost: what was written just before may not have reached the server. */
    onDisconnect(): void {
      const since = Math.min(lastInput(), clock()) - SUSPECT_MS;
      const suspects = recent.filter((item) => item.writtenAt >= since);
      recent = [];
      if (suspects.length === 0) return;
      metrics.redelivered.inc(suspects.length);
      log.info(
        { answers: suspects.length },
        "answers written just before the link was lost: sent again after reconnecting",
      );
      keep(suspects);
    },
    /** The XMPP link is back: write what could not be written. */
    onOnline(): void {
      const now = clock();
      const items = waiting;
      waiting = [];
      // Unacknowledged ones only while this replica holds their lease; the sweep hands out the others.
      const resend = items.filter((item) => item.acked || item.until > now);
      if (resend.length === 0) return;
      log.info({ answers: resend.length }, "answers written after reconnecting");
      queue.push(...resend);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    /** Resolves when everything handed over so far is written and acknowledged (or given up). */
    async drained(): Promise<void> {
      while (scheduled || acking.size > 0) {
        if (scheduled) await new Promise((resolve) => setImmediate(resolve));
        await Promise.allSettled([...acking]);
      }
    },
  };
}

export type Outbox = ReturnType<typeof createOutbox>;
