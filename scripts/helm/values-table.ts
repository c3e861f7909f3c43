/**
 * The "Values" table of the chart's README.md, made from values.yaml: one row per value (descending into maps
 * whose properties values.schema.json describes), its default as JSON, and its comment in values.yaml.
 *
 *   node --import tsx scripts/helm/values-table.ts          # prints the table
 *   node --import tsx scripts/helm/values-table.ts --write  # replaces the table in helm/xmpp-client-proxy/README.md
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isMap, isScalar, parseDocument, type YAMLMap } from "yaml";

const CHART = fileURLToPath(new URL("../../helm/xmpp-client-proxy/", import.meta.url));

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
}

/** The last paragraph of a comment (a section's heading above it is not the value's), as one line. */
function describe(comment: string | null | undefined): string {
  const paragraphs = (comment ?? "").split(/\n\s*\n/);
  const last = paragraphs[paragraphs.length - 1] ?? "";
  return last
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .join(" ");
}

/** [path, default as JSON, description] of every value. */
export function valueRows(): Array<[string, string, string]> {
  const doc = parseDocument(readFileSync(join(CHART, "values.yaml"), "utf8"));
  const schema = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8")) as SchemaNode;
  const rows: Array<[string, string, string]> = [];
  const walk = (map: YAMLMap, node: SchemaNode, prefix: string) => {
    map.items.forEach((pair, index) => {
      const key = String(isScalar(pair.key) ? pair.key.value : pair.key);
      const path = `${prefix}${key}`;
      const comment =
        (isScalar(pair.key) ? pair.key.commentBefore : undefined) ??
        (index === 0 ? map.commentBefore : undefined);
      const sub = node.properties?.[key];
      if (sub?.properties && isMap(pair.value)) walk(pair.value, sub, `${path}.`);
      else
        rows.push([
          path,
          JSON.stringify(
            isMap(pair.value) || pair.value ? (pair.value as { toJSON(): unknown }).toJSON() : null,
          ),
          describe(comment),
        ]);
    });
  };
  if (!isMap(doc.contents)) throw new Error("values.yaml is not a map");
  walk(doc.contents, schema, "");
  return rows;
}

/** The Markdown table, columns padded to their widest cell. */
export function valuesTable(): string {
  const cell = (text: string) => text.replaceAll("|", "\\|");
  const rows = valueRows().map(([path, value, description]) => [
    `\`${path}\``,
    `\`${value}\``,
    cell(description),
  ]);
  const header = ["value", "default", "description"];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((text, column) => text.padEnd(widths[column] ?? 0)).join(" | ")} |`;
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n");
}

/** README.md with its values table (the block of table lines that starts at `| value `) replaced. */
export function readmeWithTable(readme: string): string {
  const lines = readme.split("\n");
  const start = lines.findIndex((text) => /^\| value\s+\| default\s+\| description\s+\|$/.test(text));
  if (start < 0)
    throw new Error("README.md has no values table (a header `| value | default | description |`)");
  let end = start;
  while (end < lines.length && lines[end]?.startsWith("|")) end++;
  return [...lines.slice(0, start), valuesTable(), ...lines.slice(end)].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes("--write")) {
    const path = join(CHART, "README.md");
    writeFileSync(path, readmeWithTable(readFileSync(path, "utf8")));
  } else {
    console.log(valuesTable());
  }
}
