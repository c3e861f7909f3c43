import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import xml, { type Element } from "@xmpp/xml";
import {
  CAPS_NS,
  capsHash,
  capsOf,
  DISCO_INFO_NS,
  discoInfoOf,
  verFor,
  verify,
  verString,
} from "../../src/xmpp/caps.js";
import { parse } from "../../src/xmpp/stanzas.js";

const P = "http://jabber.org/protocol/";
const FEATURES = [`${P}caps`, `${P}disco#info`, `${P}disco#items`, `${P}muc`];
const FEATURES_S = FEATURES.map((f) => `${f}<`).join("");

const query = (...children: Element[]) => xml("query", { xmlns: DISCO_INFO_NS }, ...children);
const feature = (v: string) => xml("feature", { var: v });
const field = (v: string, values: string[], type?: string) =>
  xml("field", { var: v, type }, ...values.map((value) => xml("value", {}, value)));
const form = (formType: string, ...fields: Element[]) =>
  xml("x", { xmlns: "jabber:x:data", type: "result" }, field("FORM_TYPE", [formType], "hidden"), ...fields);
const presence = (attrs: Record<string, string | undefined>) =>
  xml("presence", {}, xml("c", { xmlns: CAPS_NS, ...attrs }));

// XEP-0115 section 5.2, features given out of order on purpose.
const exodus = () =>
  query(
    xml("identity", { category: "client", type: "pc", name: "Exodus 0.9.1" }),
    ...[FEATURES[3], FEATURES[1], FEATURES[0], FEATURES[2]].map((f) => feature(f ?? "")),
  );

// XEP-0115 section 5.3, as the XEP prints it.
const PSI = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version' type='text-multi' ><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`;
const PSI_S =
  `client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<${FEATURES_S}urn:xmpp:dataforms:softwareinfo<` +
  "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<";
const psi = () => {
  const element = parse(PSI);
  assert.ok(element);
  return element;
};

