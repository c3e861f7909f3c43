/**
 * The chart checked by Helm itself: the pinned helm 3 binary (scripts/helm/helm.ts) runs `helm lint --strict`
 * and `helm template` over a matrix of values (each Redis topology, an existing Secret, autoscaling, the
 * PodDisruptionBudget, ServiceMonitor, PrometheusRule, NetworkPolicy, TLS to the XMPP server, scheduling).
 * Every rendered object is validated against the Kubernetes 1.36 API schema (kubernetes-models) or, for the
 * Prometheus Operator's ServiceMonitor and PrometheusRule, against its CRD schema
 * (@kubernetes-models/prometheus-operator); unknown fields, which the API schema lets through but
 * `kubectl --validate=strict` refuses, are found by TypeScript's excess property check against the same
 * packages' types. The Deployment's environment, with its secret and CA files laid out as the kubelet would
 * mount them, must be a configuration the service accepts (src/config.ts). Values that would deploy something
 * broken must fail the render with a message that says why.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import ts from "typescript";
import { parse, parseAllDocuments, stringify } from "yaml";
import { ensureHelm } from "../../scripts/helm/helm.js";
import { type Config, loadConfig } from "../../src/config.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHART = join(ROOT, "helm/xmpp-client-proxy");
/** The Kubernetes version of kubernetes-models 5.x's schemas; helm renders for it. */
const KUBE_VERSION = "1.36.0";
const NAMESPACE = "xmpp";
const RELEASE = "proxy";

type Values = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  [key: string]: unknown;
}

/** The models of every kind the chart renders: the validating class, and the type and module for tsc. */
const MODELS: Record<
  string,
  { model: new (data: never) => { validate(): void }; type: string; from: string }
> = {
  "v1/ServiceAccount": {
    model: ServiceAccount,
    type: "IServiceAccount",
    from: "kubernetes-models/v1/ServiceAccount",
  },
  "v1/Secret": { model: Secret, type: "ISecret", from: "kubernetes-models/v1/Secret" },
  "v1/Service": { model: Service, type: "IService", from: "kubernetes-models/v1/Service" },
  "v1/ConfigMap": { model: ConfigMap, type: "IConfigMap", from: "kubernetes-models/v1/ConfigMap" },
  "apps/v1/Deployment": {
    model: Deployment,
    type: "IDeployment",
    from: "kubernetes-models/apps/v1/Deployment",
  },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget,
    type: "IPodDisruptionBudget",
    from: "kubernetes-models/policy/v1/PodDisruptionBudget",
  },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: HorizontalPodAutoscaler,
    type: "IHorizontalPodAutoscaler",
    from: "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
  },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy,
    type: "INetworkPolicy",
    from: "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
  },
  "monitoring.coreos.com/v1/ServiceMonitor": {
    model: ServiceMonitor,
    type: "IServiceMonitor",
    from: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  },
  "monitoring.coreos.com/v1/PrometheusRule": {
    model: PrometheusRule,
    type: "IPrometheusRule",
    from: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
  },
};

// ---- the matrix ----

const REQUIRED: Values = {
  image: { repository: "registry.example.org/xmpp-client-proxy", tag: "0.1.0" },
  xmpp: {
    service: "xmpp://prosody.xmpp.svc.cluster.local:5347",
    domain: "proxy.example.org",
    password: "s3cret",
  },
  targetJid: "impl@example.org",
};
const JAT_KEYS = "k1:0123456789abcdef0123456789abcdef,k0:fedcba9876543210fedcba9876543210";
const REDIS_URL = "redis://:redis-password@redis-master.redis.svc.cluster.local:6379/0";
/** Not a real certificate: the service only checks that the file holds a PEM certificate. */
const CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdummyCAforTheChartTest\n-----END CERTIFICATE-----\n";
const ALERTS = [
  "XcpNoTargetResourceOnline",
  "XcpNoReplicaConnected",
  "XcpTimeoutRatioHigh",
  "XcpStoreErrors",
  "XcpAnswersRedelivered",
];

