import { createServer } from "node:net";

/**
 * A TCP port that was free on all interfaces a moment ago. Chosen below Linux's ephemeral range (32768-60999):
 * a port the kernel handed out for listen(0) is as likely to be taken next as the source port of an outgoing
 * connection (the load tests make thousands), and the service listens on all interfaces. Redis Cluster also
 * binds port + 10000 for its bus, so that one must be free too (and stays below the range).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 2_700);
    // A port handed out earlier may not be bound yet (servers started side by side): never hand it out twice.
    if (handedOut.has(port)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) {
      handedOut.add(port);
      return port;
    }
  }
  return anyPort();
}

/** Every port this process handed out (a test file uses a few dozen of the 2,700). */
const handedOut = new Set<number>();

/**
 * Free on every interface and on 127.0.0.1 alone: with SO_REUSEADDR (which Node sets) a wildcard bind succeeds
 * beside a socket bound to 127.0.0.1 only, such as an Erlang node's distribution port, which then collides.
 */
async function canListen(port: number): Promise<boolean> {
  return (await canBind(port)) && (await canBind(port, "127.0.0.1"));
}

function canBind(port: number, host?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

function anyPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs: number, describe: () => string): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`port ${port} did not open within ${timeoutMs} ms\n${describe()}`);
}
