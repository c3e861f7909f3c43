/**
 * `node --import tsx bench/profile-summary.ts <file.cpuprofile> [top]`: where a replica's CPU time went, from
 * a V8 CPU profile written with BENCH_CPU_PROF_DIR (bench/cpu-profile.mjs). Prints the share of samples by
 * owner (this service's folders, each npm package, Node's internals, V8's native work such as garbage
 * collection) and the functions with the most self time.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
}

/** Who owns a function: a folder of src/, an npm package, Node's own code, or V8/native. */
function ownerOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "native";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1]) return pkg[1];
  const own = /\/(src|bench)\/([^/]+)\//.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  if (url.startsWith("node:")) return "node";
  return url.replace(/^.*\//, "");
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) {
    console.error("usage: profile-summary.ts <file.cpuprofile> [top]");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const hits = new Map<number, number>();
  for (const id of profile.samples ?? []) hits.set(id, (hits.get(id) ?? 0) + 1);
  if (hits.size === 0) for (const node of profile.nodes) hits.set(node.id, node.hitCount ?? 0);
  let total = 0;
  for (const count of hits.values()) total += count;
  const idle = [...hits].reduce(
    (sum, [id, count]) => (byId.get(id)?.callFrame.functionName === "(idle)" ? sum + count : sum),
    0,
  );
  const busy = total - idle;
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, count] of hits) {
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === "(idle)") continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const owner = ownerOf(url, functionName);
    owners.set(owner, (owners.get(owner) ?? 0) + count);
    const name = `${functionName || "(anonymous)"} ${owner}${url ? `:${lineNumber + 1}` : ""}`;
    functions.set(name, (functions.get(name) ?? 0) + count);
  }
  const pct = (count: number) => `${((100 * count) / busy).toFixed(1).padStart(5)}%`;
  const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
  console.log(`${busy} busy samples of ${total} (${((100 * idle) / total).toFixed(1)}% idle)\n\nby owner:`);
  for (const [owner, count] of sorted(owners))
    if (count / busy >= 0.002) console.log(`${pct(count)}  ${owner}`);
  console.log("\nfunctions by self time:");
  for (const [name, count] of sorted(functions).slice(0, Number(topArg ?? 30)))
    console.log(`${pct(count)}  ${name}`);
}

main();
