/**
 * Start-up and stop as an operator sees them: exit codes a supervisor can act on, signals through `npm start`,
 * store problems named as store problems, and log lines that say each thing once.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { xml } from "@xmpp/client";
import { type Client, sendIq, stopClient } from "../harness/clients.js";
import { freePort } from "../harness/ports.js";
import { terminate, track } from "../harness/processes.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { askRedis, type RedisServer, startRedis } from "../harness/redis.js";
import { type LogLine, type ServiceProcess, startService } from "../harness/service.js";
import {
  connectImplementing,
  connectUser,
  httpStatus,
  NS_ECHO,
  sleep,
  TEST_USERS,
  until,
} from "./helpers.js";
import { JAT_KEYS } from "./replicas.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const REDIS_SECRET = "redis-secret-never-logged";

/** Keys a pino line could repeat when two parts of the service name the same thing. */
const KEYS = ["level", "time", "service", "server", "msg", "err", "domain", "problem"];

function assertEachKeyOnce(output: string): void {
  for (const line of output.split("\n").filter((text) => text.startsWith("{"))) {
    for (const key of KEYS) {
      const count = line.split(`"${key}":`).length - 1;
      assert.ok(count <= 1, `"${key}" appears ${count} times in ${line}`);
    }
  }
}

describe("start-up and stop, as an operator sees them", { timeout: 180_000 }, () => {
  let prosody: ProsodyServer;
  let redis: RedisServer;
  const services: ServiceProcess[] = [];
  const clients: Client[] = [];

  const base = () => ({
    XMPP_SERVICE: `xmpp://127.0.0.1:${prosody.componentPort}`,
    XMPP_DOMAIN: prosody.componentDomain,
    XMPP_PASSWORD: prosody.componentSecret,
    TARGET_JID: `impl@${prosody.domain}`,
    HTTP_PORT: "0",
  });
  const run = (env: Record<string, string>) => {
    const service = startService({ ...base(), ...env });
    services.push(service);
    return service;
  };

  before(async () => {
    prosody = await startProsody({ users: TEST_USERS });
    redis = await startRedis();
  });

  after(async () => {
    for (const client of clients) await stopClient(client);
    for (const service of services) await service.stop();
    await redis?.stop();
    await prosody?.stop();
  });

  it("a taken HTTP_PORT: exits 1, naming the setting, with the error serialized", async () => {
    const holder: Server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => holder.listen(port, resolve));
    try {
      const service = run({ HTTP_PORT: String(port) });
      assert.equal(await service.exited, 1, service.output());
      const line = service.lines().find((entry) => entry.msg === "failed to start");
      assert.ok(line, service.output());
      const err = line.err as { type: string; message: string; stack: string };
      assert.equal(err.type, "Error");
      assert.match(err.message, new RegExp(`:${port} \\(HTTP_HOST, HTTP_PORT\\): the port is taken`));
      assert.match(err.stack, /^Error: cannot listen/);
      assertEachKeyOnce(service.output());
    } finally {
      holder.close();
    }
  });

  it("the XMPP server refuses the component: exits 2, says so once, after `starting`", async () => {
    const service = run({ XMPP_PASSWORD: "not-the-component-secret" });
    assert.equal(await service.exited, 2, service.output());
    const messages = service.lines().map((line) => line.msg);
    const refused = messages.filter((msg) => String(msg).startsWith("XMPP server refused the component"));
    assert.equal(refused.length, 1, service.output());
    assert.ok(messages.indexOf("starting") >= 0, service.output());
    assert.ok(messages.indexOf("starting") < messages.indexOf(refused[0]), service.output());
    assert.ok(!service.output().includes("not-the-component-secret"));
    assertEachKeyOnce(service.output());
  });

  it("a closed REDIS_URL port: the store is named as the problem, in plain words", async () => {
    const closed = await freePort();
    const service = run({ REDIS_URL: `redis://127.0.0.1:${closed}`, JAT_KEYS });
    const waiting = await service.waitForLog(
      (line) => String(line.msg).startsWith("store unavailable: waiting for it"),
      10_000,
    );
    assert.equal(waiting.problem, `nothing accepts connections at 127.0.0.1:${closed} (connection refused)`);
    const started = (await service.waitForLog((line) => line.port !== undefined, 5_000)).port as number;
    const ready = await httpStatus(started, "/readyz");
    assert.equal(ready.status, 503);
    assert.equal(
      JSON.parse(ready.body).reason,
      `store unavailable: nothing accepts connections at 127.0.0.1:${closed} (connection refused)`,
    );
    assert.ok(!service.output().includes("Stream isn't writeable"), service.output());
    assertEachKeyOnce(service.output());
    assert.equal(await service.stop(), 0);
  });

  it("Redis refuses the credentials at start: exits 2 naming REDIS_URL, never printing the password", async () => {
    const locked = await startRedis();
    try {
      await askRedis(locked.port, (client) => client.config("SET", "requirepass", REDIS_SECRET));
      for (const [url, words] of [
        [`redis://:wrong-${REDIS_SECRET}@127.0.0.1:${locked.port}`, "WRONGPASS"],
        [`redis://127.0.0.1:${locked.port}`, "NOAUTH"],
      ] as const) {
        const service = run({ REDIS_URL: url, JAT_KEYS });
        assert.equal(await service.exited, 2, service.output());
        const fatal = service.lines().find((line) => line.level === 60) as LogLine;
        assert.equal(fatal.msg, "the store refused the credentials: check REDIS_URL", service.output());
        assert.match(String(fatal.problem), new RegExp(words));
        assert.ok(!service.output().includes(REDIS_SECRET), service.output());
      }
    } finally {
      await locked.stop();
    }
  });

  it("LOG_LEVEL=trace shows every stanza in and out; no resource online is said once, without a resource", async () => {
    const service = run({ LOG_LEVEL: "trace", HTTP_HOST: "127.0.0.1" });
    await service.waitForLog((line) => line.msg === "connected to the XMPP server", 10_000);
    const listening = await service.waitForLog((line) => line.port !== undefined, 1_000);
    assert.equal(listening.host, "127.0.0.1");
    await service.waitForLog((line) => line.msg === "no resource of the target online", 5_000);
    await sleep(1_000);
    const lines = service.lines();
    assert.equal(lines.filter((line) => line.msg === "no resource of the target online").length, 1);
    assert.ok(!lines.some((line) => line.msg === "target resource gone" && !line.resource));
    const out = lines.filter((line) => line.msg === "stanza out").map((line) => String(line.stanza));
    assert.ok(
      out.some((stanza) => stanza.startsWith("<presence") && stanza.includes('type="subscribe"')),
      out.join("\n"),
    );

    clients.push(await connectImplementing(prosody, "r1"));
    const requester = await connectUser(prosody, "requester", "trace");
    clients.push(requester);
    await until(
      "served",
      async () => {
        const answer = await sendIq(
          requester,
          xml(
            "iq",
            { type: "get", to: prosody.componentDomain, id: `t${Date.now()}` },
            xml("echo", { xmlns: NS_ECHO }, "x"),
          ),
          3_000,
        ).catch(() => undefined);
        return answer?.attrs.type === "result" || undefined;
      },
      15_000,
    );
    const incoming = service
      .lines()
      .filter((line) => line.msg === "stanza in")
      .map((line) => String(line.stanza));
    assert.ok(
      incoming.some((stanza) => stanza.startsWith("<iq") && stanza.includes(NS_ECHO)),
      incoming.join("\n"),
    );
    assertEachKeyOnce(service.output());
    assert.equal(await service.stop(), 0);
    for (const client of clients.splice(0)) await stopClient(client);
  });

  it("`npm start` stops the service on SIGTERM, and the domain is free for the next one at once", async () => {
    if (!existsSync(`${ROOT}dist/cli.js`)) {
      const build = spawnSync("npm", ["run", "build"], { cwd: ROOT, encoding: "utf8" });
      assert.equal(build.status, 0, build.stderr);
    }
    const npm = track(
      spawn("npm", ["start"], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...base() },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    let output = "";
    npm.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    npm.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => npm.once("close", (code) => resolve(code)));
    try {
      await until(
        "connected",
        async () => output.includes("connected to the XMPP server") || undefined,
        15_000,
      );
      const children = (pid: number) =>
        readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number);
      const service = children(npm.pid as number)[0];
      assert.ok(service, "npm runs the service as its child");
      assert.match(readFileSync(`/proc/${service}/cmdline`, "utf8"), /dist\/cli\.js/);
      npm.kill("SIGTERM");
      assert.equal(await exited, 0, output);
      assert.match(output, /"msg":"stopped"/, "the service itself stopped gracefully");
      assert.ok(!existsSync(`/proc/${service}`), "no service process is left holding the domain");
      const next = run({});
      await next.waitForLog((line) => line.msg === "connected to the XMPP server", 5_000);
      assert.ok(
        !next.lines().some((line) => line.msg === "another connection holds the domain: standing by"),
      );
    } finally {
      await terminate(npm);
    }
  });
});
