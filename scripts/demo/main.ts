/**
 * `npm run demo`: the whole system on this machine without Docker or Redis, until Ctrl-C (or SIGTERM).
 *
 * - a private Prosody (the installed Debian package) with a copy of examples/prosody-local/prosody.cfg.lua,
 *   the README's configuration, on free ports, its data in a temp dir; accounts impl and alice;
 * - the service as it is run for real (`node dist/cli.js`, built first when dist/ is missing or older than
 *   src/), one replica with the in-process store;
 * - two resources (a, b) of impl, the example implementing client (examples/implementing-client/index.ts);
 * - alice asking the proxy every 3 s and printing the answers (examples/implementing-client/requester.ts).
 *
 * Every line says who printed it. On SIGINT, SIGTERM or SIGHUP it stops them in order (alice, the clients,
 * the service, Prosody), removes the temp dir and exits 0. A second signal (a second later or more: a Ctrl-C
 * under npm arrives twice at once, from the terminal and from npm) kills them all at once.
 */
import {
  accessSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Child, describeExit, killAll, startChild } from "./children.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CONFIG = join(ROOT, "examples/prosody-local/prosody.cfg.lua");
const PASSWORDS = { impl: "impl-password", alice: "alice-password" };
const INTERVAL_MS = 3000;

// ---------- Output: one line each, prefixed with who says it ----------

const COLORS: Record<string, number> = {
  demo: 1,
  build: 2,
  prosody: 35,
  proxy: 36,
  "impl-a": 32,
  "impl-b": 33,
  alice: 34,
};
const colored = process.stdout.isTTY === true && !process.env.NO_COLOR;

function say(who: string, line: string): void {
  const label = who.padEnd(7);
  const color = COLORS[who] ?? 0;
  process.stdout.write(`${colored ? `\x1b[${color}m${label}\x1b[0m` : label} | ${line}\n`);
}

const LEVELS: Record<number, string> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/** A pino JSON line of the service as `level message key=value ...`; anything else unchanged. */
function readableLog(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { level, msg, time: _time, pid: _pid, hostname: _hostname, service: _service, ...fields } = entry;
  const details = Object.entries(fields).map(([key, value]) => {
    if (key === "err" && typeof value === "object" && value !== null && "message" in value)
      return `err=${JSON.stringify((value as { message: unknown }).message)}`;
    return `${key}=${typeof value === "string" && !/\s/.test(value) ? value : JSON.stringify(value)}`;
  });
  return [`${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${String(msg)}`, ...details].join(" ");
}

// ---------- The pieces ----------

/** What the demo takes from the README's configuration, so that the two cannot drift apart. */
function readConfig() {
  const text = readFileSync(CONFIG, "utf8");
  const find = (what: string, pattern: RegExp) => {
    const found = pattern.exec(text)?.[1];
    if (found === undefined) throw new Error(`${CONFIG}: no ${what} found`);
    return found;
  };
  return {
    text,
    domain: find("VirtualHost", /^VirtualHost "([^"]+)"/m),
    componentDomain: find("Component", /^Component "([^"]+)"/m),
    componentSecret: find("component_secret", /component_secret = "([^"]+)"/),
  };
}

/** `n` distinct ports that were free on 127.0.0.1 a moment ago. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    return typeof address === "object" && address !== null ? address.port : 0;
  });
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The newest modification time of the files below `dir`. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

function distIsCurrent(): boolean {
  try {
    return statSync(join(ROOT, "dist/cli.js")).mtimeMs >= newest(join(ROOT, "src"));
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `ready` says yes; fails when `child` ends first or after `timeoutMs`. */
async function until(
  what: string,
  child: Child,
  ready: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!child.running())
      throw new Error(`${child.name} ended (${describeExit(await child.exited)}) before ${what}`);
    if (await ready().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
}

const get = async (port: number, path: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
};

// ---------- Running it ----------

const children: Child[] = [];
/** Children whose end is the demo's end; a build or a prosodyctl is expected to end. */
const lasting = new Set<Child>();
let stopping = false;
let firstSignalAt = 0;
let dir: string | undefined;

/** Where the service, the clients and Prosody get their environment from: nothing of the caller's but these. */
const baseEnv = () => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" });

function run(
  who: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  format = (l: string) => l,
): Child {
  if (stopping) throw new Error("stopping");
  const child = startChild(who, command, args, { cwd: ROOT, env, onLine: (line) => say(who, format(line)) });
  children.push(child);
  return child;
}

function lastingChild(child: Child): Child {
  lasting.add(child);
  void child.exited.then(
    (exit) => {
      if (!stopping) void shutdown(1, `${child.name} ended (${describeExit(exit)}): stopping everything`);
    },
    (err: Error) => {
      if (!stopping) void shutdown(1, `${child.name} could not start (${err.message}): stopping everything`);
    },
  );
  return child;
}

async function oneShot(who: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const exit = await run(who, command, args, env).exited;
  if (exit.code !== 0 && !stopping)
    throw new Error(`${who} ${args.join(" ")} failed (${describeExit(exit)})`);
}

