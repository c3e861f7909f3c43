/**
 * TLS from the first byte on the component link (`xmpps://`), against real servers offering it: ejabberd's
 * `ejabberd_service` listener with `tls: true`, and Prosody 0.12's `ssl_ports` (mod_net_multiplex routes a TLS
 * connection to the component listener by its stream header). The certificates come from a private CA made
 * here. What a user observes: an IQ round trip over the TLS link, TCP keepalive on it, and for an untrusted
 * certificate, a name the certificate does not hold, or a plaintext port, no connection, /readyz not ready,
 * and a log line naming the problem with the OpenSSL code, retried with backoff.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { type Client, sendIq, stopClient } from "../harness/clients.js";
import { type EjabberdServer, startEjabberd } from "../harness/ejabberd.js";
import { freePort } from "../harness/ports.js";
import { type ProsodyServer, startProsody } from "../harness/prosody.js";
import { type LogLine, type ServiceProcess, startService } from "../harness/service.js";
import { createTestCa, type TestCa } from "../harness/tls-ca.js";
import {
  connectImplementing,
  connectUser,
  echo,
  httpStatus,
  NS_ECHO,
  TEST_USERS,
  type TestServer,
  until,
} from "./helpers.js";

/** The name in ejabberd's certificate: not the address connected to, so only XMPP_TLS_SERVERNAME makes it match. */
const EJABBERD_NAME = "xmpp.test.localhost";

interface TlsServer extends TestServer {
  readonly componentSecret: string;
  readonly componentPort: number;
  readonly componentTlsPort: number | null;
}

let ca: TestCa;
let otherCa: TestCa;
const services: ServiceProcess[] = [];

before(() => {
  ca = createTestCa();
  otherCa = createTestCa("another test CA");
});

after(async () => {
  for (const service of services) await service.stop();
  ca?.remove();
  otherCa?.remove();
});

function start(server: TlsServer, httpPort: number, env: Record<string, string>): ServiceProcess {
  const service = startService({
    XMPP_SERVICE: `xmpps://127.0.0.1:${server.componentTlsPort}`,
    XMPP_DOMAIN: server.componentDomain,
    XMPP_PASSWORD: server.componentSecret,
    TARGET_JID: `impl@${server.domain}`,
    HTTP_PORT: String(httpPort),
    IQ_TIMEOUT_MS: "3000",
    RECONNECT_MIN_MS: "200",
    RECONNECT_MAX_MS: "1000",
    LOG_LEVEL: "debug",
    ...env,
  });
  services.push(service);
  return service;
}

const connectionErrors = (service: ServiceProcess) =>
  service.lines().filter((line) => line.msg === "XMPP connection error");

const errOf = (line: LogLine) => (line.err ?? {}) as { message?: string; code?: string };

/** The service is up, the certificate check fails: no connection, not ready, the reason logged and retried. */
async function refused(
  server: TlsServer,
  env: Record<string, string>,
  expected: { codes: string[]; message: RegExp },
): Promise<void> {
  const httpPort = await freePort();
  const service = start(server, httpPort, env);
  try {
    await until(
      "the reason logged on two attempts",
      () => connectionErrors(service).length >= 2 || undefined,
    );
    for (const line of connectionErrors(service)) {
      const err = errOf(line);
      assert.ok(
        expected.codes.includes(err.code ?? ""),
        `code ${err.code} is one of ${expected.codes.join(", ")}`,
      );
      assert.match(err.message ?? "", expected.message);
      assert.ok(err.message?.includes(err.code ?? "?"), "the message names the OpenSSL code");
    }
    const readiness = await httpStatus(httpPort, "/readyz");
    assert.equal(readiness.status, 503);
    assert.ok(!service.lines().some((line) => line.msg === "connected to the XMPP server"));
    assert.equal(service.child.exitCode, null, "a certificate problem is retried, not fatal");
  } finally {
    await service.stop();
  }
}

