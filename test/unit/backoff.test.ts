import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failureDelay, standbyDelay } from "../../src/xmpp/backoff.js";

const settings = { minMs: 500, maxMs: 30_000, standbyMs: 2_000 };

describe("reconnect delays", () => {
  it("grow exponentially from about 0.5 s to the 30 s cap, with jitter", () => {
    assert.equal(
      failureDelay(0, settings, () => 0.999999),
      500,
    );
    assert.equal(
      failureDelay(0, settings, () => 0),
      250,
    );
    assert.equal(
      failureDelay(3, settings, () => 0.999999),
      4_000,
    );
    assert.equal(
      failureDelay(50, settings, () => 0.999999),
      30_000,
    );
    assert.equal(
      failureDelay(50, settings, () => 0),
      15_000,
    );
    const spread = new Set(Array.from({ length: 50 }, () => failureDelay(4, settings)));
    assert.ok(spread.size > 10, "replicas must not retry in lockstep");
  });

  it("keeps standbys on a short jittered interval", () => {
    assert.equal(
      standbyDelay(settings, () => 0),
      1_500,
    );
    assert.equal(
      standbyDelay(settings, () => 0.999999),
      2_500,
    );
  });
});
