/**
 * Everything the bench starts registers how to stop it here. The steps run in reverse order at the end of a
 * path, at the end of the run, on an error, and on SIGINT/SIGTERM (Ctrl-C). A second signal exits at once;
 * the harnesses' exit hooks then SIGKILL whatever is still tracked.
 */

interface Step {
  name: string;
  run: () => Promise<unknown> | unknown;
}

const steps: Step[] = [];
const STEP_TIMEOUT_MS = 15_000;

/** Registers a stop step; returns a function that runs it now (once) and unregisters it. */
export function onCleanup(name: string, run: () => Promise<unknown> | unknown): () => Promise<void> {
  const step: Step = { name, run };
  steps.push(step);
  return async () => {
    const index = steps.indexOf(step);
    if (index < 0) return;
    steps.splice(index, 1);
    await runStep(step);
  };
}

async function runStep(step: Step): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(step.run),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("timed out")), STEP_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    process.stderr.write(`bench: stopping ${step.name} failed: ${(err as Error).message}\n`);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs every registered step, newest first. */
export async function cleanupAll(): Promise<void> {
  for (let step = steps.pop(); step; step = steps.pop()) await runStep(step);
}

let signalled = false;

export function installSignalHandlers(): void {
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    if (signalled) {
      process.stderr.write(`bench: ${signal} again, exiting now\n`);
      process.exit(code);
    }
    signalled = true;
    process.stderr.write(`bench: ${signal}: stopping everything the bench started\n`);
    void cleanupAll().finally(() => process.exit(code));
  };
  process.on("SIGINT", () => onSignal("SIGINT", 130));
  process.on("SIGTERM", () => onSignal("SIGTERM", 143));
  process.on("SIGHUP", () => onSignal("SIGHUP", 129));
}

export function interrupted(): boolean {
  return signalled;
}
