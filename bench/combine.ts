/**
 * Several rounds of one path, as one measurement: counts and CPU time add up, so rates and per-request values
 * are over all rounds together; latency percentiles are the rounds' request-weighted mean, max the highest;
 * memory values are the last round's, the peak the highest. Each round stays in the results as measured.
 */
import type { Measurement } from "./measure.js";

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
const mean = (values: number[]) => (values.length === 0 ? 0 : sum(values) / values.length);
const round2 = (value: number) => Math.round(value * 100) / 100;

/** Mean of the rounds' values, or null when any round has none. */
function meanOrNull(values: Array<number | null>): number | null {
  return values.some((value) => value === null) ? null : round2(mean(values as number[]));
}

/** Weighted by the requests of each round, or null when any round has none. */
function perRequestMean(rounds: Measurement[], pick: (m: Measurement) => number | null): number | null {
  const values = rounds.map(pick);
  if (values.some((value) => value === null)) return null;
  const weights = rounds.map((m) => m.completed);
  const total = sum(weights);
  return total === 0 ? 0 : sum(values.map((value, i) => (value ?? 0) * (weights[i] ?? 0))) / total;
}

function addCounts(records: Array<Record<string, number>>): Record<string, number> {
  const total: Record<string, number> = {};
  for (const record of records)
    for (const [key, value] of Object.entries(record)) total[key] = (total[key] ?? 0) + value;
  return total;
}

export function combine(rounds: Measurement[]): Measurement {
  const [first] = rounds;
  const last = rounds[rounds.length - 1];
  if (!first || !last) throw new Error("combine: no rounds");
  if (rounds.length === 1) return first;

  const completed = sum(rounds.map((m) => m.completed));
  const seconds = sum(rounds.map((m) => m.seconds));
  const latencyWeighted = (pick: (m: Measurement) => number) =>
    completed === 0 ? 0 : sum(rounds.map((m) => pick(m) * m.completed)) / completed;

  const components = rounds.map((m) => m.component);
  let component: Measurement["component"] = null;
  if (last.component && components.every((c) => c !== null)) {
    const all = components as NonNullable<Measurement["component"]>[];
    const cpuSeconds = sum(all.map((c) => c.cpuSeconds));
    component = {
      ...last.component,
      cpuSeconds,
      cpuMicrosPerRequest: completed === 0 ? 0 : (cpuSeconds * 1e6) / completed,
      peakRssBytes: Math.max(...all.map((c) => c.peakRssBytes)),
    };
  }

  const redises = rounds.map((m) => m.redis);
  let redis: Measurement["redis"] = null;
  if (redises.every((r) => r !== null)) {
    const all = redises as NonNullable<Measurement["redis"]>[];
    const commands = sum(all.map((r) => r.commands));
    const roundTrips = sum(all.map((r) => r.roundTrips));
    redis = {
      commands,
      roundTrips,
      byCommand: addCounts(all.map((r) => r.byCommand)),
      usedMemoryGrowth: sum(all.map((r) => r.usedMemoryGrowth)),
      commandsPerRequest: completed === 0 ? 0 : commands / completed,
      roundTripsPerRequest: completed === 0 ? 0 : roundTrips / completed,
    };
  }

  const byResource = rounds.every((m) => m.byResource)
    ? addCounts(rounds.map((m) => m.byResource ?? {}))
    : undefined;

  return {
    seconds,
    completed,
    errors: sum(rounds.map((m) => m.errors)),
    errorConditions: addCounts(rounds.map((m) => m.errorConditions)),
    unanswered: sum(rounds.map((m) => m.unanswered)),
    requestsPerSecond: seconds > 0 ? completed / seconds : 0,
    latency: {
      count: sum(rounds.map((m) => m.latency.count)),
      p50: latencyWeighted((m) => m.latency.p50),
      p99: latencyWeighted((m) => m.latency.p99),
      max: Math.max(...rounds.map((m) => m.latency.max)),
      mean: latencyWeighted((m) => m.latency.mean),
    },
    ...(byResource ? { byResource } : {}),
    component,
    redis,
    cores: {
      component: meanOrNull(rounds.map((m) => m.cores.component)),
      server: round2(mean(rounds.map((m) => m.cores.server))),
      redis: meanOrNull(rounds.map((m) => m.cores.redis)),
      load: meanOrNull(rounds.map((m) => m.cores.load)),
      bench: round2(mean(rounds.map((m) => m.cores.bench))),
      machineBusy: round2(mean(rounds.map((m) => m.cores.machineBusy))),
      stealPercent: round2(mean(rounds.map((m) => m.cores.stealPercent))),
    },
    perRequest: {
      serverCpuMicros: perRequestMean(rounds, (m) => m.perRequest.serverCpuMicros),
      serverWakeups: perRequestMean(rounds, (m) => m.perRequest.serverWakeups),
      componentWakeups: perRequestMean(rounds, (m) => m.perRequest.componentWakeups),
      componentKernelMicros: perRequestMean(rounds, (m) => m.perRequest.componentKernelMicros),
      componentReads: perRequestMean(rounds, (m) => m.perRequest.componentReads),
      componentWrites: perRequestMean(rounds, (m) => m.perRequest.componentWrites),
    },
  };
}
