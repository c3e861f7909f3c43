/**
 * Redis work per proxied request, from INFO commandstats before and after a measurement.
 *
 * Redis counts the commands a Lua script runs (redis.call) in commandstats too, under their own names, and
 * does not say which calls came from a client. Round trips are therefore: the script calls (evalsha, eval,
 * fcall), plus every other command that no script of the service runs. Commands a script runs and the
 * service also sends on its own (HKEYS: the online-resources gauge, only read when /metrics is scraped,
 * which the bench never does) count as script work. INFO, which the bench itself sends, is left out. Where
 * no script runs (the Redis floor: bench/minimal-component.ts with REDIS_URL), every command is a round trip.
 */
import { readdirSync, readFileSync } from "node:fs";
import { Redis } from "ioredis";

const SCRIPT_CALLS = new Set(["evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"]);
const LUA_DIR = new URL("../src/store/lua/", import.meta.url);

/** Command names (lower case) that the service's Lua scripts call, the files they include (lib/) too. */
function scriptCommands(): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(LUA_DIR, { recursive: true, encoding: "utf8" })) {
    if (!file.endsWith(".lua")) continue;
    const text = readFileSync(new URL(file, LUA_DIR), "utf8");
    for (const match of text.matchAll(/redis\.p?call\(\s*["']([A-Za-z]+)["']/g)) {
      if (match[1]) names.add(match[1].toLowerCase());
    }
  }
  return names;
}

export interface CommandStats {
  /** Calls per command name (lower case). */
  calls: Map<string, number>;
  /** INFO memory used_memory, bytes. */
  usedMemory: number;
}

export interface RedisWork {
  /** Every command executed, script-internal ones included (INFO excluded). */
  commands: number;
  /** Client requests: script calls plus commands no script runs (INFO excluded). */
  roundTrips: number;
  /** Calls per command name. */
  byCommand: Record<string, number>;
  /** Change of Redis's used_memory, bytes (records and tombstones kept for their TTL). */
  usedMemoryGrowth: number;
}

export interface RedisProbe {
  snapshot(): Promise<CommandStats>;
  /**
   * Work between two snapshots. `noScripts`: nothing ran a script in between (the Redis floor, say), so every
   * command is a client's round trip, also those the service's scripts happen to call (SET, GET).
   */
  diff(before: CommandStats, after: CommandStats, opts?: { noScripts?: boolean }): RedisWork;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function redisProbe(url: string): RedisProbe {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableReadyCheck: false });
  redis.on("error", () => {});
  const inScripts = scriptCommands();
  return {
    async snapshot() {
      const text = await redis.info("commandstats");
      const calls = new Map<string, number>();
      for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        if (match[1] && match[2]) calls.set(match[1].toLowerCase(), Number(match[2]));
      }
      const memory = await redis.info("memory");
      const usedMemory = Number(/^used_memory:(\d+)/m.exec(memory)?.[1] ?? 0);
      return { calls, usedMemory };
    },
    diff(before, after, opts = {}) {
      const byCommand: Record<string, number> = {};
      let commands = 0;
      let roundTrips = 0;
      for (const [name, calls] of after.calls) {
        if (name === "info") continue;
        const delta = calls - (before.calls.get(name) ?? 0);
        if (delta <= 0) continue;
        byCommand[name] = delta;
        commands += delta;
        if (opts.noScripts || SCRIPT_CALLS.has(name) || !inScripts.has(name.split("|")[0] ?? name))
          roundTrips += delta;
      }
      return { commands, roundTrips, byCommand, usedMemoryGrowth: after.usedMemory - before.usedMemory };
    },
    async flush() {
      await redis.flushall();
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
