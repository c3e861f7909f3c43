import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config.js";

const secret = "s3cret-component-password";
const jatSecret = "0123456789abcdef0123456789abcdef-key";
const base = {
  XMPP_SERVICE: "xmpp://127.0.0.1:5347",
  XMPP_DOMAIN: "proxy.example.org",
  XMPP_PASSWORD: secret,
  TARGET_JID: "impl@example.org",
};

describe("configuration", () => {
  it("applies the documented defaults and freezes the result", () => {
    const result = loadConfig(base);
    assert.ok(result.ok);
    const { config } = result;
    assert.equal(config.iqTimeoutMs, 30_000);
    assert.equal(config.httpPort, 8080);
    assert.deepEqual(config.balance, { strategy: "random", highest: false });
    assert.deepEqual(config.caps, { routing: true, maxCached: 1000, discoFromCache: false });
    assert.equal(config.logLevel, "info");
    assert.equal(config.redis, null);
    assert.equal(config.jatKeysGenerated, true);
    assert.equal(config.jatKeys.length, 1);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.xmpp));
    assert.ok(Object.isFrozen(config.balance) && Object.isFrozen(config.caps));
  });

  it("lists every problem at once, one per variable, without secrets", () => {
    const result = loadConfig({
      XMPP_SERVICE: "http://x",
      XMPP_PASSWORD: secret,
      TARGET_JID: "impl@example.org/res",
      REDIS_URL: "postgres://x",
      IQ_TIMEOUT_MS: "soon",
      BALANCE: "round-robbin",
      LOG_LEVEL: "loud",
      JAT_KEYS: `k1:tiny-secret,bad kid:${jatSecret}`,
    });
    assert.ok(!result.ok);
    const text = result.problems.join("\n");
    for (const name of [
      "XMPP_SERVICE",
      "XMPP_DOMAIN",
      "TARGET_JID",
      "REDIS_URL",
      "IQ_TIMEOUT_MS",
      "BALANCE",
      "LOG_LEVEL",
    ]) {
      assert.match(text, new RegExp(`^${name}: `, "m"), name);
    }
    assert.match(text, /JAT_KEYS: entry 1 \(k1\) has a secret shorter than 32/);
    assert.match(text, /JAT_KEYS: entry 2 has a key id/);
    assert.ok(!text.includes(secret) && !text.includes(jatSecret) && !text.includes("tiny-secret"), text);
  });

  it("requires JAT_KEYS with Redis, and reads secrets from files", () => {
    const missing = loadConfig({ ...base, REDIS_URL: "redis://127.0.0.1:6390" });
    assert.ok(!missing.ok);
    assert.match(missing.problems.join("\n"), /^JAT_KEYS: is required when REDIS_URL is set/m);

    const dir = mkdtempSync(join(tmpdir(), "xcp-config-"));
    writeFileSync(join(dir, "password"), `${secret}\n`);
    writeFileSync(join(dir, "keys"), `new:${jatSecret},old:${jatSecret}x\n`);
    const { XMPP_PASSWORD: _, ...rest } = base;
    const result = loadConfig({
      ...rest,
      XMPP_PASSWORD_FILE: join(dir, "password"),
      JAT_KEYS_FILE: join(dir, "keys"),
      REDIS_URL: "redis://127.0.0.1:6390",
    });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.equal(result.config.xmpp.password, secret);
    assert.deepEqual(
      result.config.jatKeys.map((key) => key.kid),
      ["new", "old"],
    );
    assert.equal(result.config.redis?.prefix, "xcp");

    const unreadable = loadConfig({ ...rest, XMPP_PASSWORD_FILE: join(dir, "absent") });
    assert.ok(!unreadable.ok);
    assert.match(unreadable.problems.join("\n"), /^XMPP_PASSWORD_FILE: cannot read .*ENOENT/m);
    const both = loadConfig({ ...base, XMPP_PASSWORD_FILE: join(dir, "password") });
    assert.ok(!both.ok);
    assert.match(both.problems.join("\n"), /^XMPP_PASSWORD: set either/m);
  });

  it("says the same of every number out of range, whatever way it misses", () => {
    for (const value of ["-5", "5", "600001", "1.5", "1e3", "soon", " 100"]) {
      const result = loadConfig({ ...base, IQ_TIMEOUT_MS: value });
      assert.ok(!result.ok, value);
      assert.deepEqual(result.problems, ["IQ_TIMEOUT_MS: must be a whole number from 100 to 600000"], value);
    }
    const port = loadConfig({ ...base, HTTP_PORT: "70000" });
    assert.ok(!port.ok);
    assert.deepEqual(port.problems, ["HTTP_PORT: must be a whole number from 0 to 65535"]);
  });

  it("reads BALANCE and PRIORITY_ROUTING", () => {
    for (const strategy of ["random", "round-robin", "least-pending", "sticky"] as const) {
      for (const [priority, highest] of [
        ["all", false],
        ["highest", true],
      ] as const) {
        const result = loadConfig({ ...base, BALANCE: strategy, PRIORITY_ROUTING: priority });
        assert.ok(result.ok, `${strategy} ${priority}: ${JSON.stringify(!result.ok && result.problems)}`);
        assert.deepEqual(result.config.balance, { strategy, highest });
      }
    }
    const unset = loadConfig({ ...base, BALANCE: "", PRIORITY_ROUTING: "" });
    assert.ok(unset.ok);
    assert.deepEqual(unset.config.balance, { strategy: "random", highest: false }, "empty is unset");
    for (const value of ["least-loaded", "Random", "STICKY", " sticky", "round_robin"]) {
      const result = loadConfig({ ...base, BALANCE: value });
      assert.ok(!result.ok, value);
      assert.deepEqual(
        result.problems,
        ["BALANCE: must be one of: random, round-robin, least-pending, sticky"],
        value,
      );
    }
    for (const value of ["lowest", "Highest", "true", "1"]) {
      const result = loadConfig({ ...base, PRIORITY_ROUTING: value });
      assert.ok(!result.ok, value);
      assert.deepEqual(result.problems, ["PRIORITY_ROUTING: must be one of: all, highest"], value);
    }
  });

  it("reads CAPS_ROUTING, MAX_CAPS_CACHED and DISCO_INFO_FROM_CACHE", () => {
    for (const routing of [true, false]) {
      for (const discoFromCache of [true, false]) {
        const result = loadConfig({
          ...base,
          CAPS_ROUTING: String(routing),
          DISCO_INFO_FROM_CACHE: String(discoFromCache),
        });
        assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
        assert.deepEqual(result.config.caps, { routing, maxCached: 1000, discoFromCache });
      }
    }
    for (const [value, maxCached] of [
      ["1", 1],
      ["50000", 50_000],
      ["1000000", 1_000_000],
    ] as const) {
      const result = loadConfig({ ...base, MAX_CAPS_CACHED: value });
      assert.ok(result.ok, value);
      assert.equal(result.config.caps.maxCached, maxCached);
    }
    const unset = loadConfig({ ...base, CAPS_ROUTING: "", MAX_CAPS_CACHED: "", DISCO_INFO_FROM_CACHE: "" });
    assert.ok(unset.ok);
    assert.deepEqual(unset.config.caps, { routing: true, maxCached: 1000, discoFromCache: false });
    for (const name of ["CAPS_ROUTING", "DISCO_INFO_FROM_CACHE"]) {
      for (const value of ["yes", "no", "TRUE", "False", "1", "0", "on"]) {
        const result = loadConfig({ ...base, [name]: value });
        assert.ok(!result.ok, `${name}=${value}`);
        assert.deepEqual(result.problems, [`${name}: must be true or false`], `${name}=${value}`);
      }
    }
    for (const value of ["0", "1000001", "-1", "1.5", "1e3", "many"]) {
      const result = loadConfig({ ...base, MAX_CAPS_CACHED: value });
      assert.ok(!result.ok, value);
      assert.deepEqual(result.problems, ["MAX_CAPS_CACHED: must be a whole number from 1 to 1000000"], value);
    }
    const all = loadConfig({
      ...base,
      BALANCE: "fastest",
      PRIORITY_ROUTING: "lowest",
      CAPS_ROUTING: "maybe",
      MAX_CAPS_CACHED: "0",
      DISCO_INFO_FROM_CACHE: "sometimes",
    });
    assert.ok(!all.ok);
    assert.deepEqual(all.problems, [
      "BALANCE: must be one of: random, round-robin, least-pending, sticky",
      "CAPS_ROUTING: must be true or false",
      "DISCO_INFO_FROM_CACHE: must be true or false",
      "MAX_CAPS_CACHED: must be a whole number from 1 to 1000000",
      "PRIORITY_ROUTING: must be one of: all, highest",
    ]);
  });

  it("reads HTTP_HOST (every interface unless set)", () => {
    const unset = loadConfig(base);
    assert.ok(unset.ok);
    assert.equal(unset.config.httpHost, undefined);
    for (const host of ["127.0.0.1", "::1", "::", "metrics.internal"]) {
      const result = loadConfig({ ...base, HTTP_HOST: host });
      assert.ok(result.ok, host);
      assert.equal(result.config.httpHost, host);
    }
    const bad = loadConfig({ ...base, HTTP_HOST: "http://x" });
    assert.ok(!bad.ok);
    assert.match(bad.problems.join("\n"), /^HTTP_HOST: must be an IP address or a host name/m);
  });

  it("reads REDIS_URL from REDIS_URL_FILE, and never repeats it", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcp-config-"));
    const url = "redis://:p4ssw0rd-in-url@redis.internal:6380/2";
    writeFileSync(join(dir, "url"), `${url}\n`);
    const result = loadConfig({ ...base, REDIS_URL_FILE: join(dir, "url"), JAT_KEYS: `k:${jatSecret}` });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.deepEqual(
      result.config.redis && {
        mode: result.config.redis.mode,
        url: "url" in result.config.redis && result.config.redis.url,
      },
      { mode: "single", url },
    );

    writeFileSync(join(dir, "bad"), "postgres://:p4ssw0rd-in-url@x\n");
    const bad = loadConfig({ ...base, REDIS_URL_FILE: join(dir, "bad"), JAT_KEYS: `k:${jatSecret}` });
    assert.ok(!bad.ok);
    assert.match(bad.problems.join("\n"), /^REDIS_URL: must start with redis:\/\/ or rediss:\/\//m);
    assert.ok(!bad.problems.join("\n").includes("p4ssw0rd"));
    const both = loadConfig({
      ...base,
      REDIS_URL: url,
      REDIS_URL_FILE: join(dir, "url"),
      JAT_KEYS: `k:${jatSecret}`,
    });
    assert.ok(!both.ok);
    assert.match(both.problems.join("\n"), /^REDIS_URL: set either REDIS_URL or REDIS_URL_FILE, not both/m);
    assert.ok(!both.problems.join("\n").includes("p4ssw0rd"));
    const absent = loadConfig({ ...base, REDIS_URL_FILE: join(dir, "absent") });
    assert.ok(!absent.ok);
    assert.match(absent.problems.join("\n"), /^REDIS_URL_FILE: cannot read .*ENOENT/m);
  });

  it("reads xmpps:// with its CA file and server name", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcp-config-"));
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    writeFileSync(join(dir, "ca.pem"), pem);
    writeFileSync(join(dir, "not.pem"), "hello");
    const plain = loadConfig(base);
    assert.ok(plain.ok);
    assert.equal(plain.config.xmpp.tls, null);
    const tls = loadConfig({ ...base, XMPP_SERVICE: "xmpps://xmpp.example.org:5348" });
    assert.ok(tls.ok);
    assert.deepEqual(tls.config.xmpp.tls, { ca: undefined, servername: "xmpp.example.org" });
    const full = loadConfig({
      ...base,
      XMPP_SERVICE: "xmpps://10.0.0.5:5348",
      XMPP_TLS_CA_FILE: join(dir, "ca.pem"),
      XMPP_TLS_SERVERNAME: "xmpp.example.org",
    });
    assert.ok(full.ok);
    assert.deepEqual(full.config.xmpp.tls, { ca: pem, servername: "xmpp.example.org" });

    const problems = (env: Record<string, string>) => {
      const result = loadConfig({ ...base, ...env });
      return result.ok ? [] : result.problems;
    };
    assert.deepEqual(problems({ XMPP_TLS_CA_FILE: join(dir, "ca.pem"), XMPP_TLS_SERVERNAME: "x.org" }), [
      "XMPP_TLS_CA_FILE: only applies with XMPP_SERVICE=xmpps://host:port",
      "XMPP_TLS_SERVERNAME: only applies with XMPP_SERVICE=xmpps://host:port",
    ]);
    assert.match(
      problems({ XMPP_SERVICE: "xmpps://h:1", XMPP_TLS_CA_FILE: join(dir, "not.pem") }).join(),
      /^XMPP_TLS_CA_FILE: the file .* holds no PEM certificate$/,
    );
    assert.match(
      problems({ XMPP_SERVICE: "xmpps://h:1", XMPP_TLS_CA_FILE: join(dir, "absent") }).join(),
      /^XMPP_TLS_CA_FILE: cannot read .*ENOENT/,
    );
    assert.match(
      problems({ XMPP_SERVICE: "xmpps://h:1", XMPP_TLS_SERVERNAME: "not a name" }).join(),
      /^XMPP_TLS_SERVERNAME: must be a host name/,
    );
  });

  it("speaks in one voice: every message is `SETTING: must/is/...`, in words of its own", () => {
    const result = loadConfig({
      XMPP_SERVICE: "x",
      XMPP_DOMAIN: "a b",
      TARGET_JID: "x",
      IQ_TIMEOUT_MS: "-5",
      HTTP_PORT: "x",
      BALANCE: "x",
      PRIORITY_ROUTING: "x",
      CAPS_ROUTING: "x",
      MAX_CAPS_CACHED: "x",
      DISCO_INFO_FROM_CACHE: "x",
      LOG_LEVEL: "x",
      REDIS_PREFIX: "a b",
      MAX_ID_LENGTH: "0",
      HTTP_HOST: "!",
      REQUESTER_DENY: "a/b",
      REDIS_CLUSTER_NODES: "x",
    });
    assert.ok(!result.ok);
    assert.ok(result.problems.length >= 16, result.problems.join("\n"));
    for (const problem of result.problems) {
      assert.match(problem, /^[A-Z][A-Z0-9_]*: [a-z]/, problem);
      // The validation library's own wording ("Too small: expected number to be >=1", "Invalid input").
      assert.doesNotMatch(problem, /Invalid|expected|Too (small|big)|>=|<=/, problem);
    }
  });

  it("the command exits 2 and names each bad setting", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts"], {
      env: { PATH: process.env.PATH ?? "", XMPP_PASSWORD: secret, XMPP_DOMAIN: "proxy.example.org" },
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /XMPP_SERVICE: is required/);
    assert.match(run.stderr, /TARGET_JID: is required/);
    assert.ok(!run.stderr.includes(secret));
  });
});

