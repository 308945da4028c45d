"""RBAC: exactly the permissions the operator needs, in both modes, no wildcards."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .rbac import rendered_rbac_grants, rendered_rbac_rules
from .render import CHART_DIR, SCENARIOS, of_kind, one, render_objects

CRUD = ("get", "list", "watch", "create", "patch", "delete")

NAMESPACED_RULES = {
    *(
        (v, "trustwire.io", r)
        for v in ("get", "list", "watch", "patch")
        for r in ("serviceidentities", "trustrelationships")
    ),
    *(
        (v, "trustwire.io", r)
        for v in ("get", "patch")
        for r in ("serviceidentities/status", "trustrelationships/status")
    ),
    *((v, "", "secrets") for v in CRUD),
    *((v, "", "configmaps") for v in CRUD),
    ("create", "", "events"),
    *(
        (v, "apps", r)
        for v in ("get", "list", "watch", "patch")
        for r in ("deployments", "statefulsets", "daemonsets")
    ),
}
CLUSTER_SCOPED_RULES = {
    ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
}
CLUSTER_PEERING_RULES = {(v, "kopf.dev", "clusterkopfpeerings") for v in ("get", "list", "watch", "patch")}
NAMESPACED_PEERING_RULES = {(v, "kopf.dev", "kopfpeerings") for v in ("get", "list", "watch", "patch")}


@pytest.mark.parametrize(
    ("mode", "replicas", "expected"),
    [
        ("cluster", 1, NAMESPACED_RULES | CLUSTER_SCOPED_RULES),
        ("cluster", 2, NAMESPACED_RULES | CLUSTER_SCOPED_RULES | CLUSTER_PEERING_RULES),
        ("namespaced", 1, NAMESPACED_RULES | CLUSTER_SCOPED_RULES),
        ("namespaced", 2, NAMESPACED_RULES | CLUSTER_SCOPED_RULES | NAMESPACED_PEERING_RULES),
    ],
)
def test_operator_gets_exactly_the_listed_permissions(
    mode: str, replicas: int, expected: set[tuple[str, str, str]]
) -> None:
    assert rendered_rbac_rules(mode, replicas=replicas) == expected


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_wildcards_anywhere(name: str) -> None:
    for role in render_objects(SCENARIOS[name]):
        if role["kind"] not in {"Role", "ClusterRole"}:
            continue
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
            for key in ("apiGroups", "resources", "verbs"):
                assert rule[key], f"{role['kind']} rule with empty {key}"
                assert not any("*" in item for item in rule[key]), f"wildcard in {role['kind']}: {rule}"


def test_cluster_mode_renders_no_role() -> None:
    objects = render_objects(SCENARIOS["replicas-2"]) + render_objects(SCENARIOS["default"])
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    grants = rendered_rbac_grants("cluster", replicas=2)
    assert {where for *_, where in grants} == {None}


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespaced_mode_confines_namespaced_resources_to_the_listed_namespaces(replicas: int) -> None:
    values = {"replicas": replicas, "rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]}}
    objects = render_objects(values)
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]

    cluster_role = one(objects, "ClusterRole")
    cluster_resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions"}

    grants = rendered_rbac_grants("namespaced", replicas=replicas)
    cluster_wide = {(v, g, r) for v, g, r, where in grants if where is None}
    assert cluster_wide == CLUSTER_SCOPED_RULES
    for namespace in ("team-a", "team-b"):
        in_namespace = {(v, g, r) for v, g, r, where in grants if where == namespace}
        expected = NAMESPACED_RULES | (NAMESPACED_PEERING_RULES if replicas > 1 else set())
        assert in_namespace == expected


def test_namespaced_mode_with_a_single_namespace() -> None:
    objects = render_objects({"rbac": {"mode": "namespaced", "namespaces": ["team-a"]}})
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "Role")] == ["team-a"]
    assert [b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")] == ["team-a"]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args.count("--namespace") == 1
    assert args[args.index("--namespace") + 1] == "team-a"
    assert "--all-namespaces" not in args


def test_bindings_name_the_chart_service_account() -> None:
    for name in ("default", "namespaced"):
        objects = render_objects(SCENARIOS[name])
        sa = one(objects, "ServiceAccount")
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
            assert binding["subjects"] == [
                {
                    "kind": "ServiceAccount",
                    "name": sa["metadata"]["name"],
                    "namespace": sa["metadata"]["namespace"],
                }
            ]


def test_rbac_can_be_left_to_the_user() -> None:
    objects = render_objects({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_rules_are_written_in_one_place_only() -> None:
    """Both modes take their rules from the table in _helpers.tpl; no template repeats rules."""
    templates = CHART_DIR / "templates"
    rule_keys = re.compile(r"^\s*-?\s*(apiGroups|verbs)\s*:", re.M)
    holders = sorted(p.name for p in templates.iterdir() if rule_keys.search(p.read_text()))
    assert holders == ["_helpers.tpl"]
    helpers = (templates / "_helpers.tpl").read_text()
    assert len(re.findall(r"^\s*verbs\s*:", helpers, re.M)) == 9  # one per rule of the table


def test_rendered_rbac_rules_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        rendered_rbac_rules("everything")


def _rules_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in of_kind(objects, kind) for rule in role["rules"]]


def test_peering_permissions_only_with_peering() -> None:
    single = render_objects(SCENARIOS["default"]) + render_objects(SCENARIOS["namespaced"])
    for rule in _rules_of(single, "ClusterRole") + _rules_of(single, "Role"):
        assert "kopf.dev" not in rule["apiGroups"]
