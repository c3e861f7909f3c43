import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import { metricsTable } from "../../scripts/metrics-table.js";

it("docs/metrics.md is the table generated from the metrics registry", async () => {
  assert.equal(
    readFileSync("docs/metrics.md", "utf8"),
    await metricsTable(),
    "run: node --import tsx scripts/metrics-table.ts",
  );
});
