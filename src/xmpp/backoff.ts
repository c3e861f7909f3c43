/**
 * Reconnect delays. Two regimes:
 * - failure (refused, reset, handshake timeout): exponential backoff with jitter, so replicas that lost the
 *   server together do not return together;
 * - standby (the server refused us with `conflict` because another replica holds the domain): a short,
 *   jittered interval, so a standby takes over quickly however long it has waited.
 */
export interface BackoffSettings {
  readonly minMs: number;
  readonly maxMs: number;
  readonly standbyMs: number;
}

/** Delay before failure attempt `attempt` (0-based): min * 2^attempt, capped, scaled by a jitter in [0.5, 1). */
export function failureDelay(
  attempt: number,
  settings: BackoffSettings,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(settings.maxMs, settings.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

/** Delay before a standby retries: the standby interval scaled by a jitter in [0.75, 1.25). */
export function standbyDelay(settings: BackoffSettings, random: () => number = Math.random): number {
  return Math.round(settings.standbyMs * (0.75 + random() * 0.5));
}
