/**
 * The load generator runs in a child process of its own (bench/load.ts), so that the requesters do not share
 * one event loop with the implementing clients: the parent drives it with these IPC messages.
 *
 *   parent: config  -> child connects its requesters   -> ready
 *   parent: start   -> sends requests (warm-up)
 *   parent: mark    -> counters reset, measurement runs -> marked
 *   parent: stop    -> no new requests, in-flight drain  -> result
 *   parent: close   -> disconnects and exits
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { terminate, track } from "../test/harness/processes.js";
import type { LatencySummary } from "./stats.js";

export interface LoadConfig {
  c2sPort: number;
  domain: string;
  /** Addresses the requests go to, in turn (the proxy's domain, or the implementing client's resources). */
  targets: string[];
  connections: number;
  /** Requests in flight per connection. */
  window: number;
  /** Resources of the requester account are `<prefix><n>`. */
  resourcePrefix: string;
}

export type ToChild =
  | { type: "config"; config: LoadConfig }
  | { type: "start" }
  | { type: "mark" }
  | { type: "stop"; drainMs: number }
  | { type: "close" };

export interface LoadResult {
  /** Answers received between mark and stop. */
  completed: number;
  /** Of those, answers of type error. */
  errors: number;
  /** Error conditions seen, with counts. */
  errorConditions: Record<string, number>;
  /** Seconds between mark and stop, as the child measured them. */
  seconds: number;
  latency: LatencySummary;
  /** Requests still unanswered after the drain. */
  unanswered: number;
  /** CPU seconds the load generator used between mark and stop. */
  cpuSeconds: number;
}

export type FromChild =
  | { type: "ready" }
  | { type: "marked" }
  | { type: "result"; result: LoadResult }
  | { type: "failed"; message: string };

const ROOT = fileURLToPath(new URL("../", import.meta.url));

export interface LoadProcess {
  readonly pid: number;
  start(): void;
  mark(): Promise<void>;
  stop(drainMs: number): Promise<LoadResult>;
  close(): Promise<void>;
}

export async function startLoad(config: LoadConfig): Promise<LoadProcess> {
  const child: ChildProcess = track(
    spawn(process.execPath, ["--import", "tsx", "bench/load.ts"], {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }),
  );
  const waiters: Array<{ type: FromChild["type"]; resolve: (msg: FromChild) => void }> = [];
  let failure: Error | null = null;
  const failAll = (err: Error) => {
    failure = err;
    // Every waiter fails: nothing else will ever arrive.
    for (const waiter of waiters.splice(0)) waiter.resolve({ type: "failed", message: err.message });
  };
  child.on("message", (msg: FromChild) => {
    if (msg.type === "failed") return failAll(new Error(`load generator: ${msg.message}`));
    const index = waiters.findIndex((waiter) => waiter.type === msg.type);
    const [waiter] = index >= 0 ? waiters.splice(index, 1) : [];
    waiter?.resolve(msg);
  });
  child.once("exit", (code, signal) => failAll(new Error(`load generator exited (${code ?? signal})`)));

  const expect = async <T extends FromChild["type"]>(type: T, timeoutMs: number) => {
    if (failure) throw failure;
    let timer: NodeJS.Timeout | undefined;
    const msg = await Promise.race([
      new Promise<FromChild>((resolve) => waiters.push({ type, resolve })),
      new Promise<FromChild>((resolve) => {
        timer = setTimeout(
          () => resolve({ type: "failed", message: `no '${type}' within ${timeoutMs} ms` }),
          timeoutMs,
        );
      }),
    ]);
    clearTimeout(timer);
    if (msg.type === "failed") throw new Error(msg.message);
    return msg as Extract<FromChild, { type: T }>;
  };
  const send = (msg: ToChild) => {
    if (child.connected) child.send(msg);
  };

  send({ type: "config", config });
  try {
    await expect("ready", 30_000);
  } catch (err) {
    await terminate(child);
    throw err;
  }
  return {
    pid: child.pid ?? 0,
    start: () => send({ type: "start" }),
    async mark() {
      send({ type: "mark" });
      await expect("marked", 10_000);
    },
    async stop(drainMs) {
      send({ type: "stop", drainMs });
      return (await expect("result", drainMs + 30_000)).result;
    },
    async close() {
      send({ type: "close" });
      const exited = new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve(null);
        else child.once("exit", resolve);
      });
      const timer = setTimeout(() => void terminate(child), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
