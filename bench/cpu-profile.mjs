// Loaded into a service replica with NODE_OPTIONS=--import (bench/services.ts, when BENCH_CPU_PROF_DIR is
// set; Node refuses --cpu-prof in NODE_OPTIONS): profiles the main thread with the inspector and writes
// <dir>/service-<pid>.cpuprofile when the process exits. Open it in Chrome DevTools or speedscope.
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 200 });
  session.post("Profiler.start");
  process.on("exit", () => {
    // The in-thread inspector session answers synchronously, so this completes before the process ends.
    session.post("Profiler.stop", (err, result) => {
      if (err || !result) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `service-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
