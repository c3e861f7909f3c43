/**
 * Entity capabilities (XEP-0115 1.6): the <c/> annotation of a presence (section 4), the verification string
 * built from a disco#info result (section 5.1, generation method) and its checks (section 5.4, processing
 * method), with XEP-0128 extended forms. Only 'hash'-bearing caps are handled; the legacy format (section 8)
 * is not. Every sort uses "i;octet" collation (RFC 4790 section 9.3): UTF-8 bytes, never locale order.
 */

import { createHash } from "node:crypto";
import type { Element } from "@xmpp/xml";

export const CAPS_NS = "http://jabber.org/protocol/caps";
export const DISCO_INFO_NS = "http://jabber.org/protocol/disco#info";
const DATA_FORMS_NS = "jabber:x:data";

/** Hash algorithms supported, by their IANA Hash Function Textual Names (section 5.1 step 9, section 11.1). */
export type CapsHashAlgo = "sha-1" | "sha-256" | "sha-512";
const DIGESTS: Record<CapsHashAlgo, string> = { "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512" };
const isSupported = (hash: string): hash is CapsHashAlgo => Object.hasOwn(DIGESTS, hash);

const MAX_VER = 128;
const MAX_NODE = 1024;

export interface Caps {
  hash: string;
  node: string;
  ver: string;
}

export interface Identity {
  category: string;
  type: string;
  lang?: string;
  name?: string;
}

export interface DiscoInfo {
  identities: Identity[];
  features: string[];
}

interface Form {
  formType: string;
  fields: { var: string; values: string[] }[];
}

/**
 * The caps annotation of a presence; null when there is none, when it has no 'hash' (legacy format, section
 * 5.4 step 1) or an unsupported one (step 2: not verifiable, not globally cacheable), or when 'ver' is empty
 * or longer than 128 characters, or 'node' (REQUIRED, section 4) is absent or longer than 1024.
 */
export function capsOf(presence: Element): Caps | null {
  const c = presence.getChild("c", CAPS_NS);
  if (c === undefined) return null;
  const { hash, node, ver } = c.attrs;
  if (hash === undefined || !isSupported(hash)) return null;
  if (ver === undefined || ver === "" || ver.length > MAX_VER) return null;
  if (node === undefined || node.length > MAX_NODE) return null;
  return { hash, node, ver };
}

/** "i;octet" collation: compares the UTF-8 bytes (UTF-16 code unit order differs above U+FFFF). */
const octets = (a: string, b: string): number =>
  Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/** Identities by category, then type, then xml:lang (section 5.1 step 2); the name only breaks remaining ties. */
const byIdentity = (a: Identity, b: Identity): number =>
  octets(a.category, b.category) ||
  octets(a.type, b.type) ||
  octets(a.lang ?? "", b.lang ?? "") ||
  octets(a.name ?? "", b.name ?? "");

const identityString = (i: Identity): string => `${i.category}/${i.type}/${i.lang ?? ""}/${i.name ?? ""}`;

const hasDuplicates = (items: string[]): boolean => new Set(items).size !== items.length;

/** S of section 5.1, or null when the data is ill-formed by section 5.4 steps 3.3-3.5 (duplicates). */
function serialize(identities: Identity[], features: string[], forms: Form[]): string | null {
  if (hasDuplicates(identities.map(identityString))) return null;
  if (hasDuplicates(features)) return null;
  if (hasDuplicates(forms.map((form) => form.formType))) return null;
  let s = "";
  for (const identity of [...identities].sort(byIdentity)) s += `${identityString(identity)}<`;
  for (const feature of [...features].sort(octets)) s += `${feature}<`;
  for (const form of [...forms].sort((a, b) => octets(a.formType, b.formType))) {
    s += `${form.formType}<`;
    for (const field of [...form.fields].sort((a, b) => octets(a.var, b.var))) {
      s += `${field.var}<`;
      for (const value of [...field.values].sort(octets)) s += `${value}<`;
    }
  }
  return s;
}

