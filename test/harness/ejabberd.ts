/**
 * A private ejabberd 23.01 (Debian package) for one test file: its own config rendered from
 * test/fixtures/ejabberd*.tpl into a temp dir, its own Mnesia spool and logs there, free ports, a unique
 * Erlang node name and its own distribution port (so no epmd is started or asked). Never the system's
 * ejabberd service (/etc/ejabberd, /var/lib/ejabberd, ejabberd@localhost), never another Erlang node.
 *
 * The server runs as `ejabberdctl ... foreground-quiet`, a child of the test process, as user `ejabberd`
 * (ejabberdctl refuses other users than root and ejabberd, and under root it would go through `su`).
 * Stopping sends SIGTERM to the node's beam.smp (OTP handles it as a clean `init:stop()`), then SIGKILLs
 * whatever process still names the node.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitForPort } from "./ports.js";
import { exitOf } from "./processes.js";

const EJABBERDCTL = "/usr/sbin/ejabberdctl";
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
/** Node names of this harness: `xcpejd_<pid of the test process>_<random>@localhost`. */
const NODE_PREFIX = "xcpejd_";
const DIR_PREFIX = "xcp-ejabberd-";
const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
const CTL_TIMEOUT_MS = 20_000;

export interface EjabberdUser {
  username: string;
  password: string;
}

export interface EjabberdOptions {
  /** Accounts registered on localhost once the server is up (kept across restart()). */
  users: EjabberdUser[];
  /** Default `proxy.localhost`. */
  componentDomain?: string;
  /** Default: random hex. ASCII only (the XEP-0114 handshake hashes it as latin1). */
  componentSecret?: string;
  /**
   * Also a component listener for componentDomain that speaks TLS from the first byte (`tls: true`) with this
   * certificate and key (PEM files, copied into the server's dir), on componentTlsPort. Default: none.
   */
  componentTls?: { certFile: string; keyFile: string };
}

export interface EjabberdServer {
  readonly domain: "localhost";
  readonly componentDomain: string;
  readonly componentSecret: string;
  /** Client-to-server port on 127.0.0.1, no TLS, SASL PLAIN allowed. */
  readonly c2sPort: number;
  /** XEP-0114 port on 127.0.0.1 for componentDomain. */
  readonly componentPort: number;
  /** With the option componentTls: the XEP-0114 port on 127.0.0.1 that speaks TLS from the first byte. */
  readonly componentTlsPort: number | null;
  /** The temp dir: etc/ (rendered config), spool/ (Mnesia), logs/, run/. Removed by stop(). */
  readonly dir: string;
  /** Erlang node name, unique to this server (e.g. for `ps` checks). */
  readonly node: string;
  /** Stops the node (clean, then SIGKILL), makes sure no process of it is left, removes the temp dir. */
  stop(): Promise<void>;
  /** Stops the node and starts it again on the same ports and spool: accounts and rosters are kept. */
  restart(): Promise<void>;
  /** ejabberd.log so far (both runs after a restart), plus what ejabberdctl printed to the console. */
  logs(): string;
}

interface Instance {
  node: string;
  dir: string;
  child: ChildProcess | null;
}

/** Servers not stopped yet: killed and removed when the test process exits, whatever the test did. */
const live = new Set<Instance>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const instance of live) {
      instance.child?.kill("SIGKILL");
      for (const pid of nodePids(instance.node)) signal(pid, "SIGKILL");
      rmSync(instance.dir, { recursive: true, force: true });
    }
  });
}