/** What a case expects of its render, besides validity. */
interface Rendered {
  objects: K8sObject[];
  config: Config;
  deployment: K8sObject;
  pod: Record<string, unknown>;
  env: Record<string, string>;
  find(kind: string): K8sObject | undefined;
}
interface Case {
  name: string;
  values: Values;
  /** Secrets and ConfigMaps the cluster already has (existingSecret, a CA), by "kind/name". */
  cluster?: Record<string, Record<string, string>>;
  check(rendered: Rendered): void;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
function get(root: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((node, key) => {
    if (Array.isArray(node)) return node[Number(key)];
    return isObject(node) ? node[key] : undefined;
  }, root);
}
function merge(base: Values, over: Values): Values {
  const out: Values = structuredClone(base);
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? merge(current, value) : value;
  }
  return out;
}
const kinds = (objects: K8sObject[]) => objects.map((o) => o.kind).sort();

const cases: Case[] = [
  {
    name: "defaults: one replica, in-process store",
    values: {},
    check: ({ objects, config, pod, env, deployment }) => {
      assert.deepEqual(kinds(objects), ["Deployment", "Secret", "Service", "ServiceAccount"]);
      assert.equal(config.redis, null);
      assert.equal(config.jatKeysGenerated, true);
      assert.equal(config.xmpp.tls, null);
      assert.equal(config.httpHost, undefined);
      assert.deepEqual(config.balance, { strategy: "random", highest: false });
      assert.deepEqual(config.caps, { routing: true, maxCached: 1000, discoFromCache: false });
      assert.equal(get(deployment, "spec.replicas"), 1);
      for (const name of Object.keys(env))
        assert.doesNotMatch(name, /^(REDIS_(URL|CLUSTER|SENTINEL|PASSWORD))/);
      // Soft anti-affinity by default: a replica and its standby prefer different nodes.
      assert.deepEqual(get(pod, "affinity.podAntiAffinity"), {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: {
              topologyKey: "kubernetes.io/hostname",
              labelSelector: {
                matchLabels: {
                  "app.kubernetes.io/name": "xmpp-client-proxy",
                  "app.kubernetes.io/instance": RELEASE,
                },
              },
            },
          },
        ],
      });
      assert.equal(get(pod, "topologySpreadConstraints"), undefined);
    },
  },
  {
    name: "Redis URL from the chart's Secret, two replicas, budget, monitoring and network policy",
    values: {
      replicaCount: 2,
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      config: { httpHost: "::", requesterAllow: ["example.org"], logLevel: "debug" },
      podDisruptionBudget: { enabled: true },
      serviceMonitor: {
        enabled: true,
        labels: { release: "kube-prometheus-stack" },
        relabelings: [{ sourceLabels: ["__meta_kubernetes_pod_node_name"], targetLabel: "node" }],
        metricRelabelings: [{ sourceLabels: ["__name__"], regex: "(process|nodejs)_.*", action: "drop" }],
      },
      prometheusRule: { enabled: true, alerts: { XcpAnswersRedelivered: false } },
      dashboard: { enabled: true },
      networkPolicy: { enabled: true },
    },
    check: ({ objects, config, env, find }) => {
      assert.deepEqual(kinds(objects), [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
      ]);
      assert.deepEqual(config.redis, {
        mode: "single",
        url: REDIS_URL,
        prefix: "xcp",
        wait: { replicas: 0, timeoutMs: 100 },
      });
      assert.equal(env.REDIS_URL, undefined, "the URL (and its password) is not in the pod spec");
      assert.ok(env.REDIS_URL_FILE, "REDIS_URL_FILE");
      assert.deepEqual(
        config.jatKeys.map((key) => key.kid),
        ["k1", "k0"],
      );
      assert.equal(config.httpHost, "::");
      assert.deepEqual(get(find("PodDisruptionBudget"), "spec"), {
        minAvailable: 1,
        selector: {
          matchLabels: {
            "app.kubernetes.io/name": "xmpp-client-proxy",
            "app.kubernetes.io/instance": RELEASE,
          },
        },
      });
      const endpoint = get(find("ServiceMonitor"), "spec.endpoints.0");
      assert.deepEqual(get(endpoint, "relabelings"), [
        { sourceLabels: ["__meta_kubernetes_pod_node_name"], targetLabel: "node" },
      ]);
      assert.deepEqual(get(endpoint, "metricRelabelings.0.action"), "drop");
      const rules = (get(find("PrometheusRule"), "spec.groups.0.rules") as Array<{ alert: string }>).map(
        (r) => r.alert,
      );
      assert.deepEqual(
        rules,
        ALERTS.filter((alert) => alert !== "XcpAnswersRedelivered"),
      );
      // The rules keep their expressions and Prometheus templates through the chart's filtering.
      const file = parse(readFileSync(join(CHART, "files/alerts.yaml"), "utf8")) as {
        groups: Array<{ rules: unknown[] }>;
      };
      assert.deepEqual(get(find("PrometheusRule"), "spec.groups.0.rules.0"), file.groups[0]?.rules[0]);
      // The egress to Redis is there with a Redis topology.
      assert.ok(
        (get(find("NetworkPolicy"), "spec.egress") as unknown[]).some(
          (rule) => get(rule, "ports.0.port") === 6379,
        ),
      );
    },
  },
  {
    name: "Redis Cluster with a password and WAIT",
    values: {
      replicaCount: 3,
      jatKeys: JAT_KEYS,
      redis: {
        mode: "cluster",
        clusterNodes: ["redis-cluster-0.redis-cluster-headless:6379", "[fd00::1]:6379"],
        auth: { enabled: true, password: "cluster-password" },
      },
      config: { redisWaitReplicas: 1, redisWaitTimeoutMs: 50 },
    },
    check: ({ config, env }) => {
      assert.deepEqual(config.redis, {
        mode: "cluster",
        nodes: [
          { host: "redis-cluster-0.redis-cluster-headless", port: 6379 },
          { host: "fd00::1", port: 6379 },
        ],
        prefix: "xcp",
        wait: { replicas: 1, timeoutMs: 50 },
        password: "cluster-password",
      });
      assert.ok(env.REDIS_PASSWORD_FILE && env.REDIS_URL_FILE === undefined);
    },
  },
  {
    name: "Redis Sentinel with a password, network policy to the sentinels",
    values: {
      replicaCount: 2,
      jatKeys: JAT_KEYS,
      redis: {
        mode: "sentinel",
        sentinels: ["redis-sentinel-0.redis:26379", "redis-sentinel-1.redis:26379"],
        sentinelName: "mymaster",
        auth: { enabled: true, password: "sentinel-master-password" },
        prefix: "xcp-prod",
      },
      networkPolicy: {
        enabled: true,
        egress: {
          redis: { to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "redis" } } }] },
          dns: {
            to: [
              {
                namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
                podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
              },
            ],
          },
        },
      },
    },
    check: ({ config }) => {
      assert.deepEqual(config.redis, {
        mode: "sentinel",
        sentinels: [
          { host: "redis-sentinel-0.redis", port: 26379 },
          { host: "redis-sentinel-1.redis", port: 26379 },
        ],
        name: "mymaster",
        prefix: "xcp-prod",
        wait: { replicas: 0, timeoutMs: 100 },
        password: "sentinel-master-password",
      });
    },
  },
  {
    name: "an existing Secret holds the password, the JAT keys and the Redis URL",
    values: {
      replicaCount: 2,
      existingSecret: "proxy-secrets",
      redis: { mode: "url" },
      xmpp: { password: "" },
    },
    cluster: {
      "Secret/proxy-secrets": {
        "xmpp-password": "from-existing-secret",
        "jat-keys": JAT_KEYS,
        "redis-url": "rediss://:pw@redis.example.org:6380",
      },
    },
    check: ({ objects, config, deployment }) => {
      assert.ok(!objects.some((o) => o.kind === "Secret"), "the chart makes no Secret");
      assert.equal(
        get(deployment, "spec.template.metadata.annotations"),
        undefined,
        "no checksum of a Secret",
      );
      assert.equal(config.xmpp.password, "from-existing-secret");
      assert.equal(
        config.redis?.mode === "single" && config.redis.url,
        "rediss://:pw@redis.example.org:6380",
      );
      assert.equal(config.jatKeysGenerated, false);
    },
  },
  {
    name: "autoscaling with a budget of minAvailable 1",
    values: {
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 6, targetMemoryUtilizationPercentage: 80 },
      podDisruptionBudget: { enabled: true },
    },
    check: ({ deployment, find }) => {
      assert.equal(get(deployment, "spec.replicas"), undefined, "the autoscaler owns the replica count");
      const hpa = find("HorizontalPodAutoscaler");
      assert.equal(get(hpa, "spec.minReplicas"), 2);
      assert.equal(get(hpa, "spec.maxReplicas"), 6);
      assert.deepEqual(
        (get(hpa, "spec.metrics") as unknown[]).map((metric) => get(metric, "resource.name")),
        ["cpu", "memory"],
      );
      assert.equal(get(find("PodDisruptionBudget"), "spec.minAvailable"), 1);
    },
  },
  {
    name: "sticky balancing to the highest priority, capabilities cached and answering disco#info",
    values: {
      replicaCount: 2,
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      config: {
        balance: "sticky",
        priorityRouting: "highest",
        maxCapsCached: 250000,
        discoInfoFromCache: true,
      },
    },
    check: ({ config, env }) => {
      assert.deepEqual(config.balance, { strategy: "sticky", highest: true });
      assert.deepEqual(config.caps, { routing: true, maxCached: 250000, discoFromCache: true });
      assert.equal(env.CAPS_ROUTING, "true");
      assert.equal(env.DISCO_INFO_FROM_CACHE, "true");
      assert.equal(env.MAX_CAPS_CACHED, "250000");
    },
  },
  {
    name: "round-robin without capability routing",
    values: { config: { balance: "round-robin", capsRouting: false } },
    check: ({ config, env }) => {
      assert.deepEqual(config.balance, { strategy: "round-robin", highest: false });
      assert.deepEqual(config.caps, { routing: false, maxCached: 1000, discoFromCache: false });
      assert.equal(env.CAPS_ROUTING, "false");
    },
  },
  {
    name: "a budget of maxUnavailable 0 is kept (not taken for unset)",
    values: { podDisruptionBudget: { enabled: true, maxUnavailable: 0 } },
    check: ({ find }) => {
      const spec = get(find("PodDisruptionBudget"), "spec");
      assert.equal(get(spec, "maxUnavailable"), 0);
      assert.equal(get(spec, "minAvailable"), undefined);
    },
  },
  {
    name: "one replica with a budget of maxUnavailable 1, and an eviction policy",
    values: {
      podDisruptionBudget: { enabled: true, maxUnavailable: 1, unhealthyPodEvictionPolicy: "AlwaysAllow" },
    },
    check: ({ find }) => {
      assert.deepEqual(get(find("PodDisruptionBudget"), "spec.maxUnavailable"), 1);
      assert.equal(get(find("PodDisruptionBudget"), "spec.unhealthyPodEvictionPolicy"), "AlwaysAllow");
    },
  },
  {
    name: "a budget of minAvailable 50% of two replicas",
    values: {
      replicaCount: 2,
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      podDisruptionBudget: { enabled: true, minAvailable: "50%" },
    },
    check: ({ find }) => assert.equal(get(find("PodDisruptionBudget"), "spec.minAvailable"), "50%"),
  },
  {
    name: "TLS to the XMPP server: CA from a ConfigMap, and a server name",
    values: {
      xmpp: {
        service: "xmpps://prosody.xmpp.svc.cluster.local:5347",
        tls: { serverName: "xmpp.example.org", ca: { configMap: "xmpp-ca", key: "ca.pem" } },
      },
    },
    cluster: { "ConfigMap/xmpp-ca": { "ca.pem": CA_PEM } },
    check: ({ config, env, pod }) => {
      assert.deepEqual(config.xmpp.tls, { ca: CA_PEM, servername: "xmpp.example.org" });
      assert.match(env.XMPP_TLS_CA_FILE ?? "", /\/ca\.pem$/);
      assert.equal(get(pod, "volumes.1.configMap.name"), "xmpp-ca");
    },
  },
  {
    name: "TLS to the XMPP server: CA from a Secret, server name from the service",
    values: {
      xmpp: { service: "xmpps://xmpp.example.org:5270", tls: { ca: { secret: "xmpp-server-tls" } } },
    },
    cluster: { "Secret/xmpp-server-tls": { "ca.crt": CA_PEM, "tls.crt": "x", "tls.key": "x" } },
    check: ({ config, env, pod }) => {
      assert.deepEqual(config.xmpp.tls, { ca: CA_PEM, servername: "xmpp.example.org" });
      assert.equal(env.XMPP_TLS_SERVERNAME, undefined);
      assert.deepEqual(
        get(pod, "volumes.1.secret.items"),
        [{ key: "ca.crt", path: "ca.crt" }],
        "only the CA",
      );
    },
  },
  {
    name: "xmpps:// without a CA: Node's public CAs",
    values: { xmpp: { service: "xmpps://xmpp.example.org:5270" } },
    check: ({ config, env }) => {
      assert.deepEqual(config.xmpp.tls, { ca: undefined, servername: "xmpp.example.org" });
      assert.equal(env.XMPP_TLS_CA_FILE, undefined);
    },
  },
  {
    name: "hard anti-affinity per zone, and a spread constraint that gets the pods' selector",
    values: {
      replicaCount: 2,
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      podAntiAffinityPreset: { type: "hard", topologyKey: "topology.kubernetes.io/zone" },
      topologySpreadConstraints: [
        { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway" },
        {
          maxSkew: 1,
          topologyKey: "topology.kubernetes.io/zone",
          whenUnsatisfiable: "DoNotSchedule",
          labelSelector: { matchLabels: { team: "xmpp" } },
        },
      ],
    },
    check: ({ pod }) => {
      const selector = {
        matchLabels: { "app.kubernetes.io/name": "xmpp-client-proxy", "app.kubernetes.io/instance": RELEASE },
      };
      assert.deepEqual(get(pod, "affinity.podAntiAffinity"), {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { topologyKey: "topology.kubernetes.io/zone", labelSelector: selector },
        ],
      });
      assert.deepEqual(get(pod, "topologySpreadConstraints.0.labelSelector"), selector);
      assert.deepEqual(get(pod, "topologySpreadConstraints.1.labelSelector"), {
        matchLabels: { team: "xmpp" },
      });
    },
  },
  {
    name: "an affinity of one's own: kept, with the preset's anti-affinity unless it has one",
    values: {
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["xmpp"] }] }],
          },
        },
      },
    },
    check: ({ pod }) => {
      assert.ok(get(pod, "affinity.nodeAffinity"), "the node affinity");
      assert.ok(
        get(pod, "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"),
        "the preset",
      );
    },
  },
  {
    name: "no anti-affinity (preset none), all alerts off, requester lists, extra env",
    values: {
      podAntiAffinityPreset: { type: "none" },
      prometheusRule: { enabled: true, alerts: Object.fromEntries(ALERTS.map((alert) => [alert, false])) },
      config: {
        requesterAllow: ["example.org", "bob@partner.example"],
        requesterDeny: ["spam.example"],
        sweepIntervalMs: 100,
      },
      extraEnv: [{ name: "UV_THREADPOOL_SIZE", value: "2" }],
      heapLimitMb: 0,
    },
    check: ({ pod, config, env, find }) => {
      assert.equal(get(pod, "affinity"), undefined);
      assert.deepEqual(get(find("PrometheusRule"), "spec.groups"), []);
      assert.deepEqual(config.requesters, {
        allow: ["example.org", "bob@partner.example"],
        deny: ["spam.example"],
      });
      assert.equal(config.sweepIntervalMs, 100);
      assert.equal(env.UV_THREADPOOL_SIZE, "2");
      assert.equal(env.NODE_OPTIONS, undefined);
    },
  },
];

