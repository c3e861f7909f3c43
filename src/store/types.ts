/**
 * The shared state of all replicas serving one component domain.
 *
 * Two implementations satisfy this interface and one shared test suite: Redis (many replicas) and in-process
 * (a single replica). Every method that changes more than one thing is atomic: in Redis it is one Lua script.
 */

import type { BalancePolicy, Candidate, Skipped } from "../routing/choose.js";

/** The policy of moves when the caller gives none. */
export const RANDOM_POLICY: BalancePolicy = Object.freeze({ strategy: "random", highest: false });

/** RFC 6120 8.2.3: the two IQ types that are requests and must get exactly one answer. */
export type IqRequestType = "get" | "set";

/** A request forwarded to a resource of the implementing client and not yet answered. */
export interface PendingRequest {
  /** Full JID of the requester, as stamped by the server. */
  readonly requester: string;
  /** The requester's IQ id; ids are unique only per sender, so (requester, id) is the key. */
  readonly id: string;
  /** The address the request was sent to; the answer is sent from exactly this address. */
  readonly to: string;
  readonly type: IqRequestType;
  /** The resource of the implementing account the request was forwarded to. */
  readonly resource: string;
  /** Epoch milliseconds after which the requester gets a timeout error. */
  readonly deadline: number;
}

export interface ForwardInput {
  readonly requester: string;
  readonly id: string;
  readonly to: string;
  readonly type: IqRequestType;
  readonly now: number;
  readonly deadline: number;
  /**
   * A number in [0, 1) that chooses the resource: the online resources are sorted by name and the one at
   * index floor(pick * count) is taken. The balancing strategy decides the number; the store applies it
   * atomically with the record.
   */
  readonly pick: number;
  /** The strategy and priority rule that choose among the eligible resources (routing/choose.ts). */
  readonly balance: BalancePolicy;
  /** The namespace of the request's payload, for routing by capability (XEP-0115); "" for none. */
  readonly namespace: string;
  /**
   * The request's child element, serialized: kept so that a failover can send the request again. Empty when it
   * is larger than MAX_KEPT_PAYLOAD_BYTES: the request is forwarded but never sent again.
   */
  readonly payload: string;
  /**
   * Names this forwarding: the same on every retry of a call whose outcome was unknown, so that a retry returns
   * what the first execution did (README, "Unknown outcomes").
   */
  readonly op: string;
}

/**
 * A request of the implementing account to a requester (README, "Requests from the implementing client"): kept
 * under the requester that must answer and the id it was sent with, answered to the resource that asked.
 */
export interface RequestOutInput {
  /** The resource of the implementing account that asked (full JID), and its id. */
  readonly asker: string;
  readonly askerId: string;
  /** The address it wrote to, `domain/<token>`: the answer comes from it. */
  readonly to: string;
  /** The requester's full JID, which must answer, and the id the request went to it with. */
  readonly answerer: string;
  readonly sentId: string;
  readonly type: IqRequestType;
  readonly now: number;
  readonly deadline: number;
  readonly op: string;
}

export type RequestOutResult = "forwarded" | "answered" | "duplicate" | "limited";

/** Admission limits the store enforces atomically with recording a request, across all replicas. */
export interface StoreLimits {
  /** Pending requests per requester bare JID. */
  readonly perRequester: number;
  /** Pending requests in total. */
  readonly total: number;
}

/** A pending `get` moved to another resource because its resource went away. */
export interface MovedRequest {
  readonly requester: string;
  readonly id: string;
  readonly resource: string;
  readonly payload: string;
  /** The request's generation (ForwardResult): it is sent again under the same forwarded id. */
  readonly gen: number;
}

export interface FailoverInput {
  readonly requester: string;
  readonly id: string;
  /** The resource the bounce came from. */
  readonly resource: string;
  readonly pick: number;
  /** How the other resource is chosen (default: random), as for a new request without a namespace. */
  readonly balance?: BalancePolicy;
  readonly now: number;
  /** As in ClaimInput: the bounce is kept as the answer when it is passed to the requester. */
  readonly op: string;
  readonly answer: string;
  readonly gen: number;
}

