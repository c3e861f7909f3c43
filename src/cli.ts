#!/usr/bin/env node
/**
 * `xmpp-client-proxy`: reads the configuration from the environment and runs the service.
 * Exit codes: 0 stopped by a signal; 1 failed to start or failed unexpectedly; 2 configuration problem
 * (invalid settings, refused by the XMPP server, or the store refused the credentials).
 */
import { loadConfig } from "./config.js";
import { createLogger } from "./log.js";
import { type Service, startService } from "./main.js";

const result = loadConfig(process.env);
if (!result.ok) {
  process.stderr.write(
    `xmpp-client-proxy: invalid configuration\n${result.problems.map((problem) => `  ${problem}\n`).join("")}`,
  );
  process.exit(2);
}

const log = createLogger(result.config.logLevel);
let exiting = false;
/** Exits with `code` once the asynchronous log destination has drained (the first call decides the code). */
const exit = (code: number) => {
  if (exiting) return;
  exiting = true;
  process.exitCode = code;
  log.flush(() => process.exit(code));
  // Not unref'd: nothing else may keep the process alive, and the exit code must be this one.
  setTimeout(() => process.exit(code), 1_000);
};

process.on("uncaughtException", (err) => {
  log.fatal({ err }, "uncaught exception");
  exit(1);
});
process.on("unhandledRejection", (err) => {
  log.error({ err }, "unhandled rejection");
});

// Signals are handled from the start: a SIGTERM while starting still ends in a clean exit 0.
let service: Service | undefined;
let stopping = false;
const shutdown = (signal: string) => {
  if (stopping) return;
  stopping = true;
  const graceMs = result.config.shutdownGraceMs;
  log.info({ signal, graceMs }, "stopping");
  const deadline = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), graceMs).unref());
  Promise.race([(service ? service.stop() : Promise.resolve()).then(() => "done" as const), deadline]).then(
    (outcome) => {
      if (outcome === "late")
        log.warn({ graceMs }, "shutdown grace period over: exiting with work unfinished");
      else log.info("stopped");
      exit(0);
    },
    (err: Error) => {
      log.error({ err }, "shutdown failed");
      exit(1);
    },
  );
};
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));

try {
  service = await startService(result.config, log, exit);
  if (stopping) await service.stop().finally(() => exit(0));
} catch (err) {
  log.fatal({ err }, "failed to start");
  exit(1);
}
