/** What each balancing decision left out, counted (README, "Balancing"; docs/metrics.md). */
import type { Metrics } from "../metrics.js";
import type { BalanceStrategy } from "../routing/choose.js";
import type { ForwardResult } from "../store/types.js";

export function countDecisions(
  metrics: Metrics,
  strategy: BalanceStrategy,
  result: Extract<ForwardResult, { status: "forwarded" }>,
): void {
  const { skipped, moved } = result;
  const count = (decision: string, by = 1) => metrics.balanceDecisions.inc({ strategy, decision }, by);
  count("forwarded");
  if (moved) count("sticky_moved");
  if (skipped.negative > 0) count("negative_priority_skipped");
  if (skipped.drained > 0) count("drained_skipped");
  if (skipped.priority > 0) count("lower_priority_skipped");
  if (skipped.capability > 0) count("capability_skipped");
}
