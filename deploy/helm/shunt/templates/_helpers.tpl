{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "shunt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, prefixed to the chart name unless it already contains it. */}}
{{- define "shunt.fullname" -}}
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

{{- define "shunt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shunt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shunt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shunt.labels" -}}
helm.sh/chart: {{ include "shunt.chart" . }}
{{ include "shunt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "shunt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shunt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "shunt.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the host's cgroup hierarchy appears inside the agent container. */}}
{{- define "shunt.cgroupMount" -}}/host/sys/fs/cgroup{{- end -}}

{{/* Fails the rendering early for values the agent would reject at start on every node. */}}
{{- define "shunt.validate" -}}
{{- $modes := list "auto" "sockops" "tc" "iptables" -}}
{{- if not (has .Values.redirectMode $modes) -}}
{{- fail (printf "redirectMode must be one of %s, got %q" (join ", " $modes) .Values.redirectMode) -}}
{{- end -}}
{{- $profiles := list "istio-sidecar" "istio-ambient" -}}
{{- if not (has .Values.profile $profiles) -}}
{{- fail (printf "profile must be one of %s, got %q" (join ", " $profiles) .Values.profile) -}}
{{- end -}}
{{- end -}}

{{/* sockops.splicePorts as the agent's --splice-ports text ([] = none; "" = not set: the agent's default, auto). */}}
{{- define "shunt.splicePorts" -}}
{{- $p := (.Values.sockops | default dict).splicePorts -}}
{{- if and (kindIs "slice" $p) (empty $p) -}}
none
{{- else if kindIs "slice" $p -}}
{{- $ports := list -}}
{{- range $p }}{{ $ports = append $ports (int .) }}{{ end -}}
{{- join "," $ports -}}
{{- else if kindIs "string" $p -}}
{{- $p -}}
{{- else if or (kindIs "float64" $p) (kindIs "int64" $p) (kindIs "int" $p) -}}
{{- int $p -}}
{{- else if not (kindIs "invalid" $p) -}}
{{- fail (printf "sockops.splicePorts must be a list of ports, one port, \"auto\", \"all\" or \"none\", got %v" $p) -}}
{{- end -}}
{{- end -}}

{{/* Arguments of `shunt agent`; the node name comes from NODE_NAME (downward API). */}}
{{- define "shunt.args" -}}
- agent
- --redirect-mode={{ .Values.redirectMode }}
- --profile={{ .Values.profile }}
- --log-level={{ .Values.logLevel }}
- --metrics-address={{ .Values.metrics.bindAddress }}:{{ .Values.metrics.port }}
- --bpffs-path=/sys/fs/bpf
- --state-dir=/run/shunt
- --max-pods={{ .Values.maxPods }}
{{- if .Values.cgroupPath }}
- --cgroup-path={{ .Values.cgroupPath }}
{{- else }}
- --cgroup-search={{ include "shunt.cgroupMount" . }}
{{- end }}
{{- with include "shunt.splicePorts" . }}
- --splice-ports={{ . }}
{{- end }}
{{- if eq .Values.profile "istio-ambient" }}
- --zds-socket={{ .Values.ambient.zdsSocket }}
{{- end }}
{{- if .Values.cleanupOnExit }}
- --cleanup-on-exit
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The pre-1.30 annotation form of an appArmorProfile (called with the profile object). */}}
{{- define "shunt.appArmorAnnotation" -}}
{{- if eq .type "Unconfined" -}}unconfined
{{- else if eq .type "RuntimeDefault" -}}runtime/default
{{- else if eq .type "Localhost" -}}localhost/{{ required "securityContext.appArmorProfile.localhostProfile is required for type Localhost" .localhostProfile }}
{{- else -}}{{ fail (printf "securityContext.appArmorProfile.type must be Unconfined, RuntimeDefault or Localhost, got %q" .type) }}
{{- end -}}
{{- end -}}