export type FailoverResult =
  | {
      readonly status: "resent";
      readonly resource: string;
      readonly type: IqRequestType;
      readonly payload: string;
    }
  | Exclude<ClaimResult, { status: "wrong-resource" }>
  | { readonly status: "wrong-resource" };

export type ForwardResult =
  /**
   * Recorded. `gen` counts the earlier requests with this (requester, id) whose tombstones still live: 0 for a
   * fresh id; above 0 the proxy forwards the id with the generation added (routing/ids.ts), so that a late answer
   * to an earlier request with the same id is told apart.
   */
  | {
      readonly status: "forwarded";
      readonly resource: string;
      readonly gen: number;
      /** What the choice left out, and whether sticky moved the requester (zero on a retried op's answer). */
      readonly skipped: Skipped;
      readonly moved: boolean;
    }
  /**
   * Resources are online, but none may take the request: all have negative priority ("no-eligible"), none lists
   * its namespace ("no-capable"), or only resources whose features are being asked for could
   * ("capabilities-pending": ask again shortly). Nothing was recorded.
   */
  | { readonly status: "none"; readonly reason: "no-eligible" | "no-capable" | "capabilities-pending" }
  /** No resource of the implementing account is online. Nothing was recorded. */
  | { readonly status: "no-resource" }
  /**
   * The store knows nothing about the target's presence (its data was lost, or the subscription was never
   * approved): not a definite "offline". Nothing was recorded.
   */
  | { readonly status: "presence-unknown" }
  /** A request with the same (requester, id) is still pending. Nothing was changed. */
  | { readonly status: "duplicate" }
  /** A retry of this op: the first execution recorded it, and it has been answered since (by the sweep). */
  | { readonly status: "answered" }
  /** An admission limit is reached (StoreLimits). Nothing was recorded. */
  | { readonly status: "limited"; readonly scope: "requester" | "total" };

export interface ClaimInput {
  readonly requester: string;
  readonly id: string;
  /** The resource of the implementing account the reply came from. */
  readonly resource: string;
  readonly now: number;
  /** Names this claim: a retry with the same op returns "claimed" again while the claim's lease runs. */
  readonly op: string;
  /** The reply as received, serialized: kept until acknowledged, so another replica can deliver it. */
  readonly answer: string;
  /** The generation the reply's id carries (0 for an id forwarded unchanged). */
  readonly gen: number;
}

/**
 * An answer handed to one caller by the sweep: a timeout due, or an answer whose lease ended unacknowledged.
 * The caller sends it and acknowledges it with `ack`.
 */
export interface DueAnswer {
  readonly request: PendingRequest;
  /** The reply kept by claimReply or failover, as received; null for the timeout answer. */
  readonly answer: string | null;
  /** True when this answer was handed out before: the earlier holder may or may not have sent it. */
  readonly redelivery: boolean;
  /**
   * What the store keeps it under, to acknowledge it by: the request's requester and id, or for a request of
   * the implementing account the requester that must answer and the id it was sent with.
   */
  readonly key: { readonly requester: string; readonly id: string };
  /** Written by a version before 0.2 (README, "Keys"): acknowledged under those keys. */
  readonly legacy?: true;
}

export interface SweepResult {
  /** The store's epoch, read in the same step (see `epoch`). */
  readonly epoch: string;
  readonly due: DueAnswer[];
}

/** What an available presence of a resource says (RFC 6121 section 4.7.2). */
export interface ResourcePresence {
  readonly priority: number;
  readonly show: string;
  readonly status: string;
  /** XEP-0115 section 4: the `ver` of its entity capabilities, "" without (or with legacy) capabilities. */
  readonly ver: string;
}

/** Presence of a resource without show, status or capabilities: priority 0 (RFC 6121 4.7.2.3). */
export const PLAIN_PRESENCE: ResourcePresence = Object.freeze({ priority: 0, show: "", status: "", ver: "" });

