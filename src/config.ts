/**
 * Configuration: read once from the environment into a frozen, typed object.
 *
 * Every problem is collected and reported at once, one line per problem, each naming the variable. Secret
 * values (XMPP_PASSWORD, JAT_KEYS, REDIS_PASSWORD, REDIS_URL) never appear in a message.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { z } from "zod";
import { BALANCE_STRATEGIES, type BalancePolicy } from "./routing/choose.js";
import { jid as parseJid } from "./xmpp/jid.js";

export interface JatKey {
  readonly kid: string;
  readonly secret: Buffer;
}

export interface Config {
  readonly xmpp: {
    readonly service: string;
    readonly domain: string;
    readonly password: string;
    /** `xmpps://`: TLS from the first byte (XMPP_TLS_CA_FILE, XMPP_TLS_SERVERNAME); null for `xmpp://`. */
    readonly tls: XmppTls | null;
  };
  readonly target: string;
  readonly redis: RedisConfig | null;
  readonly jatKeys: readonly JatKey[];
  /** True when no JAT_KEYS were given and a random key was made (single replica, in-process store). */
  readonly jatKeysGenerated: boolean;
  readonly iqTimeoutMs: number;
  /** BALANCE and PRIORITY_ROUTING (README, "Balancing"). */
  readonly balance: BalancePolicy;
  /** Routing by capability (README, "Balancing"): CAPS_ROUTING, MAX_CAPS_CACHED, DISCO_INFO_FROM_CACHE. */
  readonly caps: { readonly routing: boolean; readonly maxCached: number; readonly discoFromCache: boolean };
  readonly httpPort: number;
  /** HTTP_HOST: the listen address of /healthz, /readyz and /metrics; undefined: every interface. */
  readonly httpHost: string | undefined;
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  readonly reconnect: { readonly minMs: number; readonly maxMs: number; readonly standbyMs: number };
  readonly sweepIntervalMs: number;
  /** After a (re)connect, resources not confirmed by presence within this time are forgotten. */
  readonly resourceConfirmMs: number;
  /** On SIGTERM: how long the replica may take to leave the server and finish its store work. */
  readonly shutdownGraceMs: number;
  /** Admission (README, "Limits"). */
  readonly limits: {
    readonly pendingPerRequester: number;
    readonly pendingTotal: number;
    readonly idLength: number;
    readonly keptPayloadBytes: number;
  };
  /** Messages kept while no resource is online (README, "Messages, both ways"). */
  readonly messageQueue: {
    readonly perRequester: number;
    readonly total: number;
    readonly lifetimeMs: number;
    readonly maxBytes: number;
  };
  /** The service's own presence: SERVICE_SUBSCRIPTIONS and MAX_SUBSCRIBERS (README, "Service presence"). */
  readonly servicePresence: { readonly approve: boolean; readonly maxSubscribers: number };
  /** REQUESTER_ALLOW (null: everyone) and REQUESTER_DENY: bare JIDs and domains, lower case. */
  readonly requesters: { readonly allow: readonly string[] | null; readonly deny: readonly string[] };
}

export interface XmppTls {
  /** PEM certificates the server's certificate must chain to; undefined: the system's CAs. */
  readonly ca: string | undefined;
  /** The name checked in the server's certificate and sent as SNI. */
  readonly servername: string;
}

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** One of the three Redis topologies: REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS. */
export type RedisConfig =
  | { readonly mode: "single"; readonly url: string; readonly prefix: string; readonly wait: RedisWait }
  | {
      readonly mode: "cluster";
      readonly nodes: readonly RedisNode[];
      readonly prefix: string;
      readonly password?: string;
      readonly wait: RedisWait;
    }
  | {
      readonly mode: "sentinel";
      readonly sentinels: readonly RedisNode[];
      readonly name: string;
      readonly prefix: string;
      readonly password?: string;
      readonly wait: RedisWait;
    };

/** REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS: how many replicas must have each write (0: none). */
export interface RedisWait {
  readonly replicas: number;
  readonly timeoutMs: number;
}

