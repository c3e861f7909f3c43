/**
 * What both example programs share: their settings from the environment, and logging in with @xmpp/client.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { client, type XmppClient } from "@xmpp/client";

export interface Settings {
  /** `xmpp://host:port` of the server's client-to-server (c2s) listener. */
  readonly service: string;
  /** The account's domain, e.g. `example.org`. */
  readonly domain: string;
  readonly username: string;
  readonly password: string;
  readonly resource: string;
  /** The proxy's component domain, e.g. `proxy.example.org`. */
  readonly proxyDomain: string;
}

/** Reads the settings, or prints every problem and exits with code 2 (as the proxy itself does). */
export function readSettings(env: NodeJS.ProcessEnv, program: string): Settings {
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === "") problems.push(`${name}: is required`);
    return value ?? "";
  };
  const service = required("XMPP_SERVICE");
  if (service !== "" && !/^xmpps?:\/\/[^/]+:\d{1,5}\/?$/.test(service)) {
    problems.push("XMPP_SERVICE: must look like xmpp://host:port");
  }
  const settings: Settings = {
    service,
    domain: required("XMPP_DOMAIN"),
    username: required("XMPP_USERNAME"),
    password: readPassword(env, problems),
    resource: env.XMPP_RESOURCE || hostname(),
    proxyDomain: required("PROXY_DOMAIN"),
  };
  if (problems.length > 0) {
    process.stderr.write(`${program}: invalid configuration\n${problems.map((p) => `  ${p}\n`).join("")}`);
    process.exit(2);
  }
  return settings;
}

/** XMPP_PASSWORD, or XMPP_PASSWORD_FILE (a mounted secret; trailing newlines dropped). */
function readPassword(env: NodeJS.ProcessEnv, problems: string[]): string {
  const direct = env.XMPP_PASSWORD || undefined;
  const file = env.XMPP_PASSWORD_FILE || undefined;
  if (direct !== undefined && file !== undefined) {
    problems.push("XMPP_PASSWORD: set either XMPP_PASSWORD or XMPP_PASSWORD_FILE, not both");
    return "";
  }
  if (direct !== undefined) return direct;
  if (file === undefined) {
    problems.push("XMPP_PASSWORD: is required (or XMPP_PASSWORD_FILE)");
    return "";
  }
  try {
    return readFileSync(file, "utf8").replace(/[\r\n]+$/, "");
  } catch (err) {
    problems.push(`XMPP_PASSWORD_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`);
    return "";
  }
}

/** True when the service is on this machine (127.0.0.0/8, ::1, localhost): nobody can read the stream. */
export function isLoopback(service: string): boolean {
  const host = new URL(service).hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * An @xmpp/client for the account; not started yet.
 *
 * Authentication: @xmpp/client never chooses SASL PLAIN on an unencrypted stream, which is right on a real
 * network: there it uses STARTTLS when the server offers it, then the best mechanism both sides support
 * (SCRAM-SHA-1, or PLAIN only inside TLS). Those library defaults are what a real deployment should use, so
 * nothing is overridden unless the server is on loopback. On loopback (the tests, a local Prosody) no TLS is
 * configured and nobody can listen in, so PLAIN is forced there: one round trip instead of SCRAM's 1-2 s of
 * key stretching. A server inside a private container network (docker-compose.yml) gets the defaults, i.e.
 * SCRAM-SHA-1 over the unencrypted stream.
 */
export function createClient(settings: Settings): XmppClient {
  const { service, domain, resource, username, password } = settings;
  return client({
    service,
    domain,
    resource,
    username,
    password,
    ...(isLoopback(service)
      ? {
          credentials: (authenticate: (credentials: object, mechanism: string) => Promise<void>) =>
            authenticate({ username, password }, "PLAIN"),
        }
      : {}),
  });
}

/** `[impl@example.org/a] message`, on stdout (stderr for errors), one line each. */
export function logger(settings: Settings) {
  const who = `[${settings.username}@${settings.domain}/${settings.resource}]`;
  return {
    info: (message: string) => process.stdout.write(`${who} ${message}\n`),
    error: (message: string) => process.stderr.write(`${who} ${message}\n`),
  };
}
