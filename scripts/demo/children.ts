/**
 * Child processes of `npm run demo`, each in a process group of its own, with its output read line by line.
 * Also used by test/integration/55-readme-local.test.ts and 56-demo.test.ts.
 *
 * A group of its own (`detached`): Ctrl-C in a terminal sends SIGINT to the whole foreground group, and the
 * demo wants to stop its children itself, in order (requester, clients, service, server). It also lets a
 * `bash -c` and the program it runs be stopped together, as Ctrl-C stops them in a terminal. The price: the
 * children no longer hear the terminal, so every group is killed when this process exits, however it exits
 * short of SIGKILL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** Every line it printed so far, stdout and stderr. */
  readonly lines: string[];
  /** Resolves once it has exited and its output is read (or 1 s after the exit, if something holds the pipes). */
  readonly exited: Promise<Exit>;
  running(): boolean;
  /** The first line, printed already or later, that matches; rejects if it exits first or on timeout. */
  waitForLine(match: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** `signal` to its process group, SIGKILL to the group after `graceMs`; resolves with how it ended. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

export interface ChildOptions {
  readonly cwd?: string;
  readonly env: NodeJS.ProcessEnv;
  /** Called with each line of output as it comes. */
  readonly onLine?: (line: string) => void;
}

const groups = new Set<number>();
process.on("exit", killAll);

/** SIGKILL to every group started here and not stopped yet. */
export function killAll(): void {
  for (const pgid of groups) killGroup(pgid, "SIGKILL");
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
}

export function startChild(name: string, command: string, args: string[], options: ChildOptions): Child {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pgid = child.pid;
  if (pgid !== undefined) groups.add(pgid);
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const onLine = (line: string) => {
    lines.push(line);
    options.onLine?.(line);
    for (const wake of waiters) wake();
  };
  // One line splitter per stream: chunks of stdout and stderr interleave, lines must not.
  if (child.stdout) createInterface({ input: child.stdout }).on("line", onLine);
  if (child.stderr) createInterface({ input: child.stderr }).on("line", onLine);
  let ended = false;
  const exited = new Promise<Exit>((resolve, reject) => {
    // spawn reports a missing program as an 'error' (ENOENT), with no 'exit'.
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      ended = true;
      const exit = { code, signal };
      child.once("close", () => resolve(exit));
      setTimeout(() => resolve(exit), 1000).unref();
    });
  });
  // Whoever awaits it sees the rejection; this only keeps an unawaited one from ending the process.
  exited.catch(() => {});

  const waitForLine = (match: (line: string) => boolean, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const finish = (error: Error | null, line?: string) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (error) reject(error);
        else resolve(line as string);
      };
      const tail = () => lines.slice(-30).join("\n");
      const check = () => {
        const found = lines.find(match);
        if (found !== undefined) finish(null, found);
      };
      const timer = setTimeout(
        () =>
          finish(new Error(`${name}: the line awaited was not printed within ${timeoutMs} ms\n${tail()}`)),
        timeoutMs,
      );
      waiters.add(check);
      check();
      exited.then(
        (exit) => {
          check();
          finish(
            new Error(`${name} ended (${describeExit(exit)}) before printing the line awaited\n${tail()}`),
          );
        },
        (err: Error) => finish(err),
      );
    });

  return {
    name,
    process: child,
    lines,
    exited,
    running: () => !ended,
    waitForLine,
    async stop(signal = "SIGTERM", graceMs = 5000) {
      if (pgid === undefined) return exited;
      if (!ended) killGroup(pgid, signal);
      const timer = setTimeout(() => killGroup(pgid, "SIGKILL"), graceMs);
      const exit = await exited.catch(() => ({ code: null, signal: null }));
      clearTimeout(timer);
      // Whatever it started in its group goes with it (a `bash -c` whose program outlived it).
      killGroup(pgid, "SIGKILL");
      groups.delete(pgid);
      return exit;
    },
  };
}

export function describeExit({ code, signal }: Exit): string {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}
