/** Every environment variable src/config.ts reads, for tests that check deployment files against it. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const CONFIG_SOURCE = fileURLToPath(new URL("../../src/config.ts", import.meta.url));

/** The keys of the zod schema in src/config.ts, and the secrets with their _FILE forms. */
export function configSettings(): Set<string> {
  const source = readFileSync(CONFIG_SOURCE, "utf8");
  const start = source.indexOf("const schema = z.object({");
  const end = source.indexOf("\n});", start);
  assert.ok(start >= 0 && end > start, "src/config.ts: the zod schema `const schema = z.object({...});`");
  const names = new Set(
    [...source.slice(start, end).matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1] ?? ""),
  );
  for (const match of source.matchAll(/readSecret\(\w+, "([A-Z][A-Z0-9_]*)"/g)) {
    names.add(match[1] ?? "");
    names.add(`${match[1]}_FILE`);
  }
  assert.ok(names.has("XMPP_DOMAIN") && names.has("XMPP_PASSWORD_FILE"), "settings found in src/config.ts");
  return names;
}
