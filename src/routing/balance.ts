/**
 * Balancing strategies. A strategy only produces the `pick` number in [0, 1); the store applies it to the
 * sorted list of online resources atomically with recording the request, so every replica sees one truth.
 */
export type BalanceStrategy = "random";

export function createBalancer(strategy: BalanceStrategy, random: () => number = Math.random): () => number {
  switch (strategy) {
    case "random":
      return random;
  }
}
