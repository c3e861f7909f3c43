/** Latency samples (milliseconds) in a growable typed array, and their summary. */
export class Samples {
  private data = new Float64Array(1 << 16);
  private size = 0;

  add(value: number): void {
    if (this.size === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.size++] = value;
  }

  get count(): number {
    return this.size;
  }

  clear(): void {
    this.size = 0;
  }

  summary(): LatencySummary {
    const sorted = this.data.slice(0, this.size).sort();
    const at = (q: number) => (sorted.length === 0 ? 0 : (sorted[Math.ceil(q * sorted.length) - 1] ?? 0));
    let sum = 0;
    for (const value of sorted) sum += value;
    return {
      count: sorted.length,
      p50: at(0.5),
      p99: at(0.99),
      max: sorted.length === 0 ? 0 : (sorted[sorted.length - 1] ?? 0),
      mean: sorted.length === 0 ? 0 : sum / sorted.length,
    };
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}
