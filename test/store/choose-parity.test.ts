/**
 * The Redis store decides in Lua (lib/choose.lua) what the in-process store decides in TypeScript
 * (routing/choose.ts): the same random scenarios, run on both, must give the same answers, step by step.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { BALANCE_STRATEGIES } from "../../src/routing/choose.js";
import { encodeUnverified, encodeVerified } from "../../src/store/caps-entry.js";
import { createKeys } from "../../src/store/keys.js";
import { createMemoryStore } from "../../src/store/memory.js";
import { createRedisStore } from "../../src/store/redis.js";
import { createRedisClient } from "../../src/store/redis-client.js";
import type { ForwardResult, Store } from "../../src/store/types.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { CLAIM, forwardInput } from "./requests.js";

const T0 = 1_700_000_000_000;
const SCENARIOS = 300;
const NAMES = ["a", "b", "B", "phone", "desk 2", "é", "ü", "\u{1F600}", "\uFFFD", "z"];
const SHOWS = ["", "", "", "away", "chat", "dnd", "xa"];
const NAMESPACES = ["", "urn:a", "urn:b", "urn:c"];

/** A small deterministic generator (mulberry32), so a failing scenario can be replayed by its number. */
function generator(seed: number) {
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const of = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;
  return { next, of };
}

let server: RedisServer;
before(async () => {
  server = await startRedis();
});
after(async () => server?.stop());

async function redisStore(prefix: string): Promise<Store> {
  const redis = createRedisClient({ url: server.url, log: pino({ level: "silent" }) });
  if (redis.status !== "ready") await once(redis, "ready");
  return createRedisStore({ redis, keys: createKeys(prefix, "proxy.example.org") });
}

/** One scenario: resources with random presence and caps, then a run of forwards, claims and departures. */
async function play(store: Store, seed: number): Promise<unknown[]> {
  const { next, of } = generator(seed);
  const trace: unknown[] = [];
  const names = NAMES.filter(() => next() < 0.5);
  const vers = ["V1", "V2", "V3"];
  for (const ver of vers) {
    const r = next();
    if (r < 0.4)
      await store.storeCaps(
        ver,
        encodeVerified({ identities: [], features: NAMESPACES.filter(() => next() < 0.5) }),
        T0,
        10,
      );
    else if (r < 0.55) await store.storeCaps(ver, encodeUnverified(T0 + 1000), T0, 10);
  }
  for (const name of names) {
    const ver = next() < 0.5 ? of(vers) : "";
    const priority = of([-1, 0, 0, 1, 5, 5]);
    trace.push([
      "available",
      name,
      await store.resourceAvailable(name, T0, { priority, show: of(SHOWS), status: "", ver }),
    ]);
  }
  const balance = { strategy: of(BALANCE_STRATEGIES), highest: next() < 0.4 };
  const sent: Array<{ requester: string; id: string; resource: string }> = [];
  for (let step = 0; step < 12; step++) {
    const action = next();
    if (action < 0.15 && sent.length > 0) {
      const { requester, id, resource } = sent.splice(
        Math.floor(next() * sent.length),
        1,
      )[0] as (typeof sent)[0];
      trace.push(["claim", (await store.claimReply({ ...CLAIM, requester, id, resource, now: T0 })).status]);
    } else if (action < 0.2 && names.length > 0) {
      const name = of(names);
      trace.push(["gone", name, await store.resourceUnavailable(name, T0, next(), balance)]);
    } else {
      const requester = `user${Math.floor(next() * 6)}@example.org/r`;
      const input = forwardInput(`${seed}-${step}`, T0, {
        deadline: T0 + 1000 + step,
        requester,
        balance,
        namespace: of(NAMESPACES),
        pick: next(),
        op: `op-${step}`,
      });
      const result: ForwardResult = await store.forward(input);
      trace.push(["forward", result]);
      if (result.status === "forwarded") sent.push({ requester, id: input.id, resource: result.resource });
    }
  }
  return trace;
}

describe("balancing: the Lua decision equals the TypeScript one", () => {
  it(`${SCENARIOS} random scenarios of presence, capabilities, strategies and load`, async () => {
    for (let seed = 1; seed <= SCENARIOS; seed++) {
      const redis = await redisStore(`parity${seed}`);
      const memory = createMemoryStore();
      const [inRedis, inMemory] = [await play(redis, seed), await play(memory, seed)];
      await redis.close();
      assert.deepEqual(inRedis, inMemory, `scenario ${seed}`);
    }
  });
});
