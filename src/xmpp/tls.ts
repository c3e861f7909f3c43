/**
 * TLS from the first byte on the component link (`xmpps://host:port`), for a component listener that speaks
 * TLS before any XML (ejabberd's `ejabberd_service` with `tls: true`, Prosody's `ssl_ports` through
 * mod_net_multiplex). XEP-0114 has no STARTTLS: the stream, the handshake and every stanza then run inside it.
 *
 * xmpp.js 0.13 makes its socket with `new this.Socket()` and connects it with `this.socketParameters(service)`;
 * `useTls` sets both on one client instance. The socket is a small adapter on node:tls, as @xmpp/tls's is: it
 * reports `connect` only once the certificate is verified (always: the CA of XMPP_TLS_CA_FILE or the system's,
 * and the server name of XMPP_TLS_SERVERNAME), so the stream header is never sent to an unverified peer.
 */
import { EventEmitter } from "node:events";
import { isIP } from "node:net";
import tls from "node:tls";

export interface TlsSettings {
  /** PEM certificates the server's certificate must chain to; undefined: the system's CAs. */
  readonly ca: string | undefined;
  /** The name the server's certificate must hold; also sent as SNI unless it is an IP address. */
  readonly servername: string;
}

/** node:tls options, plus the name the certificate was checked against (for messages). */
export interface XmppsOptions extends tls.ConnectionOptions {
  identity: string;
}

/** The two extension points of xmpp.js's Connection that choose the transport. */
interface Transport {
  Socket: new () => TlsSocket;
  socketParameters(service: string): XmppsOptions;
}

/** Makes the client connect with TLS from the first byte when `settings` is given; returns the client. */
export function useTls<T extends object>(client: T, settings: TlsSettings | null | undefined): T {
  if (!settings) return client;
  const transport = client as unknown as Transport;
  transport.Socket = TlsSocket;
  transport.socketParameters = (service) => connectOptions(service, settings);
  return client;
}

/** node:tls options for `xmpps://host:port`: certificate always verified, against `servername`. */
export function connectOptions(service: string, settings: TlsSettings): XmppsOptions {
  const url = new URL(service);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const { ca, servername } = settings;
  return {
    host,
    port: Number(url.port || 5347),
    ...(ca === undefined ? {} : { ca }),
    // RFC 6066 3: no IP address in SNI. The identity check below still uses it.
    ...(isIP(servername) ? {} : { servername }),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(servername, cert),
    identity: servername,
  };
}

/**
 * What xmpp.js and connection.ts use of a net.Socket, over a TLS connection: `connect` after the handshake
 * and the certificate checks, `data`, `error` (explained, see `explain`), `close`, and write, end, destroy,
 * setKeepAlive and setNoDelay (node:tls passes them to the TCP socket under the TLS layer).
 */
export class TlsSocket extends EventEmitter {
  #socket: tls.TLSSocket | null = null;

  connect({ identity, ...options }: XmppsOptions): this {
    const socket = tls.connect(options);
    const where = `${options.host}:${options.port}`;
    let secure = false;
    this.#socket = socket;
    socket.on("secureConnect", () => {
      secure = true;
      this.emit("connect");
    });
    socket.on("data", (data: Buffer) => this.emit("data", data));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // Errors of the established connection (a reset) and of TCP (refused, unreachable) speak for themselves.
      // Node sets authorizationError when the certificate check (chain or name) fails, before it destroys.
      const rejected = Boolean(socket.authorizationError);
      const explained = secure ? err : explain(err, where, identity, rejected);
      if (this.listenerCount("error") > 0) this.emit("error", explained);
    });
    socket.on("close", (hadError: boolean) => this.emit("close", hadError));
    return this;
  }

  write(data: string | Uint8Array, callback?: (err?: Error | null) => void): boolean {
    if (this.#socket) return this.#socket.write(data, callback);
    callback?.(new Error("TLS socket not connected"));
    return false;
  }

  /** Bytes queued in the process (TLS records not yet handed to the kernel), as net.Socket reports it. */
  get writableLength(): number {
    return this.#socket?.writableLength ?? 0;
  }

  end(): this {
    this.#socket?.end();
    return this;
  }

  destroy(error?: Error): this {
    this.#socket?.destroy(error);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.#socket?.setKeepAlive(enable, initialDelay);
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.#socket?.setNoDelay(noDelay);
    return this;
  }

  /** Batching of writes (util/turn-writes.ts), passed to the TLS socket. */
  cork(): void {
    this.#socket?.cork();
  }

  uncork(): void {
    this.#socket?.uncork();
  }

  get destroyed(): boolean {
    return this.#socket?.destroyed ?? true;
  }
}

/** OpenSSL's verification results that mean "no trusted CA signed this chain". */
const UNTRUSTED = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "INVALID_CA",
]);

/**
 * A failed TLS setup as an operator needs to read it: what is wrong and which setting fixes it, with the
 * OpenSSL (or Node) code kept as `code` and in the message, and the original error as `cause`. Other errors
 * (ECONNREFUSED, a reset during the handshake) are returned as they are.
 */
export function explain(
  err: NodeJS.ErrnoException,
  where: string,
  servername: string,
  certificateRejected: boolean,
): Error {
  const code = err.code ?? "";
  // OpenSSL's own errors carry a multi-line message with source locations; their `reason` is the readable part.
  const reason = (err as { reason?: unknown }).reason;
  const detail = `(${code}: ${(typeof reason === "string" ? reason : err.message).trim()})`;
  let message: string;
  if (UNTRUSTED.has(code)) {
    message = `TLS: the certificate of the XMPP server at ${where} is not trusted ${detail}; XMPP_TLS_CA_FILE must hold the CA that issued it`;
  } else if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") {
    message = `TLS: the certificate of the XMPP server at ${where} is not valid for the name ${servername} ${detail}; set XMPP_TLS_SERVERNAME to a name the certificate holds`;
  } else if (code === "ERR_SSL_TLSV1_UNRECOGNIZED_NAME") {
    message = `TLS: the XMPP server at ${where} does not know the name ${servername} (SNI) ${detail}; set XMPP_TLS_SERVERNAME to a host it serves (Prosody: a VirtualHost or Component name)`;
  } else if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    message = `TLS: the certificate of the XMPP server at ${where} is outside its validity period ${detail}; renew it on the server or check this host's clock`;
  } else if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG") {
    message = `TLS: the XMPP server at ${where} did not answer with TLS ${detail}; for a plaintext component port use xmpp://`;
  } else if (certificateRejected) {
    message = `TLS: the certificate of the XMPP server at ${where} is rejected ${detail}`;
  } else if (/^ERR_(SSL|TLS)_/.test(code)) {
    message = `TLS: no secure connection to the XMPP server at ${where} ${detail}`;
  } else {
    return err;
  }
  return Object.assign(new Error(message, { cause: err }), { code });
}
