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
    assert.equal(config.balance, "random");
    assert.equal(config.logLevel, "info");
    assert.equal(config.redis, null);
    assert.equal(config.jatKeysGenerated, true);
    assert.equal(config.jatKeys.length, 1);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.xmpp));
  });

  it("lists every problem at once, one per variable, without secrets", () => {
    const result = loadConfig({
      XMPP_SERVICE: "http://x",
      XMPP_PASSWORD: secret,
      TARGET_JID: "impl@example.org/res",
      REDIS_URL: "postgres://x",
      IQ_TIMEOUT_MS: "soon",
      BALANCE: "round-robin",
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
