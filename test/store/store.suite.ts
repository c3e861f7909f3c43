/**
 * One behaviour, two stores: every Store implementation must pass this suite.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { DEFAULT_TTLS, type ForwardInput, type Store, type StoreLimits } from "../../src/store/types.js";
import { CLAIM, expired, FORWARDED, forwardInput } from "./requests.js";

export type MakeStore = (limits?: StoreLimits) => Promise<{ store: Store; cleanup(): Promise<void> }>;

const T0 = 1_700_000_000_000;
const request = (id: string, over: Partial<ForwardInput> = {}) => forwardInput(id, T0, over);

export function storeSuite(name: string, make: MakeStore): void {
  describe(`${name} store`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await make());
      await store.resourceAvailable("b", T0);
      await store.resourceAvailable("a", T0);
    });

    afterEach(async () => cleanup?.());

    it("tracks resources and the subscription", async () => {
      assert.deepEqual(await store.onlineResources(), ["a", "b"]);
      await store.resourceUnavailable("a", T0, 0);
      assert.deepEqual(await store.onlineResources(), ["b"]);
      await store.clearResources(T0);
      assert.deepEqual(await store.onlineResources(), []);
      assert.equal(
        await store.subscriptionApproved(),
        true,
        "available presence implies an approved subscription",
      );
      await store.setSubscriptionApproved(false);
      assert.equal(await store.subscriptionApproved(), false);
      await store.setSubscriptionApproved(true);
      assert.equal(await store.subscriptionApproved(), true);
      await store.ping();
    });

    it("chooses the resource by pick over the sorted online resources", async () => {
      assert.deepEqual(await store.forward(request("1", { pick: 0, payload: "<q/>" })), {
        ...FORWARDED,
        resource: "a",
        gen: 0,
      });
      assert.deepEqual(await store.forward(request("2", { pick: 0.49 })), {
        ...FORWARDED,
        resource: "a",
        gen: 0,
      });
      assert.deepEqual(await store.forward(request("3", { pick: 0.5 })), {
        ...FORWARDED,
        resource: "b",
        gen: 0,
      });
      assert.deepEqual(await store.forward(request("4", { pick: 0.999999 })), {
        ...FORWARDED,
        resource: "b",
        gen: 0,
      });
      assert.equal(await store.pendingCount(), 4);
    });

    it("records nothing when no resource is online", async () => {
      await store.clearResources(T0);
      assert.deepEqual(await store.forward(request("1")), { status: "no-resource" });
      assert.equal(await store.pendingCount(), 0);
      assert.deepEqual(
        await store.claimReply({
          ...CLAIM,
          requester: "user@example.org/desk",
          id: "1",
          resource: "a",
          now: T0,
        }),
        {
          status: "unknown",
        },
      );
    });

    it("says it does not know, rather than no resource, before any presence was learnt", async () => {
      const fresh = await make();
      try {
        assert.deepEqual(await fresh.store.forward(request("1")), { status: "presence-unknown" });
      } finally {
        await fresh.cleanup();
      }
    });

    it("refuses the same (requester, id) while pending, and allows it again once answered", async () => {
      await store.forward(request("1"));
      assert.deepEqual(await store.forward(request("1", { pick: 0.9 })), { status: "duplicate" });
      assert.equal(
        (await store.forward(request("1", { requester: "other@example.org/x" }))).status,
        "forwarded",
      );
      const claim = await store.claimReply({
        ...CLAIM,
        requester: "user@example.org/desk",
        id: "1",
        resource: "a",
        now: T0 + 10,
      });
      assert.equal(claim.status, "claimed");
      assert.deepEqual(
        await store.forward(request("1", { pick: 0.9 })),
        { status: "duplicate" },
        "its answer is still being delivered",
      );
      await store.ack([{ requester: "user@example.org/desk", id: "1", op: CLAIM.op }]);
      assert.deepEqual(await store.forward(request("1", { pick: 0.9 })), {
        ...FORWARDED,
        resource: "b",
        gen: 1,
      });
    });

    it("claims a reply exactly once, only from the resource asked, and returns the request", async () => {
      await store.forward(request("1", { to: "svc@proxy.example.org", type: "set" }));
      const input = { ...CLAIM, requester: "user@example.org/desk", id: "1", resource: "b", now: T0 + 10 };
      assert.deepEqual(await store.claimReply(input), { status: "wrong-resource" });
      const claims = await Promise.all(
        Array.from({ length: 5 }, (_, i) => store.claimReply({ ...input, resource: "a", op: `c${i}` })),
      );
      const won = claims.filter((c) => c.status === "claimed");
      assert.equal(won.length, 1);
      assert.deepEqual(won[0], {
        status: "claimed",
        request: {
          requester: "user@example.org/desk",
          id: "1",
          to: "svc@proxy.example.org",
          type: "set",
          resource: "a",
          deadline: T0 + 1000,
        },
      });
      assert.ok(claims.filter((c) => c.status !== "claimed").every((c) => c.status === "duplicate"));
      const op = `c${claims.findIndex((c) => c.status === "claimed")}`;
      assert.deepEqual(
        await store.claimReply({ ...input, resource: "a", op }),
        won[0],
        "a retry of the winning claim (its outcome unknown to the caller) wins again",
      );
      assert.equal(await store.pendingCount(), 1, "held until acknowledged");
      await store.ack([{ requester: "user@example.org/desk", id: "1", op }]);
      assert.equal(await store.pendingCount(), 0);
      assert.equal((await store.claimReply({ ...input, resource: "a", op })).status, "duplicate");
      assert.deepEqual(await expired(store, T0 + 5000, 10), [], "an answered request never times out");
    });

    it("sweeps due requests once, in deadline order, up to the limit, and then replies are late", async () => {
      await store.forward(request("1", { deadline: T0 + 100 }));
      await store.forward(request("2", { deadline: T0 + 200 }));
      await store.forward(request("3", { deadline: T0 + 300 }));
      await store.forward(request("later", { deadline: T0 + 10_000 }));
      assert.deepEqual(await expired(store, T0 + 50, 10), [], "nothing due yet");
      const first = await expired(store, T0 + 1000, 2);
      assert.deepEqual(
        first.map((r) => r.id),
        ["1", "2"],
      );
      const rest = await Promise.all([expired(store, T0 + 1000, 10), expired(store, T0 + 1000, 10)]);
      assert.deepEqual(
        rest.flat().map((r) => r.id),
        ["3"],
        "concurrent sweeps claim each request once",
      );
      assert.equal(await store.pendingCount(), 1);
      const late = await store.claimReply({
        ...CLAIM,
        requester: "user@example.org/desk",
        id: "1",
        resource: "a",
        now: T0 + 1001,
      });
      assert.deepEqual(late, { status: "late" });
      assert.equal((await store.forward(request("1", { now: T0 + 1002 }))).status, "forwarded");
    });

    it("moves a bounced get once to another resource, and a set only after unavailable presence", async () => {
      const who = { requester: "user@example.org/desk", now: T0 + 10 };
      await store.forward(request("g", { pick: 0, payload: "<q xmlns='urn:x'>1</q>" }));
      assert.deepEqual(await store.failover({ ...CLAIM, ...who, id: "g", resource: "b", pick: 0 }), {
        status: "wrong-resource",
      });
      assert.deepEqual(await store.failover({ ...CLAIM, ...who, id: "g", resource: "a", pick: 0 }), {
        status: "resent",
        resource: "b",
        type: "get",
        payload: "<q xmlns='urn:x'>1</q>",
      });
      assert.deepEqual(await store.onlineResources(), ["b"], "the bouncing resource is no longer routed to");
      const second = await store.failover({ ...CLAIM, ...who, id: "g", resource: "b", pick: 0 });
      assert.equal(second.status, "claimed", "moved once only: the second bounce goes to the requester");
      await store.ack([{ requester: who.requester, id: "g", op: CLAIM.op }]);
      assert.equal(await store.pendingCount(), 0);

      await store.resourceAvailable("a", T0);
      await store.forward(request("s1", { type: "set", pick: 0 }));
      const set = await store.failover({ ...CLAIM, ...who, id: "s1", resource: "a", pick: 0 });
      assert.equal(set.status, "claimed", "a set that may have arrived is not sent twice");

      await store.resourceAvailable("a", T0);
      await store.resourceAvailable("b", T0);
      await store.forward(request("s2", { type: "set", pick: 0 }));
      await store.resourceUnavailable("a", T0 + 5, 0);
      const proven = await store.failover({ ...CLAIM, ...who, id: "s2", resource: "a", pick: 0 });
      assert.equal(proven.status, "resent", "unavailable presence first: the set never arrived");
    });

    it("moves pending gets of a resource that went away, once, and leaves its sets", async () => {
      await store.forward(request("g1", { pick: 0, payload: "<a/>" }));
      await store.forward(request("s1", { pick: 0, type: "set" }));
      await store.forward(request("g2", { pick: 0.9 }));
      const moved = await store.resourceUnavailable("a", T0 + 1, 0);
      assert.deepEqual(moved, [
        { requester: "user@example.org/desk", id: "g1", resource: "b", payload: "<a/>", gen: 0 },
      ]);
      assert.deepEqual(await store.onlineResources(), ["b"]);
      const claim = await store.claimReply({
        ...CLAIM,
        requester: "user@example.org/desk",
        id: "g1",
        resource: "b",
        now: T0 + 2,
      });
      assert.equal(claim.status, "claimed", "the reply is now expected from the new resource");
      assert.deepEqual(await store.resourceUnavailable("b", T0 + 3, 0), [], "nowhere left to move to");
    });

    it("forgets resources not confirmed since a point in time", async () => {
      await store.resourceAvailable("c", T0 + 100);
      assert.deepEqual((await store.expireResources(T0 + 50, T0 + 200)).sort(), ["a", "b"]);
      assert.deepEqual(await store.onlineResources(), ["c"]);
    });

    it("keeps its epoch, and lets a lost request be claimed for a timeout only once", async () => {
      assert.equal(await store.epoch(), await store.epoch());
      const lost = { requester: "user@example.org/desk", id: "lost", to: "proxy.example.org" };
      assert.equal(await store.claimLost(lost, T0 + 5), true, "no record: nobody answered it");
      assert.equal(await store.claimLost(lost, T0 + 5), false, "claimed once");
      await store.forward(request("answered"));
      await store.claimReply({
        ...CLAIM,
        requester: "user@example.org/desk",
        id: "answered",
        resource: "a",
        now: T0 + 1,
      });
      assert.equal(await store.claimLost({ ...lost, id: "answered" }, T0 + 5), false, "its answer is held");
      await store.ack([{ requester: lost.requester, id: "answered", op: CLAIM.op }]);
      assert.equal(await store.claimLost({ ...lost, id: "answered" }, T0 + 5), false);
      await store.forward(request("pending"));
      assert.equal(await store.claimLost({ ...lost, id: "pending" }, T0 + 5), true);
      assert.deepEqual(await expired(store, T0 + 10_000, 10), [], "the sweep does not answer it again");
    });

    it("says unknown for a reply nobody asked for", async () => {
      assert.deepEqual(
        await store.claimReply({
          ...CLAIM,
          requester: "x@example.org/y",
          id: "nope",
          resource: "a",
          now: T0,
        }),
        {
          status: "unknown",
        },
      );
    });

    it("returns what a forward did when it is retried with the same op, and refuses another op", async () => {
      const first = request("r", { pick: 0.9 });
      assert.deepEqual(await store.forward(first), { ...FORWARDED, resource: "b", gen: 0 });
      assert.deepEqual(
        await store.forward({ ...first, pick: 0 }),
        { ...FORWARDED, resource: "b", gen: 0 },
        "a retry of an execution whose reply was lost: the same outcome, nothing recorded twice",
      );
      assert.deepEqual(await store.forward({ ...first, op: "another" }), { status: "duplicate" });
      assert.equal(await store.pendingCount(), 1);
      assert.equal((await expired(store, T0 + 5000, 10)).length, 1);
      assert.deepEqual(
        await store.forward(first),
        { status: "answered" },
        "retried after the sweep answered it: nothing to do, above all no second record",
      );
      assert.equal(await store.pendingCount(), 0);
    });

    it("holds a claimed answer for its lease and hands it out again, a bounded number of times", async () => {
      const { answerLeaseMs: lease, maxHandouts } = DEFAULT_TTLS;
      const requester = "user@example.org/desk";
      await store.forward(request("h", { deadline: T0 + 600_000 }));
      const claim = { ...CLAIM, requester, id: "h", resource: "a", answer: "<iq type='result' id='h'/>" };
      assert.equal((await store.claimReply({ ...claim, now: T0 + 10 })).status, "claimed");
      assert.deepEqual((await store.sweep(T0 + lease - 100, 10, "s1")).due, [], "the lease runs");
      let now = T0 + 10 + lease + 1;
      const handed = await store.sweep(now, 10, "s2");
      assert.deepEqual(
        handed.due.map((due) => [due.request.id, due.answer, due.redelivery]),
        [["h", "<iq type='result' id='h'/>", true]],
      );
      assert.equal(handed.epoch, await store.epoch(), "the sweep reads the epoch");
      assert.equal(
        (await store.claimReply({ ...claim, now: now + 10 })).status,
        "duplicate",
        "the first holder lost the answer to the sweep",
      );
      await store.ack([{ requester, id: "h", op: CLAIM.op }]);
      assert.equal(await store.pendingCount(), 1, "an ack by an op that no longer holds it changes nothing");
      // The claim and this hand-out were two; the others follow, one per lease, while nobody acknowledges.
      for (let handout = 3; handout <= maxHandouts; handout++) {
        now += lease + 1;
        assert.equal((await store.sweep(now, 10, `s${handout}`)).due.length, 1, `hand-out ${handout}`);
      }
      assert.deepEqual((await store.sweep(now + lease + 1, 10, "last")).due, [], "given up after the bound");
      assert.equal(await store.pendingCount(), 0);
      assert.equal((await store.claimReply({ ...claim, now: now + lease + 10 })).status, "duplicate");
    });

    it("hands out a timeout once; its ack makes a late reply late", async () => {
      const requester = "user@example.org/desk";
      await store.forward(request("t", { deadline: T0 + 100 }));
      const { due } = await store.sweep(T0 + 200, 10, "sw");
      assert.deepEqual(
        due.map((d) => [d.request.id, d.answer, d.redelivery]),
        [["t", null, false]],
      );
      const reply = { ...CLAIM, requester, id: "t", resource: "a", now: T0 + 300 };
      assert.equal((await store.claimReply(reply)).status, "late");
      await store.ack([{ requester, id: "t", op: "sw" }]);
      assert.equal((await store.claimReply(reply)).status, "late");
      assert.deepEqual((await store.sweep(T0 + 60_000, 10, "later")).due, []);
    });

    it("does not move a request whose payload was too large to keep", async () => {
      await store.forward(request("big", { pick: 0, payload: "" }));
      assert.deepEqual(await store.resourceUnavailable("a", T0 + 1, 0), []);
      await store.resourceAvailable("a", T0 + 2);
      await store.forward(request("big2", { pick: 0, payload: "" }));
      const bounce = { ...CLAIM, requester: "user@example.org/desk", id: "big2", resource: "a", pick: 0 };
      assert.equal((await store.failover({ ...bounce, now: T0 + 3 })).status, "claimed");
    });

    it("refuses requests beyond the pending limits, per requester bare JID and in total", async () => {
      const limited = await make({ perRequester: 2, total: 3 });
      try {
        const s = limited.store;
        await s.resourceAvailable("a", T0);
        const from = (requester: string, id: string) => s.forward(request(id, { requester }));
        assert.equal((await from("u@example.org/one", "1")).status, "forwarded");
        assert.equal((await from("u@example.org/two", "2")).status, "forwarded");
        assert.deepEqual(
          await from("u@example.org/three", "3"),
          { status: "limited", scope: "requester" },
          "counted per bare JID, whatever the resource",
        );
        assert.equal((await from("v@example.org/x", "4")).status, "forwarded");
        assert.deepEqual(await from("w@example.org/x", "5"), { status: "limited", scope: "total" });
        assert.equal(await s.pendingCount(), 3);
        const claim = { ...CLAIM, requester: "u@example.org/one", id: "1", resource: "a", now: T0 + 1 };
        assert.equal((await s.claimReply(claim)).status, "claimed");
        assert.equal(
          (await from("u@example.org/three", "3")).status,
          "limited",
          "the total still counts the answer being delivered",
        );
        await s.ack([{ requester: claim.requester, id: "1", op: CLAIM.op }]);
        assert.equal((await from("u@example.org/three", "3")).status, "forwarded", "one left: one more");
        await expired(s, T0 + 5_000, 10);
        assert.equal(await s.pendingCount(), 0);
        assert.equal((await from("u@example.org/again", "6")).status, "forwarded", "timeouts free the count");
        assert.equal((await from("w@example.org/x", "7")).status, "forwarded");
        assert.equal(
          (await from("w@example.org/y", "8")).status,
          "forwarded",
          "a request refused for the total did not count for its requester",
        );
      } finally {
        await limited.cleanup();
      }
    });

    it("gives a reused id the next generation while its tombstone lives; an answer of another is stale", async () => {
      const requester = "user@example.org/desk";
      const reply = { ...CLAIM, requester, id: "same", resource: "a" };
      assert.deepEqual(await store.forward(request("same", { deadline: T0 + 100 })), {
        ...FORWARDED,
        resource: "a",
        gen: 0,
      });
      await expired(store, T0 + 200, 10);
      assert.deepEqual(await store.forward(request("same", { now: T0 + 300, deadline: T0 + 5_000 })), {
        ...FORWARDED,
        resource: "a",
        gen: 1,
      });
      assert.deepEqual(
        await store.claimReply({ ...reply, now: T0 + 400, gen: 0 }),
        { status: "stale" },
        "the late answer to the first request does not answer the second",
      );
      assert.deepEqual(await store.failover({ ...reply, pick: 0, now: T0 + 400, gen: 0 }), {
        status: "stale",
      });
      assert.equal((await store.claimReply({ ...reply, now: T0 + 500, gen: 1 })).status, "claimed");
      await store.ack([{ requester, id: "same", op: CLAIM.op }]);
      assert.equal(
        (await store.forward(request("same", { now: T0 + 600 }))).status === "forwarded" &&
          (await store.claimReply({ ...reply, now: T0 + 700, gen: 2 })).status,
        "claimed",
        "and the next one the generation after",
      );
    });
  });
}
