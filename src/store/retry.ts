/**
 * Retrying a store call whose outcome is unknown (README, "Unknown outcomes").
 *
 * Every script that changes state is idempotent per op: called again with the same op it returns what its
 * first execution did. So a call that timed out, or lost its connection after being written, is repeated with
 * the same op until Redis answers, instead of being guessed. A first failure that is certain ("not-executed":
 * nothing changed) is thrown at once, for the caller to answer the requester; an outcome still unknown at
 * `giveUpAt` is thrown as it is.
 */
import { StoreUnavailableError } from "./types.js";

export interface RetryOptions {
  clock: () => number;
  /** Epoch ms after which an unknown outcome is given up. */
  giveUpAt: number;
  /** Called before each retry (metrics). */
  onRetry?: () => void;
}

const delay = (attempt: number) => Math.min(50 * 2 ** attempt, 1_000);

export async function untilKnown<T>(
  call: () => Promise<T>,
  { clock, giveUpAt, onRetry }: RetryOptions,
): Promise<T> {
  let unknown = false;
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      unknown ||= err.outcome === "unknown";
      if (!unknown || clock() + delay(attempt) > giveUpAt) {
        if (unknown && err.outcome !== "unknown")
          throw new StoreUnavailableError(err.message, { cause: err, outcome: "unknown" });
        throw err;
      }
      onRetry?.();
      await new Promise((resolve) => setTimeout(resolve, delay(attempt)));
    }
  }
}
