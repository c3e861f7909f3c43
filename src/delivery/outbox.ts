/**
 * Delivery of answers the store handed to this replica (a routed reply, a timeout, an answer redelivered).
 *
 * RFC 6120 section 8.2.3 asks for exactly one answer per request, and a claimed answer exists only in this
 * process until it is written out. So the store keeps the answer with a lease (claim-3.lua) and this replica:
 * 1. writes the stanza to the component socket;
 * 2. once it is written, acknowledges it (ack-1.lua), batched: every answer written during one event-loop turn
 *    in one store call;
 * 3. when it could not be written (the link is down), keeps it and writes it again as soon as the link is back,
 *    while the lease runs; after that the sweep of any connected replica hands it out again.
 * A replica killed between writing and acknowledging leaves an answer that the sweep hands out once more when
 * its lease ends: that window (one ack round trip) is the only way to a second answer, and it is counted
 * (xcp_answers_redelivered_total).
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { type AckInput, type Store, StoreUnavailableError } from "../store/types.js";

export interface OutboxDeps {
  store: Store;
  /** Resolves true once the stanza was written to the XMPP connection. */
  write: (stanza: Element) => Promise<boolean>;
  clock: () => number;
  /** The store's answer lease: a stranded answer is written again by this replica only well within it. */
  leaseMs: number;
  log: Logger;
  metrics: Metrics;
}

interface Stranded {
  readonly held: AckInput;
  readonly stanza: Element;
  readonly until: number;
}

const ACK_RETRIES = 3;

export function createOutbox({ store, write, clock, leaseMs, log, metrics }: OutboxDeps) {
  let acks: AckInput[] = [];
  /** When each batch's answers were written (high-resolution), for the ack window metric. */
  let writtenAt: number[] = [];
  let flushing: Promise<void> | undefined;
  const writing = new Set<Promise<void>>();
  const stranded = new Map<string, Stranded>();

  async function ackBatch(batch: AckInput[], written: number[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await store.ack(batch);
        const acked = performance.now();
        for (const at of written) metrics.ackWindow.observe((acked - at) / 1000);
        return;
      } catch (err) {
        // Idempotent (only the op that holds the lease is acknowledged): retrying is safe.
        if (attempt >= ACK_RETRIES || !(err instanceof StoreUnavailableError)) {
          metrics.storeErrors.inc({ operation: "ack" });
          log.warn(
            { err: { message: (err as Error).message }, answers: batch.length },
            "answers sent but not acknowledged: the sweep may send them again when their lease ends",
          );
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  function flush(): void {
    if (flushing || acks.length === 0) return;
    const batch = acks;
    const written = writtenAt;
    acks = [];
    writtenAt = [];
    flushing = ackBatch(batch, written).finally(() => {
      flushing = undefined;
      flush();
    });
  }

  function deliver(held: AckInput, stanza: Element, until = clock() + leaseMs / 2): void {
    const done = write(stanza).then((written) => {
      if (written) {
        acks.push(held);
        writtenAt.push(performance.now());
        // Everything written in this turn goes in one call.
        setImmediate(flush);
        return;
      }
      metrics.stranded.inc();
      stranded.set(`${held.requester}\n${held.id}`, { held, stanza, until });
    });
    const tracked = done.finally(() => writing.delete(tracked));
    writing.add(tracked);
  }

  return {
    deliver,
    /** The XMPP link is back: write what could not be written, while this replica still holds it. */
    onOnline(): void {
      const now = clock();
      const waiting = [...stranded.values()];
      stranded.clear();
      for (const { held, stanza, until } of waiting) if (until > now) deliver(held, stanza, until);
      if (waiting.length > 0) log.info({ answers: waiting.length }, "answers written after reconnecting");
    },
    /** Resolves when everything written so far is acknowledged (or given up). */
    async drained(): Promise<void> {
      while (writing.size > 0 || flushing || acks.length > 0) {
        await Promise.allSettled([...writing]);
        flush();
        await flushing;
      }
    },
  };
}

export type Outbox = ReturnType<typeof createOutbox>;
