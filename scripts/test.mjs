#!/usr/bin/env node
// Runs the test suites with Node's own test runner: `node scripts/test.mjs [unit|store|integration ...]`.
// Files run one at a time (they start real servers on a 2-core machine); each file bounds its own time.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const groups = process.argv.slice(2);
const selected = groups.length > 0 ? groups : ["unit", "store", "integration"];
const files = selected.flatMap((group) =>
  readdirSync(join("test", group))
    .filter((name) => name.endsWith(".test.ts"))
    .sort()
    .map((name) => join("test", group, name)),
);
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=1", "--test-timeout=300000", ...files],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
