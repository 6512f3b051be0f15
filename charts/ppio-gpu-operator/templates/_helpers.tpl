{{/*
Names, labels and the pieces of the operator's pod spec that several templates share.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "ppio-gpu-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or <release>-<chart> (the release name alone
when it already contains the chart name). Kept to 52 characters so suffixes such as "-metrics" and
"-leader-election" stay within the 63 characters of a label value.
*/}}
{{- define "ppio-gpu-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, as the helm.sh/chart label. */}}
{{- define "ppio-gpu-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource of the release. */}}
{{- define "ppio-gpu-operator.labels" -}}
helm.sh/chart: {{ include "ppio-gpu-operator.chart" . }}
{{ include "ppio-gpu-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ppio-gpu-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (a Deployment's selector is immutable). */}}
{{- define "ppio-gpu-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ppio-gpu-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "ppio-gpu-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ppio-gpu-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, and @digest when a digest is set (the runtime then pulls by digest). */}}
{{- define "ppio-gpu-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader through. */}}
{{- define "ppio-gpu-operator.leaseName" -}}
{{- default (include "ppio-gpu-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
What the operator needs on the objects of the namespaces it watches, as RBAC rules. The same rules go
into a ClusterRole (all namespaces) or into a Role in each watched namespace.
*/}}
{{- define "ppio-gpu-operator.operatorRules" -}}
# Views are listed and watched (the controller's watch), never read one by one nor written; the
# operator writes their status with server-side apply (a patch).
- apiGroups: ["gpu.ppio.io"]
  resources: ["gpuinstanceviews"]
  verbs: ["list", "watch"]
- apiGroups: ["gpu.ppio.io"]
  resources: ["gpuinstanceviews/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion need update on the owner's finalizers subresource where
# the OwnerReferencesPermissionEnforcement admission plugin runs.
- apiGroups: ["gpu.ppio.io"]
  resources: ["gpuinstanceviews/finalizers"]
  verbs: ["update"]
# The mirrors: known from a metadata-only watch (list, watch), read before a changed one is rewritten
# (get), written with server-side apply (a patch, which needs create as well when the mirror is new),
# pruned with delete; status written the same way.
- apiGroups: ["gpu.ppio.io"]
  resources: ["gpuinstances"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["gpu.ppio.io"]
  resources: ["gpuinstances/status"]
  verbs: ["patch"]
# Only get: the operator reads the one Secret a view names, at each sync, and never lists or watches.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on views when a sync starts failing or recovers (created, or patched when one repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.instanceServices.enabled }}
# A Service and EndpointSlices per mirror (instanceServices.enabled): the operator's own known from a
# metadata-only watch (list, watch), so one someone deletes is written again; read before a name is
# first used or before one is removed (get, so one that the operator does not manage is left alone),
# applied (patch, and create for a new one), removed when no longer wanted (delete).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
The pods' affinity: `affinity` as given, else the anti-affinity of podAntiAffinityPreset that keeps
replicas on different nodes (preferred when soft, required when hard), else none.
*/}}
{{- define "ppio-gpu-operator.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if .Values.podAntiAffinityPreset }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "ppio-gpu-operator.selectorLabels" . | fromYaml)) }}
podAntiAffinity:
{{- if eq .Values.podAntiAffinityPreset "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{ toYaml $term | nindent 6 | trim }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}
