{{- define "ragplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ragplane.labels" -}}
app.kubernetes.io/name: ragplane-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ragplane.selectorLabels" -}}
app.kubernetes.io/name: ragplane-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ragplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ragplane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