describe("configuration: Redis topologies", () => {
  const keys = { JAT_KEYS: `k1:${jatSecret}` };
  const redisPassword = "r3dis-cluster-s3cret";

  it("reads REDIS_URL as a single Redis", () => {
    const result = loadConfig({ ...base, ...keys, REDIS_URL: "redis://127.0.0.1:6390", REDIS_PREFIX: "p1" });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.deepEqual(result.config.redis, {
      mode: "single",
      url: "redis://127.0.0.1:6390",
      prefix: "p1",
      wait: { replicas: 0, timeoutMs: 100 },
    });
  });

  it("reads REDIS_CLUSTER_NODES as host:port nodes, with an optional password", () => {
    const result = loadConfig({
      ...base,
      ...keys,
      REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-1.redis.svc:7001,[::1]:7002",
      REDIS_PASSWORD: redisPassword,
    });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.deepEqual(result.config.redis, {
      mode: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "redis-1.redis.svc", port: 7001 },
        { host: "::1", port: 7002 },
      ],
      prefix: "xcp",
      password: redisPassword,
      wait: { replicas: 0, timeoutMs: 100 },
    });
    assert.ok(
      Object.isFrozen(result.config.redis) &&
        Object.isFrozen(result.config.redis?.mode === "cluster" && result.config.redis.nodes),
    );

    const open = loadConfig({ ...base, ...keys, REDIS_CLUSTER_NODES: "127.0.0.1:7000" });
    assert.ok(open.ok);
    assert.ok(open.config.redis !== null && !("password" in open.config.redis), "no password unless given");
  });

  it("reads REDIS_SENTINELS with the master name, and the password from a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcp-config-"));
    writeFileSync(join(dir, "redis-password"), `${redisPassword}\n`);
    const result = loadConfig({
      ...base,
      ...keys,
      REDIS_SENTINELS: "s1:26379,s2:26379",
      REDIS_SENTINEL_NAME: "mymaster",
      REDIS_PASSWORD_FILE: join(dir, "redis-password"),
      REDIS_PREFIX: "tenant",
    });
    assert.ok(result.ok, JSON.stringify(!result.ok && result.problems));
    assert.deepEqual(result.config.redis, {
      mode: "sentinel",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26379 },
      ],
      name: "mymaster",
      prefix: "tenant",
      password: redisPassword,
      wait: { replicas: 0, timeoutMs: 100 },
    });
  });

  it("accepts only one topology, and requires JAT_KEYS with each", () => {
    const both = loadConfig({
      ...base,
      ...keys,
      REDIS_URL: "redis://127.0.0.1:6390",
      REDIS_CLUSTER_NODES: "127.0.0.1:7000",
      REDIS_SENTINELS: "127.0.0.1:26379",
      REDIS_SENTINEL_NAME: "m",
    });
    assert.ok(!both.ok);
    for (const name of ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS"]) {
      assert.match(both.problems.join("\n"), new RegExp(`^${name}: set only one of`, "m"), name);
    }
    for (const [name, value] of [
      ["REDIS_URL", "redis://127.0.0.1:6390"],
      ["REDIS_CLUSTER_NODES", "127.0.0.1:7000"],
      ["REDIS_SENTINELS", "127.0.0.1:26379"],
    ] as const) {
      const sentinelName = name === "REDIS_SENTINELS" ? { REDIS_SENTINEL_NAME: "m" } : {};
      const missing = loadConfig({ ...base, [name]: value, ...sentinelName });
      assert.ok(!missing.ok, name);
      assert.deepEqual(missing.problems, [
        `JAT_KEYS: is required when ${name} is set (every replica must verify the same tokens)`,
      ]);
    }
  });

  it("lists every Redis problem at once, naming the variable, never the password", () => {
    const result = loadConfig({
      ...base,
      REDIS_SENTINELS: "s1:26379,s2,s3:99999,,",
      REDIS_PASSWORD: redisPassword,
      REDIS_PASSWORD_FILE: "/nonexistent",
    });
    assert.ok(!result.ok);
    assert.deepEqual(result.problems, [
      "JAT_KEYS: is required when REDIS_SENTINELS is set (every replica must verify the same tokens)",
      "REDIS_PASSWORD: set either REDIS_PASSWORD or REDIS_PASSWORD_FILE, not both",
      'REDIS_SENTINELS: entry 2 ("s2") must be host:port',
      'REDIS_SENTINELS: entry 3 ("s3:99999") must be host:port',
      'REDIS_SENTINELS: entry 4 ("") must be host:port',
      'REDIS_SENTINELS: entry 5 ("") must be host:port',
      "REDIS_SENTINEL_NAME: is required with REDIS_SENTINELS (the master name they monitor)",
    ]);

    const stray = loadConfig({
      ...base,
      ...keys,
      REDIS_URL: "redis://:pw@127.0.0.1:6390",
      REDIS_PASSWORD: redisPassword,
      REDIS_SENTINEL_NAME: "mymaster",
      REDIS_CLUSTER_NODES: "",
    });
    assert.ok(!stray.ok);
    assert.deepEqual(stray.problems, [
      "REDIS_PASSWORD: only applies with REDIS_CLUSTER_NODES or REDIS_SENTINELS (a REDIS_URL carries its own: redis://:password@host:port, kept out of the environment with REDIS_URL_FILE)",
      "REDIS_SENTINEL_NAME: only applies with REDIS_SENTINELS",
    ]);
    const text = [...result.problems, ...stray.problems].join("\n");
    assert.ok(!text.includes(redisPassword) && !text.includes(":pw@"), text);
  });

  it("the command never prints the Redis password", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "src/cli.ts"], {
      env: {
        PATH: process.env.PATH ?? "",
        ...base,
        REDIS_CLUSTER_NODES: "127.0.0.1:notaport",
        REDIS_PASSWORD: redisPassword,
      },
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /^\s*REDIS_CLUSTER_NODES: entry 1 .* must be host:port$/m);
    assert.match(run.stderr, /^\s*JAT_KEYS: is required when REDIS_CLUSTER_NODES is set/m);
    assert.ok(!run.stderr.includes(redisPassword) && !run.stdout.includes(redisPassword));
  });
});
