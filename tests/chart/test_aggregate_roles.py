"""The users' roles: <fullname>-<namespace>-view and -edit, aggregated into view, edit and admin."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import yaml

from .render import CHART_DIR, RELEASE, is_aggregated, of_kind, render_objects, validate_strict

RESOURCES = ["serviceidentities", "trustrelationships", "enrollments"]
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def _aggregated(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    objects = render_objects(values)
    return {o["metadata"]["name"]: o for o in of_kind(objects, "ClusterRole") if is_aggregated(o)}


def _aggregates_to(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {k.removeprefix(AGGREGATE) for k, v in labels.items() if k.startswith(AGGREGATE) and v == "true"}


def test_view_and_edit_roles_aggregate_into_the_built_in_roles() -> None:
    roles = _aggregated({})
    assert set(roles) == {"trustwire-trustwire-system-view", "trustwire-trustwire-system-edit"}
    view, edit = roles["trustwire-trustwire-system-view"], roles["trustwire-trustwire-system-edit"]
    assert _aggregates_to(view) == {"view"}
    assert _aggregates_to(edit) == {"edit", "admin"}
    assert view["rules"] == [{"apiGroups": ["trustwire.io"], "resources": RESOURCES, "verbs": READ}]
    assert edit["rules"] == [{"apiGroups": ["trustwire.io"], "resources": RESOURCES, "verbs": READ + WRITE}]
    for role in roles.values():
        validate_strict(role)
        # status belongs to the operator; tenants never get the subresource
        assert not any("/" in r for rule in role["rules"] for r in rule["resources"])


def test_no_binding_gives_the_aggregated_roles_to_anyone() -> None:
    """They reach users only through the built-in roles, never through the chart's bindings."""
    objects = render_objects({})
    names = set(_aggregated({}))
    refs = {b["roleRef"]["name"] for b in objects if b["kind"] in {"RoleBinding", "ClusterRoleBinding"}}
    assert not names & refs


def test_two_releases_in_two_namespaces_do_not_share_a_role_name() -> None:
    """Cluster-scoped names carry the release namespace, like the operator's own ClusterRole."""
    with helm.Chart.load(CHART_DIR) as chart:
        names = [
            {doc["metadata"]["name"] for path, text in chart.render(name=RELEASE, namespace=namespace).items()
             if not path.endswith("NOTES.txt") for doc in yaml.safe_load_all(text) if doc and is_aggregated(doc)}
            for namespace in ("team-a", "team-b")
        ]
    assert len(names[0]) == len(names[1]) == 2
    assert names[0].isdisjoint(names[1])


def test_switches() -> None:
    assert _aggregated({"rbac": {"aggregateClusterRoles": False}}) == {}
    assert _aggregated({"rbac": {"create": False}}) == {}
