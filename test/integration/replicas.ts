/**
 * Several replicas of the service behind one test server, as the multi-replica tests run them.
 */
import type { Client } from "../harness/clients.js";
import { freePort } from "../harness/ports.js";
import { type ServiceProcess, startService } from "../harness/service.js";
import { httpStatus, load, NS_ECHO, type TestServer, until } from "./helpers.js";

export interface Replica {
  readonly service: ServiceProcess;
  readonly port: number;
}

export const JAT_KEYS = "k1:0123456789abcdef0123456789abcdef";

/**
 * Starts `count` replicas for the server's component domain with `env` added, and waits until all are ready; with
 * `standby` (Prosody: one component connection per domain), until one is connected and the others stand by.
 * `root`: the code of another checkout (test/harness/release.ts).
 */
export async function startReplicas(
  server: TestServer & { readonly componentPort: number; readonly componentSecret: string },
  count: number,
  env: Record<string, string>,
  { standby = false, root }: { standby?: boolean; root?: string } = {},
): Promise<Replica[]> {
  const replicas: Replica[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    const service = startService(
      {
        XMPP_SERVICE: `xmpp://127.0.0.1:${server.componentPort}`,
        XMPP_DOMAIN: server.componentDomain,
        XMPP_PASSWORD: server.componentSecret,
        TARGET_JID: `impl@${server.domain}`,
        JAT_KEYS,
        HTTP_PORT: String(port),
        LOG_LEVEL: "info",
        ...env,
      },
      root === undefined ? {} : { root },
    );
    replicas.push({ service, port });
  }
  const path = standby ? "/readyz?standby=ready" : "/readyz";
  for (const { port } of replicas) {
    await until("readiness", async () => (await httpStatus(port, path)).status === 200 || undefined, 20_000);
  }
  if (standby) {
    await until(
      "one replica connected",
      async () => {
        for (const { port } of replicas) if ((await httpStatus(port, "/readyz")).status === 200) return true;
        return undefined;
      },
      20_000,
    );
  }
  return replicas;
}

/** The replicas whose process still runs. */
export const running = (replicas: Replica[]) =>
  replicas.filter(({ service }) => service.child.exitCode === null && service.child.signalCode === null);

/** Sends echo requests until every listed resource has answered (presence lands on random replicas). */
export function servedBy(requester: Client, proxy: string, resources: string[]): Promise<true> {
  return until(
    `answers from ${resources.join(", ")}`,
    async () => {
      const { answers } = await load([requester], proxy, `warm${Date.now()}`, 20, 5);
      const seen = new Set(
        [...answers.values()].map((list) => list[0]?.getChild("echo", NS_ECHO)?.attrs.resource),
      );
      return resources.every((resource) => seen.has(resource)) || undefined;
    },
    20_000,
  );
}
