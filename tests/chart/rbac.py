"""What the Helm chart grants the operator's ServiceAccount, as flat sets of permissions.

`rendered_rbac_rules(mode)` renders charts/trustwire with the real Helm engine and returns every
(verb, apiGroup, resource) granted to the chart's ServiceAccount through the Roles and
ClusterRoles *bound to it* — ready to compare with the API requests the operator really makes
(tests/integration/test_rbac_use.py does). The core API group is the empty string, as in RBAC
rules; subresources appear as `"serviceidentities/status"`.

Self-contained on purpose (only helm_python and PyYAML) so it can be imported from any test
package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "trustwire"
RELEASE = "trustwire"
RELEASE_NAMESPACE = "trustwire-system"
DEFAULT_WATCHED_NAMESPACES = ("team-a", "team-b")

#: The Lease the operator elects its leader on: `--lease <release namespace>/<fullname>`.
LEASE_NAME = RELEASE

Rule = tuple[str, str, str]  # (verb, apiGroup, resource)
#: (verb, apiGroup, resource, namespace or None = cluster-wide, resourceName or None = any name)
Grant = tuple[str, str, str, str | None, str | None]


def _values(mode: str, replicas: int, namespaces: tuple[str, ...]) -> dict[str, Any]:
    if mode not in {"cluster", "namespaced"}:
        raise ValueError(f"mode must be 'cluster' or 'namespaced', not {mode!r}")
    rbac: dict[str, Any] = {"mode": mode}
    if mode == "namespaced":
        rbac["namespaces"] = list(namespaces)
    return {"replicaCount": replicas, "rbac": rbac}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace=RELEASE_NAMESPACE)
    return [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _service_account(objects: list[dict[str, Any]]) -> tuple[str, str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["metadata"]["namespace"], deployment["spec"]["template"]["spec"]["serviceAccountName"]


def rendered_rbac_objects(
    mode: str, *, replicas: int = 1, namespaces: tuple[str, ...] = DEFAULT_WATCHED_NAMESPACES
) -> list[dict[str, Any]]:
    """Every object the chart renders in `mode` (to inspect the Roles and ClusterRoles as written)."""
    return _render(_values(mode, replicas, namespaces))


def rendered_rbac_grants(
    mode: str, *, replicas: int = 1, namespaces: tuple[str, ...] = DEFAULT_WATCHED_NAMESPACES
) -> set[Grant]:
    """Like `rendered_rbac_rules`, keeping where each grant applies.

    The 4th element is the namespace of a RoleBinding, or None for a ClusterRoleBinding
    (valid in every namespace and for cluster-scoped resources). The 5th is one of the rule's
    `resourceNames`, or None when the rule applies to every name.
    """
    objects = _render(_values(mode, replicas, namespaces))
    sa_namespace, sa_name = _service_account(objects)
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in {"Role", "ClusterRole"}
    }
    grants: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        bound_to_operator = any(
            s["kind"] == "ServiceAccount" and s["name"] == sa_name and s.get("namespace") == sa_namespace
            for s in binding.get("subjects", [])
        )
        if not bound_to_operator:
            continue
        where = binding["metadata"]["namespace"] if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_namespace = where if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_namespace, ref["name"]))
        if role is None:
            raise AssertionError(f"{binding['kind']} {binding['metadata']['name']} binds a missing {ref}")
        for rule in role.get("rules") or []:
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for name in rule.get("resourceNames") or [None]:
                            grants.add((verb, group, resource, where, name))
    return grants


def rendered_rbac_rules(
    mode: str, *, replicas: int = 1, namespaces: tuple[str, ...] = DEFAULT_WATCHED_NAMESPACES
) -> set[Rule]:
    """Every (verb, apiGroup, resource) the chart grants the operator in `mode`.

    mode: "cluster" or "namespaced" (then the Roles in `namespaces` count too). Both modes also
    bind the leader-election Role in the release namespace (the Lease). `replicas` changes
    nothing (every replica elects a leader); it is a parameter so tests can show that.
    """
    return {
        (verb, group, resource)
        for verb, group, resource, *_ in rendered_rbac_grants(mode, replicas=replicas, namespaces=namespaces)
    }
