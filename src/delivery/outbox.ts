/**
 * Delivery of answers the store handed to this replica (a routed reply, a timeout, an answer redelivered).
 *
 * RFC 6120 section 8.2.3 asks for exactly one answer per request, but an answer lives in two systems that share
 * no transaction: the store, which must forget it once it is sent, and the XMPP stream, which has no
 * acknowledgements (XEP-0114). So the store keeps every claimed answer with a lease (claim-3.lua), and this
 * replica, for everything the store handed it during one event-loop turn:
 * 1. waits until Node holds no earlier bytes for the XMPP socket (a write then goes to the kernel at once), and
 *    in one synchronous step writes the acknowledgement (ack-1.lua, one call for the batch) to the Redis socket
 *    and then the answers, as one write, to the XMPP socket. Both are in the kernel before anything else runs,
 *    and the kernel hands on what a killed process wrote. The order matters where a kill lands between the two
 *    writes, and it lands there more often than chance: each write wakes its peer, which may take the CPU
 *    until the kill arrives. Answers first, that cost a second answer (the sweep sends an unacknowledged answer
 *    again after the lease): measured 2-4 per kill of 64 requests in flight on 2 busy cores, because the kill
 *    that follows an answer seen by a requester finds its writer still waiting right after that write.
 *    Acknowledgement first, a kill can cost an answer only if it lands in the microseconds between the two
 *    writes before the answers were written at all; none in the kill tests since.
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
  /** Writes stanzas to the XMPP connection as one socket write; resolves whether it was written. */
  writeBatch: (stanzas: readonly Element[]) => Promise<boolean>;
  /** null when no earlier write waits in the process, else when it has reached the kernel (connection.ts). */
  whenIdle: () => Promise<void> | null;
  /** Writes what this event-loop turn has batched so far (util/turn-writes.ts). */
  flushTurn: () => void;
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
  whenIdle,
  flushTurn,
  connected,
  lastInput,
  clock,
  leaseMs,
  log,
  metrics,
}: OutboxDeps) {
  let queue: Outgoing[] = [];
  let scheduled = false;
  /** Acknowledgements, writes and waits for an idle socket still under way (drained() waits for them). */
  const pending = new Set<Promise<void>>();
  let awaitingIdle = false;
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

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  }

  /** Acknowledges answers: the store turns them into tombstones (the call is written before this returns). */
  function acknowledge(items: Outgoing[]): void {
    const unacked = items.filter((item) => !item.acked);
    if (unacked.length === 0) return;
    const started = performance.now();
    // `until` is half the lease after the claim: retry until 250 ms before the lease ends (the sweep's turn).
    const giveUpAt =
      unacked.reduce((min, item) => Math.min(min, item.until), Number.POSITIVE_INFINITY) + leaseMs / 2 - 250;
    const done = ack(
      unacked.map((item) => item.held),
      giveUpAt,
    ).then(() => metrics.ackWindow.observe((performance.now() - started) / 1000));
    for (const item of unacked) item.acked = true;
    track(done);
  }

  function track(promise: Promise<unknown>): void {
    const tracked: Promise<void> = promise.then(
      () => undefined,
      () => undefined,
    );
    const entry = tracked.finally(() => pending.delete(entry));
    pending.add(entry);
  }

  function flush(): void {
    scheduled = false;
    if (queue.length === 0) return;
    if (!connected()) {
      keep(queue);
      queue = [];
      return;
    }
    // What this turn batched so far goes first; the two writes below are not held back.
    flushTurn();
    // Bytes of an earlier write still wait in the process: these would queue behind them and die with it.
    const idle = whenIdle();
    if (idle) {
      if (!awaitingIdle) {
        awaitingIdle = true;
        track(
          idle.then(() => {
            awaitingIdle = false;
            schedule();
          }),
        );
      }
      return;
    }
    const now = clock();
    // An unacknowledged answer that waited past this replica's part of its lease is the sweep's now.
    const batch = queue.filter((item) => item.acked || item.until > now);
    queue = [];
    if (batch.length === 0) return;
    for (const item of batch) item.writtenAt = now;
    // 1. The acknowledgement, then 2. the answers as one write, in this synchronous step (see the header).
    acknowledge(batch);
    track(
      writeBatch(batch.map((item) => item.stanza)).then((ok) => {
        // Not written (the link went down meanwhile): kept for the reconnect, acknowledged or not.
        if (!ok) keep(batch);
      }),
    );
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
      // Everything handed over during this turn goes in one acknowledgement.
      schedule();
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
      schedule();
    },
    /** Resolves when everything handed over so far is written and acknowledged (or given up). */
    async drained(): Promise<void> {
      while (scheduled || pending.size > 0) {
        if (scheduled) await new Promise((resolve) => setImmediate(resolve));
        await Promise.allSettled([...pending]);
      }
    },
  };
}

export type Outbox = ReturnType<typeof createOutbox>;