/** Values that would deploy something broken: the render must fail saying why, and lint too or name it. */
const refused: Array<[string, Values, RegExp]> = [
  [
    "a budget of minAvailable 1 with one replica (no drain could ever evict it)",
    { podDisruptionBudget: { enabled: true } },
    /minAvailable 1 of 1 replica\(s\) leaves no pod that a node drain may evict/,
  ],
  [
    "a budget of minAvailable 100%",
    {
      replicaCount: 3,
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      podDisruptionBudget: { enabled: true, minAvailable: "100%" },
    },
    /minAvailable 100% of 3 replica\(s\)/,
  ],
  [
    "a budget of minAvailable 2 with autoscaling from 2",
    {
      jatKeys: JAT_KEYS,
      redis: { mode: "url", url: REDIS_URL },
      autoscaling: { enabled: true, minReplicas: 2 },
      podDisruptionBudget: { enabled: true, minAvailable: 2 },
    },
    /minAvailable 2 of 2 replica\(s\)/,
  ],
  ["two replicas without Redis", { replicaCount: 2 }, /replicaCount: Must be less than or equal to 1/],
  ["Redis without JAT keys", { redis: { mode: "url", url: REDIS_URL } }, /jatKeys is required with Redis/],
  ["the URL mode without a URL", { jatKeys: JAT_KEYS, redis: { mode: "url" } }, /redis\.url is required/],
  [
    "a CA for a plain xmpp:// service",
    { xmpp: { tls: { ca: { configMap: "xmpp-ca" } } } },
    /xmpp\.tls applies to an xmpps:\/\/ xmpp\.service only/,
  ],
  [
    "a server name for a plain xmpp:// service",
    { xmpp: { tls: { serverName: "xmpp.example.org" } } },
    /xmpps:\/\//,
  ],
  [
    "a CA from a ConfigMap and a Secret at once",
    { xmpp: { service: "xmpps://xmpp.example.org:5270", tls: { ca: { configMap: "a", secret: "b" } } } },
    /xmpp\.tls\.ca/,
  ],
  ["a loopback HTTP_HOST (the probes would fail)", { config: { httpHost: "127.0.0.1" } }, /httpHost/],
  [
    "an alert switch for no alert",
    { prometheusRule: { alerts: { XcpNoSuchAlert: false } } },
    /XcpNoSuchAlert/,
  ],
  ["an unknown anti-affinity preset", { podAntiAffinityPreset: { type: "always" } }, /podAntiAffinityPreset/],
  ["a missing required value", { targetJid: "" }, /targetJid is required/],
  ["an unknown balancing strategy", { config: { balance: "least-loaded" } }, /config\.balance/],
  [
    "a priority routing the service does not know",
    { config: { priorityRouting: "lowest" } },
    /priorityRouting/,
  ],
  // Quoted: YAML 1.1, which helm reads, would take an unquoted no or off for false.
  ["capability routing as a string", { config: { capsRouting: "false" } }, /capsRouting/],
  ["no caps ver kept", { config: { maxCapsCached: 0 } }, /maxCapsCached/],
];