const REDIS_TOPOLOGIES = ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS"] as const;

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

const KID = /^[A-Za-z0-9_-]{1,16}$/;
const MIN_SECRET = 32;

/** A whole number in a range; one message for every way to miss it. */
const int = (min: number, max: number) =>
  z.string().transform((value, ctx) => {
    const number = /^\d{1,10}$/.test(value) ? Number(value) : Number.NaN;
    if (number >= min && number <= max) return number;
    ctx.addIssue(`must be a whole number from ${min} to ${max}`);
    return z.NEVER;
  });

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** `host:port,host:port` (an IPv6 host in brackets) into nodes. */
const hostPorts = z.string().transform((value, ctx) => {
  const nodes: RedisNode[] = [];
  value.split(",").forEach((raw, index) => {
    const entry = raw.trim();
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):(\d{1,5})$/.exec(entry);
    const port = Number(match?.[3]);
    if (match && port >= 1 && port <= 65_535) nodes.push({ host: match[1] ?? match[2] ?? "", port });
    else ctx.addIssue(`entry ${index + 1} (${JSON.stringify(entry.slice(0, 100))}) must be host:port`);
  });
  return nodes;
});

/** `a,b,c`: bare JIDs (`user@example.org`) or domains (`example.org`), compared in lower case. */
/** A switch: exactly `true` or `false`. */
const flag = z.enum(["true", "false"], { error: "must be true or false" });

const addressList = z.string().transform((value, ctx) => {
  const entries = value
    .split(",")
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== "");
  entries.forEach((entry, index) => {
    const parsed = parseJid(entry);
    if (parsed?.resource !== "")
      ctx.addIssue(
        `entry ${index + 1} (${JSON.stringify(entry.slice(0, 100))}) must be a bare JID or a domain`,
      );
  });
  return entries;
});

const schema = z.object({
  XMPP_SERVICE: z
    .string({ error: "is required" })
    .refine(
      (value) => /^xmpps?:\/\/[^/:]+:\d{1,5}\/?$/.test(value),
      "must be xmpp://host:port, or xmpps://host:port for TLS from the first byte",
    ),
  XMPP_TLS_SERVERNAME: z.string().regex(HOSTNAME, "must be a host name such as xmpp.example.org").optional(),
  XMPP_TLS_CA_FILE: z.string().optional(),
  XMPP_DOMAIN: z
    .string({ error: "is required" })
    .refine((value) => isDomain(value), "must be a domain name such as proxy.example.org"),
  TARGET_JID: z
    .string({ error: "is required" })
    .refine((value) => isBareJid(value), "must be a bare JID such as service@example.org"),
  REDIS_URL: z
    .string()
    .refine((value) => /^rediss?:\/\/.+/.test(value), "must start with redis:// or rediss://")
    .optional(),
  REDIS_CLUSTER_NODES: hostPorts.optional(),
  REDIS_SENTINELS: hostPorts.optional(),
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^\S{1,128}$/, "must be the master name the sentinels monitor (no spaces)")
    .optional(),
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    .default("xcp"),
  IQ_TIMEOUT_MS: int(100, 600_000).default(30_000),
  BALANCE: z
    .enum(BALANCE_STRATEGIES, { error: `must be one of: ${BALANCE_STRATEGIES.join(", ")}` })
    .default("random"),
  PRIORITY_ROUTING: z.enum(["all", "highest"], { error: "must be one of: all, highest" }).default("all"),
  CAPS_ROUTING: flag.default("true"),
  MAX_CAPS_CACHED: int(1, 1_000_000).default(1_000),
  DISCO_INFO_FROM_CACHE: flag.default("false"),
  HTTP_PORT: int(0, 65_535).default(8080),
  HTTP_HOST: z
    .string()
    .refine(
      (value) => isIP(value) !== 0 || HOSTNAME.test(value),
      "must be an IP address or a host name (the address to listen on)",
    )
    .optional(),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      error: "must be one of: fatal, error, warn, info, debug, trace, silent",
    })
    .default("info"),
  RECONNECT_MIN_MS: int(10, 600_000).default(500),
  RECONNECT_MAX_MS: int(10, 3_600_000).default(30_000),
  STANDBY_RETRY_MS: int(10, 600_000).default(2_000),
  SWEEP_INTERVAL_MS: int(10, 60_000).optional(),
  RESOURCE_CONFIRM_MS: int(100, 600_000).default(10_000),
  SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  MAX_PENDING_PER_REQUESTER: int(1, 1_000_000).default(500),
  MAX_PENDING_TOTAL: int(1, 100_000_000).default(100_000),
  MAX_ID_LENGTH: int(1, 3_071).default(256),
  MAX_KEPT_PAYLOAD_BYTES: int(0, 16_777_216).default(65_536),
  MAX_QUEUED_PER_REQUESTER: int(0, 1_000_000).default(100),
  MAX_QUEUED_TOTAL: int(0, 10_000_000).default(10_000),
  MESSAGE_LIFETIME_MS: int(1_000, 604_800_000).default(3_600_000),
  MAX_QUEUED_MESSAGE_BYTES: int(0, 16_777_216).default(65_536),
  SERVICE_SUBSCRIPTIONS: z
    .enum(["approve", "refuse"], { error: "must be one of: approve, refuse" })
    .default("approve"),
  MAX_SUBSCRIBERS: int(0, 100_000_000).default(100_000),
  REQUESTER_ALLOW: addressList.optional(),
  REQUESTER_DENY: addressList.optional(),
  REDIS_WAIT_REPLICAS: int(0, 16).default(0),
  // Below the Redis command timeout (1 s): a WAIT that outlives it would be an unknown outcome anyway.
  REDIS_WAIT_TIMEOUT_MS: int(1, 900).default(100),
});

