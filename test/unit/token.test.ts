import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeToken } from "../../src/index.js";
import { createJat, MAX_TOKEN_OCTETS } from "../../src/jat/token.js";

const key = (kid: string, fill: string) => ({ kid, secret: Buffer.from(fill.repeat(32)) });
const domain = "proxy.example.org";

describe("JAT token", () => {
  const jat = createJat({ domain, keys: [key("k1", "a")] });

  it("round-trips a requester and is readable without the key", () => {
    const requester = "user@example.org/phone";
    const token = jat.sign(requester);
    assert.ok(token);
    assert.match(
      token,
      /^j1\.k1\.[A-Za-z0-9_-]{22}\.user%40example\.org%2Fphone$/,
      "the requester, readable",
    );
    assert.equal(jat.verify(token), requester);
    assert.deepEqual(decodeToken(token), { version: "j1", kid: "k1", requester });
    assert.deepEqual(decodeToken(`${domain}/${token}`)?.requester, requester);
  });

  it("is printable ASCII even for a non-ASCII requester, with '/', '@', '.', '%' and spaces in the resource", () => {
    const requester = "jürgen@exämple.org/ホーム/with@at. 100% <&'\">";
    const token = jat.sign(requester);
    assert.ok(token);
    assert.match(token, /^[\x21-\x7e]+$/);
    assert.ok(
      token.endsWith(
        ".j%C3%BCrgen%40ex%C3%A4mple.org%2F%E3%83%9B%E3%83%BC%E3%83%A0%2Fwith%40at.%20100%25%20%3C%26%27%22%3E",
      ),
      token,
    );
    assert.equal(jat.verify(token), requester);
    assert.equal(decodeToken(token)?.requester, requester);
  });

  it("rejects forged, altered, truncated and oversized tokens", () => {
    const token = jat.sign("user@example.org/a") ?? "";
    const other = createJat({ domain, keys: [key("k1", "b")] });
    assert.equal(jat.verify(other.sign("user@example.org/a") ?? ""), null, "signed with another secret");
    const parts = token.split(".");
    const swapped = [parts[0], parts[1], parts[2], "admin%40example", "org%2Fx"].join(".");
    assert.equal(jat.verify(swapped), null, "requester replaced");
    assert.equal(jat.verify(`${token}x`), null, "requester extended");
    const [version, kid, mac] = parts;
    const rest = parts.slice(3).join(".");
    assert.equal(jat.verify(`${version}.${kid}.${mac?.slice(0, -1)}.${rest}`), null, "truncated mac");
    assert.equal(jat.verify(`${version}.${kid}.${mac}A.${rest}`), null, "extended mac");
    assert.equal(jat.verify(`${version}.${kid}.${mac}.user@example.org/a`), null, "@ and / not escaped");
    assert.equal(jat.verify(`${version}.${kid}.${mac}.%E3%83`), null, "escapes that are not UTF-8");
    assert.equal(jat.verify("j1.k1.AAAA.".padEnd(5000, "A")), null, "oversized");
    assert.equal(jat.verify(""), null);
    assert.equal(jat.verify("not a token"), null);
    assert.equal(jat.verify(token.replace("j1.", "j2.")), null, "unknown version");
    assert.equal(jat.verify(token.replace(".k1.", ".k9.")), null, "unknown key id");
  });

  it("remembers valid MACs only: a forged MAC fails before and after the genuine token was verified", () => {
    const signer = createJat({ domain, keys: [key("k1", "a")] });
    const verifier = createJat({ domain, keys: [key("k1", "a")], cacheSize: 2 });
    const requesters = ["a@example.org/1", "b@example.org/2", "c@example.org/3"];
    for (const requester of requesters) {
      const token = signer.sign(requester) ?? "";
      const [version, kid, mac = "", ...rest] = token.split(".");
      const forged = [version, kid, `${mac[0] === "A" ? "B" : "A"}${mac.slice(1)}`, ...rest].join(".");
      assert.equal(verifier.verify(forged), null, "forged, nothing remembered yet");
      assert.equal(verifier.verify(token), requester);
      assert.equal(verifier.verify(forged), null, "forged, the genuine MAC remembered");
      assert.equal(verifier.verify(token), requester);
    }
    // The first requester's MAC was evicted (cacheSize 2): computed again.
    assert.equal(verifier.verify(signer.sign(requesters[0] ?? "") ?? ""), requesters[0]);
  });

  it("accepts only the canonical MAC: the variants of its last character that decode alike are refused", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (const verifier of [jat, createJat({ domain, keys: [key("k1", "a")] })]) {
      const token = jat.sign("user@example.org/desk") ?? "";
      const [version, kid, mac = "", ...rest] = token.split(".");
      const variants = [...alphabet]
        .map((last) => `${mac.slice(0, 21)}${last}`)
        .filter(
          (variant) =>
            variant !== mac && Buffer.from(variant, "base64url").equals(Buffer.from(mac, "base64url")),
        );
      assert.equal(variants.length, 15, "a lenient decoder reads 16 spellings of the last character alike");
      for (const variant of variants) {
        assert.equal(verifier.verify([version, kid, variant, ...rest].join(".")), null, variant);
      }
      assert.equal(verifier.verify(token), "user@example.org/desk");
    }
  });

  it("binds the token to the proxy domain", () => {
    const elsewhere = createJat({ domain: "other.example.org", keys: [key("k1", "a")] });
    assert.equal(jat.verify(elsewhere.sign("user@example.org/a") ?? ""), null);
  });

  it("rotates keys: the first signs, every listed key verifies", () => {
    const old = createJat({ domain, keys: [key("old", "o")] });
    const rotated = createJat({ domain, keys: [key("new", "n"), key("old", "o")] });
    const oldToken = old.sign("user@example.org/a") ?? "";
    assert.equal(rotated.verify(oldToken), "user@example.org/a");
    const newToken = rotated.sign("user@example.org/a") ?? "";
    assert.equal(decodeToken(newToken)?.kid, "new");
    assert.equal(old.verify(newToken), null);
  });

  it("refuses requesters too long for a resourcepart and never makes an oversized token", () => {
    const fits = `u@example.org/${"r".repeat(jat.maxRequesterOctets - 18)}`; // 2 escapes of 3 octets
    const token = jat.sign(fits);
    assert.ok(token);
    assert.ok(Buffer.byteLength(token) <= MAX_TOKEN_OCTETS);
    assert.equal(jat.verify(token), fits);
    assert.equal(jat.sign(`${fits}x`), null);
    assert.equal(jat.sign(`u@example.org/${"é".repeat(600)}`), null, "1,800 octets once escaped");
    assert.ok(jat.sign(`u@example.org/${"é".repeat(150)}`), "900 octets once escaped");
  });

  it("decodeToken rejects what is not a token", () => {
    assert.equal(decodeToken("proxy.example.org"), null);
    assert.equal(decodeToken("proxy.example.org/plain-resource"), null);
    assert.equal(decodeToken(`j1.k1.${"A".repeat(22)}.${"a".repeat(2000)}`), null, "oversized");
    assert.equal(decodeToken(`j1.k1.${"A".repeat(21)}.user%40example.org`), null, "short mac");
    assert.equal(decodeToken(`j1.k1.${"A".repeat(22)}.user%40example.org%ZZ`), null, "malformed escape");
    assert.equal(
      decodeToken(`j1.k1.${"A".repeat(22)}.user%40example.org%2F a`),
      null,
      "a space, not escaped",
    );
    assert.equal(decodeToken(`j1.k1.${"A".repeat(22)}.user@example.org`), null, "@ not escaped");
  });
});
