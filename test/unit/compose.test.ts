/**
 * docker-compose.yml, the Dockerfile and docker/prosody/ stay consistent with the code: the compose file is
 * valid, the replicas set only settings the service knows (and documents), with values it accepts, and the
 * demo's Prosody configuration is the tests' configuration in substance. The compose file also stays quiet
 * and offline-buildable: healthchecks open no XMPP connection (Prosody's is run here against made-up
 * /proc/net files), every service restarts, each image built from the Dockerfile is named once, and the
 * Dockerfile has no `# syntax=` line (BuildKit would fetch a frontend image from a registry).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { loadConfig } from "../../src/config.js";
import { configSettings } from "./config-settings.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => readFileSync(`${ROOT}${path}`, "utf8");

type Environment = Record<string, string>;
interface ComposeService {
  build?: string | { context?: string; target?: string };
  image?: string;
  restart?: string;
  healthcheck?: { test?: string | string[]; interval?: string };
  command?: unknown;
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | { published?: string | number; target?: number }>;
}

const compose = parse(read("docker-compose.yml"), { merge: true }) as {
  services: Record<string, ComposeService>;
};

/** A compose `environment` (map or list of KEY=VALUE) as a map of strings. */
function environmentOf(service: ComposeService): Environment {
  const raw = service.environment ?? {};
  if (Array.isArray(raw)) {
    return Object.fromEntries(
      raw.map((entry) => {
        const eq = entry.indexOf("=");
        return eq < 0 ? [entry, ""] : [entry.slice(0, eq), entry.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(
    Object.entries(raw).map(([key, value]) => [key, value === null ? "" : String(value)]),
  );
}

/** The replicas of the service: built from the repository root's Dockerfile, final stage (no target). */
function proxyServices(): Array<[string, ComposeService]> {
  return Object.entries(compose.services).filter(([, service]) => {
    const build = service.build;
    if (build === undefined) return false;
    const context = typeof build === "string" ? build : (build.context ?? ".");
    const target = typeof build === "string" ? undefined : build.target;
    return /^\.\/?$/.test(context) && target === undefined;
  });
}

/** A service's build as "context#target" ("" when it is not built). */
function buildKey(service: ComposeService): string {
  const build = service.build;
  if (build === undefined) return "";
  if (typeof build === "string") return `${build.replace(/\/$/, "") || "."}#`;
  return `${(build.context ?? ".").replace(/\/$/, "") || "."}#${build.target ?? ""}`;
}

/** The ports of the `xmpp://prosody:PORT` services that the replicas and the clients connect to. */
function prosodyPorts(): number[] {
  const ports = Object.values(compose.services).flatMap((service) => {
    const match = /^xmpps?:\/\/prosody:(\d+)/.exec(environmentOf(service).XMPP_SERVICE ?? "");
    return match ? [Number(match[1])] : [];
  });
  return [...new Set(ports)].sort();
}

/** The variables of README.md's configuration table (first column, `A` / `A_FILE` cells included). */
function documentedSettings(): Set<string> {
  const readme = read("README.md");
  const section = readme.slice(
    readme.indexOf("## Configuration"),
    readme.indexOf("\n## ", readme.indexOf("## Configuration") + 1),
  );
  const names = new Set<string>();
  for (const line of section.split("\n")) {
    const cell = /^\|([^|]*)\|/.exec(line)?.[1] ?? "";
    for (const match of cell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(match[1] ?? "");
  }
  return names;
}

/** The ENV names of the Dockerfile's last stage (the service image). */
function dockerfileEnv(): string[] {
  const stages = read("Dockerfile").split(/^FROM /m);
  const last = stages[stages.length - 1] ?? "";
  return [...last.matchAll(/^ENV\s+([A-Za-z_][A-Za-z0-9_]*)[=\s]/gm)].map((m) => m[1] ?? "");
}

/** A Lua list such as `modules_enabled = { "a", -- comment\n "b" }`, comments stripped. */
function luaList(lua: string, name: string): string[] {
  const body = new RegExp(`^${name}\\s*=\\s*\\{([^}]*)\\}`, "m").exec(lua)?.[1];
  assert.ok(body !== undefined, `${name} is declared`);
  return [...body.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "");
}

const stripLuaComments = (lua: string) => lua.replace(/--[^\n]*/g, "");
/** `Component "<domain>" ["<module>"]` lines, with what follows the domain (nothing: an external component). */
const componentLines = (lua: string) =>
  [...lua.matchAll(/^Component\s+"([^"]+)"(.*)$/gm)].map((m) => ({
    domain: m[1] ?? "",
    rest: (m[2] ?? "").trim(),
  }));

describe("docker-compose.yml", () => {
  it("is a valid compose file (docker-compose config -q)", (t) => {
    const probe = spawnSync("docker-compose", ["version"], { encoding: "utf8", timeout: 30_000 });
    if (probe.error) {
      // .ci/run installs it: in CI a missing validator is a failure, not a skip.
      assert.ok(!process.env.CI, "docker-compose is not installed; .ci/run should have installed it");
      t.skip("docker-compose is not installed (Debian: apt-get install docker-compose); not validated");
      return;
    }
    const result = spawnSync("docker-compose", ["-f", "docker-compose.yml", "config", "-q"], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(result.status, 0, `docker-compose config -q failed:\n${result.stderr}${result.stdout}`);
  });

  it("runs at least two replicas of the service, with the same shared settings and different HTTP ports", () => {
    const replicas = proxyServices();
    assert.ok(
      replicas.length >= 2,
      `replicas built from ./Dockerfile: ${replicas.map(([name]) => name).join(", ")}`,
    );
    const shared = ["XMPP_DOMAIN", "REDIS_URL", "REDIS_PREFIX", "JAT_KEYS", "TARGET_JID"];
    const [first, ...others] = replicas.map(([, service]) => environmentOf(service));
    for (const env of others) {
      for (const name of shared)
        assert.equal(env[name], first?.[name], `${name} is the same on every replica`);
    }
    assert.ok(first?.REDIS_URL, "the replicas share a Redis");
    const published = replicas.flatMap(([, service]) =>
      (service.ports ?? []).map((port) =>
        typeof port === "string" ? port.split(":").slice(0, -1).join(":") : String(port.published),
      ),
    );
    assert.equal(
      new Set(published).size,
      published.length,
      `published HTTP ports differ: ${published.join(", ")}`,
    );
    assert.ok(published.length >= replicas.length, "every replica publishes its HTTP port");
  });

  it("sets on the replicas only settings that src/config.ts knows and README.md documents, with valid values", () => {
    const known = configSettings();
    const documented = documentedSettings();
    // The parsers found the lists (not empty ones that would make the checks below vacuous).
    for (const name of [
      "XMPP_SERVICE",
      "TARGET_JID",
      "REDIS_URL",
      "HTTP_PORT",
      "XMPP_PASSWORD_FILE",
      "JAT_KEYS",
    ]) {
      assert.ok(known.has(name), `src/config.ts knows ${name}`);
      assert.ok(documented.has(name), `README.md documents ${name}`);
    }
    for (const [name, service] of proxyServices()) {
      const env = environmentOf(service);
      for (const variable of Object.keys(env)) {
        assert.ok(known.has(variable), `${name}: ${variable} is not a setting of src/config.ts`);
        assert.ok(documented.has(variable), `${name}: ${variable} is not in README.md's configuration table`);
      }
      const result = loadConfig(env);
      assert.ok(result.ok, `${name}: ${result.ok ? "" : result.problems.join("; ")}`);
    }
    // The image's own ENV: NODE_ENV is Node's and npm's, every other one must be a setting.
    for (const variable of dockerfileEnv()) {
      assert.ok(
        variable === "NODE_ENV" || known.has(variable),
        `Dockerfile: ENV ${variable} is not a setting`,
      );
    }
  });

  it("runs the example implementing client with two resources of the target account", () => {
    const [, replica] = proxyServices()[0] ?? [];
    const target = environmentOf(replica ?? {}).TARGET_JID ?? "";
    const resources = Object.values(compose.services)
      .filter((service) =>
        JSON.stringify(service.command ?? "").includes("examples/implementing-client/index.ts"),
      )
      .map(environmentOf)
      .filter((env) => `${env.XMPP_USERNAME}@${env.XMPP_DOMAIN}` === target)
      .map((env) => env.XMPP_RESOURCE);
    assert.equal(new Set(resources).size, 2, `resources of ${target}: ${resources.join(", ")}`);
  });
});

describe("docker-compose.yml: quiet, restarting, each image built once", () => {
  /** Ways a healthcheck could open a connection to a server (and so show up in its log). */
  const CONNECTS =
    /\/dev\/(tcp|udp)\/|\b(nc|ncat|netcat|curl|wget|telnet|socat|s_client)\b|prosodyctl\s+check/;

  it("no healthcheck opens a connection to the XMPP server", () => {
    const checks = Object.entries(compose.services).filter(([, service]) => service.healthcheck?.test);
    assert.ok(
      checks.some(([name]) => name === "prosody"),
      "prosody has a healthcheck (the replicas wait for it)",
    );
    for (const [name, service] of checks) {
      const test = JSON.stringify(service.healthcheck?.test);
      assert.doesNotMatch(test, CONNECTS, `${name}: the healthcheck connects to something: ${test}`);
      if (name !== "redis")
        for (const port of prosodyPorts())
          assert.doesNotMatch(
            test,
            new RegExp(`\\b${port}\\b`),
            `${name}: the healthcheck names port ${port}`,
          );
    }
  });

  it("prosody's healthcheck passes when both XMPP ports listen, and only then (run on made-up /proc/net files)", () => {
    const test = compose.services.prosody?.healthcheck?.test;
    assert.ok(Array.isArray(test) && test[0] === "CMD", `an exec-form healthcheck: ${JSON.stringify(test)}`);
    const command: string[] = test.slice(1);
    assert.ok(command.join(" ").includes("/proc/net/tcp"), "it reads the kernel's socket table");
    const ports = prosodyPorts();
    assert.deepEqual(
      ports,
      [5222, 5347],
      "the clients use c2s 5222 and the replicas the component port 5347",
    );
    const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, "0");
    const v4 = (address: string, port: number, state: string, index: number) =>
      `  ${index}: ${address}:${hex(port)} ${address === "00000000" ? "00000000:0000" : "0100007F:D431"} ${state} 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0`;
    const v6 = (port: number, index: number) =>
      `  ${index}: ${"0".repeat(32)}:${hex(port)} ${"0".repeat(32)}:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0`;
    const header =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
    const [c2s = 0, component = 0] = ports;
    const cases: Array<[string, { tcp?: string[]; tcp6?: string[] }, boolean]> = [
      [
        "both listening (IPv4)",
        { tcp: [v4("00000000", c2s, "0A", 0), v4("00000000", component, "0A", 1)] },
        true,
      ],
      ["both listening (IPv6 only)", { tcp: [], tcp6: [v6(c2s, 0), v6(component, 1)] }, true],
      ["one on each table", { tcp: [v4("00000000", c2s, "0A", 0)], tcp6: [v6(component, 0)] }, true],
      ["c2s only", { tcp: [v4("00000000", c2s, "0A", 0)], tcp6: [] }, false],
      ["component only", { tcp: [v4("00000000", component, "0A", 0)] }, false],
      // An established connection on the port (state 01) is not a listener.
      [
        "connections but no listener",
        { tcp: [v4("0300A8C0", c2s, "01", 0), v4("0300A8C0", component, "01", 1)] },
        false,
      ],
      ["nothing", { tcp: [], tcp6: [] }, false],
    ];
    const dir = mkdtempSync(join(tmpdir(), "xcp-healthcheck-"));
    try {
      for (const [what, tables, healthy] of cases) {
        rmSync(join(dir, "tcp"), { force: true });
        rmSync(join(dir, "tcp6"), { force: true });
        for (const [table, lines] of Object.entries(tables))
          writeFileSync(join(dir, table), `${[header, ...lines].join("\n")}\n`);
        // Compose's own unescaping ($$ is a literal $), and the made-up files instead of the kernel's.
        const args: string[] = command.map((arg) =>
          arg.replaceAll("$$", "$").replaceAll("/proc/net/", `${dir}/`),
        );
        const run = spawnSync(args[0] ?? "", args.slice(1), { encoding: "utf8", timeout: 10_000 });
        assert.equal(run.error, undefined);
        assert.equal(run.status === 0, healthy, `${what}: exit ${run.status} ${run.stderr}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("every service has a restart policy", () => {
    for (const [name, service] of Object.entries(compose.services))
      assert.ok(
        ["always", "unless-stopped", "on-failure"].includes(service.restart ?? ""),
        `${name}: restart is ${service.restart}`,
      );
    assert.equal(compose.services.redis?.restart, "unless-stopped");
    assert.equal(compose.services.prosody?.restart, "unless-stopped");
  });

  it("each image built from the Dockerfile has one name, shared by every service that runs it", () => {
    const byBuild = new Map<string, Set<string>>();
    for (const [name, service] of Object.entries(compose.services)) {
      const key = buildKey(service);
      if (!key) continue;
      assert.ok(service.image, `${name}: a built service names its image (or it gets one per service)`);
      byBuild.set(key, (byBuild.get(key) ?? new Set()).add(service.image));
    }
    assert.deepEqual([...byBuild.keys()].sort(), [".#", ".#build"], "the service image and its build stage");
    const names = [...byBuild.values()].map((images) => {
      assert.equal(images.size, 1, `one name per build: ${[...images].join(", ")}`);
      return [...images][0] ?? "";
    });
    assert.equal(new Set(names).size, names.length, "the two builds have different names");
    for (const image of names) {
      assert.match(
        image,
        /^[a-z0-9][a-z0-9._-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*$/,
        `${image}: a local name with a tag`,
      );
      const pulled = Object.entries(compose.services).filter(([, s]) => s.image === image && !s.build);
      assert.deepEqual(pulled, [], `${image} is only ever built, never pulled`);
    }
    assert.ok(proxyServices().length >= 2, "the replicas share the service image");
  });
});

describe("Dockerfile", () => {
  it("has no `# syntax=` parser directive (BuildKit would fetch the frontend image from a registry)", () => {
    const dockerfile = read("Dockerfile");
    // Parser directives may only stand before the first instruction, blank line or other comment; none is
    // allowed anywhere, so that moving one up cannot bring it back.
    assert.doesNotMatch(dockerfile, /^#\s*syntax\s*=/im);
    assert.match(dockerfile, /^FROM \$\{NODE_IMAGE\} AS build$/m, "the build stage the clients run");
  });
});

describe("docker/prosody/prosody.cfg.lua", () => {
  const demo = stripLuaComments(read("docker/prosody/prosody.cfg.lua"));
  const tests = stripLuaComments(read("test/fixtures/prosody.cfg.lua.tpl"));

  it("enables and disables the same modules as the tests' configuration", () => {
    for (const list of ["modules_enabled", "modules_disabled"]) {
      assert.deepEqual(luaList(demo, list).sort(), luaList(tests, list).sort(), list);
    }
    assert.ok(luaList(tests, "modules_enabled").includes("roster"), "the parser read the template's modules");
  });

  it("declares the same external component, for the replicas' domain and with their secret", () => {
    const demoComponents = componentLines(demo);
    const testComponents = componentLines(tests);
    assert.equal(demoComponents.length, 1, "one Component line");
    assert.equal(testComponents.length, 1, "one Component line in the template");
    assert.equal(testComponents[0]?.domain, "{{COMPONENT_DOMAIN}}");
    assert.equal(demoComponents[0]?.rest, testComponents[0]?.rest, "an external component (no module)");
    const env = environmentOf(proxyServices()[0]?.[1] ?? {});
    assert.equal(demoComponents[0]?.domain, env.XMPP_DOMAIN, "the Component is the replicas' XMPP_DOMAIN");
    const secret = /^\s*component_secret\s*=\s*"([^"]*)"/m.exec(demo.slice(demo.indexOf("Component ")))?.[1];
    assert.equal(secret, env.XMPP_PASSWORD, "component_secret is the replicas' XMPP_PASSWORD");
  });

  it("serves the target account's domain, and the entrypoint registers the target account", () => {
    const env = environmentOf(proxyServices()[0]?.[1] ?? {});
    const [local, domain] = (env.TARGET_JID ?? "").split("@");
    assert.match(demo, new RegExp(`^VirtualHost "${domain}"`, "m"));
    assert.match(read("docker/prosody/entrypoint.sh"), new RegExp(`prosodyctl .*register ${local} `));
  });
});
