import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createMemoryStore } from "../../src/store/memory.js";
import { balanceSuite } from "./balance.suite.js";
import { CLAIM, FORWARDED, forwardInput } from "./requests.js";
import { storeSuite } from "./store.suite.js";

storeSuite("in-process", async (limits) => ({
  store: createMemoryStore({ limits }),
  cleanup: async () => {},
}));

balanceSuite("in-process", async () => ({
  store: createMemoryStore(),
  cleanup: async () => {},
}));

describe("in-process store specifics", () => {
  it("keeps at most maxTombstones answered requests, forgetting the oldest first", async () => {
    const store = createMemoryStore({ maxTombstones: 3 });
    const now = Date.now();
    await store.resourceAvailable("a", now);
    const ids = ["1", "2", "3", "4", "5"];
    for (const id of ids) {
      const forwarded = await store.forward(forwardInput(id, now, { requester: "u@x/y" }));
      assert.deepEqual(forwarded, { ...FORWARDED, resource: "a", gen: 0 });
      const claimed = await store.claimReply({ ...CLAIM, requester: "u@x/y", id, resource: "a", now });
      assert.equal(claimed.status, "claimed");
      await store.ack([{ requester: "u@x/y", id, op: CLAIM.op }]);
    }
    const again = async (id: string) =>
      (await store.claimReply({ ...CLAIM, requester: "u@x/y", id, resource: "a", now })).status;
    assert.deepEqual(await Promise.all(ids.map(again)), [
      "unknown",
      "unknown",
      "duplicate",
      "duplicate",
      "duplicate",
    ]);
  });
});
