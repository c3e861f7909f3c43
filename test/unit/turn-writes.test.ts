import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { createTurnWrites } from "../../src/util/turn-writes.js";

/** Write system calls (write, writev, ...) this process made so far (proc(5), /proc/<pid>/io). */
const writeCalls = () => Number(/syscw: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))?.[1]);
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("turn writes: one socket write per event-loop turn", () => {
  let server: Server;
  /** The far ends of the connections, with everything each received. */
  const peers: Array<{ socket: Socket; received: string }> = [];

  const pair = async (): Promise<{ near: Socket; far: { socket: Socket; received: string } }> => {
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const near = connect((server.address() as { port: number }).port, "127.0.0.1");
    near.setNoDelay(true);
    await new Promise((resolve) => near.once("connect", resolve));
    const far = { socket: await accepted, received: "" };
    far.socket.setEncoding("utf8");
    far.socket.on("data", (chunk: string) => {
      far.received += chunk;
    });
    peers.push(far);
    return { near, far };
  };

  /** The near end sees input; in that same turn it writes `count` stanzas to both of its sockets. */
  const burst = async (input: Socket, outputs: Socket[], count: number) => {
    const written = new Promise<number>((resolve) => {
      input.once("data", () => {
        const before = writeCalls();
        for (let i = 0; i < count; i++) for (const out of outputs) out.write(`<iq id="${i}"/>`);
        setImmediate(() => setImmediate(() => resolve(writeCalls() - before)));
      });
    });
    const far = peers.find((peer) => peer.socket.remotePort === input.localPort);
    far?.socket.write("<input/>");
    return written;
  };

  before(async () => {
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });

  after(async () => {
    for (const peer of peers) peer.socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("writes what a turn produced on every registered socket with one system call each", async () => {
    const xmpp = await pair();
    const redis = await pair();
    const plain = await burst(xmpp.near, [xmpp.near, redis.near], 50);
    assert.ok(plain >= 100, `without batching, 100 writes take ${plain} system calls`);

    const turnWrites = createTurnWrites();
    turnWrites.register(xmpp.near);
    turnWrites.register(redis.near);
    const batched = await burst(xmpp.near, [xmpp.near, redis.near], 50);
    assert.ok(batched <= 4, `batched, 100 writes on 2 sockets take ${batched} system calls`);
    await turn();
    const expected = Array.from({ length: 50 }, (_, i) => `<iq id="${i}"/>`).join("");
    assert.ok(xmpp.far.received.endsWith(expected), "every stanza arrived, in order");
    assert.ok(redis.far.received.endsWith(expected));
    xmpp.near.destroy();
    redis.near.destroy();
  });

  it("flush() hands everything batched so far to the kernel before the caller's next write", async () => {
    const link = await pair();
    const turnWrites = createTurnWrites();
    turnWrites.register(link.near);
    const seen = new Promise<number>((resolve) => {
      link.near.once("data", () => {
        link.near.write("<batched/>");
        assert.ok(link.near.writableLength > 0, "held in the process while corked");
        turnWrites.flush();
        link.near.write("<after/>");
        resolve(link.near.writableLength);
      });
    });
    link.far.socket.write("<input/>");
    assert.equal(await seen, 0, "nothing left in the process after flush() and a plain write");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(link.far.received, "<batched/><after/>");
    link.near.destroy();
  });
});