/** The online resources as routing sees them, and what is cached about their capabilities. */
export interface RoutingView {
  readonly candidates: readonly Candidate[];
  /** ver -> the cached entry (store/caps-entry.ts), for the vers of the candidates that have one. */
  readonly caps: ReadonlyMap<string, string>;
}

/** The service's presence: unavailable, or available with the show and status of its best resource. */
export type ServiceState =
  | { readonly available: false }
  | { readonly available: true; readonly show: string; readonly status: string };

/** A requester's message kept while no resource of the implementing account is online. */
export interface QueuedMessage {
  readonly queuedAt: number;
  readonly requester: string;
  /** The address it was sent to (an error about it comes from there). */
  readonly to: string;
  /** The message, serialized. */
  readonly stanza: string;
}

/** MAX_QUEUED_PER_REQUESTER, MAX_QUEUED_TOTAL, and how long the queue's keys live (its longest lifetime). */
export interface QueueLimits {
  readonly perRequester: number;
  readonly total: number;
  readonly ttlMs: number;
}

export interface AckInput {
  readonly requester: string;
  readonly id: string;
  readonly op: string;
  /** From a DueAnswer written by a version before 0.2. */
  readonly legacy?: true;
}

export type ClaimResult =
  /**
   * This caller, and no other, now holds the answer, for the answer lease: it sends it and acknowledges it
   * (`ack`); unacknowledged, the sweep hands it to another replica when the lease ends.
   */
  | { readonly status: "claimed"; readonly request: PendingRequest }
  /** Never pending here, or its record is gone. */
  | { readonly status: "unknown" }
  /** Already answered by an earlier reply. */
  | { readonly status: "duplicate" }
  /** Already answered with a timeout error. */
  | { readonly status: "late" }
  /** Pending, but forwarded to another resource: the reply is not accepted and the request stays pending. */
  | { readonly status: "wrong-resource" }
  /** An answer to an earlier request with the same id (another generation): not accepted. */
  | { readonly status: "stale" };

export interface Store {
  /**
   * RFC 6121 4.2: available presence from a resource of the implementing account. It arrives only through an
   * approved subscription, so it also marks the subscription approved. True when the caller should ask the
   * resource what its caps `ver` stands for (XEP-0115 section 6.3): for exactly one caller among all replicas
   * while the features are not known and nobody asked within `capsAskMs`.
   */
  resourceAvailable(resource: string, now: number, presence?: ResourcePresence): Promise<boolean>;
  /**
   * XEP-0115 section 5.4: the features behind a `ver`, verified (kept, at most `max` vers, the oldest dropped
   * first), or "unverified" (a hash mismatch or an error: its resources accept everything for a while).
   */
  storeCaps(ver: string, entry: string, now: number, max: number): Promise<void>;
  /** The online resources with their presence and cached capabilities (messages; disco#info from the cache). */
  routingView(now: number): Promise<RoutingView>;
  /**
   * The service's own presence, from the online resources (the highest priority's show and status), and whether
   * it changed since it was last computed by any replica: exactly one caller sees each change.
   */
  serviceState(): Promise<{ readonly changed: boolean; readonly state: ServiceState }>;
  /** Remembers a subscriber to the service's presence; false when `max` subscribers are remembered already. */
  addSubscriber(bare: string, max: number): Promise<boolean>;
  removeSubscriber(bare: string): Promise<void>;
  isSubscriber(bare: string): Promise<boolean>;
  subscribers(): Promise<string[]>;
  /**
   * RFC 6121 4.5: unavailable presence (or a presence error) from one resource; remembered as gone. Pending
   * `get` requests sent to it move once to another online resource, chosen as a new request would be under
   * `balance` (default: random) without a namespace, the k-th with pick `(pick + k * 0.618...) mod 1`; they are
   * returned, for the caller to send again.
   */
  resourceUnavailable(
    resource: string,
    now: number,
    pick: number,
    balance?: BalancePolicy,
  ): Promise<MovedRequest[]>;
  /** Forget the resources not seen available since `since` (after a reconnect and a probe); returns them. */
  expireResources(since: number, now: number): Promise<string[]>;
  /** Forget every resource (unavailable or error presence from the bare JID, subscription cancelled). */
  clearResources(now: number): Promise<void>;
  /** The online resources, sorted by name. */
  onlineResources(): Promise<string[]>;