// ---- helm ----

let helm: string | undefined;
let work = "";
let caseNumber = 0;

function runHelm(args: string[], values: Values): { ok: boolean; stdout: string; output: string } {
  const file = join(work, `values-${++caseNumber}.yaml`);
  writeFileSync(file, stringify(merge(REQUIRED, values)));
  const result = spawnSync(helm ?? "helm", [...args, "--values", file], {
    encoding: "utf8",
    timeout: 60_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(work, "cache"),
      HELM_CONFIG_HOME: join(work, "config"),
      HELM_DATA_HOME: join(work, "data"),
    },
  });
  if (result.error) throw result.error;
  return { ok: result.status === 0, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
}
const lint = (values: Values) =>
  runHelm(["lint", "--strict", CHART, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION], values);
const template = (values: Values) =>
  runHelm(["template", RELEASE, CHART, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION], values);

/** The objects of a `helm template` output. */
function objectsOf(stdout: string): K8sObject[] {
  return parseAllDocuments(stdout)
    .map((doc) => {
      assert.deepEqual(doc.errors, [], "helm's output is valid YAML");
      return doc.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null);
}

/** Validates an object against its API schema (throws with the schema's errors). */
function validateObject(object: K8sObject): void {
  const entry = MODELS[`${object.apiVersion}/${object.kind}`];
  assert.ok(entry, `${object.apiVersion} ${object.kind}: no schema for this kind (add it to MODELS)`);
  try {
    new entry.model(object as never).validate();
  } catch (error) {
    assert.fail(
      `${object.kind} ${object.metadata.name} does not match the API schema: ${(error as Error).message}`,
    );
  }
}

/**
 * Unknown fields: the API's OpenAPI schemas allow them (the API server drops them with a warning), so each
 * object becomes a typed object literal in one virtual TypeScript file, and tsc's excess property check reports
 * any field the types do not know, at any depth.
 */
function unknownFields(objects: Array<[string, K8sObject]>): string[] {
  const file = join(ROOT, "test/unit/__rendered_objects__.ts");
  const types = new Map<string, string>();
  const lines: string[] = [];
  const labels: string[] = [];
  for (const [label, object] of objects) {
    const entry = MODELS[`${object.apiVersion}/${object.kind}`];
    if (!entry) continue;
    types.set(entry.type, entry.from);
    labels[lines.length] = label;
    lines.push(`export const o${lines.length}: ${entry.type} = ${JSON.stringify(object)};`);
  }
  const imports = [...types].map(([type, from]) => `import type { ${type} } from "${from}";`);
  const source = [...lines, ...imports].join("\n");
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const line = diagnostic.file?.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line ?? -1;
    return `${labels[line] ?? "(imports)"}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, " ")}`;
  });
}