async function start(): Promise<void> {
  for (const program of ["prosody", "prosodyctl"]) {
    if (!onPath(program))
      throw new Error(
        `${program} not found: the demo runs the Debian package prosody (sudo apt-get install prosody). ` +
          "Its own system service is not used; the demo starts a private server.",
      );
  }
  const config = readConfig();
  const [c2sPort, componentPort, httpPort] = (await freePorts(3)) as [number, number, number];
  dir = mkdtempSync(join(tmpdir(), "xcp-demo-"));
  say("demo", `temp dir ${dir}: Prosody's configuration, accounts and pid file`);

  // The README's configuration, on free ports; its data_path is data/ beside the copy, so inside `dir`.
  const configFile = join(dir, "prosody.cfg.lua");
  writeFileSync(
    configFile,
    config.text
      .replace(/^c2s_ports = \{ \d+ \}/m, `c2s_ports = { ${c2sPort} }`)
      .replace(/^component_ports = \{ \d+ \}/m, `component_ports = { ${componentPort} }`),
  );
  const { domain, componentDomain } = config;
  for (const user of ["impl", "alice"] as const) {
    await oneShot(
      "prosody",
      "prosodyctl",
      ["--config", configFile, "register", user, domain, PASSWORDS[user]],
      baseEnv(),
    );
  }
  say(
    "demo",
    `registered impl@${domain} and alice@${domain}; starting Prosody (prosody --config ${configFile} -F)`,
  );
  const prosody = lastingChild(
    run("prosody", "prosody", ["--config", configFile, "-F"], baseEnv(), (l) => l.replace(/\t/g, " ")),
  );
  // Its own word rather than a connection to each port, which it would log as a client that came and went.
  const activated = (service: string, port: number) => (line: string) =>
    line.includes(`Activated service '${service}' on [127.0.0.1]:${port}`);
  await Promise.all([
    prosody.waitForLine(activated("c2s", c2sPort), 15_000),
    prosody.waitForLine(activated("component", componentPort), 15_000),
  ]);
  say("demo", `Prosody listens on 127.0.0.1: clients ${c2sPort}, components ${componentPort}`);

  if (!distIsCurrent()) {
    say("demo", "dist/ is missing or older than src/: npm run build");
    await oneShot("build", "npm", ["run", "build"], process.env);
  }
  say(
    "demo",
    `starting the service for ${componentDomain}: node dist/cli.js, in-process store, /readyz /metrics on 127.0.0.1:${httpPort}`,
  );
  const proxy = lastingChild(
    run(
      "proxy",
      process.execPath,
      ["dist/cli.js"],
      {
        ...baseEnv(),
        XMPP_SERVICE: `xmpp://127.0.0.1:${componentPort}`,
        XMPP_DOMAIN: componentDomain,
        XMPP_PASSWORD: config.componentSecret,
        TARGET_JID: `impl@${domain}`,
        HTTP_PORT: String(httpPort),
        HTTP_HOST: "127.0.0.1",
        LOG_LEVEL: "debug",
        SHUTDOWN_GRACE_MS: "5000",
      },
      readableLog,
    ),
  );
  await until(
    "the service is ready",
    proxy,
    async () => (await get(httpPort, "/readyz")).status === 200,
    20_000,
  );

  const client = (username: "impl" | "alice", resource: string, extra: NodeJS.ProcessEnv = {}) => ({
    ...baseEnv(),
    XMPP_SERVICE: `xmpp://127.0.0.1:${c2sPort}`,
    XMPP_DOMAIN: domain,
    XMPP_USERNAME: username,
    XMPP_PASSWORD: PASSWORDS[username],
    XMPP_RESOURCE: resource,
    PROXY_DOMAIN: componentDomain,
    ...extra,
  });
  say("demo", `starting two resources of impl@${domain} (a, b): the example implementing client`);
  const impls = ["a", "b"].map((resource) =>
    lastingChild(
      run(
        `impl-${resource}`,
        process.execPath,
        ["--import", "tsx", "examples/implementing-client/index.ts"],
        client("impl", resource),
      ),
    ),
  );
  await Promise.all(impls.map((impl) => impl.waitForLine((line) => line.includes("online as"), 20_000)));
  await until(
    "the service sees both resources",
    proxy,
    async () => /^xcp_target_resources_online 2$/m.test((await get(httpPort, "/metrics")).body),
    20_000,
  );
  say(
    "demo",
    `the service routes to impl@${domain}/a and /b; starting alice@${domain}/demo, who asks ${componentDomain} every ${INTERVAL_MS / 1000} s`,
  );
  lastingChild(
    run(
      "alice",
      process.execPath,
      ["--import", "tsx", "examples/implementing-client/requester.ts"],
      client("alice", "demo", { INTERVAL_MS: String(INTERVAL_MS) }),
    ),
  );
  say(
    "demo",
    `all running; Ctrl-C stops it all. Any XMPP client can join as alice@${domain} (password ${PASSWORDS.alice}, ` +
      `127.0.0.1 port ${c2sPort}, no TLS, PLAIN) and ask ${componentDomain} itself.`,
  );
}

async function shutdown(code: number, why: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  say("demo", why);
  // The last started first: alice, the clients, the service (it leaves the server cleanly), Prosody.
  for (const child of [...children].reverse()) {
    if (!child.running()) continue;
    const exit = await child.stop("SIGTERM", child.name === "proxy" ? 8000 : 5000);
    if (lasting.has(child)) say("demo", `${child.name} stopped (${describeExit(exit)})`);
  }
  if (dir !== undefined) {
    rmSync(dir, { recursive: true, force: true });
    say("demo", `removed ${dir}`);
  }
  process.exit(code);
}

function onSignal(signal: NodeJS.Signals): void {
  if (!stopping) {
    firstSignalAt = Date.now();
    void shutdown(0, `${signal}: stopping alice, the clients, the service and Prosody`);
    return;
  }
  if (Date.now() - firstSignalAt < 1000) return;
  say("demo", `${signal} again: killing everything`);
  killAll();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  process.exit(130);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);
process.on("exit", () => {
  // However it ends (an exception in here included), the temp dir goes; children.ts kills the groups.
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

start().catch((err: Error) => {
  if (!stopping) void shutdown(1, `could not start: ${err.message}`);
});