  /**
   * Messages the implementing account sent to a requester: which resource sent the one with this id, kept for
   * `ttlMs`, so that an error the requester's side returns for it goes back to that resource.
   */
  rememberMessage(requester: string, id: string, resource: string, ttlMs: number): Promise<void>;
  /** The resource that sent it, or null; forgotten once read (an error is returned once). */
  takeMessageSender(requester: string, id: string): Promise<string | null>;

  /**
   * Keeps a requester's message while no resource takes messages (none online, or all with negative priority),
   * within the bounds; "online" when one does after all (the caller forwards it instead).
   */
  queueMessage(
    message: QueuedMessage,
    limits: QueueLimits,
  ): Promise<"queued" | "online" | "requester" | "total">;
  /**
   * Takes queued messages, oldest first, each by one caller only: up to `count`, or with `before` only those
   * queued before that time (their lifetime is over).
   */
  takeMessages(count: number, before?: number): Promise<QueuedMessage[]>;

  /** RFC 6121 3.1: whether the implementing account approved the component's subscription. */
  setSubscriptionApproved(approved: boolean): Promise<void>;
  subscriptionApproved(): Promise<boolean>;

  /** Record a request of the implementing account to a requester as pending; claimReply and sweep serve it. */
  requestOut(input: RequestOutInput): Promise<RequestOutResult>;
  /** Choose an online resource and record the request as pending, atomically. */
  forward(input: ForwardInput): Promise<ForwardResult>;
  /** Accept a reply: claims the pending request exactly once, only from the resource it was sent to. */
  claimReply(input: ClaimInput): Promise<ClaimResult>;
  /**
   * The request bounced as unavailable from the resource it was sent to: that resource stops being routed to,
   * and the request either moves once to another online resource (a `get`; a `set` only when the resource's
   * unavailable presence was seen first, so it provably never arrived) or is claimed so the bounce is passed on.
   */
  failover(input: FailoverInput): Promise<FailoverResult>;
  /**
   * Hands out up to `limit` due answers, atomically, each to this caller only, under `op`: the timeout of every
   * request whose deadline is at or before `now` (a reply arriving afterwards is `late`), and every answer whose
   * lease ended unacknowledged. Also reads the epoch, so that data loss is noticed within one sweep.
   */
  sweep(now: number, limit: number, op: string): Promise<SweepResult>;
  /** The answers were sent: they become tombstones. One call for a batch; an op that lost its lease is skipped. */
  ack(answers: readonly AckInput[]): Promise<void>;
  /** How many requests are pending. */
  pendingCount(): Promise<number>;

  /** The identity of the store's data set; a new one means the data was lost since it was last read. */
  epoch(): Promise<string>;
  /**
   * Fallback of the forwarding replica after the data was lost: true when the caller must answer the request
   * with a timeout (it was answered by nobody; now no one else will), false when it was answered already.
   */
  claimLost(request: Pick<PendingRequest, "requester" | "id" | "to">, now: number): Promise<boolean>;
  /** After data loss: marks these requests as answered (where no record exists), so no fallback answers them. */
  restoreAnswered(
    answered: ReadonlyArray<Pick<PendingRequest, "requester" | "id">>,
    now: number,
  ): Promise<void>;

