/**
 * Loads the Lua scripts of ./lua into an ioredis client with `defineCommand`: one script per file, named
 * `name-<numKeys>.lua`. ioredis sends EVALSHA and falls back to EVAL when the server lost its script cache
 * (a restarted or failed-over Redis), so the scripts survive that.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Cluster, Redis } from "ioredis";

const LUA_DIR = fileURLToPath(new URL("./lua/", import.meta.url));

export interface ScriptCommands {
  forward(...args: Array<string | number>): Promise<string[]>;
  claim(...args: Array<string | number>): Promise<Array<string | null>>;
  sweep(...args: Array<string | number>): Promise<Array<string | null>>;
  resourceAvailable(...args: Array<string | number>): Promise<number>;
  resourceGone(...args: Array<string | number>): Promise<Array<string | null>>;
  expireResources(...args: Array<string | number>): Promise<string[]>;
  epoch(...args: Array<string | number>): Promise<string>;
  claimLost(...args: Array<string | number>): Promise<number>;
  restoreAnswered(...args: Array<string | number>): Promise<number>;
  failover(...args: Array<string | number>): Promise<Array<string | null>>;
}

export function defineScripts(redis: Redis | Cluster): Redis & ScriptCommands {
  for (const file of readdirSync(LUA_DIR)) {
    const match = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
    if (!match) continue;
    const name = (match[1] ?? "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    redis.defineCommand(name, { numberOfKeys: Number(match[2]), lua: readFileSync(LUA_DIR + file, "utf8") });
  }
  return redis as Redis & ScriptCommands;
}
