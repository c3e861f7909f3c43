/**
 * The Helm chart (helm/xmpp-client-proxy) stays consistent with the service, offline (no helm binary): its
 * values validate against values.schema.json and the schema rejects what the service would reject; every
 * value is commented, described and in the chart's README (whose values table is made from values.yaml by
 * scripts/helm/values-table.ts); the Deployment passes every setting of src/config.ts, wired so that the
 * service accepts the result; templates only use values that exist; the alert rules and the dashboard parse and
 * only use metrics the service exports. helm-render.test.ts renders the chart with helm itself.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import { isMap, parse, parseAllDocuments, parseDocument, type YAMLMap } from "yaml";
import { valuesTable } from "../../scripts/helm/values-table.js";
import { loadConfig } from "../../src/config.js";
import { createMetrics } from "../../src/metrics.js";
import { configSettings } from "./config-settings.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHART = join(ROOT, "helm/xmpp-client-proxy");
const read = (path: string) => readFileSync(join(CHART, path), "utf8");

type Values = Record<string, unknown>;
interface SchemaNode {
  description?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
}

const values = parse(read("values.yaml")) as Values;
const schema = JSON.parse(read("values.schema.json")) as SchemaNode & Record<string, unknown>;
const validate = new Ajv({ allErrors: true, strict: true }).compile(schema);
const deployment = read("templates/deployment.yaml");

const clone = <T>(value: T): T => structuredClone(value);
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
/** The value at a dotted path, or undefined. */
function get(root: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), root);
}
/** Helm's merge of user values onto the defaults: maps merge, everything else replaces. */
function merge(base: Values, over: Values): Values {
  const out: Values = clone(base);
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? merge(current, value) : value;
  }
  return out;
}
const errorsOf = () => JSON.stringify(validate.errors ?? [], null, 1);

/** A complete production-like setup: two replicas on a password-protected Redis Cluster. */
const production: Values = merge(values, {
  replicaCount: 2,
  image: { repository: "registry.example.org/xmpp-client-proxy", tag: "0.1.0" },
  xmpp: { service: "xmpp://prosody.xmpp.svc:5347", domain: "proxy.example.org", password: "change-me" },
  targetJid: "impl@example.org",
  jatKeys: "k1:0123456789abcdef0123456789abcdef",
  redis: {
    mode: "cluster",
    clusterNodes: ["redis-0.redis:6379", "redis-1.redis:6379"],
    prefix: "xcp-test",
    auth: { enabled: true, password: "redis-secret" },
  },
  config: {
    iqTimeoutMs: 15000,
    balance: "least-pending",
    priorityRouting: "highest",
    capsRouting: false,
    maxCapsCached: 5000,
    discoInfoFromCache: true,
    logLevel: "debug",
    sweepIntervalMs: 200,
    shutdownGraceMs: 20000,
    maxPendingPerRequester: 50,
    maxPendingTotal: 20000,
    maxIdLength: 128,
    maxKeptPayloadBytes: 0,
    requesterAllow: ["example.org", "Partner.Example", "bob@elsewhere.example"],
    requesterDeny: ["spam.example"],
    redisWaitReplicas: 1,
    redisWaitTimeoutMs: 50,
  },
  podDisruptionBudget: { enabled: true },
  serviceMonitor: { enabled: true },
  prometheusRule: { enabled: true },
  dashboard: { enabled: true },
  networkPolicy: { enabled: true },
});

/**
 * The paths of the chart's values: descends into a map only where the schema describes its properties; a
 * free-form object (securityContext, resources, ...) is one value.
 */
function valuePaths(node: unknown, schemaNode: SchemaNode, prefix = ""): string[] {
  if (!isObject(node)) return [];
  return Object.keys(node).flatMap((key) => {
    const sub = schemaNode.properties?.[key];
    const path = `${prefix}${key}`;
    return sub?.properties && isObject(node[key]) ? valuePaths(node[key], sub, `${path}.`) : [path];
  });
}

/** Files under the chart, relative to it. */
function chartFiles(dir = CHART): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? chartFiles(path) : [relative(CHART, path)];
  });
}
const templates = chartFiles().filter((path) => path.startsWith("templates/"));

// ---- metric names ----

