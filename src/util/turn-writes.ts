/**
 * One socket write per event-loop turn instead of one per command or stanza.
 *
 * Work arrives in chunks (an XMPP chunk holds many stanzas, a Redis chunk many replies) and each stanza or
 * reply makes a few writes: a script call to Redis, a stanza to the server. Written one by one, every write
 * is a system call that pushes a segment through the kernel's TCP stack and wakes the peer. So when input
 * arrives on any registered socket, every registered socket is corked (Node buffers the writes) until the
 * end of the turn (setImmediate), and then written with one writev each. `flush()` writes everything at once,
 * for a caller whose own next writes must follow those (delivery/outbox.ts writes acknowledgements and answers
 * uncorked, after what was corked before them).
 */
/** What a socket offers for this: net.Socket, tls.TLSSocket, and xmpp/tls.ts's adapter. */
export interface CorkableStream {
  readonly destroyed: boolean;
  cork(): void;
  uncork(): void;
  prependListener(event: "data", listener: () => void): unknown;
  off(event: "data", listener: () => void): unknown;
  once(event: "close", listener: () => void): unknown;
}

export function createTurnWrites() {
  const streams = new Set<CorkableStream>();
  const corked = new Set<CorkableStream>();
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    for (const stream of corked) stream.uncork();
    corked.clear();
  }

  function corkAll(): void {
    for (const stream of streams) {
      if (corked.has(stream) || stream.destroyed) continue;
      stream.cork();
      corked.add(stream);
    }
    if (!scheduled && corked.size > 0) {
      scheduled = true;
      setImmediate(flush);
    }
  }

  return {
    /** Batches this stream's writes per turn, and its input starts a turn's batching. */
    register(stream: CorkableStream): void {
      if (streams.has(stream)) return;
      streams.add(stream);
      stream.prependListener("data", corkAll);
      stream.once("close", () => {
        streams.delete(stream);
        stream.off("data", corkAll);
        if (corked.delete(stream)) stream.uncork();
      });
    },
    flush,
  };
}

export type TurnWrites = ReturnType<typeof createTurnWrites>;
