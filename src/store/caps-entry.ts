/**
 * What the store keeps per XEP-0115 `ver` (section 5.4: cache the verified features, keyed by `ver`), in one
 * string that the Lua scripts search without parsing (src/store/lua/lib/choose.lua):
 * - verified: "\n" then one line per identity (`i category 0x1F type 0x1F lang 0x1F name`) and per feature
 *   (`f var`), each ending in "\n";
 * - not verifiable: "!" and the epoch ms until which it is held so;
 * and beside it, under "?" + ver, the epoch ms until which one replica's query stands for all.
 */
import type { CapsKnowledge } from "../routing/choose.js";
import type { DiscoInfo, Identity } from "../xmpp/caps.js";

/** Control characters would break the line format; no namespace or identity has them. */
const PLAIN = (text: string) => ![...text].some((c) => c < " ");

export function encodeVerified(info: DiscoInfo): string {
  let out = "\n";
  for (const { category, type, lang = "", name = "" } of info.identities) {
    const fields = [category, type, lang, name];
    if (fields.every((f) => PLAIN(f))) out += `i ${fields.join("\x1f")}\n`;
  }
  for (const feature of info.features) if (PLAIN(feature)) out += `f ${feature}\n`;
  return out;
}

export const encodeUnverified = (until: number): string => `!${until}`;

/** The identities and features of a verified entry; null for any other. */
export function decodeVerified(entry: string): DiscoInfo | null {
  if (!entry.startsWith("\n")) return null;
  const identities: Identity[] = [];
  const features: string[] = [];
  for (const line of entry.split("\n")) {
    if (line.startsWith("f ")) features.push(line.slice(2));
    else if (line.startsWith("i ")) {
      const [category = "", type = "", lang = "", name = ""] = line.slice(2).split("\x1f");
      identities.push({ category, type, ...(lang ? { lang } : {}), ...(name ? { name } : {}) });
    }
  }
  return { identities, features };
}

/** What an entry and the ask mark say about a `ver` at `now`, as knowledge_of in lib/choose.lua. */
export function knowledgeOf(
  entry: string | undefined,
  askingUntil: number | undefined,
  now: number,
): CapsKnowledge {
  if (entry !== undefined) {
    if (!entry.startsWith("!")) return { kind: "known", has: (ns) => entry.includes(`\nf ${ns}\n`) };
    if (Number(entry.slice(1)) > now) return { kind: "unverified" };
  }
  if (askingUntil !== undefined && askingUntil > now) return { kind: "asking" };
  return { kind: "unknown" };
}
