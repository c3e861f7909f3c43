/**
 * Prometheus metrics (prom-client). Names follow Prometheus conventions (`_total`, `_seconds`); labels never
 * carry a JID or an id. Gauges of shared state are read from the store at scrape time, so every replica
 * reports the same truth.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type ConnectionStateName = "connected" | "standby" | "down";

export interface MetricSources {
  /** Online resources of the implementing account, from the store. */
  onlineResources(): Promise<number>;
  /** Requests pending in the store. */
  pendingRequests(): Promise<number>;
  /** This replica's XMPP connection. */
  connectionState(): ConnectionStateName;
}

export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter<L>({ name: `xcp_${name}`, help, labelNames, registers: [registry] });
  const fromStore = (name: string, help: string, read: () => Promise<number>) =>
    new Gauge({
      name: `xcp_${name}`,
      help,
      registers: [registry],
      async collect() {
        // An unreachable store leaves the gauge out of this scrape rather than reporting a false zero.
        try {
          this.set(await read());
        } catch {
          this.reset();
        }
      },
    });

  fromStore("target_resources_online", "Online resources of the implementing account (shared)", () =>
    sources.onlineResources(),
  );
  fromStore("requests_pending", "Requests forwarded and not answered yet (shared)", () =>
    sources.pendingRequests(),
  );
  new Gauge({
    name: "xcp_xmpp_connected",
    help: "1 when this replica's component connection is established, else 0",
    registers: [registry],
    collect() {
      this.set(sources.connectionState() === "connected" ? 1 : 0);
    },
  });
  const states: ConnectionStateName[] = ["connected", "standby", "down"];
  new Gauge({
    name: "xcp_xmpp_connection_state",
    help: "This replica's component connection: 1 for the current state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const current = sources.connectionState();
      for (const state of states) this.set({ state }, state === current ? 1 : 0);
    },
  });

  return {
    registry,
    forwarded: counter(
      "requests_forwarded_total",
      "IQ requests forwarded to a resource of the implementing client",
    ),
    balanceDecisions: counter(
      "balance_decisions_total",
      "Balancing decisions by strategy: requests forwarded, and for how many of them the choice moved a sticky " +
        "requester or skipped a resource (negative priority, draining, lower priority, lacking the namespace); " +
        "requests no resource could take (no_eligible_resource, no_capable_resource), and waits for features",
      ["strategy", "decision"],
    ),
    capsQueries: counter(
      "caps_queries_total",
      "XEP-0115 disco#info queries for a caps ver: asked by this replica, and answers verified, unverifiable " +
        "(hash mismatch, malformed) or failed (error)",
      ["outcome"],
    ),
    discoFromCache: counter(
      "disco_info_answered_total",
      "disco#info requests to the domain answered by the proxy from the cached features (DISCO_INFO_FROM_CACHE)",
    ),
    routed: counter(
      "replies_routed_total",
      "Replies of the implementing client routed back to the requester",
    ),
    rejected: counter("requests_rejected_total", "IQ requests answered with an error by the proxy itself", [
      "reason",
    ]),
    messagesIn: counter(
      "messages_in_total",
      "Messages of requesters forwarded to a resource of the implementing client",
    ),
    messagesOut: counter(
      "messages_out_total",
      "Messages of the implementing client forwarded to the requester its token names",
    ),
    messagesRefused: counter(
      "messages_refused_total",
      "Messages not forwarded, answered with a message error (or dropped, for a forged token: also answered)",
      ["reason"],
    ),
    messagesQueued: counter(
      "messages_queued_total",
      "Messages of requesters kept in the store while no resource of the implementing client was online",
    ),
    messagesDelivered: counter(
      "messages_queued_delivered_total",
      "Kept messages delivered when a resource came online",
    ),
    messageErrorsReturned: counter(
      "message_errors_returned_total",
      "Message errors of a requester's side returned to the resource that sent the message",
    ),
    requestsOut: counter(
      "target_requests_forwarded_total",
      "Requests of the implementing client forwarded to a requester",
    ),
    repliesIn: counter(
      "target_replies_routed_total",
      "Answers of requesters routed back to the resource of the implementing client that asked",
    ),
    presenceBroadcasts: counter(
      "service_presence_broadcasts_total",
      "Changes of the service's presence broadcast to its subscribers (one per change, whatever the replicas)",
    ),
    subscriptions: counter(
      "service_subscriptions_total",
      "Subscription requests to the service's presence, and cancellations",
      ["outcome"],
    ),
    retries: counter(
      "retries_total",
      "Requests sent again to another resource after their resource went away",
    ),
    timeouts: counter("timeouts_total", "Requests answered with remote-server-timeout"),
    dropped: counter("replies_dropped_total", "Replies dropped without an answer", ["reason"]),
    storeErrors: counter(
      "store_errors_total",
      "Store operations that failed (store unreachable, or its outcome still unknown after retrying)",
      ["operation"],
    ),
    storeRetries: counter(
      "store_retries_total",
      "Store operations repeated with the same op because their outcome was unknown (timeout, connection lost)",
      ["operation"],
    ),
    redelivered: counter(
      "answers_redelivered_total",
      "Answers sent again after their lease ended unacknowledged: each may be a second answer",
    ),
    stranded: counter(
      "answers_stranded_total",
      "Answers that could not be written (XMPP link down), kept for after the reconnect or the sweep",
    ),
    dataLosses: counter(
      "store_data_losses_total",
      "Times this replica saw the store's epoch change (data lost)",
    ),
    reconnects: counter(
      "xmpp_reconnects_total",
      "Connections to the XMPP server established after the first",
    ),
    ackWindow: new Histogram({
      name: "xcp_answer_ack_seconds",
      help: "From writing a batch of answers' acknowledgement to the store until the store confirmed it",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1],
      registers: [registry],
    }),
    roundTrip: new Histogram({
      name: "xcp_round_trip_seconds",
      help: "From forwarding a request to routing its reply (any replica; assumes one IQ_TIMEOUT_MS)",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