/** Names the service exports: its registry (with a histogram's series), and the two shared gauges. */
async function knownMetrics(): Promise<Set<string>> {
  const metrics = createMetrics({
    onlineResources: async () => 0,
    pendingRequests: async () => 0,
    connectionState: () => "down",
  });
  const names = new Set(["xcp_target_resources_online", "xcp_xmpp_connected"]);
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === "histogram")
      for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${metric.name}${suffix}`);
  }
  return names;
}
const isKnown = (known: Set<string>, name: string) =>
  known.has(name) || /^(process|nodejs)_[a-z0-9_]+$/.test(name);

const PROMQL_WORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool"]);
const PROMQL_WORDS_CI = new Set(["and", "or", "unless", "offset", "inf", "nan"]);

/** The metric names a PromQL expression (with Grafana variables) selects. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ") // strings
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // range and subquery windows
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
    .replace(/\boffset\s+\S+/g, " ")
    .replace(/\$\{?\w+\}?/g, " "); // Grafana variables
  const names: string[] = [];
  for (const match of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    const word = match[1] ?? "";
    if (match[2] !== undefined || PROMQL_WORDS.has(word) || PROMQL_WORDS_CI.has(word.toLowerCase())) continue;
    names.push(word);
  }
  return names;
}

/** Metric names of a Grafana query: PromQL, or `label_values([metric,] label)`. */
function grafanaQueryMetrics(query: string): string[] {
  const labelValues = /^\s*label_values\(\s*(?:(.+),)?\s*\w+\s*\)\s*$/.exec(query);
  if (labelValues) return labelValues[1] === undefined ? [] : metricNames(labelValues[1]);
  return metricNames(query);
}

describe("helm chart: metric name extraction", () => {
  it("finds the selected metrics and nothing else", () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.9, sum by (le) (rate(xcp_round_trip_seconds_bucket{job=~"$job"}[$__rate_interval])))' +
          " / on (job) group_left sum(xcp_requests_pending) > bool 0 unless absent(nodejs_heap_size_used_bytes)",
      ),
      ["xcp_round_trip_seconds_bucket", "xcp_requests_pending", "nodejs_heap_size_used_bytes"],
    );
    assert.deepEqual(grafanaQueryMetrics('label_values(xcp_timeouts_total{namespace="$namespace"}, job)'), [
      "xcp_timeouts_total",
    ]);
  });
});

// ---- files ----

describe("helm chart: files", () => {
  it("parses every non-template YAML file and every JSON file of the chart", () => {
    const yamlFiles = chartFiles().filter((path) => /\.ya?ml$/.test(path) && !path.startsWith("templates/"));
    for (const required of ["Chart.yaml", "values.yaml", "files/alerts.yaml"])
      assert.ok(yamlFiles.includes(required), `${required} exists`);
    for (const path of yamlFiles) {
      for (const doc of parseAllDocuments(read(path))) {
        assert.deepEqual(
          doc.errors.map((error) => error.message),
          [],
          `${path} is valid YAML`,
        );
      }
    }
    for (const path of chartFiles().filter((p) => p.endsWith(".json"))) {
      assert.doesNotThrow(() => JSON.parse(read(path)), `${path} is valid JSON`);
    }
  });

  it("Chart.yaml: apiVersion v2, an application, appVersion the package's version", () => {
    const chart = parse(read("Chart.yaml")) as Record<string, unknown>;
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    assert.equal(chart.apiVersion, "v2");
    assert.equal(chart.type, "application");
    assert.equal(chart.name, "xmpp-client-proxy");
    assert.equal(chart.appVersion, pkg.version, "appVersion follows package.json");
  });

  it("has the conventional templates and helpers", () => {
    for (const name of [
      "_helpers.tpl",
      "NOTES.txt",
      "deployment.yaml",
      "secret.yaml",
      "service.yaml",
      "serviceaccount.yaml",
      "servicemonitor.yaml",
      "pdb.yaml",
      "hpa.yaml",
      "networkpolicy.yaml",
      "prometheusrule.yaml",
      "dashboard-configmap.yaml",
    ])
      assert.ok(templates.includes(`templates/${name}`), `templates/${name} exists`);
    const helpers = read("templates/_helpers.tpl");
    for (const helper of ["name", "fullname", "chart", "labels", "selectorLabels", "serviceAccountName"])
      assert.match(helpers, new RegExp(`define "xmpp-client-proxy\\.${helper}"`));
    for (const label of ["name", "instance", "version", "managed-by"])
      assert.match(helpers, new RegExp(`app\\.kubernetes\\.io/${label}:`));
  });
});

// ---- templates ----

describe("helm chart: templates", () => {
  it("are well formed: balanced delimiters and blocks", () => {
    for (const path of templates) {
      const text = read(path);
      const actions = [...text.matchAll(/\{\{-?\s*(.*?)\s*-?\}\}/gs)].map((m) => m[1] ?? "");
      assert.equal(text.split("{{").length, text.split("}}").length, `${path}: as many {{ as }}`);
      const opened = actions.filter((a) => /^(if|range|with|define)\b/.test(a)).length;
      const closed = actions.filter((a) => /^end\b/.test(a)).length;
      assert.equal(opened, closed, `${path}: every if/range/with/define has its end`);
    }
  });

  it("only use values that values.yaml defines", () => {
    for (const path of templates) {
      for (const match of read(path).matchAll(/\.Values((?:\.[A-Za-z0-9_]+)+)/g)) {
        const valuePath = (match[1] ?? "").slice(1);
        assert.notEqual(get(values, valuePath), undefined, `${path}: .Values.${valuePath} is in values.yaml`);
      }
    }
  });

  it("load files that exist, with .Files.Get", () => {
    const loaded = templates.flatMap((path) =>
      [...read(path).matchAll(/\.Files\.Get "([^"]+)"/g)].map((m) => m[1] ?? ""),
    );
    assert.deepEqual(loaded.sort(), ["files/alerts.yaml", "files/dashboard.json"]);
    for (const path of loaded) assert.ok(chartFiles().includes(path), `${path} exists`);
  });

  it("deployment.yaml passes every setting of src/config.ts, and only those", () => {
    const named = new Set([...deployment.matchAll(/- name: ([A-Z][A-Z0-9_]*)\s*$/gm)].map((m) => m[1] ?? ""));
    // The settings the chart must pass (REDIS_PASSWORD_FILE and the topology's variables conditionally).
    const required = `XMPP_SERVICE XMPP_DOMAIN TARGET_JID REDIS_URL_FILE REDIS_CLUSTER_NODES REDIS_SENTINELS
      REDIS_SENTINEL_NAME REDIS_PREFIX IQ_TIMEOUT_MS BALANCE PRIORITY_ROUTING CAPS_ROUTING MAX_CAPS_CACHED
      DISCO_INFO_FROM_CACHE HTTP_PORT HTTP_HOST LOG_LEVEL RECONNECT_MIN_MS
      RECONNECT_MAX_MS STANDBY_RETRY_MS RESOURCE_CONFIRM_MS SHUTDOWN_GRACE_MS XMPP_PASSWORD_FILE JAT_KEYS_FILE
      REDIS_PASSWORD_FILE XMPP_TLS_CA_FILE XMPP_TLS_SERVERNAME`
      .trim()
      .split(/\s+/);
    for (const name of required) assert.ok(named.has(name), `deployment.yaml sets ${name}`);
    const settings = configSettings();
    // NODE_OPTIONS is Node's own (heapLimitMb), not the service's.
    for (const name of named) {
      if (name !== "NODE_OPTIONS") assert.ok(settings.has(name), `${name} is a setting of src/config.ts`);
    }
    for (const setting of settings) {
      if (setting.endsWith("_FILE") || settings.has(`${setting}_FILE`)) continue;
      assert.ok(named.has(setting), `deployment.yaml sets ${setting}`);
    }
    for (const secret of ["XMPP_PASSWORD", "JAT_KEYS", "REDIS_PASSWORD", "REDIS_URL"])
      assert.ok(!named.has(secret), `${secret} is passed as a file (${secret}_FILE), not in the pod spec`);
  });

  it("deployment.yaml: its env, filled from values, is a configuration the service accepts", () => {
    // Evaluates each `value: {{ ... .Values.x ... }}` of the container's env for a complete set of values
    // (template conditions are not evaluated: the values are chosen so that every unconditional reading
    // matches what Helm would render; empty values are unset for the service, as for Helm's omitted ones).
    // The files of a Redis URL and of a CA are rendered only with redis.mode url and a CA, which these values
    // do not use: helm-render.test.ts renders them with helm.
    const notRendered = new Set(["REDIS_URL_FILE", "XMPP_TLS_CA_FILE"]);
    assert.ok(validate(production), errorsOf());
    const dir = mkdtempSync(join(tmpdir(), "xcp-chart-"));
    try {
      const keys = production.secretKeys as Record<string, string>;
      const secrets: Record<string, unknown> = {
        [keys.xmppPassword ?? ""]: get(production, "xmpp.password"),
        [keys.jatKeys ?? ""]: get(production, "jatKeys"),
        [keys.redisPassword ?? ""]: get(production, "redis.auth.password"),
      };
      for (const [key, secret] of Object.entries(secrets)) writeFileSync(join(dir, key), `${secret}\n`);
      const env: Record<string, string> = {};
      const entries = [...deployment.matchAll(/- name: ([A-Z][A-Z0-9_]*)\n\s+value: \{\{ (.+?) \}\}\n/g)];
      assert.ok(entries.length >= 15, "the container's env entries are found");
      for (const [, name = "", expression = ""] of entries) {
        if (notRendered.has(name)) continue;
        const path = /\.Values\.([\w.]+)/.exec(expression)?.[1];
        assert.ok(path, `${name}: its value comes from .Values (${expression})`);
        const value = get(production, path);
        if (expression.startsWith("join")) env[name] = (value as string[]).join(",");
        else if (expression.includes("$secretDir")) env[name] = join(dir, String(value));
        else env[name] = String(value ?? "");
      }
      const result = loadConfig(env);
      assert.ok(
        result.ok,
        `the service rejects the chart's env: ${result.ok ? "" : result.problems.join("; ")}`,
      );
      const { config } = result;
      assert.equal(config.xmpp.domain, "proxy.example.org");
      assert.equal(config.xmpp.password, "change-me");
      assert.equal(config.target, "impl@example.org");
      assert.equal(config.jatKeysGenerated, false);
      assert.equal(config.iqTimeoutMs, 15000);
      assert.deepEqual(config.balance, { strategy: "least-pending", highest: true });
      assert.deepEqual(config.caps, { routing: false, maxCached: 5000, discoFromCache: true });
      assert.equal(config.logLevel, "debug");
      assert.equal(config.sweepIntervalMs, 200);
      assert.equal(config.shutdownGraceMs, 20000);
      assert.equal(config.httpPort, get(values, "config.httpPort"));
      assert.deepEqual(config.limits, {
        pendingPerRequester: 50,
        pendingTotal: 20000,
        idLength: 128,
        keptPayloadBytes: 0,
      });
      assert.deepEqual(config.requesters, {
        allow: ["example.org", "partner.example", "bob@elsewhere.example"],
        deny: ["spam.example"],
      });
      assert.deepEqual(config.redis, {
        mode: "cluster",
        nodes: [
          { host: "redis-0.redis", port: 6379 },
          { host: "redis-1.redis", port: 6379 },
        ],
        prefix: "xcp-test",
        password: "redis-secret",
        wait: { replicas: 1, timeoutMs: 50 },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("deployment.yaml: probes, secrets as files, grace period, checksum, security context", () => {
    assert.match(deployment, /livenessProbe:\s+httpGet:\s+path: \/healthz\s+port: http/);
    assert.match(
      deployment,
      /readinessProbe:\s+httpGet:[\s\S]*?path: .*"\/readyz\?standby=ready" "\/readyz"/,
    );
    assert.match(deployment, /terminationGracePeriodSeconds: .*\.Values\.config\.shutdownGraceMs/);
    assert.match(
      deployment,
      /checksum\/secret: \{\{ include \(print \$\.Template\.BasePath "\/secret\.yaml"\)/,
    );
    assert.match(deployment, /secret:\s+secretName:/);
    assert.match(deployment, /readOnly: true/);
    assert.match(deployment, /securityContext:\s+\{\{- toYaml \.Values\.securityContext/);
    // The heap stays under the memory limit: V8 does not size it from the container's limit.
    assert.match(
      deployment,
      /- name: NODE_OPTIONS\s+value: \{\{ printf "--max-old-space-size=%d" \(int \.Values\.heapLimitMb\)/,
    );
    const limitMb = Number.parseInt(String(get(values, "resources.limits.memory")), 10);
    const heapMb = Number(get(values, "heapLimitMb"));
    assert.ok(heapMb > 0 && heapMb <= limitMb * 0.7, `heapLimitMb ${heapMb} within 70% of ${limitMb}Mi`);
    assert.deepEqual(values.securityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
  });

  it("secret.yaml: created unless existingSecret, with the keys named in values", () => {
    const secret = read("templates/secret.yaml");
    assert.match(secret, /^\{\{- if not \.Values\.existingSecret \}\}/);
    for (const key of ["xmppPassword", "jatKeys", "redisUrl", "redisPassword"])
      assert.match(secret, new RegExp(`\\.Values\\.secretKeys\\.${key} \\| quote \\}\\}:`));
  });

  it('the dashboard ConfigMap carries grafana_dashboard: "1"', () => {
    assert.match(read("templates/dashboard-configmap.yaml"), /grafana_dashboard: "1"/);
  });
});

// ---- values and schema ----

describe("helm chart: values.yaml and values.schema.json", () => {
  it("values.schema.json is a draft-07 schema, and values.yaml validates against it", () => {
    assert.equal(schema.$schema, "http://json-schema.org/draft-07/schema#");
    assert.ok(validate(values), errorsOf());
  });

  it("a values file missing a required value fails", () => {
    const required = schema.required ?? [];
    assert.ok(required.includes("xmpp") && required.includes("targetJid"), "xmpp and targetJid are required");
    for (const key of required) {
      const incomplete = clone(values);
      delete incomplete[key];
      assert.equal(validate(incomplete), false, `values without ${key} fail`);
      assert.ok(validate.errors?.some((error) => error.keyword === "required"));
    }
    for (const [parent, key] of [
      ["xmpp", "service"],
      ["xmpp", "domain"],
      ["image", "repository"],
      ["redis", "mode"],
      ["config", "shutdownGraceMs"],
    ] as const) {
      const incomplete = clone(values);
      delete (incomplete[parent] as Values)[key];
      assert.equal(validate(incomplete), false, `values without ${parent}.${key} fail`);
    }
  });

  it("rejects what the service or Kubernetes would reject", () => {
    const invalid: Array<[string, Values]> = [
      ["two replicas on the in-process store", { replicaCount: 2 }],
      ["autoscaling on the in-process store", { autoscaling: { enabled: true } }],
      ["cluster without nodes", { redis: { mode: "cluster" } }],
      ["sentinel without a master name", { redis: { mode: "sentinel", sentinels: ["s:26379"] } }],
      ["a node that is not host:port", { redis: { mode: "cluster", clusterNodes: ["redis"] } }],
      ["a password with REDIS_URL", { redis: { mode: "url", auth: { enabled: true, password: "x" } } }],
      ["an unknown topology", { redis: { mode: "memcached" } }],
      ["a URL that is not redis://", { redis: { url: "http://redis" } }],
      ["an XMPP service that is not xmpp://host:port", { xmpp: { service: "prosody:5347" } }],
      ["a TLS CA from a ConfigMap and a Secret", { xmpp: { tls: { ca: { configMap: "a", secret: "b" } } } }],
      ["a TLS server name that is not a host name", { xmpp: { tls: { serverName: "xmpp example" } } }],
      ["a loopback HTTP_HOST (the probes could not reach it)", { config: { httpHost: "127.0.0.1" } }],
      ["an HTTP_HOST that is not an address", { config: { httpHost: "every interface" } }],
      [
        "a switch for an alert that does not exist",
        { prometheusRule: { alerts: { XcpNoSuchAlert: false } } },
      ],
      ["an anti-affinity preset that does not exist", { podAntiAffinityPreset: { type: "always" } }],
      ["relabelings that are not a list", { serviceMonitor: { relabelings: { action: "drop" } } }],
      ["a full JID as target", { targetJid: "impl@example.org/res" }],
      ["an unknown log level", { config: { logLevel: "verbose" } }],
      ["an unknown balancing strategy", { config: { balance: "least-loaded" } }],
      ["an unknown priority routing", { config: { priorityRouting: "lowest" } }],
      ["a switch as a string", { config: { capsRouting: "false" } }],
      ["a switch as a number", { config: { discoInfoFromCache: 1 } }],
      ["no caps ver kept", { config: { maxCapsCached: 0 } }],
      ["more caps vers kept than the service allows", { config: { maxCapsCached: 1_000_001 } }],
      ["a timeout below 100 ms", { config: { iqTimeoutMs: 50 } }],
      ["a sweep interval below 10 ms", { config: { sweepIntervalMs: 5 } }],
      ["a number as a string", { config: { httpPort: "8080" } }],
      ["no pending request allowed per requester", { config: { maxPendingPerRequester: 0 } }],
      ["an id length beyond a store key's", { config: { maxIdLength: 4096 } }],
      ["a full JID to allow", { config: { requesterAllow: ["alice@example.org/phone"] } }],
      ["two entries in one", { config: { requesterDeny: ["a.example,b.example"] } }],
      ["a requester list as a string", { config: { requesterAllow: "example.org" } }],
      ["waiting for Redis replicas without Redis", { config: { redisWaitReplicas: 1 } }],
      ["a WAIT timeout beyond the command timeout", { config: { redisWaitTimeoutMs: 1000 } }],
      ["an unknown value", { replicas: 2 }],
      ["an unknown nested value", { config: { timeout: 1 } }],
    ];
    for (const [what, override] of invalid)
      assert.equal(validate(merge(values, override)), false, `${what} is rejected`);
    assert.ok(validate(merge(values, { redis: { mode: "url" }, replicaCount: 3 })), errorsOf());
    assert.ok(
      validate(
        merge(values, {
          redis: { mode: "sentinel", sentinels: ["s:26379"], sentinelName: "m" },
          config: { redisWaitReplicas: 1 },
        }),
      ),
      errorsOf(),
    );
    assert.ok(validate(merge(values, { podDisruptionBudget: { maxUnavailable: "50%" } })), errorsOf());
    assert.ok(validate(merge(values, { podDisruptionBudget: { maxUnavailable: 0 } })), errorsOf());
    assert.ok(
      validate(
        merge(values, {
          xmpp: {
            service: "xmpps://xmpp.example.org:5270",
            tls: { serverName: "xmpp.example.org", ca: { secret: "ca" } },
          },
          config: { httpHost: "::" },
        }),
      ),
      errorsOf(),
    );
  });

  it("the balancing and capability settings allow exactly what the service accepts", () => {
    const config = (schema.properties?.config?.properties ?? {}) as Record<
      string,
      { type?: string; enum?: unknown[]; minimum?: number; maximum?: number }
    >;
    const service = (env: Record<string, string>) =>
      loadConfig({
        XMPP_SERVICE: "xmpp://prosody:5347",
        XMPP_DOMAIN: "proxy.example.org",
        XMPP_PASSWORD: "change-me",
        TARGET_JID: "impl@example.org",
        ...env,
      }).ok;
    const settings: Array<[string, string, string[]]> = [
      ["balance", "BALANCE", ["random", "round-robin", "least-pending", "sticky"]],
      ["priorityRouting", "PRIORITY_ROUTING", ["all", "highest"]],
    ];
    for (const [key, name, allowed] of settings) {
      assert.deepEqual(config[key]?.enum, allowed, `config.${key}: the values of ${name}`);
      for (const value of allowed) {
        assert.ok(service({ [name]: value }), `the service accepts ${name}=${value}`);
        assert.ok(validate(merge(values, { config: { [key]: value } })), errorsOf());
      }
      assert.equal(service({ [name]: "other" }), false, `the service refuses ${name}=other`);
    }
    for (const [key, name] of [
      ["capsRouting", "CAPS_ROUTING"],
      ["discoInfoFromCache", "DISCO_INFO_FROM_CACHE"],
    ] as const) {
      assert.equal(config[key]?.type, "boolean", `config.${key}: a switch`);
      for (const value of [true, false]) {
        assert.ok(service({ [name]: String(value) }), `the service accepts ${name}=${value}`);
        assert.ok(validate(merge(values, { config: { [key]: value } })), errorsOf());
      }
    }
    const { minimum = Number.NaN, maximum = Number.NaN } = config.maxCapsCached ?? {};
    assert.deepEqual(
      [minimum, maximum],
      [1, 1_000_000],
      "config.maxCapsCached: the range of MAX_CAPS_CACHED",
    );
    for (const value of [minimum, maximum])
      assert.ok(service({ MAX_CAPS_CACHED: String(value) }), `the service accepts MAX_CAPS_CACHED=${value}`);
    for (const value of [minimum - 1, maximum + 1])
      assert.equal(service({ MAX_CAPS_CACHED: String(value) }), false, `MAX_CAPS_CACHED=${value}`);
  });

  it("the schema describes every value, and every value it describes is in values.yaml", () => {
    const walk = (node: SchemaNode, at: string) => {
      for (const [key, sub] of Object.entries(node.properties ?? {})) {
        const path = at ? `${at}.${key}` : key;
        assert.ok(sub.description, `the schema describes ${path}`);
        if (path !== "global") assert.notEqual(get(values, path), undefined, `${path} is in values.yaml`);
        walk(sub, path);
      }
    };
    walk(schema, "");
    for (const path of valuePaths(values, schema)) {
      const node = path
        .split(".")
        .reduce<SchemaNode | undefined>((schemaNode, key) => schemaNode?.properties?.[key], schema);
      assert.ok(node, `the schema has ${path}`);
    }
  });

  it("every value has a comment in values.yaml", () => {
    const doc = parseDocument(read("values.yaml"));
    const check = (map: YAMLMap, schemaNode: SchemaNode, prefix: string) => {
      map.items.forEach((pair, index) => {
        const key = String((pair.key as { value?: unknown }).value);
        const path = `${prefix}${key}`;
        const comment =
          (pair.key as { commentBefore?: string | null }).commentBefore ??
          (index === 0 ? map.commentBefore : undefined);
        assert.ok(comment?.trim(), `values.yaml: ${path} has a comment`);
        const sub = schemaNode.properties?.[key];
        if (sub?.properties && isMap(pair.value)) check(pair.value, sub, `${path}.`);
      });
    };
    assert.ok(isMap(doc.contents));
    check(doc.contents, schema, "");
  });

  it("the chart's README lists every value with its default", () => {
    const rows = new Map<string, string>();
    for (const line of read("README.md").split("\n")) {
      const cells = line.split("|").map((cell) => cell.trim());
      const path = /^`([\w.]+)`$/.exec(cells[1] ?? "")?.[1];
      if (line.startsWith("|") && path) rows.set(path, cells[2] ?? "");
    }
    for (const path of valuePaths(values, schema))
      assert.equal(
        rows.get(path),
        `\`${JSON.stringify(get(values, path))}\``,
        `README.md: the row of ${path}`,
      );
  });

  it("the README's values table is the one scripts/helm/values-table.ts makes from values.yaml", () => {
    assert.ok(
      read("README.md").includes(`\n${valuesTable()}\n`),
      "run `node --import tsx scripts/helm/values-table.ts --write`",
    );
  });

  it("the README's example values validate", () => {
    const blocks = [...read("README.md").matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
    assert.ok(blocks.length > 0, "README.md has an example values file");
    for (const block of blocks) assert.ok(validate(merge(values, parse(block) as Values)), errorsOf());
  });

  it("values.yaml and the README explain Prosody's standbys for rolling updates and PodDisruptionBudgets", () => {
    for (const text of [read("values.yaml"), read("README.md")]) {
      assert.match(text, /xmpp standby/);
      assert.match(text, /[Rr]olling update/);
      assert.match(text, /PodDisruptionBudget/);
    }
  });
});

// ---- alerts and dashboard ----

interface Rule {
  alert?: string;
  expr?: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

describe("helm chart: files/alerts.yaml", () => {
  const rules = (
    parse(read("files/alerts.yaml")) as { groups: Array<{ name: string; rules: Rule[] }> }
  ).groups.flatMap((group) => group.rules);

  it("has the alerts, each with expr, for, severity, summary and description", () => {
    const byName = new Map(rules.map((rule) => [rule.alert, rule]));
    const expected: Record<string, RegExp> = {
      XcpNoTargetResourceOnline: /max\b.*\(xcp_target_resources_online\)\s*<\s*1/,
      XcpNoReplicaConnected: /max\b.*\(xcp_xmpp_connected\)\s*<\s*1/,
      XcpTimeoutRatioHigh: /rate\(xcp_timeouts_total\[.*\/.*rate\(xcp_requests_forwarded_total\[/s,
      XcpStoreErrors: /rate\(xcp_store_errors_total\[.*>\s*0/,
    };
    for (const [name, expr] of Object.entries(expected)) {
      const rule = byName.get(name);
      assert.ok(rule, `alert ${name}`);
      assert.match(rule.expr ?? "", expr, `${name}: expr`);
    }
    for (const rule of rules) {
      assert.ok(rule.alert && rule.expr, "a rule has alert and expr");
      assert.match(rule.for ?? "", /^\d+[smh]$/, `${rule.alert}: for`);
      assert.ok(
        ["critical", "warning", "info"].includes(rule.labels?.severity ?? ""),
        `${rule.alert}: severity`,
      );
      assert.ok(rule.annotations?.summary, `${rule.alert}: summary`);
      assert.ok(rule.annotations?.description, `${rule.alert}: description`);
    }
  });

  it("only references metrics the service exports", async () => {
    const known = await knownMetrics();
    for (const rule of rules) {
      const names = metricNames(rule.expr ?? "");
      assert.ok(names.length > 0, `${rule.alert} selects a metric`);
      for (const name of names) assert.ok(isKnown(known, name), `${rule.alert}: unknown metric ${name}`);
    }
  });
});

describe("helm chart: files/dashboard.json", () => {
  const dashboard = JSON.parse(read("files/dashboard.json")) as {
    title?: string;
    panels: unknown[];
    templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
  };
  /** Every panel target's expr, walking rows and nested panels. */
  const exprs: string[] = [];
  const datasources: unknown[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (isObject(node)) {
      if (typeof node.expr === "string") exprs.push(node.expr);
      if (Array.isArray(node.targets)) datasources.push(node.datasource);
      Object.values(node).forEach(walk);
    }
  };
  walk(dashboard.panels);

  it("has a datasource template variable that every panel uses", () => {
    const variable = dashboard.templating.list.find((v) => v.type === "datasource");
    assert.ok(variable, "a variable of type datasource");
    assert.equal(variable.query, "prometheus");
    assert.ok(datasources.length > 0);
    for (const datasource of datasources)
      assert.deepEqual(datasource, { type: "prometheus", uid: `\${${variable.name}}` });
  });

  it("shows requests, rejections and drops by reason, timeouts, store errors, reconnects, CPU and memory", () => {
    const all = exprs.join("\n");
    for (const pattern of [
      /rate\(xcp_requests_forwarded_total/,
      /by \(reason\) \(rate\(xcp_requests_rejected_total/,
      /by \(reason\) \(rate\(xcp_replies_dropped_total/,
      /rate\(xcp_timeouts_total/,
      /rate\(xcp_store_errors_total/,
      /xcp_xmpp_reconnects_total/,
      /rate\(process_cpu_seconds_total/,
      /process_resident_memory_bytes/,
    ])
      assert.match(all, pattern);
  });

  it("only references metrics the service exports", async () => {
    const known = await knownMetrics();
    assert.ok(exprs.length > 10, "the panels' queries are found");
    const queries = dashboard.templating.list
      .filter((v) => v.type === "query")
      .map((v) => (isObject(v.query) ? String(v.query.query) : String(v.query ?? v.definition ?? "")));
    for (const expr of exprs) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${expr} selects a metric`);
      for (const name of names) assert.ok(isKnown(known, name), `unknown metric ${name} in ${expr}`);
    }
    for (const query of queries) {
      for (const name of grafanaQueryMetrics(query))
        assert.ok(isKnown(known, name), `unknown metric ${name} in ${query}`);
    }
  });
});