function identitiesOf(query: Element): Identity[] {
  return query.getChildren("identity").map((element) => {
    const { category = "", type = "", name } = element.attrs;
    const lang = element.attrs["xml:lang"];
    return {
      category,
      type,
      ...(lang === undefined ? {} : { lang }),
      ...(name === undefined ? {} : { name }),
    };
  });
}

const featuresOf = (query: Element): string[] =>
  query
    .getChildren("feature")
    .flatMap((element) => (element.attrs.var === undefined ? [] : [element.attrs.var]));

const valuesOf = (field: Element): string[] => field.getChildren("value").map((value) => value.getText());

/**
 * The XEP-0128 forms (<x xmlns='jabber:x:data' type='result'/>) that take part in the hash, or null when the
 * response is ill-formed: a FORM_TYPE field with several different values (section 5.4 step 3.5; repeats of
 * one value are fine). A form with no FORM_TYPE field, or whose FORM_TYPE field is not of type "hidden" (an
 * absent type is not "hidden" in a result form, XEP-0068 section 3), is ignored whole (step 3.6), before any
 * check, as is one whose FORM_TYPE has no value; fields with no 'var' are left out.
 */
function formsOf(query: Element): Form[] | null {
  const forms: Form[] = [];
  for (const x of query.getChildren("x", DATA_FORMS_NS)) {
    if (x.attrs.type !== "result") continue;
    const fields = x.getChildren("field");
    const formTypeField = fields.find((field) => field.attrs.var === "FORM_TYPE");
    if (formTypeField === undefined || formTypeField.attrs.type !== "hidden") continue;
    const formTypes = new Set(valuesOf(formTypeField));
    if (formTypes.size > 1) return null;
    const [formType] = formTypes;
    if (formType === undefined) continue;
    forms.push({
      formType,
      fields: fields.flatMap((field) => {
        const name = field.attrs.var;
        return name === undefined || name === "FORM_TYPE" ? [] : [{ var: name, values: valuesOf(field) }];
      }),
    });
  }
  return forms;
}

/**
 * The verification string S (section 5.1) of a disco#info <query/> result, or null when the result is
 * ill-formed (section 5.4 step 3): a repeated identity (category/type/lang/name), a repeated feature, two
 * forms with the same FORM_TYPE, or a FORM_TYPE with different values.
 */
export function verString(query: Element): string | null {
  const forms = formsOf(query);
  return forms === null ? null : serialize(identitiesOf(query), featuresOf(query), forms);
}

/** The 'ver' for S: base64 (with padding, no whitespace) of the digest of its UTF-8 bytes (section 5.1 step 9). */
export function capsHash(algo: CapsHashAlgo, s: string): string {
  return createHash(DIGESTS[algo]).update(s, "utf8").digest("base64");
}

/** Whether a disco#info result matches the caps it was fetched for (section 5.4 steps 3.7-3.9). */
export function verify(caps: Caps, query: Element): boolean {
  if (!isSupported(caps.hash)) return false;
  const s = verString(query);
  return s !== null && capsHash(caps.hash, s) === caps.ver;
}

/** The identities and feature vars of a disco#info result; features with a control character are left out. */
export function discoInfoOf(query: Element): DiscoInfo {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find them
  const control = /[\u0000-\u001f]/;
  return { identities: identitiesOf(query), features: featuresOf(query).filter((f) => !control.test(f)) };
}

/** The 'ver' to announce for an info without forms. Throws a RangeError on a repeated identity or feature. */
export function verFor(info: DiscoInfo, algo: CapsHashAlgo = "sha-1"): string {
  const s = serialize(info.identities, info.features, []);
  if (s === null)
    throw new RangeError("disco#info with a repeated identity or feature has no verifiable ver");
  return capsHash(algo, s);
}
