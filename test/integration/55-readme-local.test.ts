/**
 * README.md, "Try it locally with Prosody", run as written: every ```sh block of that section is one terminal
 * (`bash -e -c` with the block's text, at the repository root, with nothing of this process's environment
 * but PATH and HOME), started in the README's order, with the Prosody configuration the commands name.
 *
 * Only what must be free or private in a test is changed, and only this way: the configuration is copied into
 * a temp dir (its data_path is data/ beside itself, so the accounts land there too) and the commands name the
 * copy; the three port numbers (the config's c2s and component ports, the service's HTTP_PORT) are replaced,
 * in the commands and in the copy, by free ports. Nothing else: if a step of the README stops working, so
 * does this test.
 *
 * A block that starts a server or a client keeps running, as in a terminal; the test waits for what the
 * README says it does (Prosody listening, the service ready, a client online, alice's answers), then stops
 * the blocks in reverse order with SIGINT to each block's process group, as Ctrl-C in its terminal would,
 * and expects each to exit 0. Any other block (none today) must finish with exit code 0.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Child, describeExit, startChild } from "../../scripts/demo/children.js";
import { freePort, waitForPort } from "../harness/ports.js";
import { httpStatus, until } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SECTION = "Try it locally with Prosody";

/** The text of a `## ` section of a Markdown document, up to the next `## `. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README.md has no section "## ${title}"`);
  const end = markdown.indexOf("\n## ", start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/** The fenced blocks of a language, without the indentation of their fence (a block inside a list item). */
function fencedBlocks(markdown: string, language: string): string[] {
  const blocks: string[] = [];
  let indent: string | undefined;
  let lines: string[] = [];
  for (const line of markdown.split("\n")) {
    if (indent === undefined) {
      const open = /^(\s*)```(\S*)\s*$/.exec(line);
      if (open && open[2] === language) {
        indent = open[1] ?? "";
        lines = [];
      }
    } else if (/^\s*```\s*$/.test(line)) {
      blocks.push(lines.join("\n"));
      indent = undefined;
    } else {
      lines.push(line.startsWith(indent) ? line.slice(indent.length) : line.trimStart());
    }
  }
  return blocks;
}

const configValue = (config: string, pattern: RegExp, what: string): string => {
  const value = pattern.exec(config)?.[1];
  assert.ok(value !== undefined, `the README's Prosody configuration has no ${what}`);
  return value;
};

type Kind = "prosody" | "service" | "implementing" | "requester" | "step";

/** What a block starts, by its last command (it runs in the foreground until stopped). */
function kindOf(block: string): Kind {
  if (/^prosody --config /m.test(block)) return "prosody";
  if (/\bnode dist\/cli\.js\b/.test(block)) return "service";
  if (/examples\/implementing-client\/index\.ts\b/.test(block)) return "implementing";
  if (/examples\/implementing-client\/requester\.ts\b/.test(block)) return "requester";
  return "step";
}

const envValue = (block: string, name: string): string => {
  const value = new RegExp(`\\b${name}=(\\S+)`).exec(block)?.[1];
  assert.ok(value !== undefined, `${name} is not set in:\n${block}`);
  return value;
};

