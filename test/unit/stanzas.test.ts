import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "../../src/xmpp/stanzas.js";

describe("parse (a stored payload back into an element)", () => {
  it("gives back one element with its text, children and namespace", () => {
    const text = `<echo xmlns="urn:x">hi <b a="1">x</b> tail &amp; more</echo>`;
    assert.equal(parse(text)?.toString(), text);
    assert.equal(parse("<a/>")?.toString(), "<a/>");
  });

  it("refuses what is not exactly one well-formed element", () => {
    for (const text of ["", "<a><b>", "<a></b>", "not xml", "<a/><b/>", "<a/>trailing<b/>"])
      assert.equal(parse(text), null, JSON.stringify(text));
  });
});
