import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { classify, type StanzaView } from "../../src/routing/classify.js";

const ctx = { domain: "proxy.example.org", target: "impl@example.org" };
const view = (over: Partial<StanzaView>): StanzaView => ({
  name: "iq",
  type: "get",
  id: "1",
  from: "user@example.org/abc",
  to: "proxy.example.org",
  childElements: 1,
  ...over,
});

describe("classify", () => {
  it("forwards a request from anyone but the target, to the domain in any of its forms", () => {
    for (const to of ["proxy.example.org", "proxy.example.org/res", "svc@proxy.example.org"]) {
      assert.deepEqual(classify(view({ to }), ctx), {
        kind: "forward",
        requester: "user@example.org/abc",
        id: "1",
        type: "get",
        to,
      });
    }
    assert.equal(classify(view({ type: "set" }), ctx).kind, "forward");
  });

  it("sends on a request of the target to domain/<token>", () => {
    assert.deepEqual(classify(view({ from: "impl@example.org/a", to: "proxy.example.org/j1.k.m.r" }), ctx), {
      kind: "request-out",
      token: "j1.k.m.r",
      resource: "a",
      id: "1",
      type: "get",
    });
  });

  it("rejects a request from the target itself", () => {
    assert.deepEqual(classify(view({ from: "impl@example.org/a" }), ctx), {
      kind: "reject",
      error: "requestFromTarget",
    });
  });

  it("rejects malformed requests with bad-request (RFC 6120 8.2.3)", () => {
    assert.deepEqual(classify(view({ childElements: 0 }), ctx), { kind: "reject", error: "badRequest" });
    assert.deepEqual(classify(view({ childElements: 2 }), ctx), { kind: "reject", error: "badRequest" });
    assert.deepEqual(classify(view({ id: undefined }), ctx), { kind: "reject", error: "badRequest" });
    assert.deepEqual(classify(view({ type: "bogus" }), ctx), { kind: "reject", error: "badRequest" });
  });

  it("takes answers from the target to a translated address as replies", () => {
    assert.deepEqual(
      classify(view({ type: "result", from: "impl@example.org/a", to: "proxy.example.org/j1.k.x.y" }), ctx),
      { kind: "reply", token: "j1.k.x.y", id: "1", resource: "a" },
    );
    assert.equal(
      classify(view({ type: "error", from: "impl@example.org/a", to: "proxy.example.org/t" }), ctx).kind,
      "reply",
    );
  });

  it("never answers a result or an error; a requester's one to the bare domain may answer the target", () => {
    for (const type of ["result", "error"])
      assert.deepEqual(classify(view({ type }), ctx), {
        kind: "reply-in",
        replier: "user@example.org/abc",
        id: "1",
      });
    for (const over of [
      { type: "result", to: "proxy.example.org/t" },
      { type: "result", id: undefined },
      { type: "result", from: "impl@example.org/a" },
      { type: "result", from: "impl@example.org", to: "proxy.example.org/t" },
      { type: "error", from: "mallory@example.org/x", to: "proxy.example.org/t" },
    ]) {
      assert.equal(classify(view(over), ctx).kind, "drop", JSON.stringify(over));
    }
    // A message error is never answered: from the target it is dropped, from a requester maybe returned.
    assert.equal(
      classify(view({ name: "message", type: "error", from: "impl@example.org/a" }), ctx).kind,
      "drop",
    );
    assert.deepEqual(classify(view({ name: "message", type: "error" }), ctx), {
      kind: "message-bounce",
      requester: "user@example.org/abc",
      id: "1",
    });
    assert.equal(classify(view({ name: "message", type: "error", id: undefined }), ctx).kind, "drop");
  });

  it("forwards messages both ways; groupchat never", () => {
    for (const type of ["chat", "normal", "headline", undefined])
      assert.deepEqual(classify(view({ name: "message", type }), ctx), {
        kind: "message-in",
        requester: "user@example.org/abc",
        to: "proxy.example.org",
      });
    assert.deepEqual(classify(view({ name: "message", type: "groupchat" }), ctx), {
      kind: "drop",
      reason: "groupchat",
    });
    assert.deepEqual(
      classify(
        view({ name: "message", type: "chat", from: "impl@example.org/a", to: "proxy.example.org/j1.k.x.y" }),
        ctx,
      ),
      { kind: "message-out", token: "j1.k.x.y", resource: "a" },
    );
    assert.deepEqual(
      classify(
        view({ name: "message", type: "chat", from: "impl@example.org/a", to: "proxy.example.org" }),
        ctx,
      ),
      { kind: "reject", error: "messageFromTarget" },
    );
  });

  it("tracks the target's presence, and hands the service's presence requests on", () => {
    assert.deepEqual(classify(view({ name: "presence", type: undefined, from: "impl@example.org/a" }), ctx), {
      kind: "target-presence",
      type: "available",
      resource: "a",
    });
    assert.deepEqual(
      classify(view({ name: "presence", type: "unavailable", from: "impl@example.org" }), ctx),
      {
        kind: "target-presence",
        type: "unavailable",
        resource: "",
      },
    );
    for (const type of ["subscribe", "unsubscribe", "probe"] as const)
      assert.deepEqual(classify(view({ name: "presence", type, from: "user@example.org/x" }), ctx), {
        kind: "service-presence",
        type,
        from: "user@example.org/x",
      });
    assert.equal(classify(view({ name: "presence", type: "subscribed" }), ctx).kind, "drop");
    assert.equal(classify(view({ name: "presence", type: undefined }), ctx).kind, "drop");
    assert.equal(classify(view({ name: "presence", type: "error" }), ctx).kind, "drop");
  });

  it("drops stanzas without addresses or for another domain", () => {
    assert.equal(classify(view({ from: undefined }), ctx).kind, "drop");
    assert.equal(classify(view({ to: "other.example.org" }), ctx).kind, "drop");
  });
});
