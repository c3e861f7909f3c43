/**
 * `npm run demo` as a newcomer runs it: it prints alice's answers through the proxy, every line says who
 * prints it, and when it is stopped (Ctrl-C, i.e. SIGINT to the terminal's whole process group; or SIGTERM to
 * npm alone, which npm passes on) it exits 0 and leaves nothing behind: no process it started (Prosody, the
 * service, the clients) and no temp dir.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Child, type Exit, startChild } from "../../scripts/demo/children.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Proc {
  readonly pid: number;
  readonly ppid: number;
  /** Clock ticks after boot: a pid used again by another process has another start time. */
  readonly start: string;
  readonly zombie: boolean;
  readonly cmdline: string;
}

/** Every process on the machine, from /proc. */
function processes(): Proc[] {
  const found: Proc[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so read after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" ").trim();
      found.push({
        pid: Number(name),
        ppid: Number(fields[1]),
        start: fields[19] ?? "",
        zombie: fields[0] === "Z",
        cmdline,
      });
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** The processes below `pid`, all generations. */
function descendants(pid: number): Proc[] {
  const all = processes();
  const below: Proc[] = [];
  let parents = new Set([pid]);
  while (parents.size > 0) {
    const children = all.filter((p) => parents.has(p.ppid));
    below.push(...children);
    parents = new Set(children.map((p) => p.pid));
  }
  return below;
}

/** Those of `seen` still running: same pid, same start time, not a zombie. */
function stillRunning(seen: Proc[]): Proc[] {
  const now = new Map(processes().map((p) => [p.pid, p]));
  return seen.filter((p) => {
    const current = now.get(p.pid);
    return current !== undefined && current.start === p.start && !current.zombie;
  });
}

/** `promise`, or null after `ms` (the timer cleared either way: it would keep the test process alive). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe("npm run demo", { timeout: 300_000 }, () => {
  // What a failed test leaves, cleaned up in after().
  let demo: Child | undefined;
  let seen: Proc[] = [];
  let dir: string | undefined;

  after(async () => {
    for (const p of stillRunning(seen)) process.kill(p.pid, "SIGKILL");
    await demo?.stop("SIGKILL", 1000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<{ name: string; stop: (npm: Child) => void }> = [
    {
      name: "Ctrl-C: SIGINT to the terminal's process group",
      stop: (npm) => process.kill(-(npm.process.pid as number), "SIGINT"),
    },
    { name: "SIGTERM to npm alone", stop: (npm) => process.kill(npm.process.pid as number, "SIGTERM") },
  ];

  for (const { name, stop } of cases) {
    it(`prints alice's answers until ${name}, then stops everything and exits 0`, async () => {
      // Its own process group, as in a terminal (the foreground group that Ctrl-C signals).
      const npm = startChild("npm run demo", "npm", ["run", "demo"], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NO_COLOR: "1" },
      });
      demo = npm;
      const tail = () => npm.lines.slice(-40).join("\n");

      const dirLine = await npm.waitForLine((line) => /^demo +\| temp dir \S+:/.test(line), 30_000);
      dir = /temp dir (\S+):/.exec(dirLine)?.[1];
      assert.ok(dir && existsSync(dir), dirLine);
      // A build first when dist/ is stale: allow for it.
      const answer = (what: string) =>
        npm.waitForLine(
          (line) => /^alice +\| \[alice@localhost\/demo\] #\d+ /.test(line) && line.includes(what),
          120_000,
        );
      await answer("version from proxy.localhost: xmpp-client-proxy example implementing client");
      await answer("greeting from proxy.localhost: Hello, alice@localhost/demo");

      seen = descendants(npm.process.pid as number);
      const commands = seen.map((p) => p.cmdline);
      assert.ok(
        commands.some((c) => c.includes(`prosody --config ${dir}/prosody.cfg.lua`)),
        `a private Prosody:\n${commands.join("\n")}`,
      );
      for (const program of [
        "dist/cli.js",
        "implementing-client/index.ts",
        "implementing-client/requester.ts",
      ]) {
        assert.ok(
          commands.some((c) => c.includes(program)),
          `${program} runs:\n${commands.join("\n")}`,
        );
      }
      assert.equal(
        commands.filter((c) => c.includes("implementing-client/index.ts")).length,
        2,
        "two resources",
      );

      stop(npm);
      const exit = await within<Exit>(npm.exited, 60_000);
      assert.deepEqual(exit, { code: 0, signal: null }, tail());
      assert.deepEqual(
        stillRunning(seen).map((p) => p.cmdline),
        [],
        `every process the demo started is gone\n${tail()}`,
      );
      assert.deepEqual(
        processes().filter((p) => !p.zombie && p.cmdline.includes(dir as string)),
        [],
        "nothing runs with the temp dir",
      );
      assert.ok(!existsSync(dir as string), `${dir} removed`);
      for (const who of ["alice", "impl-b", "impl-a", "proxy", "prosody"]) {
        assert.ok(
          npm.lines.some((line) => line === `demo    | ${who} stopped (exit code 0)`),
          `${who} stopped cleanly\n${tail()}`,
        );
      }
      // Readable: after npm's own header, every line says who printed it.
      const first = npm.lines.findIndex((line) => line.startsWith("demo "));
      const unlabelled = npm.lines.slice(first).filter((line) => line !== "" && !/^[a-z-]+ *\| /.test(line));
      assert.deepEqual(unlabelled, [], "every line labelled");
      seen = [];
      dir = undefined;
      demo = undefined;
    });
  }
});
