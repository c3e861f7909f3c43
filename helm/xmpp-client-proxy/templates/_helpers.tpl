{{/*
Expand the name of the chart.
*/}}
{{- define "xmpp-client-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "xmpp-client-proxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "xmpp-client-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "xmpp-client-proxy.labels" -}}
helm.sh/chart: {{ include "xmpp-client-proxy.chart" . }}
{{ include "xmpp-client-proxy.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "xmpp-client-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xmpp-client-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "xmpp-client-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "xmpp-client-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret holding the component password, the JAT keys and the Redis URL or password: existingSecret, or the
chart's own.
*/}}
{{- define "xmpp-client-proxy.secretName" -}}
{{- default (include "xmpp-client-proxy.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Where the Secret's files are mounted in the container.
*/}}
{{- define "xmpp-client-proxy.secretDir" -}}
/var/run/secrets/xmpp-client-proxy
{{- end }}

{{/*
"true" when JAT_KEYS_FILE is passed: an existing Secret must hold the keys; the chart's Secret holds them when
jatKeys is set, and must with Redis.
*/}}
{{- define "xmpp-client-proxy.jatKeysEnabled" -}}
{{- if or .Values.existingSecret .Values.jatKeys }}true{{- end }}
{{- end }}

{{/*
Where the CA certificates of xmpp.tls.ca are mounted in the container.
*/}}
{{- define "xmpp-client-proxy.tlsCaDir" -}}
/var/run/xmpp-client-proxy/xmpp-tls-ca
{{- end }}

{{/*
"true" when XMPP_TLS_CA_FILE is passed (a CA from a ConfigMap or a Secret).
*/}}
{{- define "xmpp-client-proxy.tlsCaEnabled" -}}
{{- if or .Values.xmpp.tls.ca.configMap .Values.xmpp.tls.ca.secret }}true{{- end }}
{{- end }}

{{/*
"true" when REDIS_URL_FILE is passed (redis.mode url: the URL may carry a password).
*/}}
{{- define "xmpp-client-proxy.redisUrlEnabled" -}}
{{- if eq .Values.redis.mode "url" }}true{{- end }}
{{- end }}

{{/*
"true" when the PodDisruptionBudget uses maxUnavailable: the key is there and not empty (0 counts as set).
*/}}
{{- define "xmpp-client-proxy.pdbMaxUnavailableSet" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and (hasKey $pdb "maxUnavailable") (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "") }}true{{- end }}
{{- end }}

{{/*
The pods' affinity: .Values.affinity, plus the podAntiAffinityPreset unless it has a podAntiAffinity of its own.
*/}}
{{- define "xmpp-client-proxy.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- $preset := .Values.podAntiAffinityPreset }}
{{- if and (ne $preset.type "none") (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" $preset.topologyKey "labelSelector" (dict "matchLabels" (include "xmpp-client-proxy.selectorLabels" . | fromYaml)) }}
{{- if eq $preset.type "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}

{{/*
The pods' topology spread constraints: each without a labelSelector gets the pods' selector labels.
*/}}
{{- define "xmpp-client-proxy.topologySpreadConstraints" -}}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "xmpp-client-proxy.selectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- if $constraints }}
{{- toYaml $constraints }}
{{- end }}
{{- end }}

{{/*
"true" when REDIS_PASSWORD_FILE is passed (Redis Cluster or Sentinel with a password).
*/}}
{{- define "xmpp-client-proxy.redisPasswordEnabled" -}}
{{- if and .Values.redis.auth.enabled (has .Values.redis.mode (list "cluster" "sentinel")) }}true{{- end }}
{{- end }}

{{/*
Settings that are wrong together; the chart fails rather than deploy a service that exits with code 2.
*/}}
{{- define "xmpp-client-proxy.validate" -}}
{{- $mode := .Values.redis.mode }}
{{- if and (eq $mode "none") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs Redis: set redis.mode" }}
{{- end }}
{{- if and (ne $mode "none") (not .Values.existingSecret) (not .Values.jatKeys) }}
{{- fail "jatKeys is required with Redis (every replica must verify the same tokens), or set existingSecret" }}
{{- end }}
{{- if and (eq $mode "cluster") (not .Values.redis.clusterNodes) }}
{{- fail "redis.clusterNodes is required with redis.mode cluster" }}
{{- end }}
{{- if and (eq $mode "sentinel") (or (not .Values.redis.sentinels) (not .Values.redis.sentinelName)) }}
{{- fail "redis.sentinels and redis.sentinelName are required with redis.mode sentinel" }}
{{- end }}
{{- if and .Values.redis.auth.enabled (not (include "xmpp-client-proxy.redisPasswordEnabled" .)) }}
{{- fail "redis.auth applies to redis.mode cluster and sentinel only (a REDIS_URL carries its own password)" }}
{{- end }}
{{- if and (eq $mode "none") (gt (int .Values.config.redisWaitReplicas) 0) }}
{{- fail "config.redisWaitReplicas applies with Redis only (redis.mode url, cluster or sentinel)" }}
{{- end }}
{{- if lt (int .Values.config.reconnectMaxMs) (int .Values.config.reconnectMinMs) }}
{{- fail "config.reconnectMaxMs must not be smaller than config.reconnectMinMs" }}
{{- end }}
{{- $tls := .Values.xmpp.tls }}
{{- if and (or $tls.serverName $tls.ca.configMap $tls.ca.secret) (not (hasPrefix "xmpps://" .Values.xmpp.service)) }}
{{- fail "xmpp.tls applies to an xmpps:// xmpp.service only (TLS from the first byte on the component port)" }}
{{- end }}
{{- if and $tls.ca.configMap $tls.ca.secret }}
{{- fail "xmpp.tls.ca: set configMap or secret, not both" }}
{{- end }}
{{- if regexMatch "^(127\\.|::1$|localhost$|\\[::1\\]$)" .Values.config.httpHost }}
{{- fail (printf "config.httpHost %s is a loopback address: the kubelet's probes and Prometheus reach the pod on its IP; leave it empty" .Values.config.httpHost) }}
{{- end }}
{{- include "xmpp-client-proxy.validatePodDisruptionBudget" . }}
{{- end }}

{{/*
A PodDisruptionBudget whose minAvailable is all the replicas (1 of 1, say) lets no drain evict any pod: refuse it.
minAvailable percentages round up, as Kubernetes does.
*/}}
{{- define "xmpp-client-proxy.validatePodDisruptionBudget" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (include "xmpp-client-proxy.pdbMaxUnavailableSet" .)) }}
{{- $replicas := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}
{{- $replicas = int .Values.autoscaling.minReplicas }}
{{- end }}
{{- $min := toString $pdb.minAvailable }}
{{- $needed := int $min }}
{{- if hasSuffix "%" $min }}
{{- $needed = div (add (mul $replicas (int (trimSuffix "%" $min))) 99) 100 }}
{{- end }}
{{- if and (gt $replicas 0) (ge $needed $replicas) }}
{{- fail (printf "podDisruptionBudget: minAvailable %s of %d replica(s) leaves no pod that a node drain may evict; run more replicas (replicaCount, or autoscaling.minReplicas), lower minAvailable, or set maxUnavailable (1: one pod at a time)" $min $replicas) }}
{{- end }}
{{- end }}
{{- end }}
