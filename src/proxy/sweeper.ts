/**
 * Timeouts. Any replica sweeps the store's deadline index; the sweep claims due requests atomically, so each
 * gets exactly one `remote-server-timeout` answer even when the replica that forwarded it has died.
 * Intervals are jittered so the replicas share the work.
 */
import type { Logger } from "pino";
import type { Store } from "../store/types.js";
import type { AnswerError } from "./answer.js";
import type { Tracker } from "./tracker.js";

export interface SweeperDeps {
  store: Store;
  answerError: AnswerError;
  /** Whether answers can be sent now; a replica that is not connected does not claim anything. */
  canSend: () => boolean;
  clock: () => number;
  intervalMs: number;
  batch?: number;
  log: Logger;
  tracker: Tracker;
}

export function createSweeper(deps: SweeperDeps) {
  const { store, answerError, canSend, clock, intervalMs, batch = 200, log, tracker } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let stopped = true;

  async function sweepOnce(): Promise<number> {
    if (!canSend()) return 0;
    const due = await store.claimExpired(clock(), batch);
    for (const request of due) {
      log.debug(
        { requester: request.requester, id: request.id, resource: request.resource },
        "request timed out",
      );
      answerError({ name: "iq", id: request.id, from: request.requester, to: request.to }, "timeout");
      tracker.answered(request.requester, request.id);
    }
    return due.length;
  }

  async function tick(): Promise<void> {
    if (running || stopped) return;
    running = true;
    try {
      // A full batch means more may be due: keep going.
      while (!stopped && (await sweepOnce()) === batch) {}
      if (canSend()) await tracker.sweep(clock());
    } catch (err) {
      log.debug({ err: { message: (err as Error).message } }, "sweep skipped: store unavailable");
    } finally {
      running = false;
      schedule();
    }
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
    stop(): void {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
