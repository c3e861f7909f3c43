/**
 * Writes test/vectors/token.json, the JAT token test vectors, with the implementation itself:
 * `node --import tsx scripts/token-vectors.ts && npx biome format --write test/vectors/token.json`.
 * Run it once per change of the token format, on purpose: test/unit/token-vectors.test.ts checks the committed
 * file against the implementation, so a change of the format that nobody meant fails there.
 */
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createJat, decodeToken, type JatKeyInput } from "../src/jat/token.js";

const domain = "proxy.example.org";
const keys = [
  { kid: "k1", secret: "0123456789abcdef0123456789abcdef" },
  { kid: "2024-12_previous", secret: "an older key that still verifies tokens" },
];
const input = (key: { kid: string; secret: string }): JatKeyInput => ({
  kid: key.kid,
  secret: Buffer.from(key.secret, "utf8"),
});
const [k1, previous] = keys.map(input) as [JatKeyInput, JatKeyInput];
/** Signs with the named key first, as a proxy configured with it first does. */
const signer = (key: JatKeyInput) => createJat({ domain, keys: [key, ...keys.map(input)] });
const verifier = createJat({ domain, keys: keys.map(input) });

/** The MAC of any text, well-formed or not, as the README defines it: for tokens the proxy would never make. */
const macOf = (key: JatKeyInput, signed: string, forDomain = domain) =>
  createHmac("sha256", key.secret)
    .update(`${forDomain}\n${signed}`, "utf8")
    .digest()
    .subarray(0, 16)
    .toString("base64url");
const craft = (key: JatKeyInput, part: string) =>
  `j1.${key.kid}.${macOf(key, `j1.${key.kid}.${part}`)}.${part}`;

/** `u@example.org/` (18 octets once escaped) and count times char. */
const long = (char: string, count: number) => `u@example.org/${char.repeat(count)}`;
const printable = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).join("");
type Case = [kid: string, name: string, requester: string];
const accepted: Case[] = [
  ["k1", "plain ASCII", "user@example.org/phone"],
  ["k1", "bare JID, no resource", "user@example.org"],
  ["k1", "a domain alone (a server asking): nothing to escape", "example.org"],
  [
    "k1",
    "dots in every part: the requester part is all after the third dot",
    "first.last@chat.example.org/v1.2.3",
  ],
  ["k1", "spaces in the resource: 0x20 is escaped", "user@example.org/My Laptop (home)"],
  ["k1", "case is kept as given: no case folding", "User@Example.ORG/PhOnE"],
  ["k1", "'/' and '@' in the resource", "user@example.org/a/b@c"],
  ["k1", "'%' in the resource", "user@example.org/100%"],
  ["k1", "what looks like an escape in the resource: its '%' is escaped", "user@example.org/%41%2F"],
  ["k1", "XML specials", `user@example.org/"&'<>`],
  ["k1", "every printable ASCII character, 0x20 to 0x7E, in the resource", `user@example.org/${printable}`],
  ["k1", "non-ASCII localpart: 2-octet UTF-8", "jürgen@example.org/desk"],
  ["k1", "non-ASCII in every part: 3-octet UTF-8", "ユーザー@例え.jp/ホーム"],
  ["k1", "outside the BMP: 4-octet UTF-8", "user@example.org/🙂 phone"],
  ["k1", "no Unicode normalization: e and U+0301 stay two characters", "user@example.org/Zoe\u0301"],
  ["k1", "control characters (not in a valid JID; escaped like any octet)", "user@example.org/a\tb\u007f"],
  ["k1", "the longest requester part with kid k1: 994 octets, a 1023-octet token", long("r", 994 - 18)],
  [
    "k1",
    "the longest with escapes: 162 times é (6 octets each once escaped) and 4 more",
    `${long("é", 162)}abcd`,
  ],
  [
    previous.kid,
    "key rotation: signed with the second key, verified when both are configured",
    "user@example.org/phone",
  ],
  [previous.kid, "the longest requester part with a 16-character kid: 980 octets", long("r", 980 - 18)],
];
const unsignable: Case[] = [
  ["k1", "one octet over the limit with kid k1", long("r", 995 - 18)],
  ["k1", "163 times é: 996 octets once escaped", long("é", 163)],
  [previous.kid, "one octet over the limit with a 16-character kid", long("r", 981 - 18)],
];

