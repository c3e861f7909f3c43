/**
 * The processes under test: replicas of the service (test/harness/service.ts: `node --import tsx src/cli.ts`,
 * so ServiceProcess.child.pid is the node process itself) and the minimal component, each registered for
 * cleanup as soon as it is spawned; the minimal component also as the Redis floor.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { DEFAULT_TTLS } from "../src/store/types.js";
import { freePort } from "../test/harness/ports.js";
import { terminate, track } from "../test/harness/processes.js";
import { type ServiceProcess, startService } from "../test/harness/service.js";
import { httpStatus, until } from "../test/integration/helpers.js";
import { onCleanup } from "./cleanup.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
export const JAT_KEYS = "bench:0123456789abcdef0123456789abcdef";

export interface XmppTarget {
  /** The component port, e.g. of Prosody, ejabberd or the capacity mode's fake server. */
  componentPort: number;
  componentDomain: string;
  componentSecret: string;
  /** Bare JID of the implementing account. */
  target: string;
}

export interface Replica {
  readonly pid: number;
  readonly service: ServiceProcess;
  /** V8 heap in use (nodejs_heap_size_used_bytes from /metrics), bytes; null when it cannot be read. */
  heapUsed(): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * Reads the heap gauge of the replica's /metrics. A scrape also reads the online-resources gauge (one HKEYS
 * on Redis) and costs the replica a millisecond or two: the bench scrapes once per second at most.
 */
async function heapUsed(httpPort: number): Promise<number | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    const value = Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? NaN);
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * NODE_OPTIONS of the replicas. BENCH_HEAP_LIMIT_MB: V8's heap limit, as the Helm chart's heapLimitMb sets it.
 * BENCH_CPU_PROF_DIR: a V8 CPU profile of every replica (written when it stops); slows it down a little.
 */
function replicaNodeOptions(): Record<string, string> {
  const options: string[] = [];
  const heapMb = process.env.BENCH_HEAP_LIMIT_MB;
  if (heapMb) options.push(`--max-old-space-size=${Number.parseInt(heapMb, 10)}`);
  const profileDir = process.env.BENCH_CPU_PROF_DIR;
  if (profileDir) options.push(`--import=${fileURLToPath(new URL("./cpu-profile.mjs", import.meta.url))}`);
  return {
    ...(options.length > 0 ? { NODE_OPTIONS: options.join(" ") } : {}),
    ...(profileDir ? { BENCH_CPU_PROF_DIR: profileDir } : {}),
  };
}

/**
 * One replica, LOG_LEVEL=warn; resolves once /readyz says it is connected with its store reachable. `env`:
 * further settings of the service (BALANCE, say), over the defaults above.
 */
export async function startReplica(
  xmpp: XmppTarget,
  redisUrl: string | null,
  env: Record<string, string> = {},
): Promise<Replica> {
  const httpPort = await freePort();
  const service = startService({
    XMPP_SERVICE: `xmpp://127.0.0.1:${xmpp.componentPort}`,
    XMPP_DOMAIN: xmpp.componentDomain,
    XMPP_PASSWORD: xmpp.componentSecret,
    TARGET_JID: xmpp.target,
    ...(redisUrl ? { REDIS_URL: redisUrl, JAT_KEYS } : {}),
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: "warn",
    ...replicaNodeOptions(),
    ...env,
  });
  const stop = onCleanup(`service ${service.child.pid}`, () => service.stop());
  try {
    await until(
      "the service to be ready",
      async () => {
        if (service.child.exitCode !== null) throw new Error(`service exited:\n${service.output()}`);
        return (await httpStatus(httpPort, "/readyz")).status === 200 || undefined;
      },
      30_000,
    );
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${service.output().slice(-2000)}`);
  }
  return { pid: service.child.pid ?? 0, service, heapUsed: () => heapUsed(httpPort), stop };
}

export interface MinimalComponent {
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * bench/minimal-component.ts as a child process; resolves once the server accepted it. `redisUrl`: the Redis
 * floor (a SET per request and a GETDEL per answer, with the service's Redis client), keyed and timed as the
 * service's records for the default IQ_TIMEOUT_MS.
 */
export async function startMinimal(
  xmpp: XmppTarget,
  resources: string[],
  addressFormat: "plain" | "token" = "plain",
  redisUrl: string | null = null,
): Promise<MinimalComponent> {
  const child = track(
    spawn(process.execPath, ["--import", "tsx", "bench/minimal-component.ts"], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        XMPP_SERVICE: `xmpp://127.0.0.1:${xmpp.componentPort}`,
        XMPP_DOMAIN: xmpp.componentDomain,
        XMPP_PASSWORD: xmpp.componentSecret,
        TARGET_JID: xmpp.target,
        TARGET_RESOURCES: resources.join(","),
        ADDRESS_FORMAT: addressFormat,
        ...(redisUrl
          ? {
              REDIS_URL: redisUrl,
              FLOOR_TTL_MS: String(30_000 + DEFAULT_TTLS.recordGraceMs),
              FLOOR_PREFIX: "xcp",
            }
          : {}),
      },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  const stop = onCleanup(`minimal component ${child.pid}`, () => terminate(child));
  let output = "";
  const online = new Promise<void>((resolve, reject) => {
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (/^online$/m.test(output)) resolve();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    child.once("exit", (code) => reject(new Error(`minimal component exited (${code}): ${output}`)));
    setTimeout(
      () => reject(new Error(`minimal component not online within 15 s: ${output}`)),
      15_000,
    ).unref();
  });
  try {
    await online;
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid ?? 0, stop };
}

/** The heap in use of all replicas, or null when one cannot be read. */
export async function sumHeaps(
  replicas: Array<{ heapUsed?: () => Promise<number | null> }>,
): Promise<number | null> {
  const heaps = await Promise.all(replicas.map((replica) => replica.heapUsed?.() ?? null));
  return heaps.some((heap) => heap === null)
    ? null
    : heaps.reduce<number>((sum, heap) => sum + (heap ?? 0), 0);
}
