/**
 * IQ requests that break RFC 6120 section 8.2.3 (exactly one child element in a get or set): whoever answers
 * them, the requester gets exactly one `modify/bad-request`, and when it is the proxy that answers, the error
 * says so (`by`), is counted and logged.
 *
 * Prosody checks the rule itself for its own clients (core/stanza_router.lua, "Incorrect number of children
 * for IQ stanza") before routing to any component: such a request never reaches the proxy. ejabberd routes it
 * to the component, and the proxy answers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { type Client, collectStanzas, sendIq, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { startProsody } from "../harness/prosody.js";
import {
  connectImplementing,
  connectUser,
  errorCondition,
  httpStatus,
  NS_ECHO,
  sleep,
  TEST_USERS,
  type TestServer,
} from "./helpers.js";
import { type Replica, startReplicas } from "./replicas.js";

type Server = TestServer & { componentPort: number; componentSecret: string; stop(): Promise<void> };

const MALFORMED: Array<[string, Array<Element>]> = [
  ["two-children", [xml("query", { xmlns: "jabber:iq:version" }), xml("ping", { xmlns: "urn:xmpp:ping" })]],
  ["no-child", []],
];

for (const [name, start, proxyAnswers] of [
  ["Prosody", () => startProsody({ users: TEST_USERS }), false],
  ["ejabberd", () => startEjabberd({ users: TEST_USERS }), true],
] as const) {
  describe(`malformed IQ requests through ${name}`, { timeout: 120_000 }, () => {
    let server: Server;
    let replica: Replica;
    let impl: Client;
    let requester: Client;
    let reachedImpl: Element[];

    before(async () => {
      server = (await start()) as Server;
      [replica] = (await startReplicas(server, 1, { LOG_LEVEL: "debug" })) as [Replica];
      impl = await connectImplementing(server, "r1");
      reachedImpl = collectStanzas(
        impl,
        (stanza) => stanza.is("iq") && stanza.attrs.id?.startsWith("bad-") === true,
      );
      requester = await connectUser(server, "requester", "malformed");
    });

    after(async () => {
      await stopClient(requester);
      await stopClient(impl);
      await replica?.service.stop();
      await server?.stop();
    });

    for (const [kind, children] of MALFORMED) {
      it(`answers a get with ${kind} once with modify/bad-request, and never disturbs the target`, async () => {
        const id = `bad-${kind}`;
        const answers = collectStanzas(requester, (stanza) => stanza.attrs.id === id);
        const answer = await sendIq(
          requester,
          xml("iq", { type: "get", to: server.componentDomain, id }, ...children),
          5_000,
        );
        await sleep(500);
        assert.equal(answers.length, 1, "exactly one answer");
        assert.equal(answer.attrs.type, "error");
        assert.equal(answer.attrs.from, server.componentDomain);
        assert.deepEqual(
          { type: errorCondition(answer).type, condition: errorCondition(answer).condition },
          { type: "modify", condition: "bad-request" },
        );
        assert.equal(reachedImpl.length, 0, "the implementing client never sees it");
        const error = answer.getChild("error");
        if (proxyAnswers) {
          assert.equal(error?.attrs.by, server.componentDomain, "the proxy says it answered");
          const metrics = (await httpStatus(replica.port, "/metrics")).body;
          assert.match(metrics, /^xcp_requests_rejected_total\{reason="badRequest"\} [1-9]/m);
          await replica.service.waitForLog(
            (line) => line.msg === "request rejected" && line.id === id && line.error === "badRequest",
            2_000,
          );
        } else {
          // Prosody's own answer: no `by`, its own text; the proxy saw nothing.
          assert.equal(error?.attrs.by, undefined);
          assert.ok(
            !replica.service.lines().some((line) => line.id === id),
            "the request never reached the proxy",
          );
        }
      });
    }

    it("still proxies a well-formed request afterwards", async () => {
      const answer = await sendIq(
        requester,
        xml(
          "iq",
          { type: "get", to: server.componentDomain, id: "good" },
          xml("echo", { xmlns: NS_ECHO }, "hi"),
        ),
        5_000,
      );
      assert.equal(answer.attrs.type, "result");
    });
  });
}
