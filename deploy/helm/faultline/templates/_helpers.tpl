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
