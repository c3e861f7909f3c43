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
{{- end }}