/** IQ round trip requester -> proxy -> implementing client and back, over the TLS component link. */
async function roundTrip(server: TlsServer, env: Record<string, string>): Promise<void> {
  const httpPort = await freePort();
  const impl = await connectImplementing(server, "r1");
  let requester: Client | undefined;
  const service = start(server, httpPort, env);
  try {
    requester = await connectUser(server, "requester", "desk");
    await service.waitForLog((line) => line.msg === "connected to the XMPP server", 15_000);
    await until("ready", async () => (await httpStatus(httpPort, "/readyz")).status === 200 || undefined);
    const asker = requester;
    const answer = await until(
      "a proxied answer",
      async () => {
        const reply = await sendIq(
          asker,
          echo(`tls-${Date.now()}`, server.componentDomain, "over TLS"),
          3000,
        );
        return reply.getChild("echo", NS_ECHO) ? reply : undefined;
      },
      15_000,
    );
    assert.equal(answer.attrs.type, "result");
    assert.equal(answer.attrs.from, server.componentDomain);
    assert.equal(answer.getChild("echo", NS_ECHO)?.getText(), "over TLS");
    assert.equal(answer.getChild("echo", NS_ECHO)?.attrs.resource, "r1");
    assert.deepEqual(connectionErrors(service), []);
    // connection.ts turns TCP keepalive on once online: it must reach the TCP socket under the TLS layer.
    // ss shows one timer per socket: the retransmission timer while data is unacknowledged, else keepalive's.
    let sockets = "";
    await until(
      "the keepalive timer on the component link",
      () => {
        sockets = execFileSync(
          "ss",
          ["-tnoH", "state", "established", `( dport = :${server.componentTlsPort} )`],
          { encoding: "utf8" },
        );
        return /timer:\(keepalive,/.test(sockets) || undefined;
      },
      5000,
    ).catch(() => assert.fail(`no keepalive on the component link:\n${sockets}`));
  } finally {
    await service.stop();
    await stopClient(requester);
    await stopClient(impl);
  }
}

describe("xmpps:// to ejabberd's ejabberd_service with tls: true", { timeout: 120_000 }, () => {
  let ejabberd: EjabberdServer;

  before(async () => {
    ejabberd = await startEjabberd({ users: TEST_USERS, componentTls: ca.issue([EJABBERD_NAME]) });
  });

  after(async () => {
    await ejabberd?.stop();
  });

  it("proxies an IQ over the TLS link, verified with XMPP_TLS_CA_FILE and XMPP_TLS_SERVERNAME", async () => {
    await roundTrip(ejabberd, { XMPP_TLS_CA_FILE: ca.caFile, XMPP_TLS_SERVERNAME: EJABBERD_NAME });
  });

  it("refuses a certificate from a CA it does not trust: the system's CAs only, or another CA", async () => {
    const untrusted = {
      codes: ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN"],
      message: /certificate of the XMPP server at 127\.0\.0\.1:\d+ is not trusted .*XMPP_TLS_CA_FILE/,
    };
    await refused(ejabberd, { XMPP_TLS_SERVERNAME: EJABBERD_NAME }, untrusted);
    await refused(
      ejabberd,
      { XMPP_TLS_CA_FILE: otherCa.caFile, XMPP_TLS_SERVERNAME: EJABBERD_NAME },
      untrusted,
    );
  });

  it("refuses a certificate that does not hold the server name", async () => {
    // No XMPP_TLS_SERVERNAME: the host of XMPP_SERVICE (127.0.0.1), which the certificate does not name.
    await refused(
      ejabberd,
      { XMPP_TLS_CA_FILE: ca.caFile },
      {
        codes: ["ERR_TLS_CERT_ALTNAME_INVALID"],
        message: /not valid for the name 127\.0\.0\.1 .*XMPP_TLS_SERVERNAME/,
      },
    );
    await refused(
      ejabberd,
      { XMPP_TLS_CA_FILE: ca.caFile, XMPP_TLS_SERVERNAME: "other.test.localhost" },
      {
        codes: ["ERR_TLS_CERT_ALTNAME_INVALID"],
        message: /not valid for the name other\.test\.localhost .*XMPP_TLS_SERVERNAME/,
      },
    );
  });

  it("says so when xmpps:// points at a plaintext component port", async () => {
    await refused(
      { ...ejabberd, componentTlsPort: ejabberd.componentPort },
      { XMPP_TLS_CA_FILE: ca.caFile, XMPP_TLS_SERVERNAME: EJABBERD_NAME },
      {
        codes: ["ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_PACKET_LENGTH_TOO_LONG"],
        message: /did not answer with TLS .*xmpp:\/\//,
      },
    );
  });
});

describe("xmpps:// to Prosody 0.12's ssl_ports (mod_net_multiplex)", { timeout: 120_000 }, () => {
  let prosody: ProsodyServer;

  before(async () => {
    // Prosody picks the certificate by SNI among its hosts and refuses any other name: name a host it serves.
    prosody = await startProsody({ users: TEST_USERS, componentTls: ca.issue(["localhost"]) });
  });

  after(async () => {
    await prosody?.stop();
  });

  it("proxies an IQ over the TLS link", async () => {
    await roundTrip(prosody, { XMPP_TLS_CA_FILE: ca.caFile, XMPP_TLS_SERVERNAME: "localhost" });
  });

  it("says so when the server name is none of Prosody's hosts (SNI refused)", async () => {
    await refused(
      prosody,
      { XMPP_TLS_CA_FILE: ca.caFile, XMPP_TLS_SERVERNAME: "other.test.localhost" },
      {
        codes: ["ERR_SSL_TLSV1_UNRECOGNIZED_NAME"],
        message: /does not know the name other\.test\.localhost .*XMPP_TLS_SERVERNAME/,
      },
    );
  });
});