const sign = (kid: string, requester: string) => {
  const key = kid === k1.kid ? k1 : previous;
  return signer(key).sign(requester);
};
const plain = sign("k1", "user@example.org/phone") ?? "";
const [, , mac = ""] = plain.split(".");
const part = "user%40example.org%2Fphone";
const withMac = (other: string) => `j1.k1.${other}.${part}`;
/** The other spellings of the last character that a lenient base64 decoder reads as the same 2 bits. */
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const variants = [...alphabet]
  .map((last) => `${mac.slice(0, 21)}${last}`)
  .filter((v) => v !== mac && Buffer.from(v, "base64url").equals(Buffer.from(mac, "base64url")));
const changed = `${mac.slice(0, 10)}${mac[10] === "A" ? "B" : "A"}${mac.slice(11)}`;
// A token of the list whose MAC has '-' or '_', to write it in the standard base64 alphabet.
const urlMac = accepted
  .map(([kid, , requester]) => sign(kid, requester) ?? "")
  .find((token) => token.startsWith("j1.k1.") && /[-_]/.test(token.split(".")[2] ?? ""));
if (!urlMac) throw new Error("no MAC with '-' or '_' among the accepted tokens");
const [, , urlMacMac = "", ...urlMacRest] = urlMac.split(".");
const rejected: { name: string; reason: string; token: string; macValid?: boolean }[] = [
  { name: "empty", reason: "format", token: "" },
  { name: "not a token", reason: "format", token: "not a token" },
  { name: "an ordinary resource", reason: "format", token: "phone" },
  { name: "unknown version j2", reason: "format", token: plain.replace(/^j1/, "j2") },
  { name: "version in upper case", reason: "format", token: plain.replace(/^j1/, "J1") },
  { name: "no requester part", reason: "format", token: `j1.k1.${mac}` },
  { name: "empty requester part", reason: "format", token: `j1.k1.${mac}.` },
  { name: "kid of 17 characters", reason: "format", token: `j1.k1234567890abcdefg.${mac}.${part}` },
  { name: "MAC of 21 characters", reason: "format", token: withMac(mac.slice(0, 21)) },
  { name: "MAC of 23 characters", reason: "format", token: withMac(`${mac}A`) },
  { name: "MAC with base64 padding", reason: "format", token: withMac(`${mac}==`) },
  {
    name: "MAC in the standard base64 alphabet ('+' and '/' for '-' and '_')",
    reason: "format",
    token: ["j1", "k1", urlMacMac.replaceAll("-", "+").replaceAll("_", "/"), ...urlMacRest].join("."),
  },
  { name: "token cut inside the MAC", reason: "format", token: plain.slice(0, 20) },
  {
    name: "'@' and '/' not escaped (the genuine MAC)",
    reason: "format",
    token: `j1.k1.${mac}.user@example.org/phone`,
  },
  { name: "space not escaped", reason: "format", token: `j1.k1.${mac}.user%40example.org%2FMy Laptop` },
  { name: "'<' not escaped", reason: "format", token: `j1.k1.${mac}.user%40example.org%2F<` },
  { name: "non-ASCII not escaped", reason: "format", token: `j1.k1.${mac}.j\u00fcrgen%40example.org` },
  { name: "one MAC character changed", reason: "mac", token: withMac(changed) },
  ...variants.slice(0, 3).map((variant) => ({
    name: `non-canonical MAC: last character ${variant.slice(-1)} for ${mac.slice(-1)}, the same 128 bits to a lenient decoder`,
    reason: "mac",
    token: withMac(variant),
  })),
  { name: "MAC in lower case", reason: "mac", token: withMac(mac.toLowerCase()) },
  { name: "requester changed", reason: "mac", token: plain.replace(/phone$/, "phonf") },
  { name: "requester extended", reason: "mac", token: `${plain}x` },
  { name: "requester truncated", reason: "mac", token: plain.slice(0, -1) },
  { name: "requester in another case", reason: "mac", token: plain.replace(".user%40", ".User%40") },
  {
    name: "escapes in lower-case hex (and the MAC of the upper-case spelling)",
    reason: "escape",
    token: plain.replace("%2F", "%2f"),
  },
  {
    name: "kid replaced by the other configured kid",
    reason: "mac",
    token: plain.replace(".k1.", `.${previous.kid}.`),
  },
  {
    name: "known kid, another secret",
    reason: "mac",
    token: craft({ kid: "k1", secret: Buffer.from("another secret that is 32 octets") }, part),
  },
  {
    name: "signed for another domain",
    reason: "mac",
    token: `j1.k1.${macOf(k1, `j1.k1.${part}`, "other.example.org")}.${part}`,
  },
  { name: "unknown kid", reason: "kid", token: craft({ kid: "k9", secret: k1.secret }, part) },
  {
    name: "a lone '%' at the end, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%"),
    macValid: true,
  },
  {
    name: "one hex digit after '%', with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%4"),
    macValid: true,
  },
  {
    name: "'%' and no hex digits, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%ZZ"),
    macValid: true,
  },
  {
    name: "UTF-8 cut short, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%2F%E3%83"),
    macValid: true,
  },
  {
    name: "overlong UTF-8, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%C0%AF"),
    macValid: true,
  },
  {
    name: "a UTF-16 surrogate in UTF-8, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%2F%ED%A0%80"),
    macValid: true,
  },
  {
    name: "an octet never in UTF-8, with a valid MAC",
    reason: "escape",
    token: craft(k1, "user%40example.org%2F%FF"),
    macValid: true,
  },
  {
    name: "an escape in lower-case hex, with a valid MAC: one spelling per requester",
    reason: "escape",
    token: craft(k1, "user%40example.org%2fphone"),
    macValid: true,
  },
  {
    name: "an octet escaped that stands as it is ('A' as %41), with a valid MAC: one spelling per requester",
    reason: "escape",
    token: craft(k1, "user%40example.org%2F%41"),
    macValid: true,
  },
  {
    name: "1024 octets, one over a resourcepart, with a valid MAC",
    reason: "length",
    token: craft(k1, `u%40example.org%2F${"r".repeat(995 - 18)}`),
    macValid: true,
  },
];

