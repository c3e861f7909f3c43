/**
 * Loads the Lua scripts of ./lua into an ioredis client with `defineCommand`: one script per file, named
 * `name-<numKeys>.lua`. ioredis sends EVALSHA and falls back to EVAL when the server lost its script cache
 * (a restarted or failed-over Redis), so the scripts survive that.
 *
 * Each script is one typed method: KEYS first, then ARGV, in the order of the script's header.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Cluster, Redis } from "ioredis";

const LUA_DIR = fileURLToPath(new URL("./lua/", import.meta.url));

type Arg = string | number;
type Reply = Array<string | null>;

export interface ScriptCommands {
  forward(
    resources: string,
    record: string,
    deadlines: string,
    subscription: string,
    counts: string,
    presence: string,
    caps: string,
    gone: string,
    requester: string,
    id: string,
    to: string,
    type: string,
    deadline: number,
    pick: number,
    member: string,
    recordTtl: number,
    indexTtl: number,
    payload: string,
    op: string,
    bare: string,
    perRequester: number,
    total: number,
    strategy: string,
    highest: "1" | "0",
    namespace: string,
    now: number,
    refreshIndexTtl: "1" | "0",
  ): Promise<Reply>;
  claim(
    record: string,
    deadlines: string,
    counts: string,
    resource: string,
    member: string,
    op: string,
    answer: string,
    now: number,
    leaseEnd: number,
    gen: number,
  ): Promise<Reply>;
  failover(
    resources: string,
    record: string,
    gone: string,
    deadlines: string,
    counts: string,
    presence: string,
    resource: string,
    pick: number,
    member: string,
    op: string,
    answer: string,
    now: number,
    leaseEnd: number,
    gen: number,
    strategy: string,
    highest: "1" | "0",
  ): Promise<Reply>;
  sweep(
    deadlines: string,
    epoch: string,
    counts: string,
    now: number,
    limit: number,
    recordPrefix: string,
    op: string,
    leaseEnd: number,
    newEpoch: string,
    epochTtl: number,
    tombstoneTtl: number,
    maxHandouts: number,
    legacy: "0" | "1",
  ): Promise<Reply>;
  ack(deadlines: string, recordPrefix: string, tombstoneTtl: number, ...memberOps: string[]): Promise<number>;
  resourceAvailable(
    resources: string,
    subscription: string,
    gone: string,
    presence: string,
    caps: string,
    resource: string,
    now: number,
    ttl: number,
    info: string,
    ver: string,
    askMs: number,
  ): Promise<number>;
  capsStore(
    caps: string,
    order: string,
    ver: string,
    entry: string,
    now: number,
    max: number,
    ttl: number,
  ): Promise<number>;
  routingView(resources: string, presence: string, caps: string): Promise<string[]>;
  serviceState(resources: string, presence: string, state: string, ttl: number): Promise<[string, string]>;
  subscribe(subscribers: string, bare: string, max: number): Promise<number>;
  queueMessage(
    queue: string,
    queued: string,
    resources: string,
    presence: string,
    entry: string,
    bare: string,
    perRequester: number,
    total: number,
    ttl: number,
  ): Promise<string>;
  takeMessages(queue: string, queued: string, count: number, before: number | ""): Promise<string[]>;
  requestOut(
    record: string,
    deadlines: string,
    counts: string,
    asker: string,
    askerId: string,
    to: string,
    type: string,
    deadline: number,
    member: string,
    recordTtl: number,
    indexTtl: number,
    op: string,
    askerBare: string,
    answerer: string,
    total: number,
  ): Promise<[string]>;
  resourceGone(
    resources: string,
    gone: string,
    deadlines: string,
    counts: string,
    presence: string,
    now: number,
    ttl: number,
    resource: string,
    recordPrefix: string,
    pick: number,
    cursor: number,
    chunk: number,
    goneMs: number,
    strategy: string,
    highest: "1" | "0",
    moved: number,
  ): Promise<Reply>;
  expireResources(
    resources: string,
    gone: string,
    since: number,
    now: number,
    ttl: number,
  ): Promise<string[]>;
  epoch(epoch: string, newEpoch: string, ttl: number): Promise<string>;
  claimLost(record: string, deadlines: string, member: string, tombstoneTtl: number): Promise<number>;
  restoreAnswered(
    deadlines: string,
    recordPrefix: string,
    tombstoneTtl: number,
    ...members: string[]
  ): Promise<number>;
}

/** The script commands of a client or of a pipeline built on it. */
export type WithScripts<T> = T & { [K in keyof ScriptCommands]: (...args: Arg[]) => T };

/**
 * A script's text with each `--! include <file>` line replaced by that file of ./lua (lib/: functions shared by
 * scripts; Redis runs each script as one text, so the shared code is put into it before it is loaded).
 */
export function withIncludes(file: string): string {
  return readFileSync(LUA_DIR + file, "utf8").replace(/^--! include (\S+)$/gm, (_, lib: string) =>
    readFileSync(LUA_DIR + lib, "utf8"),
  );
}

export function defineScripts(redis: Redis | Cluster): Redis & ScriptCommands {
  for (const file of readdirSync(LUA_DIR)) {
    const match = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
    if (!match) continue;
    const name = (match[1] ?? "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    redis.defineCommand(name, { numberOfKeys: Number(match[2]), lua: withIncludes(file) });
  }
  return redis as Redis & ScriptCommands;
}
