/**
 * Timeouts and stranded answers. Any replica sweeps the store's deadline index; the sweep hands each due answer
 * to one replica atomically, so each request gets exactly one answer even when the replica that forwarded it,
 * or the one that claimed its reply, has died:
 * - a request past its deadline gets `remote-server-timeout` (RFC 6120 section 8.3.3.16);
 * - an answer whose lease ended unacknowledged is sent again (counted: it may be a second answer, if the replica
 *   that held it had written it before dying).
 * Intervals are jittered so the replicas share the work. Each sweep also reads the store's epoch, so a data loss
 * is noticed within one interval.
 */
import type { Logger } from "pino";
import type { Outbox } from "../delivery/outbox.js";
import type { Metrics } from "../metrics.js";
import type { Tracker } from "../recovery/tracker.js";
import type { DueAnswer, Store } from "../store/types.js";
import { ERRORS, errorReply } from "../xmpp/errors.js";
import { parse, readdress } from "../xmpp/stanzas.js";
import { newOp } from "./forward.js";

export interface SweeperDeps {
  store: Store;
  outbox: Outbox;
  /** Whether answers can be sent now; a replica that is not connected does not claim anything. */
  canSend: () => boolean;
  clock: () => number;
  domain: string;
  intervalMs: number;
  batch?: number;
  log: Logger;
  metrics: Metrics;
  tracker: Tracker;
}

export function createSweeper(deps: SweeperDeps) {
  const { store, outbox, canSend, clock, domain, intervalMs, batch = 200, log, metrics, tracker } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;

  /** The stanza that answers a due request: its kept reply, or the timeout error. */
  function answerOf({ request, answer }: DueAnswer) {
    const kept = answer === null ? null : parse(answer);
    if (kept) return readdress(kept, request.requester, request.to, request.id);
    metrics.timeouts.inc();
    return errorReply(
      { name: "iq", id: request.id, from: request.requester, to: request.to },
      ERRORS.timeout,
      domain,
    );
  }

  async function sweepOnce(now = clock()): Promise<number> {
    if (!canSend()) return 0;
    const op = newOp();
    const { epoch, due } = await store.sweep(now, batch, op);
    for (const item of due) {
      const { requester, id, resource } = item.request;
      log.debug(
        { requester, id, resource, redelivery: item.redelivery },
        item.answer ? "answer sent again" : "request timed out",
      );
      if (item.redelivery) metrics.redelivered.inc();
      outbox.deliver({ ...item.key, op, ...(item.legacy ? { legacy: item.legacy } : {}) }, answerOf(item));
      tracker.answered(requester, id);
    }
    await tracker.observe(epoch);
    return due.length;
  }

  async function tick(): Promise<void> {
    if (running || stopped) return;
    running = (async () => {
      try {
        // A full batch means more may be due: keep going.
        while (!stopped && (await sweepOnce()) === batch) {}
        if (canSend()) await tracker.sweep(clock());
      } catch (err) {
        // Unknown outcome included: what this sweep may have taken is handed out again when its lease ends.
        log.debug({ err }, "sweep skipped: store unavailable");
      }
    })();
    await running;
    running = undefined;
    schedule();
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(tick, Math.round(intervalMs * (0.5 + Math.random())));
  }

  return {
    sweepOnce,
    start(): void {
      stopped = false;
      schedule();
    },
    /** Stops sweeping; resolves when a sweep in progress has handed its answers to the outbox. */
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    /**
     * Answers every request still pending, as if its deadline had come (a stopping replica whose store dies with
     * it: the in-process store). `horizon` is past every pending deadline (IQ_TIMEOUT_MS from now) and within
     * the records' lifetime.
     */
    async answerAll(horizon: number): Promise<number> {
      let total = 0;
      for (let answered = -1; answered !== 0; ) {
        answered = await sweepOnce(clock() + horizon);
        total += answered;
      }
      return total;
    },
  };
}