const file = {
  notes: [
    "Test vectors for xmpp-client-proxy tokens (format j1): made by scripts/token-vectors.ts, checked by test/unit/token-vectors.test.ts; the format is in README.md, section 'For implementing-client authors: the token'.",
    "keys: the HMAC key is the UTF-8 octets of secret, as JAT_KEYS gives it. All keys are configured at once; the one named by kid signs. maxRequesterOctets: the longest requester part (after the third '.') that fits a token signed with that key.",
    "accepted: signing requester with the key kid gives token, exactly; verifying token gives requester; so does reading it without a key.",
    "unsignable: the requester does not fit in a token signed with the key kid (the proxy answers not-acceptable).",
    "rejected: verifying token with all keys fails. reason: format (not the grammar), mac (not the MAC of the text), kid (no such key), escape (a %XX escape or the UTF-8 it spells is malformed, or the escapes are not the one spelling the proxy writes: upper-case hex, only the octets that must be escaped), length (over 1023 octets). macValid: the MAC is right for the text, rejected all the same. requester: what reading it without a key gives, null when it is not well-formed.",
  ],
  version: "j1",
  domain,
  keys: keys.map((key) => ({ ...key, maxRequesterOctets: signer(input(key)).maxRequesterOctets })),
  accepted: accepted.map(([kid, name, requester]) => {
    const token = sign(kid, requester);
    if (token === null || verifier.verify(token) !== requester) throw new Error(`not accepted: ${name}`);
    return { name, kid, requester, token };
  }),
  unsignable: unsignable.map(([kid, name, requester]) => {
    if (sign(kid, requester) !== null) throw new Error(`signed: ${name}`);
    return { name, kid, requester };
  }),
  rejected: rejected.map(({ name, reason, token, macValid }) => {
    if (verifier.verify(token) !== null) throw new Error(`not rejected: ${name}`);
    return {
      name,
      reason,
      token,
      ...(macValid ? { macValid } : {}),
      requester: decodeToken(token)?.requester ?? null,
    };
  }),
};
writeFileSync(new URL("../test/vectors/token.json", import.meta.url), `${JSON.stringify(file, null, 2)}\n`);
