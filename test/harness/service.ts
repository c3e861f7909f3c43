/**
 * The service as a user runs it: a child process (`node --import tsx src/cli.ts`, not npx: killing npx would
 * leave the real node process running), configured by its environment, logging pino JSON lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { terminate, track } from "./processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export type LogLine = Record<string, unknown>;

export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine>;
  lines(): LogLine[];
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<number | null>;
  /** SIGKILL. */
  kill(): Promise<void>;
}

/** `root`: run the code of another checkout (test/harness/release.ts), by default this one's. */
export function startService(
  env: Record<string, string>,
  { root = ROOT }: { root?: string } = {},
): ServiceProcess {
  const child = track(
    spawn(process.execPath, ["--import", "tsx", "src/cli.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let output = "";
  const parsed: LogLine[] = [];
  const waiters = new Set<() => void>();
  const onLine = (line: string) => {
    output += `${line}\n`;
    try {
      parsed.push(JSON.parse(line) as LogLine);
    } catch {
      // Not pino: a crash trace or a warning from node itself; keep it findable by predicates.
      parsed.push({ msg: line });
    }
    for (const wake of waiters) wake();
  };
  // One line splitter per stream: chunks of stdout and stderr interleave, lines must not.
  if (child.stdout) createInterface({ input: child.stdout }).on("line", onLine);
  if (child.stderr) createInterface({ input: child.stderr }).on("line", onLine);
  // 'close' rather than 'exit': by then every line has been read, so output() is complete once this resolves.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));

  return {
    child,
    exited,
    lines: () => parsed,
    output: () => output,
    waitForLog: (predicate, timeoutMs) =>
      waitForLine(parsed, waiters, exited, () => output, predicate, timeoutMs),
    async stop() {
      await terminate(child, 5000);
      return exited;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Resolves with the first matching line, seen already or later; rejects on timeout or when the process ends. */
function waitForLine(
  parsed: LogLine[],
  waiters: Set<() => void>,
  exited: Promise<number | null>,
  output: () => string,
  predicate: (line: LogLine) => boolean,
  timeoutMs: number,
): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (error: Error | null, line?: LogLine) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      waiters.delete(check);
      if (error) reject(error);
      else resolve(line as LogLine);
    };
    const fail = (why: string) => new Error(`${why}; last output:\n${output().slice(-3000)}`);
    const check = () => {
      const found = parsed.find(predicate);
      if (found) finish(null, found);
    };
    const timer = setTimeout(() => finish(fail(`log line not seen within ${timeoutMs} ms`)), timeoutMs);
    waiters.add(check);
    check();
    // A service that has exited will never log the line: fail now rather than at the timeout.
    void exited.then((code) => {
      check();
      finish(fail(`service exited (code ${code}) before logging the line`));
    });
  });
}
