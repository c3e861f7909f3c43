/**
 * A private Prosody for one test file: rendered from test/fixtures/prosody.cfg.lua.tpl into a temp dir, on
 * free ports, accounts registered with prosodyctl. See ../shared/FIELD-NOTES.md for the pitfalls avoided here.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "./ports.js";
import { terminate, track } from "./processes.js";

const TEMPLATE = new URL("../fixtures/prosody.cfg.lua.tpl", import.meta.url);

export interface ProsodyServer {
  readonly domain: string;
  readonly componentDomain: string;
  readonly componentSecret: string;
  readonly c2sPort: number;
  readonly componentPort: number;
  /** With the option componentTls: the XEP-0114 port on 127.0.0.1 that speaks TLS from the first byte. */
  readonly componentTlsPort: number | null;
  readonly dir: string;
  stop(): Promise<void>;
  /** Stops and starts it again on the same ports and data (accounts kept). */
  restart(): Promise<void>;
  logs(): string;
}

export interface ProsodyOptions {
  users: Array<{ username: string; password: string }>;
  componentDomain?: string;
  componentSecret?: string;
  /**
   * Also a port that speaks TLS from the first byte for the component (mod_net_multiplex's `ssl_ports`: Prosody
   * 0.12 has no TLS option of the component listener itself), with this certificate and key (PEM files).
   */
  componentTls?: { certFile: string; keyFile: string };
}

export async function startProsody(opts: ProsodyOptions): Promise<ProsodyServer> {
  const dir = mkdtempSync(join(tmpdir(), "xcp-prosody-"));
  mkdirSync(join(dir, "certs"));
  const domain = "localhost";
  const componentDomain = opts.componentDomain ?? "proxy.localhost";
  const componentSecret = opts.componentSecret ?? `secret-${randomBytes(8).toString("hex")}`;
  const c2sPort = await freePort();
  const componentPort = await freePort();
  let componentTlsPort: number | null = null;
  while (opts.componentTls && componentTlsPort === null) {
    const port = await freePort();
    if (port !== c2sPort && port !== componentPort) componentTlsPort = port;
  }
  const config = join(dir, "prosody.cfg.lua");
  const values: Record<string, string> = {
    DATA_DIR: dir,
    C2S_PORT: String(c2sPort),
    COMPONENT_PORT: String(componentPort),
    DOMAIN: domain,
    COMPONENT_DOMAIN: componentDomain,
    COMPONENT_SECRET: componentSecret,
    LOG_LEVEL: "info",
  };
  if (opts.componentTls && componentTlsPort !== null) {
    const { certFile, keyFile } = opts.componentTls;
    // The `ssl_` prefix is the service's (multiplex_ssl): ssl_ports, ssl_interfaces, and ssl_ssl for its TLS.
    values.COMPONENT_TLS = [
      `ssl_ports = { ${componentTlsPort} }`,
      'ssl_interfaces = { "127.0.0.1" }',
      `ssl_ssl = { certificate = ${JSON.stringify(certFile)}; key = ${JSON.stringify(keyFile)} }`,
    ].join("\n");
    values.COMPONENT_TLS_MODULES =
      '"net_multiplex", -- routes a TLS connection on ssl_ports by its stream header';
  }
  writeFileSync(
    config,
    readFileSync(TEMPLATE, "utf8").replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? ""),
  );
  let output = "";
  const logs = () => {
    let file = "";
    try {
      file = readFileSync(join(dir, "prosody.log"), "utf8");
    } catch {}
    return `${file}\n${output}`.split("\n").slice(-40).join("\n");
  };
  const launch = async (): Promise<ChildProcess> => {
    const child = track(spawn("prosody", ["--config", config, "-F"], { stdio: ["ignore", "pipe", "pipe"] }));
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    // A bad config makes prosody exit at once: say so instead of polling the ports until the timeout.
    // 'close' rather than 'exit': by then its last words are read from the pipes.
    const died = new Promise((resolve) => child.once("close", resolve)).then((code) => {
      throw new Error(`prosody exited with code ${code} before accepting connections\n${logs()}`);
    });
    const listening = (async () => {
      await waitForPort(c2sPort, 10_000, logs);
      await waitForPort(componentPort, 10_000, logs);
      if (componentTlsPort !== null) await waitForPort(componentTlsPort, 10_000, logs);
    })();
    try {
      // race() subscribes to both, so the loser's later rejection (the exit at stop()) is handled.
      await Promise.race([died, listening]);
    } catch (err) {
      await terminate(child);
      throw err;
    }
    return child;
  };

  let child: ChildProcess;
  try {
    for (const user of opts.users) register(config, dir, user.username, domain, user.password);
    child = await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    domain,
    componentDomain,
    componentSecret,
    c2sPort,
    componentPort,
    componentTlsPort,
    dir,
    logs,
    async stop() {
      await terminate(child);
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await terminate(child);
      child = await launch();
    },
  };
}

/**
 * Output goes to a file rather than a pipe: prosodyctl refuses to run when a log sink of the config cannot be
 * opened, and a sink on /dev/stderr cannot be opened when stderr is a Node pipe (a socket). The template no
 * longer has such a sink, but a copied config may.
 */
function register(config: string, dir: string, username: string, domain: string, password: string): void {
  const logFile = join(dir, "prosodyctl.out");
  const fd = openSync(logFile, "a");
  const result = spawnSync("prosodyctl", ["--config", config, "register", username, domain, password], {
    stdio: ["ignore", fd, fd],
    timeout: 10_000,
  });
  closeSync(fd);
  if (result.status !== 0)
    throw new Error(`prosodyctl register ${username} failed:\n${readFileSync(logFile, "utf8")}`);
}
