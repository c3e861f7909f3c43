import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Element } from "@xmpp/xml";
import { viewOf } from "../../src/proxy/inbound.js";
import { detach } from "../../src/util/detach.js";
import { parse } from "../../src/xmpp/stanzas.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const heapMb = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

/** What 500 stanzas, each read in a chunk of 60 KB with other traffic, leave on the heap when one keeps `keep`. */
function retained(keep: (stanza: Element) => string): number {
  const kept: string[] = [];
  const before = heapMb();
  for (let i = 0; i < 500; i++) {
    const chunk = `<iq from="requester-${i}@example.org/phone-abcdef" id="request-${i}-0123456789" to="proxy.example.org" type="get"><q xmlns="urn:example">${"x".repeat(60_000)}</q></iq>`;
    const element = parse(chunk);
    assert.ok(element, chunk);
    kept.push(keep(element));
  }
  const grown = heapMb() - before;
  assert.equal(kept.length, 500);
  return grown;
}

describe("detach", () => {
  it("keeps a copy of an attribute, not the parser's chunk it was cut from", () => {
    const sliced = retained(({ attrs }) => `${attrs.from}\n${attrs.id}`);
    const detached = retained(({ attrs }) => `${detach(attrs.from)}\n${detach(attrs.id)}`);
    assert.ok(sliced > 20, `keeping slices retains the chunks (${sliced.toFixed(1)} MB for 500 x 60 KB)`);
    assert.ok(detached < 2, `keeping copies does not (${detached.toFixed(1)} MB)`);
    assert.equal(detach(undefined), undefined);
  });

  it("is what the inbound view holds: the addresses and ids the proxy keeps", () => {
    const viewed = retained((stanza) => {
      const view = viewOf(stanza);
      return `${view.from}\n${view.id}\n${view.to}`;
    });
    assert.ok(viewed < 2, `${viewed.toFixed(1)} MB`);
  });
});