/** Polls `ready` until it says yes; fails at once when `child` ends, or after `timeoutMs`. */
async function whileRunning(
  child: Child,
  what: string,
  timeoutMs: number,
  ready: () => Promise<boolean>,
  details: () => string,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!child.running()) assert.fail(`${child.name} ended before ${what}\n${details()}`);
    if (await ready()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms\n${details()}`);
}

interface Terminal {
  readonly index: number;
  readonly kind: Kind;
  readonly text: string;
  readonly child: Child;
}

describe("README: Try it locally with Prosody", { timeout: 240_000 }, () => {
  const text = section(readFileSync(join(ROOT, "README.md"), "utf8"), SECTION);
  const blocks = fencedBlocks(text, "sh");
  const terminals: Terminal[] = [];
  let dir: string;
  let localData: string;
  let localDataExisted: boolean;
  let proxy: string;
  let domain: string;
  let requesterJid: string;
  let resources: string[];

  const output = () =>
    terminals
      .map(
        (t) =>
          `--- terminal ${t.index + 1} (${t.kind}), ${t.child.lines.length} lines:\n${t.child.lines.slice(-25).join("\n")}`,
      )
      .join("\n");
  const ofKind = (kind: Kind) => terminals.filter((t) => t.kind === kind);

  before(async () => {
    assert.ok(blocks.length > 0, "the section has no ```sh blocks");
    const configPaths = new Set(
      blocks.flatMap((block) => [...block.matchAll(/--config (\S+)/g)].map((m) => m[1])),
    );
    assert.equal(
      configPaths.size,
      1,
      `every command names the same configuration: ${[...configPaths].join(", ")}`,
    );
    const configPath = [...configPaths][0] as string;
    assert.ok(text.includes(`(${configPath})`), "the section links the configuration it uses");
    const config = readFileSync(join(ROOT, configPath), "utf8");
    domain = configValue(config, /^VirtualHost "([^"]+)"/m, "VirtualHost");
    proxy = configValue(config, /^Component "([^"]+)"/m, "Component");
    localData = join(ROOT, configPath, "../data");
    localDataExisted = existsSync(localData);

    // The substitutions, and nothing else.
    const readmePorts = [
      configValue(config, /^c2s_ports = \{ (\d+) \}/m, "c2s_ports"),
      configValue(config, /^component_ports = \{ (\d+) \}/m, "component_ports"),
      envValue(blocks.find((b) => kindOf(b) === "service") ?? "", "HTTP_PORT"),
    ];
    assert.equal(new Set(readmePorts).size, 3, `three different ports: ${readmePorts.join(", ")}`);
    const ports = new Map<string, string>();
    for (const port of readmePorts) ports.set(port, String(await freePort()));
    const rewritePorts = (s: string) => s.replace(/\b\d+\b/g, (n) => ports.get(n) ?? n);
    dir = mkdtempSync(join(tmpdir(), "xcp-readme-"));
    const copy = join(dir, "prosody.cfg.lua");
    writeFileSync(copy, rewritePorts(config));
    const [c2sPort, componentPort, httpPort] = readmePorts.map((p) => Number(ports.get(p))) as [
      number,
      number,
      number,
    ];

    for (const [index, block] of blocks.entries()) {
      const kind = kindOf(block);
      const script = rewritePorts(block.split(configPath).join(copy));
      const child = startChild(`terminal ${index + 1}`, "bash", ["-e", "-c", script], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" },
      });
      terminals.push({ index, kind, text: block, child });
      switch (kind) {
        case "step": {
          const exit = await Promise.race([
            child.exited,
            new Promise((resolve) => setTimeout(resolve, 120_000, null).unref()),
          ]);
          assert.deepEqual(exit, { code: 0, signal: null }, `terminal ${index + 1}: ${block}\n${output()}`);
          break;
        }
        case "prosody":
          await waitForPort(c2sPort, 15_000, output);
          await waitForPort(componentPort, 15_000, output);
          break;
        case "service":
          // `npm run build` first, then the service: minutes at worst on a loaded machine.
          await whileRunning(
            child,
            "the service ready on /readyz",
            120_000,
            async () => {
              const status = await httpStatus(httpPort, "/readyz").catch(() => undefined);
              return status?.status === 200;
            },
            output,
          );
          break;
        case "implementing":
          await child.waitForLine((line) => line.includes("online as"), 30_000);
          break;
        case "requester":
          break;
      }
    }
    resources = ofKind("implementing").map((t) => envValue(t.text, "XMPP_RESOURCE"));
    const requester = ofKind("requester")[0];
    assert.ok(requester, "the section runs a requester");
    requesterJid = `${envValue(requester.text, "XMPP_USERNAME")}@${domain}/${envValue(requester.text, "XMPP_RESOURCE")}`;
  });

  after(async () => {
    // Stopped even when a step failed: every terminal's process group, the last started first.
    for (const terminal of [...terminals].reverse()) await terminal.child.stop("SIGKILL", 1000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("starts Prosody, the service, two resources of impl and a requester, as the section says", () => {
    assert.equal(ofKind("prosody").length, 1, output());
    assert.equal(ofKind("service").length, 1, output());
    assert.equal(new Set(resources).size, 2, `two different resources of impl: ${resources.join(", ")}`);
    assert.equal(ofKind("requester").length, 1, output());
    assert.match(ofKind("service")[0]?.text ?? "", /^npm run build$/m, "the service is built before it runs");
    assert.ok(existsSync(join(dir, "data", domain, "accounts")), "the accounts are in the copy's data/");
    if (!localDataExisted) assert.ok(!existsSync(localData), `${localData} left alone`);
  });

  it("alice gets the answers from the proxy's domain, served by both resources of impl", async () => {
    const alice = ofKind("requester")[0] as Terminal;
    const answered = (what: string) => (line: string) => line.includes(` ${what} from ${proxy}: `);
    await alice.child.waitForLine(answered("version"), 30_000);
    const greeting = await alice.child.waitForLine(answered("greeting"), 30_000);
    assert.ok(greeting.endsWith(`Hello, ${requesterJid}`), greeting);
    const from = alice.child.lines.flatMap((line) => / #\d+ \w+ from (\S+): /.exec(line)?.[1] ?? []);
    assert.deepEqual(new Set(from), new Set([proxy]), `every answer comes from ${proxy}\n${output()}`);
    // Random balancing: with 3 requests a round, both resources serve within a few rounds.
    for (const terminal of ofKind("implementing")) {
      await terminal.child.waitForLine((line) => line.includes(`greeting ${requesterJid}`), 30_000);
    }
  });

  it("prints what the section shows (the os and the round number aside)", async () => {
    const alice = ofKind("requester")[0] as Terminal;
    const normalize = (line: string) => line.replace(/#\d+/, "#N").replace(/ \(.*\)$/, " (os)");
    const shown = fencedBlocks(text, "text").flatMap((block) => block.split("\n").filter((l) => l !== ""));
    assert.ok(shown.length > 0, "the section shows the requester's output");
    for (const line of shown) {
      await until(
        `a line like ${JSON.stringify(line)} from the requester\n${output()}`,
        () => alice.child.lines.some((printed) => normalize(printed) === normalize(line)) || undefined,
        30_000,
      );
    }
  });

  it("stops every program with Ctrl-C (SIGINT), each exiting 0", async () => {
    for (const terminal of [...terminals].reverse()) {
      if (terminal.kind === "step") continue;
      const exit = await terminal.child.stop("SIGINT", 10_000);
      assert.deepEqual(
        exit,
        { code: 0, signal: null },
        `terminal ${terminal.index + 1} (${terminal.kind}): ${describeExit(exit)}\n${output()}`,
      );
    }
  });
});
