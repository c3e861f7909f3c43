/**
 * Writes docs/metrics.md from the metrics registry itself, so the reference cannot drift from the code:
 * `node --import tsx scripts/metrics-table.ts` (test/unit/metrics-doc.test.ts checks it is up to date).
 */
import { writeFileSync } from "node:fs";
import { createMetrics } from "../src/metrics.js";

export async function metricsTable(): Promise<string> {
  const metrics = createMetrics({
    onlineResources: async () => 0,
    pendingRequests: async () => 0,
    connectionState: () => "down",
  });
  const rows = (await metrics.registry.getMetricsAsJSON())
    .filter((metric) => metric.name.startsWith("xcp_"))
    .map((metric) => {
      const declared = metrics.registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] };
      const labels = (declared.labelNames ?? []).map((label) => `\`${label}\``).join(", ") || "-";
      return `| \`${metric.name}\` | ${metric.type} | ${labels} | ${metric.help} |`;
    });
  return [
    "# Metrics",
    "",
    "Served on `HTTP_PORT` at `/metrics` (Prometheus text format), together with prom-client's default",
    "process and Node.js metrics (`process_*`, `nodejs_*`). Generated from the registry by",
    "`node --import tsx scripts/metrics-table.ts`; no label ever carries a JID or a stanza id.",
    "",
    "| metric | type | labels | meaning |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    "Label values: `reason` of `xcp_requests_rejected_total` is the error name of `src/xmpp/errors.ts`",
    "(`noResource`, `presenceUnknown`, `storeUnavailable`, `duplicateId`, `requesterTooLong`, `badRequest`,",
    "`requestFromTarget`, `noEligibleResource`, `noCapableResource`, ...); `reason` of `xcp_replies_dropped_total` is `forged`, `unknown`,",
    "`duplicate`, `late`, `store-unavailable` or `not-connected`; `state` is `connected`, `standby` or `down`.",
    "`strategy` of `xcp_balance_decisions_total` is the BALANCE value; its `decision` is `forwarded` (every",
    "request placed), `sticky_moved`, `negative_priority_skipped`, `drained_skipped`, `lower_priority_skipped`,",
    "`capability_skipped` (each counted once per request it applies to), `no_eligible_resource`,",
    "`no_capable_resource` (requests answered service-unavailable) or `capabilities_awaited` (a wait for a caps",
    "query); `outcome` of `xcp_caps_queries_total` is `asked`, `verified`, `unverified` or `failed`.",
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync("docs/metrics.md", await metricsTable());
}
