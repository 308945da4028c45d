{{/*
Chart name, truncated to the 63 characters a DNS-1123 label allows.
*/}}
{{- define "trustwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or just <release> when it already contains the
chart name (so `helm install trustwire ...` gives objects named `trustwire`).
*/}}
{{- define "trustwire.fullname" -}}
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
Name of cluster-scoped objects (ClusterRole, ClusterRoleBinding). They carry the release
namespace so two releases with the same name in different namespaces (the usual layout of
namespaced mode) do not fight over one ClusterRole.
*/}}
{{- define "trustwire.clusterName" -}}
{{- printf "%s-%s" (include "trustwire.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "trustwire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "trustwire.labels" -}}
helm.sh/chart: {{ include "trustwire.chart" . }}
{{ include "trustwire.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trustwire
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "trustwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trustwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trustwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trustwire.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trustwire.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
"true" when replicas run as a kopf peering group (leader + hot standbys), "" otherwise.
One replica runs --standalone: no peering object, no kopf.dev permissions.
*/}}
{{- define "trustwire.peering.enabled" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
The namespaces the operator serves in namespaced mode (fails the render when missing, even
if the values schema was skipped with --skip-schema-validation).
*/}}
{{- define "trustwire.namespaces" -}}
{{- if eq .Values.rbac.mode "namespaced" }}
{{- if not .Values.rbac.namespaces }}
{{- fail "rbac.mode=namespaced needs at least one namespace in rbac.namespaces" }}
{{- end }}
{{- toYaml (uniq .Values.rbac.namespaces) }}
{{- else }}
{{- toYaml list }}
{{- end }}
{{- end }}

{{/*
THE permission table: every API request the operator makes, in one place, used by both RBAC
modes (so they cannot drift). No wildcards, nothing more.
  namespaced:        resources living in the namespaces the operator serves
  clusterScoped:     cluster-scoped resources (always in a ClusterRole)
  peeringCluster:    kopf peering with --all-namespaces (cluster-scoped ClusterKopfPeering)
  peeringNamespaced: kopf peering with --namespace (a KopfPeering in each served namespace)
*/}}
{{- define "trustwire.rbac.ruleTable" -}}
namespaced:
  - apiGroups: ["trustwire.io"]
    resources: ["serviceidentities", "trustrelationships"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["trustwire.io"]
    resources: ["serviceidentities/status", "trustrelationships/status"]
    verbs: ["get", "patch"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create"]
  - apiGroups: ["apps"]
    resources: ["deployments", "statefulsets", "daemonsets"]
    verbs: ["get", "list", "watch", "patch"]
clusterScoped:
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["list", "watch"]
peeringCluster:
  - apiGroups: ["kopf.dev"]
    resources: ["clusterkopfpeerings"]
    verbs: ["get", "list", "watch", "patch"]
peeringNamespaced:
  - apiGroups: ["kopf.dev"]
    resources: ["kopfpeerings"]
    verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/*
Rules for one role. Call with (dict "root" $ "scope" "cluster") for the ClusterRole or
(dict "root" $ "scope" "namespaced") for the per-namespace Roles.
  mode=cluster:    ClusterRole = namespaced + clusterScoped (+ peeringCluster); no Roles.
  mode=namespaced: Role = namespaced (+ peeringNamespaced); ClusterRole = clusterScoped only.
*/}}
{{- define "trustwire.rbac.rules" -}}
{{- $root := .root }}
{{- $mode := $root.Values.rbac.mode }}
{{- $table := include "trustwire.rbac.ruleTable" $root | fromYaml }}
{{- $peering := include "trustwire.peering.enabled" $root }}
{{- $rules := list }}
{{- if or (eq .scope "namespaced") (eq $mode "cluster") }}
{{- $rules = concat $rules $table.namespaced }}
{{- end }}
{{- if eq .scope "cluster" }}
{{- $rules = concat $rules $table.clusterScoped }}
{{- end }}
{{- if and $peering (eq .scope "cluster") (eq $mode "cluster") }}
{{- $rules = concat $rules $table.peeringCluster }}
{{- end }}
{{- if and $peering (eq .scope "namespaced") (eq $mode "namespaced") }}
{{- $rules = concat $rules $table.peeringNamespaced }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