  /** Resolves when the store answers; rejects at once (never hangs) when it cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The presence side of a Store as each implementation builds it apart from its requests (redis-presence.ts,
 * memory-presence.ts); `resourceUnavailable`, which also moves pending requests, is not in it.
 */
export type StorePresence = Pick<
  Store,
  | "resourceAvailable"
  | "storeCaps"
  | "routingView"
  | "serviceState"
  | "addSubscriber"
  | "removeSubscriber"
  | "isSubscriber"
  | "subscribers"
  | "expireResources"
  | "clearResources"
  | "onlineResources"
  | "setSubscriptionApproved"
  | "subscriptionApproved"
>;

/** The messages of a Store as each implementation builds it apart (redis-messages.ts, memory-messages.ts). */
export type StoreMessages = Pick<
  Store,
  "queueMessage" | "takeMessages" | "rememberMessage" | "takeMessageSender"
>;

/** Safety-net lifetimes. The deadline index, not these, drives timeouts. */
export interface StoreTtls {
  /** How long a pending record outlives its deadline before Redis deletes it anyway. */
  readonly recordGraceMs: number;
  /**
   * How long an answered request is remembered (its state only) to tell a duplicate or late reply from an
   * unknown one, and so that after data loss no replica's fallback answers it again (src/proxy/tracker.ts).
   */
  readonly tombstoneMs: number;
  /** How long the resource set and subscription flag live without being written. */
  readonly presenceMs: number;
  /**
   * How long a claimed answer belongs to the replica that claimed it before the sweep hands it to another: longer
   * than sending and acknowledging takes, and than a Redis failover (2-3 s), during which the acknowledgement is
   * retried; short enough that a requester whose answer was stranded by a killed replica gets it a few seconds
   * late rather than never.
   */
  readonly answerLeaseMs: number;
  /** How long a resource's unavailable presence is remembered (failover of a `set`). */
  readonly goneMs: number;
  /**
   * How many times in all an answer is handed out (claimed, then redelivered by the sweep) before it is given up:
   * with the lease, how long replicas may fail to acknowledge it (a failover, WAIT not met) before it is lost.
   */
  readonly maxHandouts: number;
  /**
   * How long one replica's disco#info query for a caps `ver` stands for all (XEP-0115 section 6.3): requests
   * that only such a resource could take wait for the answer as long; then it is asked again on its next
   * presence, and meanwhile accepts everything.
   */
  readonly capsAskMs: number;
  /** How long features that could not be verified are held as such before the `ver` is asked about again. */
  readonly capsUnverifiedMs: number;
}

/**
 * Lifetimes for a given IQ_TIMEOUT_MS. A tombstone restored after data loss must outlive the fallback claim of
 * every request forwarded before it, which comes at the latest IQ_TIMEOUT_MS plus a few seconds of grace and
 * settling later: hence IQ_TIMEOUT_MS plus 30 s, and at least a minute.
 */
export function storeTtls(iqTimeoutMs: number): StoreTtls {
  return Object.freeze({
    recordGraceMs: 10 * 60_000,
    tombstoneMs: Math.max(60_000, iqTimeoutMs + 30_000),
    presenceMs: 24 * 60 * 60_000,
    answerLeaseMs: 4_000,
    maxHandouts: 30,
    goneMs: Math.max(60_000, 2 * iqTimeoutMs),
    capsAskMs: 5_000,
    capsUnverifiedMs: 10 * 60_000,
  });
}

/** The lifetimes for the default IQ_TIMEOUT_MS (30 s). */
export const DEFAULT_TTLS: StoreTtls = storeTtls(30_000);

/**
 * Thrown by a store that cannot be reached. `outcome` says what became of the call:
 * - "not-executed": the store refused it or it was never sent (disconnected): nothing changed;
 * - "unknown": it was sent, and no answer came (timeout, connection lost, not replicated in time): it may have
 *   run, or may still run. The caller must not guess: it retries with the same op, or leaves the request to the
 *   sweep (README, "Unknown outcomes").
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  readonly outcome: "not-executed" | "unknown";
  constructor(message: string, options: { cause?: unknown; outcome: "not-executed" | "unknown" }) {
    super(message, { cause: options.cause });
    this.outcome = options.outcome;
  }
}
