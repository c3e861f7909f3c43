/** The requests the store tests forward: a get from one requester, due a second after `now`. */
import type { ForwardInput, PendingRequest, Store } from "../../src/store/types.js";

export const forwardInput = (id: string, now: number, over: Partial<ForwardInput> = {}): ForwardInput => ({
  requester: "user@example.org/desk",
  id,
  to: "proxy.example.org",
  type: "get",
  now,
  deadline: now + 1000,
  pick: 0,
  balance: { strategy: "random", highest: false },
  namespace: "",
  payload: "<q/>",
  op: `op-${id}-${Math.random().toString(36).slice(2)}`,
  ...over,
});

/**
 * The requests whose answer a sweep at `now` hands out, acknowledged as the sweeper does once it has sent them
 * (the answers due, without the lease details).
 */
export async function expired(store: Store, now: number, limit: number): Promise<PendingRequest[]> {
  const op = `sweep-${Math.random().toString(36).slice(2)}`;
  const requests = (await store.sweep(now, limit, op)).due.map((due) => due.request);
  await store.ack(requests.map(({ requester, id }) => ({ requester, id, op })));
  return requests;
}

/** What the tests claim with: one op and one kept reply for every claim unless said otherwise. */
export const CLAIM = { op: "op-test", answer: "<iq type='result'/>", gen: 0 } as const;

/** A forward result with nothing skipped by the balancing (no presence rules, no capabilities in play). */
export const FORWARDED = {
  status: "forwarded",
  skipped: { negative: 0, capability: 0, drained: 0, priority: 0 },
  moved: false,
} as const;