/** Parses the environment. Never throws; never echoes a secret. */
export function loadConfig(env: NodeJS.ProcessEnv): ConfigResult {
  const problems: string[] = [];
  const clean = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ""),
  ) as Record<string, string>;

  const password = readSecret(clean, "XMPP_PASSWORD", problems);
  if (password === undefined) {
    if (!problems.some((p) => p.startsWith("XMPP_PASSWORD"))) problems.push("XMPP_PASSWORD: is required");
  } else if (!/^[\x20-\x7e]+$/.test(password)) {
    // XEP-0114 section 3: the handshake hashes stream id + secret; xmpp.js does so as latin1.
    problems.push("XMPP_PASSWORD: must be printable ASCII (the XEP-0114 handshake hashes it as bytes)");
  }

  const rawKeys = readSecret(clean, "JAT_KEYS", problems);
  const jatKeys = rawKeys === undefined ? [] : parseJatKeys(rawKeys, problems);

  // REDIS_URL may hold a password: it may come from a file, and no message repeats it.
  const redisUrl = readSecret(clean, "REDIS_URL", problems);
  delete clean.REDIS_URL_FILE;
  if (redisUrl !== undefined) clean.REDIS_URL = redisUrl;
  const tls = xmppTls(clean, problems);

  const parsed = schema.safeParse(clean);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join(".")}: ${issue.message}`);
  }
  const redisPassword = readSecret(clean, "REDIS_PASSWORD", problems);
  const topologies = REDIS_TOPOLOGIES.filter((name) => clean[name] !== undefined);
  if (topologies.length > 1) {
    for (const name of topologies) problems.push(`${name}: set only one of ${REDIS_TOPOLOGIES.join(", ")}`);
  }
  if (topologies[0] !== undefined && rawKeys === undefined) {
    problems.push(
      `JAT_KEYS: is required when ${topologies[0]} is set (every replica must verify the same tokens)`,
    );
  }
  if (clean.REDIS_SENTINELS !== undefined && clean.REDIS_SENTINEL_NAME === undefined) {
    problems.push("REDIS_SENTINEL_NAME: is required with REDIS_SENTINELS (the master name they monitor)");
  }
  if (clean.REDIS_SENTINELS === undefined && clean.REDIS_SENTINEL_NAME !== undefined) {
    problems.push("REDIS_SENTINEL_NAME: only applies with REDIS_SENTINELS");
  }
  const passwordVar = clean.REDIS_PASSWORD_FILE === undefined ? "REDIS_PASSWORD" : "REDIS_PASSWORD_FILE";
  if (redisPassword !== undefined && (topologies.length === 0 || topologies[0] === "REDIS_URL")) {
    problems.push(
      `${passwordVar}: only applies with REDIS_CLUSTER_NODES or REDIS_SENTINELS (a REDIS_URL carries its own: redis://:password@host:port, kept out of the environment with REDIS_URL_FILE)`,
    );
  }
  if (
    clean.REDIS_WAIT_REPLICAS !== undefined &&
    clean.REDIS_WAIT_REPLICAS !== "0" &&
    topologies.length === 0
  ) {
    problems.push(
      "REDIS_WAIT_REPLICAS: only applies with a Redis (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS)",
    );
  }
  if (parsed.success && parsed.data.RECONNECT_MAX_MS < parsed.data.RECONNECT_MIN_MS) {
    problems.push("RECONNECT_MAX_MS: must not be smaller than RECONNECT_MIN_MS");
  }
  if (problems.length > 0 || !parsed.success || password === undefined) {
    return { ok: false, problems: problems.sort() };
  }

  const data = parsed.data;
  const generated = jatKeys.length === 0;
  const config: Config = {
    xmpp: { service: data.XMPP_SERVICE.replace(/\/$/, ""), domain: data.XMPP_DOMAIN, password, tls },
    target: data.TARGET_JID,
    redis: redisConfig(data, redisPassword),
    jatKeys: generated ? [{ kid: "local", secret: randomBytes(32) }] : jatKeys,
    jatKeysGenerated: generated,
    iqTimeoutMs: data.IQ_TIMEOUT_MS,
    balance: { strategy: data.BALANCE, highest: data.PRIORITY_ROUTING === "highest" },
    caps: {
      routing: data.CAPS_ROUTING === "true",
      maxCached: data.MAX_CAPS_CACHED,
      discoFromCache: data.DISCO_INFO_FROM_CACHE === "true",
    },
    httpPort: data.HTTP_PORT,
    httpHost: data.HTTP_HOST,
    logLevel: data.LOG_LEVEL,
    reconnect: {
      minMs: data.RECONNECT_MIN_MS,
      maxMs: data.RECONNECT_MAX_MS,
      standbyMs: data.STANDBY_RETRY_MS,
    },
    resourceConfirmMs: data.RESOURCE_CONFIRM_MS,
    shutdownGraceMs: data.SHUTDOWN_GRACE_MS,
    limits: {
      pendingPerRequester: data.MAX_PENDING_PER_REQUESTER,
      pendingTotal: data.MAX_PENDING_TOTAL,
      idLength: data.MAX_ID_LENGTH,
      keptPayloadBytes: data.MAX_KEPT_PAYLOAD_BYTES,
    },
    requesters: { allow: data.REQUESTER_ALLOW ?? null, deny: data.REQUESTER_DENY ?? [] },
    messageQueue: {
      perRequester: data.MAX_QUEUED_PER_REQUESTER,
      total: data.MAX_QUEUED_TOTAL,
      lifetimeMs: data.MESSAGE_LIFETIME_MS,
      maxBytes: data.MAX_QUEUED_MESSAGE_BYTES,
    },
    servicePresence: {
      approve: data.SERVICE_SUBSCRIPTIONS === "approve",
      maxSubscribers: data.MAX_SUBSCRIBERS,
    },
    sweepIntervalMs:
      data.SWEEP_INTERVAL_MS ?? Math.min(1000, Math.max(50, Math.floor(data.IQ_TIMEOUT_MS / 10))),
  };
  return { ok: true, config: deepFreeze(config) };
}

