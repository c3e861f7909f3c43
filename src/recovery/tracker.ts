/**
 * Each replica's own memory of the requests it forwarded and answered: the fallback for when the store loses
 * its data (a Redis restarted empty, a failover to a replica that lagged).
 *
 * Normally this costs no store call: forwarded entries are dropped at their deadline (the shared sweep
 * answers timeouts) and answered ones when their tombstones would have expired. When the store's epoch
 * changes, every replica that sees it (1) writes back tombstones for what it answered recently and
 * (2) after a settling delay, claims each request it forwarded before the change with `claimLost` at its
 * deadline, and answers it if nobody did. Every request gets its one answer, and none gets two unless a
 * replica that answered it died in the same outage.
 */
import type { Logger } from "pino";
import type { AnswerError } from "../proxy/send-error.js";
import { memberOf, requestOfMember } from "../store/keys.js";
import type { Store } from "../store/types.js";
import { evictOldest } from "../util/evict.js";

interface Forwarded {
  readonly requester: string;
  readonly id: string;
  readonly to: string;
  readonly deadline: number;
  suspect: boolean;
}

export interface TrackerDeps {
  store: Store;
  answerError: AnswerError;
  clock: () => number;
  /** How long after its deadline a forwarded request is checked: long enough for the shared sweep. */
  graceMs: number;
  /** How long an answered request is remembered: at least IQ_TIMEOUT_MS plus the grace. */
  rememberMs: number;
  /** After an epoch change, how long to wait for the other replicas to write back their tombstones. */
  settleMs: number;
  /**
   * Answered requests remembered at most (the oldest are forgotten first): bounds the memory at any request
   * rate. Beyond rate x rememberMs, a data loss may give an already answered request a second, timeout answer.
   */
  maxAnswered?: number;
  /** Called once per detected data loss (the replicas must relearn the target's presence). */
  onDataLoss?: () => void;
  log: Logger;
}

/** About 40 MB: every request of the last 33 s at 15,000 requests per second. */
export const MAX_ANSWERED = 500_000;

export function createTracker({
  store,
  answerError,
  clock,
  graceMs,
  rememberMs,
  settleMs,
  maxAnswered = MAX_ANSWERED,
  onDataLoss = () => {},
  log,
}: TrackerDeps) {
  // One IQ_TIMEOUT_MS per process: insertion order is deadline order, and answer order is expiry order.
  const forwarded = new Map<string, Forwarded>();
  /**
   * Member -> until when it is remembered. Nothing else: at the full request rate this map holds every request of
   * the last IQ_TIMEOUT_MS, so its entries are kept small (the member is split back when it is needed).
   */
  const answered = new Map<string, number>();
  let knownEpoch: string | undefined;
  let suspectAfter = 0;

  /**
   * The store's epoch, as read by the sweep or after a reconnect. On a change (data lost: restarted empty,
   * FLUSHDB, eviction, failover to a replica that lagged) this replica writes back the tombstones of what it
   * answered and suspects the requests it forwarded, and the target's presence is learnt again.
   */
  async function observe(epoch: string): Promise<void> {
    const before = knownEpoch;
    knownEpoch = epoch;
    if (before === undefined || epoch === before) return;
    for (const entry of forwarded.values()) entry.suspect = true;
    suspectAfter = clock() + settleMs;
    log.warn(
      { suspect: forwarded.size, answered: answered.size },
      "the store lost its data: restoring what this replica answered, and answering its own requests",
    );
    onDataLoss();
    await store.restoreAnswered([...answered.keys()].map(requestOfMember), clock());
  }

  const track = {
    track(request: { requester: string; id: string; to: string; deadline: number }): void {
      forwarded.set(memberOf(request.requester, request.id), { ...request, suspect: false });
    },
    /** This replica answered the request (routed its reply, or its timeout). */
    answered(requester: string, id: string): void {
      const name = memberOf(requester, id);
      forwarded.delete(name);
      answered.delete(name);
      answered.set(name, clock() + rememberMs);
      evictOldest(answered, maxAnswered);
    },
    get size(): number {
      return forwarded.size + answered.size;
    },
    /** Reads the store's epoch (see observe). */
    async checkEpoch(): Promise<void> {
      await observe(await store.epoch());
    },
    observe,
    /** A request this replica forwarded and has not seen answered, if it still remembers it. */
    forwarded(requester: string, id: string): Forwarded | undefined {
      return forwarded.get(memberOf(requester, id));
    },
    /** Claims a request whose record the store lost, for this replica to answer; true when it must answer. */
    async claimLost(entry: Forwarded): Promise<boolean> {
      const claimed = await store.claimLost(entry, clock());
      if (claimed) track.answered(entry.requester, entry.id);
      return claimed;
    },
    /** Forgets what is past; answers the suspect requests that nobody answered. */
    async sweep(now: number): Promise<void> {
      for (const [name, until] of answered) {
        if (until > now) break;
        answered.delete(name);
      }
      for (const [name, entry] of forwarded) {
        if (entry.deadline + graceMs > now) return;
        if (entry.suspect) {
          if (now < suspectAfter) return;
          if (await track.claimLost(entry)) {
            answerError({ name: "iq", id: entry.id, from: entry.requester, to: entry.to }, "timeout");
          }
        }
        forwarded.delete(name);
      }
    },
  };
  return track;
}

export type Tracker = ReturnType<typeof createTracker>;

/** For a store that loses its data only with its process (in-process): there is nothing to fall back on. */
export const NO_TRACKER: Tracker = Object.freeze({
  track() {},
  answered() {},
  size: 0,
  async checkEpoch() {},
  async observe() {},
  forwarded: () => undefined,
  claimLost: async () => false,
  async sweep() {},
});
