/**
 * Rolling updates from the released 0.2.0 and 0.3.0 to this code, against real ejabberd and a real Redis
 * (README, "Keys"; CHANGELOG): two replicas of the release serve; two of the current code join; the old ones
 * stop one after the other, with requests in flight the whole time, many of them pending across each step.
 * Every request gets exactly one answer, its own: the versions read and write the same records, whichever
 * forwarded a request and whichever receives its answer (ejabberd hands each stanza to a random connection of
 * the component). From 0.3.0 this also covers what changed in the records since (the claim leaves the payload
 * to the tombstone step, tombstones written anew, the requester's count raised first, the acknowledgement
 * written before the answers).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { type Client, stopClient } from "../harness/clients.js";
import { startEjabberd } from "../harness/ejabberd.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { extractRelease, type Release } from "../harness/release.js";
import {
  accounts,
  connectImplementing,
  connectUser,
  NS_SLOW,
  type RunningServer,
  sleep,
  until,
} from "./helpers.js";
import { type Replica, running, servedBy, startReplicas } from "./replicas.js";

/**
 * The last commit of each release (package.json "version"); their package-lock.json is this one's, so the
 * extracted trees share this checkout's node_modules.
 */
const RELEASES = [
  { version: "0.2.0", commit: "e37478d2d6f5d22af7087ac7429b01f7ec42f4d5" },
  { version: "0.3.0", commit: "a70245489b120419746ff82f2f2f6714165f6abb" },
];
const REQUESTS = 600;
const WINDOW = 10;

for (const { version, commit } of RELEASES) describeRollingUpdate(version, commit);

function describeRollingUpdate(version: string, commit: string): void {
  describe(`a rolling update from ${version} on ejabberd`, { timeout: 240_000 }, () => {
    let server: RunningServer;
    let redis: RedisServer;
    let release: Release;
    let replicas: Replica[] = [];
    const clients: Client[] = [];

    before(async () => {
      release = await extractRelease(commit);
      server = await startEjabberd({ users: accounts("requester", "impl") });
      redis = await startRedis();
      for (const resource of ["r1", "r2"]) clients.push(await connectImplementing(server, resource));
    });

    after(async () => {
      for (const client of clients) await stopClient(client);
      for (const { service } of replicas) await service.stop();
      await redis?.stop();
      await server?.stop();
      await release?.remove();
    });

    it(`answers every request exactly once while ${version} replicas hand over to this version`, async () => {
      const env = { REDIS_URL: redis.url };
      const old = await startReplicas(server, 2, env, { root: release.root });
      replicas = [...old];
      const requesters = [
        await connectUser(server, "requester", "a"),
        await connectUser(server, "requester", "b"),
      ];
      clients.push(...requesters);
      await servedBy(requesters[0] as Client, server.componentDomain, ["r1", "r2"]);

      const answers = new Map<string, Element[]>();
      for (const client of requesters)
        client.on("stanza", (stanza: Element) => {
          const id = stanza.attrs.id;
          if (stanza.name === "iq" && id?.startsWith("roll-"))
            answers.set(id, [...(answers.get(id) ?? []), stanza]);
        });
      /** Id -> the delay it asked for, which its answer echoes. */
      const sentIds = new Map<string, string>();
      let sent = 0;
      // Each request takes the implementing client 100-700 ms: at any moment dozens are pending.
      const traffic = Promise.all(
        requesters.flatMap((client, c) =>
          Array.from({ length: WINDOW }, async () => {
            while (sent < REQUESTS) {
              const n = sent++;
              const id = `roll-${c}-${n}`;
              const delay = String(100 + ((n * 37) % 600));
              sentIds.set(id, delay);
              await client.send(
                xml(
                  "iq",
                  { type: "get", id, to: server.componentDomain },
                  xml("echo", { xmlns: NS_SLOW }, delay),
                ),
              );
              await until(`answer to ${id}`, () => answers.has(id) || undefined, 20_000).catch(() => {});
            }
          }),
        ),
      );

      await sleep(2_000);
      replicas.push(...(await startReplicas(server, 2, env)));
      await sleep(2_000);
      for (const { service } of old) {
        await service.stop();
        await sleep(2_000);
      }
      assert.equal(running(replicas).length, 2, "only the new replicas are left");
      await traffic;
      await sleep(1_000);

      assert.equal(sentIds.size, REQUESTS);
      const missing: string[] = [];
      const doubled: string[] = [];
      const wrong: string[] = [];
      for (const [id, delay] of sentIds) {
        const list = answers.get(id);
        if (list === undefined) {
          missing.push(id);
          continue;
        }
        if (list.length > 1) doubled.push(id);
        const answer = list[0] as Element;
        if (answer.attrs.type !== "result" || answer.getChild("echo", NS_SLOW)?.getText() !== delay)
          wrong.push(`${id}: ${answer.toString().slice(0, 200)}`);
      }
      assert.deepEqual(missing, [], "every request answered");
      assert.deepEqual(doubled, [], "no request answered twice");
      assert.deepEqual(wrong, [], "every answer is the request's own result");
    });
  });
}