/**
 * The container's environment as the service would see it: files of secret and ConfigMap volumes written
 * where the kubelet would mount them (under a temporary root), env paths pointed there, secretKeyRefs resolved.
 */
function containerEnvironment(
  objects: K8sObject[],
  cluster: Record<string, Record<string, string>>,
  root: string,
): Record<string, string> {
  const sources: Record<string, Record<string, string>> = { ...cluster };
  for (const object of objects) {
    if (object.kind === "Secret")
      sources[`Secret/${object.metadata.name}`] = Object.fromEntries(
        Object.entries(object.data ?? {}).map(([key, value]) => [
          key,
          Buffer.from(value, "base64").toString("utf8"),
        ]),
      );
    if (object.kind === "ConfigMap") sources[`ConfigMap/${object.metadata.name}`] = object.data ?? {};
  }
  const deployment = objects.find((object) => object.kind === "Deployment");
  const pod = get(deployment, "spec.template.spec") as Record<string, unknown>;
  const container = get(pod, "containers.0") as Record<string, unknown>;
  const volumes = (pod.volumes ?? []) as Array<Record<string, unknown>>;
  const mounts = (container.volumeMounts ?? []) as Array<{ name: string; mountPath: string }>;
  for (const mount of mounts) {
    const volume = volumes.find((v) => v.name === mount.name);
    assert.ok(volume, `volume ${mount.name} is defined`);
    const secret = volume.secret as
      | { secretName: string; items?: Array<{ key: string; path: string }> }
      | undefined;
    const configMap = volume.configMap as
      | { name: string; items?: Array<{ key: string; path: string }> }
      | undefined;
    const source = secret ? `Secret/${secret.secretName}` : `ConfigMap/${configMap?.name}`;
    const data = sources[source];
    assert.ok(data, `${mount.name}: ${source} exists (the pod would not start)`);
    const items = (secret ?? configMap)?.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const { key, path } of items) {
      assert.ok(key in data, `${source} has the key ${key} (the pod would not start)`);
      const target = join(root, mount.mountPath, path);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, data[key] ?? "");
    }
  }
  const env: Record<string, string> = {};
  for (const entry of (container.env ?? []) as Array<Record<string, unknown>>) {
    const name = String(entry.name);
    if (typeof entry.value === "string") {
      const mount = mounts.find(
        (m) => entry.value === m.mountPath || String(entry.value).startsWith(`${m.mountPath}/`),
      );
      env[name] = mount ? join(root, String(entry.value)) : String(entry.value);
    } else {
      const ref = get(entry, "valueFrom.secretKeyRef") as { name: string; key: string } | undefined;
      assert.ok(ref, `${name}: a value or a secretKeyRef`);
      const value = sources[`Secret/${ref.name}`]?.[ref.key];
      assert.ok(value !== undefined, `${name}: Secret ${ref.name} has the key ${ref.key}`);
      env[name] = value;
    }
  }
  return env;
}

