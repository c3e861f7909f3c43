/**
 * Health endpoints for Kubernetes probes:
 * - /healthz: the process is alive (200).
 * - /readyz: 200 only when connected to the XMPP server and the store answers; otherwise 503 with the reason.
 *   `/readyz?standby=ready` also counts a standby as ready: with Prosody, which accepts one connection per
 *   component, a rolling update must be able to bring up new replicas while an old one holds the domain.
 * - /metrics: Prometheus text format.
 * All three on HTTP_PORT, at HTTP_HOST (every interface, IPv4 and IPv6, unless set).
 */
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { Registry } from "prom-client";

export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
}

export interface HttpDeps {
  port: number;
  /** undefined: every interface (`::` with IPv4 mapped where the system has IPv6, else 0.0.0.0). */
  host: string | undefined;
  /** `standbyIsReady`: the caller accepts a standby (refused with `conflict`, waiting to take over). */
  readiness: (options: { standbyIsReady: boolean }) => Promise<Readiness>;
  metrics: Registry;
  log: Logger;
}

export function createHttpServer({ port, host, readiness, metrics, log }: HttpDeps) {
  const server: Server = createServer((req, res) => {
    const [path, query = ""] = (req.url ?? "/").split("?");
    const reply = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return reply(405, { error: "method not allowed" });
    if (path === "/healthz") return reply(200, { status: "ok" });
    if (path === "/readyz") {
      readiness({ standbyIsReady: new URLSearchParams(query).get("standby") === "ready" }).then(
        (state) =>
          reply(
            state.ready ? 200 : 503,
            state.ready ? { status: "ready" } : { status: "not ready", reason: state.reason },
          ),
        (err: Error) => reply(503, { status: "not ready", reason: err.message }),
      );
      return;
    }
    if (path === "/metrics") {
      metrics.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.contentType });
          res.end(text);
        },
        (err: Error) => reply(500, { error: err.message }),
      );
      return;
    }
    reply(404, { error: "not found" });
  });

  return {
    listen(): Promise<number> {
      return new Promise((resolve, reject) => {
        server.once("error", (err: NodeJS.ErrnoException) =>
          reject(
            new Error(
              `cannot listen on ${host ?? "*"}:${port} (HTTP_HOST, HTTP_PORT): ${err.code === "EADDRINUSE" ? "the port is taken" : (err.code ?? err.message)}`,
              { cause: err },
            ),
          ),
        );
        server.listen(port, host, () => {
          const address = server.address();
          const bound = typeof address === "object" && address ? address.port : port;
          log.info({ host: host ?? "*", port: bound }, "HTTP endpoints listening: /healthz /readyz /metrics");
          resolve(bound);
        });
      });
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections (a Prometheus scraper's) would hold the close open.
        server.closeIdleConnections();
      });
    },
  };
}