function redisConfig(data: z.infer<typeof schema>, password: string | undefined): RedisConfig | null {
  const prefix = data.REDIS_PREFIX;
  const secret = password === undefined ? {} : { password };
  const wait = { replicas: data.REDIS_WAIT_REPLICAS, timeoutMs: data.REDIS_WAIT_TIMEOUT_MS };
  if (data.REDIS_URL !== undefined) return { mode: "single", url: data.REDIS_URL, prefix, wait };
  if (data.REDIS_CLUSTER_NODES !== undefined)
    return { mode: "cluster", nodes: data.REDIS_CLUSTER_NODES, prefix, wait, ...secret };
  if (data.REDIS_SENTINELS !== undefined && data.REDIS_SENTINEL_NAME !== undefined)
    return {
      mode: "sentinel",
      sentinels: data.REDIS_SENTINELS,
      name: data.REDIS_SENTINEL_NAME,
      prefix,
      wait,
      ...secret,
    };
  return null;
}

/** XMPP_SERVICE=xmpps://: the TLS settings of the component link (null for xmpp://). */
function xmppTls(env: Record<string, string>, problems: string[]): XmppTls | null {
  const match = /^xmpps:\/\/([^/:]+):/.exec(env.XMPP_SERVICE ?? "");
  if (!match) {
    for (const name of ["XMPP_TLS_CA_FILE", "XMPP_TLS_SERVERNAME"])
      if (env[name] !== undefined) problems.push(`${name}: only applies with XMPP_SERVICE=xmpps://host:port`);
    return null;
  }
  const file = env.XMPP_TLS_CA_FILE;
  let ca: string | undefined;
  if (file !== undefined) {
    try {
      ca = readFileSync(file, "utf8");
      if (!ca.includes("-----BEGIN CERTIFICATE-----"))
        problems.push(`XMPP_TLS_CA_FILE: the file ${file} holds no PEM certificate`);
    } catch (err) {
      problems.push(
        `XMPP_TLS_CA_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
  }
  return { ca, servername: env.XMPP_TLS_SERVERNAME ?? match[1] ?? "" };
}

/** NAME or NAME_FILE (a mounted Kubernetes secret); trailing newlines of the file are dropped. */
function readSecret(env: Record<string, string>, name: string, problems: string[]): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct !== undefined && file !== undefined) {
    problems.push(`${name}: set either ${name} or ${name}_FILE, not both`);
    return undefined;
  }
  if (file === undefined) return direct;
  try {
    const value = readFileSync(file, "utf8").replace(/[\r\n]+$/, "");
    if (value === "") problems.push(`${name}_FILE: the file ${file} is empty`);
    return value === "" ? undefined : value;
  } catch (err) {
    problems.push(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    return undefined;
  }
}

/** JAT_KEYS: `kid:secret,kid:secret`; the first signs, all verify. */
function parseJatKeys(raw: string, problems: string[]): JatKey[] {
  const keys: JatKey[] = [];
  const entries = raw.split(",").map((entry) => entry.trim());
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(":");
    const kid = colon < 0 ? "" : entry.slice(0, colon);
    const secret = colon < 0 ? "" : entry.slice(colon + 1);
    const where = `JAT_KEYS: entry ${index + 1}`;
    if (colon < 0) problems.push(`${where} must be kid:secret`);
    else if (!KID.test(kid)) problems.push(`${where} has a key id that is not 1-16 of A-Z a-z 0-9 _ -`);
    else if (secret.length < MIN_SECRET)
      problems.push(`${where} (${kid}) has a secret shorter than 32 characters`);
    else if (keys.some((key) => key.kid === kid)) problems.push(`${where} repeats the key id ${kid}`);
    else keys.push({ kid, secret: Buffer.from(secret, "utf8") });
  });
  return keys;
}

function isDomain(value: string): boolean {
  const parsed = parseJid(value);
  return parsed !== null && parsed.local === "" && parsed.resource === "" && /^[^\s@/]+$/.test(value);
}

function isBareJid(value: string): boolean {
  const parsed = parseJid(value);
  return parsed !== null && parsed.local !== "" && parsed.resource === "";
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Buffer.isBuffer(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
