{{/* Labels Helm's own tooling uses; the objects otherwise carry what deploy/ gives them. */}}
{{- define "infinitecontext.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The one scope switch: true for a namespace-scoped install (deploy/namespaced/). */}}
{{- define "infinitecontext.namespaced" -}}
{{- if eq .Values.scope "namespace" }}true{{ end -}}
{{- end -}}
