/**
 * A private redis-server on a free port, with nothing persisted. Never the one that may run on 6379.
 */
import { spawn } from "node:child_process";
import { Redis } from "ioredis";
import { freePort, waitForPort } from "./ports.js";
import { exitOf, terminate, track } from "./processes.js";

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops it (SIGTERM); its data is gone. */
  stop(): Promise<void>;
  /** Kills it (SIGKILL). */
  kill(): Promise<void>;
  /** Starts it again, empty, on the same port. */
  restart(): Promise<void>;
}

export interface RedisOptions {
  /**
   * Allow the DEBUG command (`--enable-debug-command yes`), for fault injection with `DEBUG SLEEP`; Redis 7
   * refuses it otherwise. Kept across restart().
   */
  debugCommand?: boolean;
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const extra = opts.debugCommand ? ["--enable-debug-command", "yes"] : [];
  let child = await launch(port, extra);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await terminate(child);
    },
    async kill() {
      child.kill("SIGKILL");
      await exitOf(child);
    },
    async restart() {
      await terminate(child);
      child = await launch(port, extra);
    },
  };
}

async function launch(port: number, extra: string[]) {
  let output = "";
  const child = track(
    spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    ),
  );
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  try {
    await waitForPort(port, 5000, () => output);
  } catch (err) {
    await terminate(child);
    throw err;
  }
  return child;
}

/**
 * One command (or a few) on a fresh connection to 127.0.0.1:port that gives up at once: a server that was killed
 * must not poison a long-lived client, and a test must not hang on one that is down.
 */
export async function askRedis<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: "127.0.0.1",
    port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
    commandTimeout: 2000,
    lazyConnect: true,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}