describe("verification string (XEP-0115 section 5)", () => {
  it("matches the simple generation example (5.2)", () => {
    assert.equal(verString(exodus()), `client/pc//Exodus 0.9.1<${FEATURES_S}`);
    const caps = {
      hash: "sha-1",
      node: "http://code.google.com/p/exodus",
      ver: "QgayPKawpkPSDYmwT/WM94uAlu0=",
    };
    assert.ok(verify(caps, exodus()));
    assert.ok(!verify({ ...caps, ver: "QgayPKawpkPSDYmwT/WM94uAlu1=" }, exodus()));
    assert.ok(!verify({ ...caps, hash: "md5" }, exodus()), "an unsupported hash is never verified");
  });

  it("matches the complex generation example (5.3), forms and languages included", () => {
    assert.equal(verString(psi()), PSI_S);
    assert.equal(capsHash("sha-1", PSI_S), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    assert.ok(
      verify({ hash: "sha-1", node: "http://psi-im.org", ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=" }, psi()),
    );
  });

  it("refuses an ill-formed result (5.4 step 3)", () => {
    const id = () => xml("identity", { category: "client", type: "pc", name: "A" });
    assert.equal(verString(query(id(), feature("a"), feature("b"), feature("a"))), null, "repeated feature");
    assert.equal(verString(query(id(), id(), feature("a"))), null, "repeated identity");
    assert.equal(
      verString(query(form("urn:t", field("a", ["1"])), form("urn:t"))),
      null,
      "repeated FORM_TYPE",
    );
    const twoTypes = xml(
      "x",
      { xmlns: "jabber:x:data", type: "result" },
      field("FORM_TYPE", ["urn:a", "urn:b"], "hidden"),
    );
    assert.equal(verString(query(twoTypes)), null, "FORM_TYPE with two values");
    const sameTwice = xml(
      "x",
      { xmlns: "jabber:x:data", type: "result" },
      field("FORM_TYPE", ["urn:a", "urn:a"], "hidden"),
    );
    assert.equal(verString(query(sameTwice)), "urn:a<", "one value repeated is fine");
    const other = xml("identity", { category: "client", type: "pc", "xml:lang": "en", name: "A" });
    assert.equal(
      verString(query(id(), other)),
      "client/pc//A<client/pc/en/A<",
      "another lang is another identity",
    );
  });

  it("ignores forms without a hidden FORM_TYPE (5.4 step 3.6), without refusing the result", () => {
    const noFormType = xml("x", { xmlns: "jabber:x:data", type: "result" }, field("a", ["1"]));
    const notHidden = xml(
      "x",
      { xmlns: "jabber:x:data", type: "result" },
      field("FORM_TYPE", ["urn:t"], "text-single"),
    );
    const untyped = xml("x", { xmlns: "jabber:x:data", type: "result" }, field("FORM_TYPE", ["urn:t"]));
    assert.equal(verString(query(feature("f"), noFormType, notHidden, untyped, form("urn:t"))), "f<urn:t<");
  });

  it("sorts by UTF-8 bytes (i;octet), not by locale or UTF-16 code units", () => {
    assert.equal(verString(query(feature("é"), feature("a"), feature("B"))), "B<a<é<");
    assert.equal(verString(query(feature("\u{10000}"), feature("\ufffd"))), "\ufffd<\u{10000}<");
    const ids = [
      ["a-b", "x"],
      ["a", "y"],
      ["a", "x"],
    ].map(([category, type]) => xml("identity", { category, type }));
    assert.equal(
      verString(query(...ids)),
      "a/x//<a/y//<a-b/x//<",
      "category, then type: not the joined string",
    );
    const fields = form("urn:t", field("b", ["2", "10"]), field("a", ["z"]));
    assert.equal(verString(query(fields)), "urn:t<a<z<b<10<2<");
    const forms = [form("urn:b"), form("urn:B"), form("urn:a")];
    assert.equal(verString(query(...forms)), "urn:B<urn:a<urn:b<");
  });
});

describe("capsHash and verFor", () => {
  it("give base64 digests of the UTF-8 bytes", () => {
    const digest = (algo: string) => createHash(algo).update(Buffer.from("é<", "utf8")).digest("base64");
    assert.equal(capsHash("sha-1", "é<"), digest("sha1"));
    assert.equal(capsHash("sha-256", "é<"), digest("sha256"));
    assert.equal(capsHash("sha-512", "é<"), digest("sha512"));
  });

  it("announce a ver that verifies against the same info, with sha-256 too", () => {
    const info = discoInfoOf(exodus());
    assert.equal(verFor(info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    const ver = verFor(info, "sha-256");
    assert.equal(ver, capsHash("sha-256", `client/pc//Exodus 0.9.1<${FEATURES_S}`));
    assert.ok(verify({ hash: "sha-256", node: "n", ver }, exodus()));
    assert.ok(!verify({ hash: "sha-1", node: "n", ver }, exodus()));
    assert.throws(() => verFor({ identities: [], features: ["a", "a"] }), RangeError);
  });
});

describe("discoInfoOf", () => {
  it("gives the identities and features, leaving out features with control characters", () => {
    assert.deepEqual(discoInfoOf(psi()), {
      identities: [
        { category: "client", type: "pc", lang: "en", name: "Psi 0.11" },
        { category: "client", type: "pc", lang: "el", name: "\u03a8 0.11" },
      ],
      features: FEATURES,
    });
    const info = discoInfoOf(
      query(xml("identity", { category: "c", type: "t" }), feature("a\u0001"), feature("b")),
    );
    assert.deepEqual(info, { identities: [{ category: "c", type: "t" }], features: ["b"] });
  });
});

describe("capsOf", () => {
  const good = { hash: "sha-1", node: "http://psi-im.org", ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=" };

  it("reads the caps of a presence", () => {
    assert.deepEqual(capsOf(presence({ ...good, ext: "legacy" })), good);
    assert.deepEqual(capsOf(presence({ ...good, hash: "sha-512" })), { ...good, hash: "sha-512" });
  });

  it("gives null without caps, for legacy or unsupported hashes, or bad lengths", () => {
    assert.equal(capsOf(xml("presence")), null);
    assert.equal(
      capsOf(xml("presence", {}, xml("c", { xmlns: "urn:other", ...good }))),
      null,
      "other namespace",
    );
    assert.equal(capsOf(presence({ ...good, hash: undefined })), null, "legacy: no hash");
    for (const hash of ["md5", "SHA-1", "sha1", ""])
      assert.equal(capsOf(presence({ ...good, hash })), null, hash);
    assert.equal(capsOf(presence({ ...good, ver: "" })), null);
    assert.equal(capsOf(presence({ ...good, ver: undefined })), null);
    assert.ok(capsOf(presence({ ...good, ver: "v".repeat(128) })));
    assert.equal(capsOf(presence({ ...good, ver: "v".repeat(129) })), null);
    assert.ok(capsOf(presence({ ...good, node: "n".repeat(1024) })));
    assert.equal(capsOf(presence({ ...good, node: "n".repeat(1025) })), null);
    assert.equal(capsOf(presence({ ...good, node: undefined })), null);
  });
});
