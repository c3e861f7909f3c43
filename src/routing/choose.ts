/**
 * Which online resource of the implementing account gets a new request: a pure decision, no I/O.
 *
 * The Redis store makes the same decision in Lua, atomically with recording the request
 * (src/store/lua/lib/choose.lua, kept step for step equal to this file: test/store/choose-parity.test.ts runs
 * both on the same inputs); the in-process store and the message path call this function.
 *
 * 1. RFC 6121 section 4.7.2.3: a resource with negative priority gets nothing new.
 * 2. XEP-0115 and XEP-0030: with a payload namespace, a resource whose verified features do not list it is
 *    skipped; resources without capabilities, or whose features could not be verified, accept everything; a
 *    resource whose features are being asked for is used only when no other could take the request.
 * 3. RFC 6121 section 4.7.2.1: `show` dnd or xa drains a resource: no new requests while a resource that is not
 *    draining could take them.
 * 4. PRIORITY_ROUTING=highest (RFC 6121 section 8.5.2.1.1): only the highest priority among those left.
 * 5. The strategy chooses among what is left (README, "Balancing").
 */
import { byteOrder, stickyResource } from "./sticky.js";

export const BALANCE_STRATEGIES = ["random", "round-robin", "least-pending", "sticky"] as const;
export type BalanceStrategy = (typeof BALANCE_STRATEGIES)[number];

/** How requests are balanced: the strategy, and whether only the highest priority gets them. */
export interface BalancePolicy {
  readonly strategy: BalanceStrategy;
  readonly highest: boolean;
}

/** What the store knows of one online resource: its presence (RFC 6121 4.7.2) and its caps `ver`. */
export interface Candidate {
  readonly name: string;
  readonly priority: number;
  readonly show: string;
  /** XEP-0115 verification string announced with its presence; "" without capabilities. */
  readonly ver: string;
}

/** What the store knows of the features behind a `ver` (XEP-0115 section 5.4). */
export type CapsKnowledge =
  | { readonly kind: "known"; readonly has: (namespace: string) => boolean }
  /** Not verifiable (a hash mismatch, an error answer): the resource accepts everything. */
  | { readonly kind: "unverified" }
  /** A replica has asked for them and the answer is not in yet. */
  | { readonly kind: "asking" }
  | { readonly kind: "unknown" };

export interface ChooseInput {
  readonly candidates: readonly Candidate[];
  readonly policy: BalancePolicy;
  /** In [0, 1): the random part of `random` and of ties in `least-pending`. */
  readonly pick: number;
  /** The requester's full JID (sticky). */
  readonly requester: string;
  /** The namespace of the request's payload; "" to route without capabilities (messages). */
  readonly namespace: string;
  /** What is known of a caps ver; only asked with a namespace (none known: every resource accepts). */
  readonly caps?: (ver: string) => CapsKnowledge;
  /** Pending requests of a resource (least-pending). */
  readonly load: (name: string) => number;
  /** The shared rotation, advanced by one: 1, 2, 3, ... (round-robin). */
  readonly rotation: () => number;
  /** Resources gone recently: with sticky, a request that would have gone to one of them counts as moved. */
  readonly gone?: readonly string[];
}

/** How many resources each step left out. */
export interface Skipped {
  readonly negative: number;
  readonly capability: number;
  readonly drained: number;
  readonly priority: number;
}

export type Choice =
  | { readonly kind: "chosen"; readonly resource: string; readonly skipped: Skipped; readonly moved: boolean }
  | {
      readonly kind: "none";
      readonly reason: "no-resource" | "no-eligible" | "no-capable" | "capabilities-pending";
    };

const UNKNOWN: CapsKnowledge = { kind: "unknown" };

export const DRAINING_SHOWS: ReadonlySet<string> = new Set(["dnd", "xa"]);

export function choose(input: ChooseInput): Choice {
  const { policy, namespace } = input;
  const online = [...input.candidates].sort((a, b) => byteOrder(a.name, b.name));
  if (online.length === 0) return { kind: "none", reason: "no-resource" };

  let list = online.filter((c) => c.priority >= 0);
  const negative = online.length - list.length;
  if (list.length === 0) return { kind: "none", reason: "no-eligible" };

  let capability = 0;
  if (namespace !== "") {
    const capable: Candidate[] = [];
    let asking = 0;
    for (const candidate of list) {
      const known = candidate.ver === "" || !input.caps ? UNKNOWN : input.caps(candidate.ver);
      if (known.kind === "asking") asking++;
      else if (known.kind !== "known" || known.has(namespace)) capable.push(candidate);
      else capability++;
    }
    if (capable.length === 0)
      return { kind: "none", reason: asking > 0 ? "capabilities-pending" : "no-capable" };
    capability += asking;
    list = capable;
  }

  const steady = list.filter((c) => !DRAINING_SHOWS.has(c.show));
  let drained = 0;
  if (steady.length > 0 && steady.length < list.length) {
    drained = list.length - steady.length;
    list = steady;
  }

  let priority = 0;
  if (policy.highest) {
    const top = Math.max(...list.map((c) => c.priority));
    const best = list.filter((c) => c.priority === top);
    priority = list.length - best.length;
    list = best;
  }

  const names = list.map((c) => c.name);
  const resource = pickOne(names, input);
  let moved = false;
  if (policy.strategy === "sticky") {
    const everyone = [...online.map((c) => c.name), ...(input.gone ?? [])];
    moved = stickyResource(input.requester, everyone) !== resource;
  }
  return { kind: "chosen", resource, skipped: { negative, capability, drained, priority }, moved };
}

const at = (names: readonly string[], fraction: number): string =>
  names[Math.min(names.length - 1, Math.max(0, Math.floor(fraction * names.length)))] as string;

function pickOne(names: readonly string[], input: ChooseInput): string {
  switch (input.policy.strategy) {
    case "random":
      return at(names, input.pick);
    case "round-robin":
      return names[(input.rotation() - 1) % names.length] as string;
    case "least-pending": {
      const loads = names.map((name) => input.load(name));
      const least = Math.min(...loads);
      return at(
        names.filter((_, i) => loads[i] === least),
        input.pick,
      );
    }
    case "sticky":
      return stickyResource(input.requester, names) as string;
  }
}