export async function startEjabberd(opts: EjabberdOptions): Promise<EjabberdServer> {
  installExitHook();
  sweepOrphans();

  const domain = "localhost" as const;
  const componentDomain = opts.componentDomain ?? "proxy.localhost";
  const componentSecret = opts.componentSecret ?? randomBytes(12).toString("hex");
  // Both go into the YAML config verbatim (quoted): keep them to characters that need no escaping.
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(componentDomain)) {
    throw new Error(
      `componentDomain ${JSON.stringify(componentDomain)}: use lowercase letters, digits, '.', '-'`,
    );
  }
  if (!/^[\x21-\x7e]+$/.test(componentSecret) || /["\\]/.test(componentSecret)) {
    throw new Error("componentSecret: printable ASCII without spaces, quotes or backslashes");
  }
  const [c2sPort, componentPort, distPort] = await threeFreePorts();
  let componentTlsPort: number | null = null;
  while (opts.componentTls && componentTlsPort === null) {
    const port = await freePort();
    if (![c2sPort, componentPort, distPort].includes(port)) componentTlsPort = port;
  }
  // As root, ejabberd runs as user `ejabberd`: it writes spool/, logs/, run/ and (HOME) dir itself.
  const account = runAs();
  const node = `${NODE_PREFIX}${process.pid}_${randomBytes(4).toString("hex")}@localhost`;
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const instance: Instance = { node, dir, child: null };
  live.add(instance);

  const paths = {
    etc: join(dir, "etc"),
    spool: join(dir, "spool"),
    logs: join(dir, "logs"),
    run: join(dir, "run"),
    contrib: join(dir, "contrib"),
  };
  const config = join(paths.etc, "ejabberd.yml");
  const ctlConfig = join(paths.etc, "ejabberdctl.cfg");
  const values: Record<string, string> = {
    DOMAIN: domain,
    C2S_PORT: String(c2sPort),
    COMPONENT_PORT: String(componentPort),
    COMPONENT_DOMAIN: componentDomain,
    COMPONENT_SECRET: componentSecret,
    NODE: node,
    DIST_PORT: String(distPort),
    DIR: dir,
    CONFIG_PATH: config,
    PID_PATH: join(paths.run, "ejabberd.pid"),
    COOKIE: randomBytes(16).toString("hex"),
    COMPONENT_TLS_LISTENER: "",
  };
  if (opts.componentTls && componentTlsPort !== null) {
    values.COMPONENT_TLS_LISTENER = [
      "  -",
      `    port: ${componentTlsPort}`,
      '    ip: "127.0.0.1"',
      "    module: ejabberd_service",
      "    tls: true",
      `    certfile: "${join(paths.etc, "component-tls.pem")}"`,
      "    global_routes: false",
      "    max_stanza_size: 524288",
      "    hosts:",
      `      "${componentDomain}":`,
      `        password: "${componentSecret}"`,
    ].join("\n");
  }
  try {
    for (const path of Object.values(paths)) mkdirSync(path, { recursive: true });
    writeFileSync(config, render("ejabberd.yml.tpl", values));
    writeFileSync(ctlConfig, render("ejabberdctl.cfg.tpl", values));
    if (opts.componentTls) {
      // ejabberd's certfile: the certificate, then its key, in one file (owned by ejabberd below).
      const { certFile, keyFile } = opts.componentTls;
      const pem = readFileSync(certFile, "utf8") + readFileSync(keyFile, "utf8");
      writeFileSync(join(paths.etc, "component-tls.pem"), pem, { mode: 0o600 });
    }
    // ejabberdctl points ERL_INETRC at <config dir>/inetrc; without it every Erlang VM prints an error report.
    writeFileSync(
      join(paths.etc, "inetrc"),
      '{lookup, ["file", "native"]}.\n{host, {127,0,0,1}, ["localhost"]}.\n',
    );
    if (account) chownTree(dir, account.uid, account.gid);
  } catch (error) {
    live.delete(instance);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const ctlArgs = [
    "--config-dir",
    paths.etc,
    "--ctl-config",
    ctlConfig,
    "--config",
    config,
    "--spool",
    paths.spool,
    "--logs",
    paths.logs,
  ];
  const spawnOptions = {
    cwd: paths.spool,
    // A clean environment: nothing of the caller's ERL_*/EJABBERD_* variables, HOME in the temp dir
    // (Erlang's cookie file, contrib modules), never /var/lib/ejabberd.
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", HOME: dir, LANG: "C.UTF-8" },
    ...(account ?? {}),
  };

  let consoleOutput = "";
  const logs = (): string => {
    let text = "";
    try {
      text = readFileSync(join(paths.logs, "ejabberd.log"), "utf8");
    } catch {
      text = "(no ejabberd.log yet)\n";
    }
    return consoleOutput ? `${text}--- ejabberdctl console ---\n${consoleOutput}` : text;
  };
  const logTail = (): string => `ejabberd logs (${dir}):\n${logs().slice(-6000)}`;

  const ctl = (...command: string[]): Promise<{ code: number | null; output: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn(EJABBERDCTL, [...ctlArgs, ...command], { ...spawnOptions, stdio: "pipe" });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.stderr.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), CTL_TIMEOUT_MS);
      child.once("error", reject);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });

  const launch = async (): Promise<void> => {
    const child = spawn(EJABBERDCTL, [...ctlArgs, "foreground-quiet"], {
      ...spawnOptions,
      stdio: ["ignore", "pipe", "pipe"],
    });
    instance.child = child;
    const append = (chunk: Buffer) => {
      consoleOutput = (consoleOutput + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on("data", append);
    child.stderr?.on("data", append);
    child.once("error", (error) => append(Buffer.from(`spawn error: ${error.message}\n`)));

    const logFile = join(paths.logs, "ejabberd.log");
    const logOffset = fileSize(logFile);
    const exited = exitOf(child).then((code) => {
      throw new Error(`ejabberd exited with code ${code} while starting\n${logTail()}`);
    });
    // The listening sockets are bound early and the kernel completes TCP handshakes before ejabberd accepts
    // anything: an open port is no sign of a started server (a SIGTERM then takes 13 s, clients hang).
    // Ready is when this run's log says that both listeners accept; that is after Mnesia and the modules.
    let abandoned = false;
    const ready = (async () => {
      const expected = [c2sPort, componentPort].map(
        (p) => `Start accepting TCP connections at 127.0.0.1:${p} `,
      );
      if (componentTlsPort !== null)
        expected.push(`Start accepting TLS connections at 127.0.0.1:${componentTlsPort} `);
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!abandoned) {
        const text = readFrom(logFile, logOffset);
        if (expected.every((line) => text.includes(line))) break;
        if (Date.now() > deadline) {
          throw new Error(`ejabberd did not start within ${START_TIMEOUT_MS} ms\n${logTail()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      if (abandoned) return;
      await waitForPort(c2sPort, 2000, logTail);
      await waitForPort(componentPort, 2000, logTail);
    })();
    exited.catch(() => {});
    ready.catch(() => {});
    try {
      await Promise.race([ready, exited]);
    } catch (error) {
      abandoned = true;
      await shutdown();
      throw error;
    }
  };

  /** SIGTERM to the node (clean stop), SIGKILL after the grace period, until no process of it is left. */
  const shutdown = async (): Promise<void> => {
    const child = instance.child;
    if (!child) return;
    const exited = exitOf(child);
    const pids = nodePids(node);
    // Not ejabberdctl itself while the VM runs: bash would die at once and leave the VM orphaned.
    if (pids.length === 0) child.kill("SIGTERM");
    for (const pid of pids) signal(pid, "SIGTERM");
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      for (const pid of nodePids(node)) signal(pid, "SIGKILL");
    }, STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
    // ejabberdctl (the child) waits for the VM, so this is a formality; it also catches stray ctl VMs.
    const deadline = Date.now() + 2000;
    for (let pids = nodePids(node); pids.length > 0; pids = nodePids(node)) {
      if (Date.now() > deadline) {
        for (const pid of pids) signal(pid, "SIGKILL");
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    instance.child = null;
  };

  try {
    await launch();
    const results = await Promise.all(opts.users.map((u) => ctl("register", u.username, domain, u.password)));
    results.forEach((result, i) => {
      if (result.code !== 0) {
        throw new Error(
          `ejabberdctl register ${opts.users[i]?.username} failed (${result.code}): ${result.output}`,
        );
      }
    });
  } catch (error) {
    await shutdown();
    live.delete(instance);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  let stopped = false;
  return {
    domain,
    componentDomain,
    componentSecret,
    c2sPort,
    componentPort,
    componentTlsPort,
    dir,
    node,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await shutdown();
      live.delete(instance);
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error("ejabberd was stopped; start a new one");
      await shutdown();
      await launch();
    },
  };
}

/** PIDs of every process whose command line names the node: its beam.smp and any ejabberdctl VM for it. */
function nodePids(node: string): number[] {
  let table: string;
  try {
    table = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const line of table.split("\n")) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!match?.[1] || !match[2]) continue;
    // Whole-word match: the node name followed by a space or the end of the command line.
    if (` ${match[2]} `.includes(` ${node} `) || match[2].includes(`-${node} `)) {
      const pid = Number(match[1]);
      if (pid !== process.pid) pids.push(pid);
    }
  }
  return pids;
}

/** Kills leftovers of this harness from test processes that died without cleaning up (SIGKILL, crash). */
function sweepOrphans(): void {
  let table: string;
  try {
    table = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  } catch {
    return;
  }
  const pattern = new RegExp(`-sname (${NODE_PREFIX}(\\d+)_[0-9a-f]+@localhost)(\\s|$)`);
  for (const line of table.split("\n")) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    const found = match?.[2] ? pattern.exec(match[2]) : null;
    if (!match?.[1] || !found?.[2]) continue;
    const owner = Number(found[2]);
    if (owner !== process.pid && !alive(owner)) signal(Number(match[1]), "SIGKILL");
  }
  // Their temp dirs: the node name in etc/ejabberdctl.cfg says which test process owned each one.
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((name) => name.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  const owned = new RegExp(`^ERLANG_NODE=${NODE_PREFIX}(\\d+)_`, "m");
  for (const name of entries) {
    const dir = join(tmpdir(), name);
    const owner = Number(owned.exec(readFrom(join(dir, "etc", "ejabberdctl.cfg"), 0))?.[1] ?? Number.NaN);
    if (Number.isInteger(owner) && owner !== process.pid && !alive(owner)) {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function render(template: string, values: Record<string, string>): string {
  const text = readFileSync(join(FIXTURES, template), "utf8").replace(
    /\{\{([A-Z0-9_]+)\}\}/g,
    (whole, key) => {
      const value = values[key as string];
      if (value === undefined) throw new Error(`${template}: no value for ${whole}`);
      return value;
    },
  );
  return text;
}

/** The uid/gid of user `ejabberd` when we are root; null when we already are that user (or not root). */
function runAs(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === "ejabberd" && uid && gid) return { uid: Number(uid), gid: Number(gid) };
  }
  throw new Error("no user ejabberd in /etc/passwd: is the ejabberd package installed?");
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chownTree(child, uid, gid);
    else chownSync(child, uid, gid);
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The file's text from a byte offset on ("" while it does not exist). */
function readFrom(path: string, offset: number): string {
  try {
    return readFileSync(path).subarray(offset).toString("utf8");
  } catch {
    return "";
  }
}

/** c2s, component and Erlang distribution ports, all different. */
async function threeFreePorts(): Promise<[number, number, number]> {
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [a = 0, b = 0, c = 0] = ports;
  return [a, b, c];
}
