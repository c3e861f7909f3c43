import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { stickyResource } from "../../src/routing/sticky.js";

const requesters = Array.from({ length: 2000 }, (_, i) => `user${i}@example.org/phone`);

describe("stickyResource (rendezvous hashing)", () => {
  it("chooses nothing without resources, and the same resource whatever the order of the list", () => {
    assert.equal(stickyResource("a@x/y", []), null);
    for (const requester of requesters.slice(0, 50))
      assert.equal(stickyResource(requester, ["a", "b", "c"]), stickyResource(requester, ["c", "a", "b"]));
  });

  it("spreads requesters over the resources", () => {
    const counts = new Map<string, number>();
    for (const requester of requesters) {
      const resource = stickyResource(requester, ["a", "b", "c", "d"]) ?? "";
      counts.set(resource, (counts.get(resource) ?? 0) + 1);
    }
    for (const resource of ["a", "b", "c", "d"])
      assert.ok((counts.get(resource) ?? 0) > 350, JSON.stringify([...counts]));
  });

  it("moves only the requesters of a resource that goes, and only to a resource that comes", () => {
    const before = new Map(requesters.map((r) => [r, stickyResource(r, ["a", "b", "c"])]));
    let moved = 0;
    for (const requester of requesters) {
      const after = stickyResource(requester, ["a", "c"]);
      if (before.get(requester) === "b") moved++;
      else assert.equal(after, before.get(requester), requester);
    }
    assert.ok(moved > 500, `${moved} were on b`);
    for (const requester of requesters) {
      const after = stickyResource(requester, ["a", "b", "c", "d"]);
      assert.ok(after === before.get(requester) || after === "d", requester);
    }
  });
});
