/**
 * The service as a user runs it: a child process (`node --import tsx src/cli.ts`, not npx: killing npx would
 * leave the real node process running), configured by its environment, logging pino JSON lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { exitOf, terminate, track } from "./processes.js";

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

export function startService(env: Record<string, string>): ServiceProcess {
  const child = track(
    spawn(process.execPath, ["--import", "tsx", "src/cli.ts"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let output = "";
  const parsed: LogLine[] = [];
  const waiters = new Set<() => void>();
  let partial = "";
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    partial += chunk.toString();
    const complete = partial.split("\n");
    partial = complete.pop() ?? "";
    for (const line of complete) {
      try {
        parsed.push(JSON.parse(line) as LogLine);
      } catch {
        parsed.push({ msg: line });
      }
    }
    for (const wake of waiters) wake();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = exitOf(child);

  return {
    child,
    exited,
    lines: () => parsed,
    output: () => output,
    waitForLog(predicate, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = parsed.find(predicate);
          if (!found) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`log line not seen within ${timeoutMs} ms; output:\n${output.slice(-3000)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    stop: () => terminate(child, 5000),
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
