{{/* The objects' name: the release's when it contains the chart's (helm install faultline ...). */}}
{{- define "faultline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "faultline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The kustomize base's selector plus the release, so that two releases do not select each other's pods. */}}
{{- define "faultline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faultline.labels" -}}
{{ include "faultline.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "faultline.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "faultline.fullname" .)) .Values.tokens.secretName -}}
{{- end -}}

{{- define "faultline.tlsSecret" -}}
{{- default (printf "%s-tls" (include "faultline.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* The agent's name and labels. Its name label is fixed, not derived from nameOverride: runs find the agents by app.kubernetes.io/name=faultline-agent. */}}
{{- define "faultline.agentName" -}}
{{- printf "%s-agent" (include "faultline.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "faultline.agentSelectorLabels" -}}
app.kubernetes.io/name: faultline-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faultline.agentLabels" -}}
{{ include "faultline.agentSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
