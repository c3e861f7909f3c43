/**
 * A TCP relay between a service and a server port, for link faults: every accepted connection is relayed to
 * the target, and cut() drops the links it carries now (both sockets destroyed; what the relay had read and
 * not yet handed to the other socket is lost, as when a network path fails). New connections are relayed
 * again at once, so a client that reconnects by itself gets through.
 *
 * For the report of a failure, each cut records the text it discarded in each direction (read from one side,
 * not yet written to the other side's socket). Bytes already in the kernel's buffers are not visible here.
 */
import { createServer, type Socket, connect as tcpConnect } from "node:net";

export interface Cut {
  readonly at: number;
  readonly links: number;
  /** Read from the client (the service), not yet written toward the target (the server). */
  readonly towardTarget: string;
  /** Read from the target, not yet written toward the client. */
  readonly towardClient: string;
}

export interface TcpProxy {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Links open now. */
  readonly open: number;
  /** Links accepted since it started. */
  readonly accepted: number;
  /** Every cut so far, oldest first. */
  readonly cuts: readonly Cut[];
  /** Destroys both sockets of every open link; returns how many links were cut. */
  cut(): number;
  /**
   * Stops reading what the clients (services) write, as a server too busy to read its sockets would: their
   * writes fill the kernel's buffers, then their own processes' queues. Links accepted meanwhile stall too.
   */
  stall(): void;
  /** Reads again. */
  resume(): void;
  /** Stops listening and cuts every link. */
  close(): Promise<void>;
}

interface Link {
  readonly near: Socket;
  readonly far: Socket;
  /** Chunks read from one side whose write to the other side has not completed yet, oldest first. */
  readonly towardTarget: Buffer[];
  readonly towardClient: Buffer[];
}

/**
 * Relays `from` to `to`, keeping each chunk in `unwritten` until its write completes; honours backpressure, and
 * does not read while `stalled()`.
 */
function relay(from: Socket, to: Socket, unwritten: Buffer[], stalled: () => boolean = () => false): void {
  from.on("data", (chunk: Buffer) => {
    unwritten.push(chunk);
    const more = to.write(chunk, (err) => {
      if (!err) unwritten.shift();
    });
    if (!more) {
      from.pause();
      to.once("drain", () => {
        if (!stalled()) from.resume();
      });
    }
  });
  from.on("end", () => to.end());
}

export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  const links = new Set<Link>();
  const cuts: Cut[] = [];
  let accepted = 0;
  let stalled = false;

  const drop = (link: Link) => {
    if (!links.delete(link)) return;
    link.near.destroy();
    link.far.destroy();
  };

  const server = createServer((near) => {
    accepted++;
    const far = tcpConnect(targetPort, targetHost);
    const link: Link = { near, far, towardTarget: [], towardClient: [] };
    links.add(link);
    // A failing side takes the whole link down, as a broken path would; a side that closes cleanly closes the
    // other one cleanly once what is on its way was written.
    for (const [socket, other] of [
      [near, far],
      [far, near],
    ] as const) {
      socket.on("error", () => drop(link));
      socket.on("close", () => {
        other.end();
        if (near.destroyed && far.destroyed) links.delete(link);
      });
    }
    relay(near, far, link.towardTarget, () => stalled);
    if (stalled) near.pause();
    relay(far, near, link.towardClient);
  });

  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });

  const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8");

  return {
    port,
    get open() {
      return links.size;
    },
    get accepted() {
      return accepted;
    },
    cuts,
    cut() {
      const cutting = [...links];
      cuts.push({
        at: Date.now(),
        links: cutting.length,
        towardTarget: cutting.map((link) => text(link.towardTarget)).join(""),
        towardClient: cutting.map((link) => text(link.towardClient)).join(""),
      });
      for (const link of cutting) drop(link);
      return cutting.length;
    },
    stall() {
      stalled = true;
      for (const link of links) link.near.pause();
    },
    resume() {
      stalled = false;
      for (const link of links) link.near.resume();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const link of [...links]) drop(link);
      await closed;
    },
  };
}
