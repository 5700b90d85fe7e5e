{{/* Names and labels. */}}
{{- define "exmail-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "exmail-relay.fullname" -}}
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

{{- define "exmail-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "exmail-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "exmail-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "exmail-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "exmail-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "exmail-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "exmail-relay.secretName" -}}
{{- default (include "exmail-relay.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where the Secret's keys appear as files in the pod. */}}
{{- define "exmail-relay.secretDir" -}}/var/run/secrets/exmail-relay{{- end }}

{{/* Render one scalar or list value as TOML (JSON strings and arrays are valid TOML). */}}
{{- define "exmail-relay.tomlValue" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "bool" -}}
{{ ternary "true" "false" . }}
{{- else if has $kind (list "string" "float64" "int" "int64" "slice") -}}
{{ toJson . }}
{{- else -}}
{{ fail (printf "exmail-relay: cannot render a %s as a relay.toml value" $kind) }}
{{- end -}}
{{- end }}

{{/* relay.toml: the non-secret configuration; secrets are referenced as *_file paths. */}}
{{- define "exmail-relay.relayToml" -}}
# Rendered by the exmail-relay Helm chart; edit the chart's values, not this file.
# The pod's environment sets journal.path (RELAY_JOURNAL__PATH) and http.host.
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $lease := eq (include "exmail-relay.leaseMode" .) "true" }}
{{- if or $lease (gt (int .Values.sharding.count) 1) }}
{{- /* Forwarding between replicas: each pod's stable DNS name through the headless
     Service; lease mode names the owner by replica id (the pod's name), static mode by
     its ordinal. */}}
{{- $gateway := deepCopy (get $config "gateway" | default dict) }}
{{- if not (hasKey $gateway "peer_url") }}
{{- $full := include "exmail-relay.fullname" . }}
{{- $port := include "exmail-relay.httpPort" . }}
{{- if $lease }}
{{- $_ := set $gateway "peer_url" (printf "http://{replica}.%s-headless.%s.svc:%s" $full .Release.Namespace $port) }}
{{- else }}
{{- $_ := set $gateway "peer_url" (printf "http://%s-{index}.%s-headless.%s.svc:%s" $full $full .Release.Namespace $port) }}
{{- end }}
{{- end }}
{{- $_ := set $config "gateway" $gateway }}
{{- end }}
{{- if .Values.adminApi.enabled }}
{{- $http := deepCopy (get $config "http" | default dict) }}
{{- $_ := set $http "admin_token_file" (printf "%s/admin-token" (include "exmail-relay.secretDir" .)) }}
{{- $_ := set $config "http" $http }}
{{- end }}
{{- range $section, $keys := $config }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{ $key }} = {{ include "exmail-relay.tomlValue" $value }}
{{- end }}
{{- end }}

[sharding]
{{- if eq (include "exmail-relay.leaseMode" .) "true" }}
mode = "lease"
shards = {{ int .Values.sharding.shards }}
heartbeat = {{ int .Values.sharding.heartbeat }}
prefix = {{ include "exmail-relay.prefix" . | toJson }}
secret_file = {{ printf "%s/sharding-secret" (include "exmail-relay.secretDir" .) | toJson }}
release_after = {{ include "exmail-relay.tomlValue" (.Values.sharding.releaseAfter | default "30s") }}
{{- else }}
mode = "static"
count = {{ int .Values.sharding.count }}
{{- end }}

[amqp]
enabled = {{ ternary "true" "false" .Values.amqp.enabled }}
{{- range $key, $value := .Values.amqp.settings }}
{{ $key }} = {{ include "exmail-relay.tomlValue" $value }}
{{- end }}
{{- if .Values.amqp.enabled }}
url_file = {{ printf "%s/amqp-url" (include "exmail-relay.secretDir" .) | toJson }}
{{- end }}
{{- $dir := include "exmail-relay.secretDir" . }}
{{- range .Values.tenants }}

[[tenants]]
{{- range $key, $value := omit . "client_secret" }}
{{ $key }} = {{ include "exmail-relay.tomlValue" $value }}
{{- end }}
client_secret_file = {{ printf "%s/tenant-%s-client-secret" $dir .name | toJson }}
{{- end }}
{{- range .Values.webhooks }}

[[webhooks]]
{{- range $key, $value := omit . "secret" }}
{{ $key }} = {{ include "exmail-relay.tomlValue" $value }}
{{- end }}
secret_file = {{ printf "%s/webhook-%s-secret" $dir .name | toJson }}
{{- end }}
{{- range .Values.clients }}

[[clients]]
{{- range $key, $value := omit . "keys" "link_secret" "signsLinks" }}
{{ $key }} = {{ include "exmail-relay.tomlValue" $value }}
{{- end }}
key_file = {{ printf "%s/client-%s-keys" $dir .name | toJson }}
{{- if or .link_secret .signsLinks }}
link_secret_file = {{ printf "%s/client-%s-link-secret" $dir .name | toJson }}
{{- end }}
{{- end }}
{{ end }}

{{/* The Secret's data; rendered only when the chart owns the Secret. */}}
{{- define "exmail-relay.secretData" -}}
{{- range .Values.tenants }}
{{- $value := required (printf "tenants: %s needs client_secret (or set secrets.existingSecret)" .name) .client_secret }}
{{ printf "tenant-%s-client-secret" .name }}: {{ $value | b64enc | quote }}
{{- end }}
{{- range .Values.webhooks }}
{{- $value := required (printf "webhooks: %s needs secret (or set secrets.existingSecret)" .name) .secret }}
{{- if kindIs "slice" $value }}
{{ printf "webhook-%s-secret" .name }}: {{ join "\n" $value | b64enc | quote }}
{{- else }}
{{ printf "webhook-%s-secret" .name }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- range .Values.clients }}
{{- $keys := required (printf "clients: %s needs keys (or set secrets.existingSecret)" .name) .keys }}
{{ printf "client-%s-keys" .name }}: {{ join "\n" $keys | b64enc | quote }}
{{- if .link_secret }}
{{ printf "client-%s-link-secret" .name }}: {{ .link_secret | b64enc | quote }}
{{- else if .signsLinks }}
{{- fail (printf "clients: %s has signsLinks but no link_secret (or set secrets.existingSecret)" .name) }}
{{- end }}
{{- end }}
{{- if .Values.amqp.enabled }}
amqp-url: {{ required "amqp.url is required when amqp.enabled (or set secrets.existingSecret)" .Values.amqp.url | b64enc | quote }}
{{- end }}
{{- if .Values.adminApi.enabled }}
admin-token: {{ required "adminApi.token is required when adminApi.enabled (or set secrets.existingSecret)" .Values.adminApi.token | b64enc | quote }}
{{- end }}
{{- if eq (include "exmail-relay.leaseMode" .) "true" }}
sharding-secret: {{ include "exmail-relay.shardingSecret" . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Lease mode's deployment secret (signs the replicas' presence and checkpoint messages):
sharding.secret when given; else the one this release's Secret already holds (lookup,
so an upgrade keeps it: replicas of one deployment must share it); else a new random one.
*/}}
{{- define "exmail-relay.shardingSecret" -}}
{{- if .Values.sharding.secret -}}
{{- .Values.sharding.secret -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "exmail-relay.fullname" .) -}}
{{- $data := (get ($existing | default dict) "data") | default dict -}}
{{- if hasKey $data "sharding-secret" -}}
{{- get $data "sharding-secret" | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
Lease mode's broker prefix: sharding.prefix when given; else the one this release's
ConfigMap already uses (an upgrade keeps its leases and checkpoints; a release from
before the chart set a prefix used "exmail.relay"); else "exmail.relay.<release>", so
two releases on one vhost never share shards.
*/}}
{{- define "exmail-relay.prefix" -}}
{{- if .Values.sharding.prefix -}}
{{- .Values.sharding.prefix -}}
{{- else -}}
{{- $existing := lookup "v1" "ConfigMap" .Release.Namespace (include "exmail-relay.fullname" .) -}}
{{- $toml := (get ((get ($existing | default dict) "data") | default dict) "relay.toml") | default "" -}}
{{- $line := regexFind "(?m)^prefix = \"[^\"]+\"" $toml -}}
{{- if $line -}}
{{- $line | trimPrefix "prefix = " | trimAll "\"" -}}
{{- else if contains "mode = \"lease\"" $toml -}}
exmail.relay
{{- else -}}
{{- printf "exmail.relay.%s" .Release.Name -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "exmail-relay.httpPort" -}}
{{- int (default 8080 (.Values.config.http).port) }}
{{- end }}

{{/* Render when the cluster serves the API group, or when forced. */}}
{{- define "exmail-relay.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
"true" in lease mode: sharding.mode "lease", or "" with amqp.enabled (the relay's own
default). Lease mode without amqp cannot work: the leases live on the broker.
*/}}
{{- define "exmail-relay.leaseMode" -}}
{{- $mode := .Values.sharding.mode | default (ternary "lease" "static" .Values.amqp.enabled) -}}
{{- if and (eq $mode "lease") (not .Values.amqp.enabled) -}}
{{- fail "exmail-relay: sharding.mode lease needs amqp.enabled (the leases live on the broker)" -}}
{{- end -}}
{{- ternary "true" "false" (eq $mode "lease") -}}
{{- end }}