describe("helm chart rendered by helm", () => {
  const rendered = new Map<string, K8sObject[]>();

  before(() => {
    work = mkdtempSync(join(tmpdir(), "xcp-helm-render-"));
    try {
      helm = ensureHelm();
    } catch (error) {
      helm = undefined;
      // .ci/run reaches the npm registry: in CI, no helm is a failure, not a skip.
      assert.ok(!process.env.CI, `helm could not be had: ${(error as Error).message}`);
    }
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it("is the pinned helm 3", (t) => {
    if (!helm) return t.skip("helm could not be had (npm pack of its package failed); not checked");
    const version = spawnSync(helm, ["version", "--short"], { encoding: "utf8" });
    assert.match(version.stdout, /^v3\.17\.3\b/);
  });

  for (const testCase of cases) {
    it(`renders and validates: ${testCase.name}`, (t) => {
      if (!helm) return t.skip("no helm");
      const linted = lint(testCase.values);
      assert.ok(linted.ok, `helm lint --strict:\n${linted.output}`);
      const result = template(testCase.values);
      assert.ok(result.ok, `helm template:\n${result.output}`);
      const objects = objectsOf(result.stdout);
      rendered.set(testCase.name, objects);
      for (const object of objects) {
        validateObject(object);
        assert.equal(
          object.metadata.namespace ?? NAMESPACE,
          NAMESPACE,
          `${object.kind}: in the release's namespace`,
        );
      }
      const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
      assert.equal(
        new Set(names).size,
        names.length,
        `no two objects of one kind share a name: ${names.join(", ")}`,
      );

      const root = join(work, `pod-${caseNumber}`);
      const env = containerEnvironment(objects, testCase.cluster ?? {}, root);
      const result2 = loadConfig(env);
      assert.ok(
        result2.ok,
        `the service refuses the rendered configuration: ${result2.ok ? "" : result2.problems.join("; ")}`,
      );
      const deployment = objects.find((o) => o.kind === "Deployment");
      assert.ok(deployment);
      const pod = get(deployment, "spec.template.spec") as Record<string, unknown>;
      testCase.check({
        objects,
        config: result2.config,
        deployment,
        pod,
        env,
        find: (kind) => objects.find((o) => o.kind === kind),
      });
    });
  }

  it("no rendered object has a field its API does not know (tsc's excess property check)", (t) => {
    if (!helm) return t.skip("no helm");
    assert.equal(rendered.size, cases.length, "every case rendered");
    const all = [...rendered].flatMap(([name, objects]) =>
      objects.map((object): [string, K8sObject] => [
        `${name}: ${object.kind} ${object.metadata.name}`,
        object,
      ]),
    );
    assert.deepEqual(unknownFields(all), []);
  });

  it("the unknown-field check finds a misplaced field, and the schemas a wrong type", (t) => {
    if (!helm) return t.skip("no helm");
    const deployment = structuredClone(
      rendered
        .values()
        .next()
        .value?.find((o) => o.kind === "Deployment"),
    );
    assert.ok(deployment);
    // A field one level too deep, as a wrong indentation in a template would make it.
    (get(deployment, "spec.template.spec") as Record<string, unknown>).readOnlyRootFilesystem = true;
    const problems = unknownFields([["broken", deployment]]);
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0] ?? "", /broken: .*readOnlyRootFilesystem.*IPodSpec/);
    (deployment.spec as Record<string, unknown>).replicas = "2";
    assert.throws(() => validateObject(deployment), /replicas must be integer/);
    const monitor = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "m" },
      spec: { selector: {}, endpoints: [{ relabelings: [{ action: "nonsense" }] }] },
    };
    assert.throws(() => validateObject(monitor), /relabelings\/0\/action/);
  });

  for (const [what, values, message] of refused) {
    it(`refuses ${what}`, (t) => {
      if (!helm) return t.skip("no helm");
      const result = template(values);
      assert.equal(result.ok, false, `helm template rendered it:\n${result.stdout.slice(0, 2000)}`);
      assert.match(result.output, message);
      // helm lint turns the templates' fail and required into [INFO] lines (so that charts with required values
      // can be linted without them); a schema violation fails it.
      const linted = lint(values);
      assert.ok(
        !linted.ok || message.test(linted.output),
        `helm lint --strict says nothing:\n${linted.output}`,
      );
    });
  }

  it("every alert of files/alerts.yaml has a switch in values.yaml, and only those", () => {
    const file = parse(readFileSync(join(CHART, "files/alerts.yaml"), "utf8")) as {
      groups: Array<{ rules: Array<{ alert: string }> }>;
    };
    const values = parse(readFileSync(join(CHART, "values.yaml"), "utf8")) as Values;
    const names = file.groups.flatMap((group) => group.rules.map((rule) => rule.alert));
    assert.deepEqual(names, ALERTS);
    assert.deepEqual(
      get(values, "prometheusRule.alerts"),
      Object.fromEntries(ALERTS.map((alert) => [alert, true])),
    );
  });
});
