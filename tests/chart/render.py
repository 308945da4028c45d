"""Render the trustwire Helm chart with the real Helm engine and validate what comes out.

Shared by the chart tests. Nothing here talks to a cluster: `helm_python` renders offline
(`lookup` returns nothing) and `kubernetes_validate` checks objects against the OpenAPI
schemas of a released Kubernetes version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "trustwire"
TOP_LEVEL_CRDS_DIR = REPO_ROOT / "crds"
#: The chart-local copies of the CRDs that templates/crds.yaml renders.
CHART_CRDS_DIR = CHART_DIR / "files" / "crds"

# A recent Kubernetes release that kubernetes_validate ships schemas for.
KUBERNETES_VERSION = "1.35.0"

RELEASE = "trustwire"
NAMESPACE = "trustwire-system"

# Both RBAC modes with one and two replicas, namespaced mode serving the release namespace itself
# (two Roles in one namespace must not clash), the ServiceMonitor and PrometheusRule, and the
# cert-manager-style values a platform team would set.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "replicas-2": {"replicaCount": 2},
    "namespaced": {"rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]}},
    "namespaced-replicas-2": {
        "replicaCount": 2,
        "rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]},
    },
    "namespaced-serving-release-namespace": {
        "rbac": {"mode": "namespaced", "namespaces": ["team-a", NAMESPACE]},
    },
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "prometheusrule": {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}},
    "cert-manager-style": {
        "replicaCount": 3,
        "image": {
            "registry": "registry.example",
            "repository": "platform/trustwire",
            "digest": "sha256:" + "0" * 64,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000680000,
            "fsGroup": 1000680000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "crds": {"enabled": True, "keep": False},
    },
    "no-crds-no-aggregation": {"crds": {"enabled": False}, "rbac": {"aggregateClusterRoles": False}},
}

AGGREGATE_LABELS = tuple(
    f"rbac.authorization.k8s.io/aggregate-to-{role}" for role in ("view", "edit", "admin")
)


def is_aggregated(obj: dict[str, Any]) -> bool:
    """A ClusterRole for the users of trustwire (added to view/edit/admin), not for the operator."""
    labels = obj["metadata"].get("labels") or {}
    return obj["kind"] == "ClusterRole" and any(labels.get(key) == "true" for key in AGGREGATE_LABELS)


def operator_roles(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The Roles or ClusterRoles that grant the operator (the aggregated ones excluded)."""
    return [o for o in objects if o["kind"] == kind and not is_aggregated(o)]


def render_templates(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_templates(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: rendered a non-object YAML document"
                objects.append(doc)
    return objects


def render_notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render_templates(values).items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def chart_crds(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The CRDs the chart renders (templates/crds.yaml, from files/crds/)."""
    return of_kind(render_objects(values), "CustomResourceDefinition")


def validate_strict(obj: dict[str, Any]) -> None:
    """Validate against the Kubernetes OpenAPI schema, strict (unknown fields are errors)."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _openapi_to_jsonschema(node: Any) -> Any:
    """Make a CRD's openAPIV3Schema usable by `jsonschema`: `nullable: true` -> null allowed.

    The `x-kubernetes-*` keywords are unknown to jsonschema and therefore ignored.
    """
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def crd_jsonschema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    chosen = next(v for v in versions if version is None or v["name"] == version)
    schema: dict[str, Any] = _openapi_to_jsonschema(chosen["schema"]["openAPIV3Schema"])
    return schema


def validate_custom_resource(obj: dict[str, Any], crds: list[dict[str, Any]]) -> None:
    """Validate a custom resource against the structural schema of its (shipped) CRD."""
    group, _, version = obj["apiVersion"].rpartition("/")
    matching = [c for c in crds if c["spec"]["group"] == group and c["spec"]["names"]["kind"] == obj["kind"]]
    assert matching, f"no CRD shipped for {obj['apiVersion']} {obj['kind']}"
    crd = matching[0]
    assert version in {v["name"] for v in crd["spec"]["versions"] if v["served"]}
    namespaced = crd["spec"]["scope"] == "Namespaced"
    assert ("namespace" in obj["metadata"]) == namespaced, (
        f"{obj['kind']} is {crd['spec']['scope']}-scoped; metadata.namespace must match that"
    )
    jsonschema.Draft4Validator(crd_jsonschema(crd, version)).validate(obj)
