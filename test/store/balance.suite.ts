/**
 * Balancing in the store (routing/choose.ts; lib/choose.lua): every Store implementation must pass this suite.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { BalanceStrategy } from "../../src/routing/choose.js";
import { encodeUnverified, encodeVerified } from "../../src/store/caps-entry.js";
import { DEFAULT_TTLS, type ForwardInput, PLAIN_PRESENCE, type Store } from "../../src/store/types.js";
import { CLAIM, expired, forwardInput } from "./requests.js";
import type { MakeStore } from "./store.suite.js";

const T0 = 1_700_000_000_000;
let ids = 0;
const request = (over: Partial<ForwardInput> = {}) => forwardInput(`r${++ids}`, T0, over);
const policy = (strategy: BalanceStrategy, highest = false) => ({ balance: { strategy, highest } });
const presence = (priority: number, show = "", ver = "") => ({ ...PLAIN_PRESENCE, priority, show, ver });

/** The resource a forward went to, or the status (and reason) it was refused with. */
async function target(store: Store, input: ForwardInput): Promise<string> {
  const result = await store.forward(input);
  if (result.status === "forwarded") return result.resource;
  return result.status === "none" ? `none:${result.reason}` : result.status;
}

export function balanceSuite(name: string, make: MakeStore): void {
  describe(`${name} store: balancing`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await make());
      for (const name of ["c", "a", "b"]) await store.resourceAvailable(name, T0);
    });
    afterEach(async () => cleanup?.());

    it("round-robin: one rotation over the sorted resources", async () => {
      const seen = [];
      for (let i = 0; i < 7; i++) seen.push(await target(store, request(policy("round-robin"))));
      assert.deepEqual(seen, ["a", "b", "c", "a", "b", "c", "a"]);
    });

    it("least-pending: the resource with the fewest pending requests; answers and timeouts free it", async () => {
      const lp = policy("least-pending");
      const short = request({ ...lp, pick: 0, deadline: T0 + 50 });
      assert.equal(await target(store, short), "a", "all tied: pick chooses among them");
      const second = request({ ...lp, pick: 0 });
      assert.equal(await target(store, second), "b");
      assert.equal(await target(store, request({ ...lp, pick: 0.99 })), "c");
      assert.equal(await target(store, request({ ...lp, pick: 0.99 })), "c", "all tied again");
      assert.equal(await target(store, request({ ...lp, pick: 0.99 })), "b", "c holds more");
      // a: 1, b: 2, c: 2 pending
      const claimed = await store.claimReply({
        ...CLAIM,
        requester: second.requester,
        id: second.id,
        resource: "b",
        now: T0,
      });
      assert.equal(claimed.status, "claimed");
      // a: 1, b: 1, c: 2
      assert.equal(
        await target(store, request({ ...lp, pick: 0.99 })),
        "b",
        "an answered request no longer counts",
      );
      assert.equal(await target(store, request({ ...lp, pick: 0 })), "a");
      // a: 2, b: 2, c: 2; the short request to a times out
      assert.equal((await expired(store, T0 + 60, 10)).length, 1);
      assert.equal(
        await target(store, request({ ...lp, pick: 0.99 })),
        "a",
        "a timed-out request no longer counts",
      );
    });

    it("sticky: a requester stays on one resource, and moves only when its resource goes", async () => {
      const requesters = Array.from({ length: 30 }, (_, i) => `user${i}@example.org/r`);
      const home = new Map<string, string>();
      for (const requester of requesters) {
        const first = await target(store, request({ ...policy("sticky"), requester }));
        assert.equal(await target(store, request({ ...policy("sticky"), requester, pick: 0.99 })), first);
        home.set(requester, first);
      }
      assert.equal(new Set(home.values()).size, 3, "requesters spread over the resources");
      await store.resourceUnavailable("b", T0, 0);
      for (const requester of requesters) {
        const result = await store.forward(request({ ...policy("sticky"), requester }));
        assert.equal(result.status, "forwarded");
        if (result.status !== "forwarded") continue;
        if (home.get(requester) === "b") {
          assert.notEqual(result.resource, "b");
          assert.equal(result.moved, true, "counted as moved while b is remembered as gone");
        } else {
          assert.equal(result.resource, home.get(requester), `${requester} stays`);
          assert.equal(result.moved, false);
        }
      }
    });

    it("negative priority gets nothing new; all negative: no eligible resource", async () => {
      await store.resourceAvailable("a", T0, presence(-1));
      await store.resourceAvailable("b", T0, presence(-5));
      for (let i = 0; i < 6; i++) assert.equal(await target(store, request(policy("round-robin"))), "c");
      const result = await store.forward(request({ pick: 0 }));
      assert.ok(result.status === "forwarded" && result.skipped.negative === 2, JSON.stringify(result));
      await store.resourceAvailable("c", T0, presence(-1));
      assert.equal(await target(store, request()), "none:no-eligible");
      await store.resourceAvailable("a", T0, presence(0));
      assert.equal(await target(store, request({ pick: 0.99 })), "a", "back to available: included again");
    });

    it("messages are kept while every online resource has negative priority, as if none were online", async () => {
      const limits = { perRequester: 10, total: 10, ttlMs: 60_000 };
      const message = { queuedAt: T0, requester: "u@x/y", to: "proxy.example.org", stanza: "<message/>" };
      assert.equal(await store.queueMessage(message, limits), "online");
      for (const name of ["a", "b", "c"]) await store.resourceAvailable(name, T0, presence(-1));
      assert.equal(await store.queueMessage(message, limits), "queued");
      await store.resourceAvailable("b", T0, presence(0));
      assert.equal(await store.queueMessage(message, limits), "online");
      assert.equal((await store.takeMessages(10)).length, 1);
    });

    it("dnd and xa drain while another resource takes requests; alone, they still get them", async () => {
      await store.resourceAvailable("a", T0, presence(0, "dnd"));
      await store.resourceAvailable("b", T0, presence(0, "xa"));
      const result = await store.forward(request({ pick: 0 }));
      assert.ok(result.status === "forwarded" && result.resource === "c" && result.skipped.drained === 2);
      await store.resourceAvailable("c", T0, presence(0, "away"));
      assert.equal(await target(store, request({ pick: 0 })), "c", "away is not draining");
      await store.resourceUnavailable("c", T0, 0);
      assert.equal(await target(store, request({ pick: 0 })), "a", "only draining ones left: they take it");
      await store.resourceAvailable("b", T0, presence(0, "chat"));
      assert.equal(await target(store, request({ pick: 0 })), "b");
    });

    it("highest priority only, when asked: a backup takes over when the primary goes", async () => {
      await store.resourceAvailable("a", T0, presence(1));
      await store.resourceAvailable("b", T0, presence(10));
      await store.resourceAvailable("c", T0, presence(10));
      for (let i = 0; i < 4; i++)
        assert.notEqual(await target(store, request(policy("round-robin", true))), "a");
      assert.equal(await target(store, request({ pick: 0 })), "a", "PRIORITY_ROUTING=all: every priority");
      await store.resourceUnavailable("b", T0, 0);
      await store.resourceUnavailable("c", T0, 0);
      assert.equal(await target(store, request({ ...policy("random", true), pick: 0.7 })), "a");
    });

    it("capabilities: asked once per ver, waited for, then only resources listing the namespace", async () => {
      assert.equal(await store.resourceAvailable("a", T0, presence(0, "", "VER-A")), true, "first: ask");
      assert.equal(await store.resourceAvailable("a", T0, presence(0, "", "VER-A")), false, "asked already");
      assert.equal(await store.resourceAvailable("b", T0, presence(0, "", "VER-B")), true);
      await store.resourceUnavailable("c", T0, 0);
      const ping = (over: Partial<ForwardInput> = {}) => request({ namespace: "urn:xmpp:ping", ...over });
      assert.equal(await target(store, ping()), "none:capabilities-pending");
      assert.equal(
        await target(store, request({ namespace: "" })),
        "a",
        "no namespace: capabilities not asked",
      );
      const info = (features: string[]) =>
        encodeVerified({ identities: [{ category: "client", type: "bot", name: "x" }], features });
      await store.storeCaps("VER-A", info(["jabber:iq:version"]), T0, 100);
      assert.equal(await target(store, ping({ pick: 0 })), "none:capabilities-pending", "b is still asked");
      await store.storeCaps("VER-B", info(["urn:xmpp:ping", "jabber:iq:version"]), T0, 100);
      for (let i = 0; i < 4; i++) assert.equal(await target(store, ping(policy("round-robin"))), "b");
      const skipped = await store.forward(ping());
      assert.ok(skipped.status === "forwarded" && skipped.skipped.capability === 1);
      assert.equal(await target(store, request({ namespace: "urn:example:none" })), "none:no-capable");
      assert.equal(await store.resourceAvailable("c", T0, presence(0, "", "VER-B")), false, "ver known");
      await store.resourceAvailable("c", T0);
      assert.equal(
        await target(store, request({ namespace: "urn:example:none" })),
        "c",
        "a resource without capabilities accepts everything",
      );
      await store.resourceUnavailable("c", T0, 0);
      await store.storeCaps("VER-A", encodeUnverified(T0 + 1000), T0, 100);
      assert.equal(
        await target(store, request({ namespace: "urn:example:none" })),
        "a",
        "unverifiable features: accepts everything",
      );
      assert.equal(
        await store.resourceAvailable("a", T0 + 2000, presence(0, "", "VER-A")),
        true,
        "asked again",
      );
    });

    it("capabilities: a query that gets no answer lapses, and the resource takes everything", async () => {
      await store.resourceUnavailable("b", T0, 0);
      await store.resourceUnavailable("c", T0, 0);
      await store.resourceAvailable("a", T0, presence(0, "", "VER-A"));
      assert.equal(await target(store, request({ namespace: "urn:xmpp:ping" })), "none:capabilities-pending");
      const later = T0 + DEFAULT_TTLS.capsAskMs + 1;
      assert.equal(await target(store, forwardInput("late", later, { namespace: "urn:xmpp:ping" })), "a");
    });

    it("keeps at most MAX_CAPS_CACHED vers, the oldest dropped first", async () => {
      const info = encodeVerified({ identities: [], features: ["urn:x"] });
      for (const ver of ["V1", "V2", "V3"]) await store.storeCaps(ver, info, T0, 2);
      const view = async (ver: string) => {
        await store.resourceAvailable("a", T0, presence(0, "", ver));
        return (await store.routingView(T0)).caps.has(ver);
      };
      assert.equal(await view("V1"), false, "V1 dropped");
      assert.equal(await view("V2"), true);
      assert.equal(await view("V3"), true);
    });

    it("routing view: the online resources with presence and cached features", async () => {
      await store.resourceAvailable("a", T0, { priority: -3, show: "dnd", status: "busy", ver: "V" });
      await store.storeCaps("V", encodeVerified({ identities: [], features: ["urn:y"] }), T0, 10);
      const view = await store.routingView(T0);
      const sorted = [...view.candidates].sort((x, y) => (x.name < y.name ? -1 : 1));
      assert.deepEqual(sorted, [
        { name: "a", priority: -3, show: "dnd", ver: "V" },
        { name: "b", priority: 0, show: "", ver: "" },
        { name: "c", priority: 0, show: "", ver: "" },
      ]);
      assert.deepEqual([...view.caps.keys()], ["V"]);
    });
  });
}
