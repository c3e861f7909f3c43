/**
 * test/vectors/token.json, the token test vectors that any implementation can test itself against, checked two
 * ways: against the implementation (it makes exactly each token, and verifies, reads or rejects each as listed)
 * and against the format as the README states it, written here again from that text alone. A change of the
 * format fails here until the vectors are made again (scripts/token-vectors.ts) and the README says so.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { decodeToken } from "../../src/index.js";
import { createJat, MAX_TOKEN_OCTETS, TOKEN_VERSION } from "../../src/jat/token.js";

interface Vectors {
  version: string;
  domain: string;
  keys: { kid: string; secret: string; maxRequesterOctets: number }[];
  accepted: { name: string; kid: string; requester: string; token: string }[];
  unsignable: { name: string; kid: string; requester: string }[];
  rejected: { name: string; reason: string; token: string; macValid?: boolean; requester: string | null }[];
}

const vectors = JSON.parse(
  readFileSync(new URL("../vectors/token.json", import.meta.url), "utf8"),
) as Vectors;
const { domain, keys } = vectors;
const keyInputs = keys.map(({ kid, secret }) => ({ kid, secret: Buffer.from(secret, "utf8") }));
/** A proxy configured with every key of the file, the one named first: it signs. */
const proxy = (kid: string) => {
  const first = keyInputs.filter((key) => key.kid === kid);
  assert.equal(first.length, 1, `the file has key ${kid}`);
  return createJat({ domain, keys: [...first, ...keyInputs.filter((key) => key.kid !== kid)] });
};
const fresh = () => createJat({ domain, keys: keyInputs });

/** The README's escaping: each UTF-8 octet outside 0x21-0x7E, and each of "%&'/<>@, as `%` and 2 upper-case hex digits. */
const escapeAsReadme = (requester: string) =>
  [...Buffer.from(requester, "utf8")]
    .map((octet) => {
      const char = String.fromCharCode(octet);
      const kept = octet >= 0x21 && octet <= 0x7e && !`"%&'/<>@`.includes(char);
      return kept ? char : `%${octet.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
/** The README's MAC: HMAC-SHA256(secret, `<domain>\nj1.<kid>.<requester part>`), 16 octets, base64url unpadded. */
const macAsReadme = (secret: string, kid: string, part: string) =>
  createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(Buffer.from(`${domain}\n${TOKEN_VERSION}.${kid}.${part}`, "utf8"))
    .digest()
    .subarray(0, 16)
    .toString("base64url");

describe("token test vectors (test/vectors/token.json)", () => {
  it("are for this format and have cases of every kind", () => {
    assert.equal(vectors.version, TOKEN_VERSION);
    assert.ok(keys.length >= 2, "a key to sign and one from before a rotation");
    assert.ok(vectors.accepted.length >= 15);
    assert.ok(new Set(vectors.accepted.map(({ kid }) => kid)).size >= 2, "tokens of every key");
    assert.ok(vectors.unsignable.length >= 1);
    const reasons = new Set(vectors.rejected.map(({ reason }) => reason));
    assert.deepEqual([...reasons].sort(), ["escape", "format", "kid", "length", "mac"]);
  });

  it("give each key's longest requester part: 1023 octets less the token's other parts", () => {
    for (const { kid, maxRequesterOctets } of keys) {
      assert.equal(proxy(kid).maxRequesterOctets, maxRequesterOctets, kid);
      assert.equal(maxRequesterOctets, MAX_TOKEN_OCTETS - `j1.${kid}.${"M".repeat(22)}.`.length, kid);
    }
  });

  it("accepted: the implementation signs each requester into exactly the token, and verifies and reads it", () => {
    const verifier = fresh();
    for (const { name, kid, requester, token } of vectors.accepted) {
      assert.equal(proxy(kid).sign(requester), token, name);
      assert.equal(verifier.verify(token), requester, name);
      assert.deepEqual(decodeToken(token), { version: TOKEN_VERSION, kid, requester }, name);
      assert.equal(decodeToken(`${domain}/${token}`)?.requester, requester, name);
    }
  });

  it("accepted: each token is the README's format, computed here from the README alone", () => {
    for (const { name, kid, requester, token } of vectors.accepted) {
      const secret = keys.find((key) => key.kid === kid)?.secret ?? "";
      const part = escapeAsReadme(requester);
      assert.equal(token, `j1.${kid}.${macAsReadme(secret, kid, part)}.${part}`, name);
      assert.match(token, /^[\x21-\x7e]+$/, name);
      assert.ok(token.length <= MAX_TOKEN_OCTETS, name);
    }
  });

  it("unsignable: the implementation makes no token of a requester that does not fit", () => {
    for (const { name, kid, requester } of vectors.unsignable) {
      const max = keys.find((key) => key.kid === kid)?.maxRequesterOctets ?? 0;
      assert.ok(escapeAsReadme(requester).length > max, `${name}: too long by the README`);
      assert.equal(proxy(kid).sign(requester), null, name);
    }
  });

  it("rejected: the implementation verifies none, before and after verifying every accepted token", () => {
    const verifier = fresh();
    for (const { name, token } of vectors.rejected) assert.equal(verifier.verify(token), null, name);
    for (const { token } of vectors.accepted) assert.ok(verifier.verify(token));
    for (const { name, token } of vectors.rejected) assert.equal(verifier.verify(token), null, name);
  });

  it("rejected: reading without a key gives the listed requester, none when the token is not well-formed", () => {
    for (const { name, reason, token, requester } of vectors.rejected) {
      assert.equal(decodeToken(token)?.requester ?? null, requester, name);
      const wellFormed = reason === "mac" || reason === "kid";
      assert.equal(requester !== null, wellFormed, `${name}: ${reason}`);
    }
  });

  it("rejected: a token listed with macValid has the right MAC for its text, so only the text rejects it", () => {
    const withValidMac = vectors.rejected.filter(({ macValid }) => macValid);
    assert.ok(withValidMac.length >= 5);
    for (const { name, token } of withValidMac) {
      const [version, kid = "", mac, ...rest] = token.split(".");
      const secret = keys.find((key) => key.kid === kid)?.secret;
      assert.equal(version, TOKEN_VERSION, name);
      assert.ok(secret, name);
      assert.equal(mac, macAsReadme(secret, kid, rest.join(".")), name);
    }
  });
});
