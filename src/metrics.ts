/**
 * Prometheus metrics (prom-client). Names follow Prometheus conventions (`_total`, `_seconds`); labels never
 * carry a JID or an id.
 */
import { Counter, collectDefaultMetrics, Registry } from "prom-client";

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Counter<L>({ name: `xcp_${name}`, help, labelNames, registers: [registry] });

  return {
    registry,
    forwarded: counter(
      "requests_forwarded_total",
      "IQ requests forwarded to a resource of the implementing client",
    ),
    routed: counter(
      "replies_routed_total",
      "Replies of the implementing client routed back to the requester",
    ),
    rejected: counter("requests_rejected_total", "IQ requests answered with an error by the proxy itself", [
      "reason",
    ]),
    retries: counter("retries_total", "Requests sent again to another resource after a bounce"),
    timeouts: counter("timeouts_total", "Requests answered with remote-server-timeout"),
    dropped: counter("replies_dropped_total", "Replies dropped without an answer", ["reason"]),
    storeErrors: counter("store_errors_total", "Store operations that failed (store unreachable)"),
    reconnects: counter(
      "xmpp_reconnects_total",
      "Connections to the XMPP server established after the first",
    ),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
