{{/*
OpenTelemetry tracing (docs/operations.md, "Tracing"): the standard OTEL_ variables
the pods get from .Values.tracing, as a YAML list of EnvVar. The downward-API
variables come first, so later values can refer to them as $(K8S_NODE_IP) and so on.
*/}}
{{- define "exmail-relay.tracingEnv" -}}
{{- $t := .Values.tracing -}}
{{- if $t.enabled }}
{{- $fullname := include "exmail-relay.fullname" . }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: OTEL_TRACES_EXPORTER
  value: otlp
{{- with $t.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ $t.serviceName | default $fullname | quote }}
{{- with $t.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- if ne (toString $t.samplerArg) "" }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ toString $t.samplerArg | quote }}
{{- end }}
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" (printf "k8s.statefulset.name=%s" $fullname) }}
{{- range $key, $value := $t.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $key (toString $value)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}

{{/*
The container's environment beyond the chart's RELAY_ variables: tracing, then
.Values.extraEnv. A name given twice (or one the tracing values already set) fails.
*/}}
{{- define "exmail-relay.extraEnv" -}}
{{- $tracing := include "exmail-relay.tracingEnv" . | fromYamlArray }}
{{- $seen := dict }}
{{- range $tracing }}
{{- $_ := set $seen .name "tracing" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if hasKey $seen .name }}
{{- if eq (get $seen .name) "tracing" }}
{{- fail (printf "extraEnv: %s is set by the tracing values; set it there (tracing.*), or leave tracing.enabled false and set the OTEL_ variables here" .name) }}
{{- else }}
{{- fail (printf "extraEnv: %s is given twice" .name) }}
{{- end }}
{{- end }}
{{- $_ := set $seen .name "extraEnv" }}
{{- end }}
{{- with $tracing }}
{{ toYaml . }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
