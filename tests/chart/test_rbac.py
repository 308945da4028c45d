"""RBAC: exactly the permissions the operator needs, in both modes, no wildcards."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .rbac import LEASE_NAME, rendered_rbac_grants, rendered_rbac_rules
from .render import CHART_DIR, NAMESPACE, SCENARIOS, of_kind, one, operator_roles, render_objects

CRUD = ("get", "list", "watch", "create", "patch", "delete")

# What the operator does in the namespaces it serves (tests/integration/test_rbac_use.py checks
# this against the requests it really makes).
SERVED_RULES = {
    *((v, "trustwire.io", "serviceidentities") for v in ("get", "list", "watch", "patch")),
    *((v, "trustwire.io", r) for v in ("get", "list", "watch") for r in ("trustrelationships", "enrollments")),
    ("patch", "trustwire.io", "serviceidentities/status"),
    ("patch", "trustwire.io", "trustrelationships/status"),
    ("patch", "trustwire.io", "enrollments/status"),
    *((v, "", "secrets") for v in CRUD),
    *((v, "", "configmaps") for v in CRUD),
    ("create", "", "events"),
    *(
        (v, "apps", r)
        for v in ("get", "list", "watch", "patch")
        for r in ("deployments", "statefulsets", "daemonsets")
    ),
}
LEASE_RULES = {(v, "coordination.k8s.io", "leases") for v in ("get", "create", "patch")}


@pytest.mark.parametrize(
    ("mode", "replicas", "expected"),
    [
        ("cluster", 1, SERVED_RULES | LEASE_RULES),
        ("cluster", 2, SERVED_RULES | LEASE_RULES),
        ("namespaced", 1, SERVED_RULES | LEASE_RULES),
        ("namespaced", 2, SERVED_RULES | LEASE_RULES),
    ],
)
def test_operator_gets_exactly_the_listed_permissions(
    mode: str, replicas: int, expected: set[tuple[str, str, str]]
) -> None:
    assert rendered_rbac_rules(mode, replicas=replicas) == expected


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_lease_permissions_live_in_the_release_namespace_only(mode: str) -> None:
    grants = rendered_rbac_grants(mode)
    lease_grants = {g for g in grants if g[2] == "leases"}
    assert lease_grants == {
        ("create", "coordination.k8s.io", "leases", NAMESPACE, None),
        ("get", "coordination.k8s.io", "leases", NAMESPACE, LEASE_NAME),
        ("patch", "coordination.k8s.io", "leases", NAMESPACE, LEASE_NAME),
    }


def test_lease_rules_name_the_lease_the_operator_is_told_to_use() -> None:
    """get/patch are limited to the one Lease; create cannot be (RBAC never matches a name on create)."""
    for name in SCENARIOS:
        objects = render_objects(SCENARIOS[name])
        args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        lease = args[args.index("--lease") + 1]
        assert lease == f"$(POD_NAMESPACE)/{LEASE_NAME}"
        (role,) = [r for r in of_kind(objects, "Role") if r["metadata"]["name"].endswith("-leader-election")]
        assert role["metadata"]["namespace"] == NAMESPACE
        by_verbs = {tuple(rule["verbs"]): rule for rule in role["rules"]}
        assert set(by_verbs) == {("create",), ("get", "patch")}
        assert "resourceNames" not in by_verbs[("create",)]
        assert by_verbs[("get", "patch")]["resourceNames"] == [lease.split("/", 1)[1]]


def test_no_verb_beyond_what_the_operator_can_use() -> None:
    """The operator only gets, lists, watches, creates, patches and deletes."""
    for name in SCENARIOS:
        objects = render_objects(SCENARIOS[name])
        for role in operator_roles(objects, "Role") + operator_roles(objects, "ClusterRole"):
            for rule in role["rules"]:
                assert set(rule["verbs"]) <= set(CRUD), rule
    # The status subresources are only ever patched; Events only created.
    assert {(v, r) for v, _, r in rendered_rbac_rules("cluster") if r.endswith("/status")} == {
        ("patch", "serviceidentities/status"),
        ("patch", "trustrelationships/status"),
        ("patch", "enrollments/status"),
    }


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


def test_cluster_mode_renders_only_the_lease_role() -> None:
    for name in ("default", "replicas-2"):
        objects = render_objects(SCENARIOS[name])
        assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(objects, "Role")] == [
            (NAMESPACE, "trustwire-leader-election")
        ]
        assert [(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in of_kind(objects, "RoleBinding")] == [
            (NAMESPACE, "trustwire-leader-election")
        ]
    grants = rendered_rbac_grants("cluster", replicas=2)
    assert {where for _, _, _, where, _ in grants} == {None, NAMESPACE}
    assert {(v, g, r) for v, g, r, where, _ in grants if where is None} == SERVED_RULES
    assert {(v, g, r) for v, g, r, where, _ in grants if where == NAMESPACE} == LEASE_RULES


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespaced_mode_confines_namespaced_resources_to_the_listed_namespaces(replicas: int) -> None:
    values = {"replicaCount": replicas, "rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]}}
    objects = render_objects(values)
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(["team-a", "team-b", NAMESPACE])
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(["team-a", "team-b", NAMESPACE])

    # nothing cluster-wide for the operator: it lists and watches only in the namespaces it serves
    assert operator_roles(objects, "ClusterRole") == []

    grants = rendered_rbac_grants("namespaced", replicas=replicas)
    assert {(v, g, r) for v, g, r, where, _ in grants if where is None} == set()
    for namespace in ("team-a", "team-b"):
        in_namespace = {(v, g, r) for v, g, r, where, _ in grants if where == namespace}
        assert in_namespace == SERVED_RULES
    assert {(v, g, r) for v, g, r, where, _ in grants if where == NAMESPACE} == LEASE_RULES


def test_serving_the_release_namespace_adds_a_second_role_there_without_a_clash() -> None:
    objects = render_objects(SCENARIOS["namespaced-serving-release-namespace"])
    here = sorted(r["metadata"]["name"] for r in of_kind(objects, "Role") if r["metadata"]["namespace"] == NAMESPACE)
    assert here == ["trustwire", "trustwire-leader-election"]
    grants = rendered_rbac_grants("namespaced", namespaces=("team-a", NAMESPACE))
    assert {(v, g, r) for v, g, r, where, _ in grants if where == NAMESPACE} == SERVED_RULES | LEASE_RULES


def test_namespaced_mode_with_a_single_namespace() -> None:
    objects = render_objects({"rbac": {"mode": "namespaced", "namespaces": ["team-a"]}})
    # the served namespace, and the release namespace for the Lease
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "Role")] == ["team-a", NAMESPACE]
    assert [b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")] == ["team-a", NAMESPACE]
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
    """Both modes take their rules from the table in _helpers.tpl; no template repeats rules.

    aggregate-roles.yaml holds the only other rules: the users' view/edit roles, bound to no
    ServiceAccount of the chart; serve.yaml holds `trustwire serve`'s own ServiceAccount's, one
    table for both modes.
    """
    templates = CHART_DIR / "templates"
    rule_keys = re.compile(r"^\s*-?\s*(apiGroups|verbs)\s*:", re.M)
    holders = sorted(p.name for p in templates.iterdir() if rule_keys.search(p.read_text()))
    assert holders == ["_helpers.tpl", "aggregate-roles.yaml", "serve.yaml"]
    helpers = (templates / "_helpers.tpl").read_text()
    assert len(re.findall(r"^\s*verbs\s*:", helpers, re.M)) == 9  # one per rule of the table


def test_rendered_rbac_rules_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        rendered_rbac_rules("everything")


def _rules_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in of_kind(objects, kind) for rule in role["rules"]]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_kopf_peering_anywhere(name: str) -> None:
    """HA is a Lease now: no kopf.dev permissions in any configuration."""
    objects = render_objects(SCENARIOS[name])
    for rule in _rules_of(objects, "ClusterRole") + _rules_of(objects, "Role"):
        assert "kopf.dev" not in rule["apiGroups"]
