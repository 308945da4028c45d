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

{{/*
The operator image: [<registry>/]<repository>, then @<digest> when set (it pins the image, so
the tag is ignored), else :<tag> (default: the chart's appVersion).
*/}}
{{- define "trustwire.image" -}}
{{- $image := .Values.image }}
{{- $repository := $image.repository }}
{{- with $image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository ($image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" with more than one replica (a leader and hot standbys), "" otherwise. Every replica
always takes part in leader election on the Lease; this only decides the PodDisruptionBudget.
*/}}
{{- define "trustwire.ha" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
Name of the Lease the replicas elect a leader on (in the release namespace), and of the Role
that lets them use it.
*/}}
{{- define "trustwire.leaseName" -}}
{{- include "trustwire.fullname" . }}
{{- end }}

{{- define "trustwire.leaderElectionRoleName" -}}
{{- printf "%s-leader-election" (include "trustwire.fullname" .) | trunc 63 | trimSuffix "-" }}
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
modes (so they cannot drift). No wildcards, nothing more. tests/integration/test_rbac_use.py
runs the operator and checks this table against the requests it really made, both ways.
  served:          resources in the namespaces the operator serves (ClusterRole in cluster mode,
                   a Role per served namespace in namespaced mode)
  leaderElection:  the Lease in the release namespace (its own Role); `create` cannot be
                   limited to a name, get/patch are limited to the one Lease
Verbs as the operator uses them: patch (never update/PUT), no deletecollection; the status
subresources are only ever patched; TrustRelationships are never patched (they carry no
finalizer); Events are only created.
*/}}
{{- define "trustwire.rbac.ruleTable" -}}
served:
  - apiGroups: ["trustwire.io"]
    resources: ["serviceidentities"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["trustwire.io"]
    resources: ["trustrelationships", "enrollments"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["trustwire.io"]
    resources: ["serviceidentities/status", "trustrelationships/status", "enrollments/status"]
    verbs: ["patch"]
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
leaderElection:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: [{{ include "trustwire.leaseName" . | quote }}]
    verbs: ["get", "patch"]
{{- end }}

{{/*
Rules for one role. Call with (dict "root" $ "scope" S), S one of:
  cluster:    the ClusterRole (mode=cluster only): served.
  namespaced: the Role in each served namespace (mode=namespaced only): served.
  leader:     the Role in the release namespace (both modes): leaderElection.
*/}}
{{- define "trustwire.rbac.rules" -}}
{{- $root := .root }}
{{- $mode := $root.Values.rbac.mode }}
{{- $table := include "trustwire.rbac.ruleTable" $root | fromYaml }}
{{- $rules := list }}
{{- if eq .scope "cluster" }}
{{- if ne $mode "cluster" }}
{{- fail "trustwire.rbac.rules: the ClusterRole exists only in cluster mode" }}
{{- end }}
{{- $rules = concat $rules $table.served }}
{{- else if eq .scope "namespaced" }}
{{- $rules = concat $rules $table.served }}
{{- else if eq .scope "leader" }}
{{- $rules = concat $rules $table.leaderElection }}
{{- else }}
{{- fail (printf "trustwire.rbac.rules: unknown scope %q" .scope) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
