"""The chart's `trustwire serve`: off by default; its own ServiceAccount with least privilege."""

from __future__ import annotations

from typing import Any

from tests.chart.render import render_objects

SERVE = {"serve": {"enabled": True, "tlsSecret": "serve-tls", "publicURL": "https://trust.example.com"}}
RULES = [
    {"apiGroups": ["trustwire.io"], "resources": ["enrollments"], "verbs": ["get", "list"]},
    {"apiGroups": ["trustwire.io"], "resources": ["enrollments/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": ["trustwire.io"], "resources": ["serviceidentities"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def _serve(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "serve"]


def test_off_by_default() -> None:
    assert _serve(render_objects()) == []


def test_cluster_mode_renders_a_least_privilege_cluster_role() -> None:
    objects = _serve(render_objects(SERVE))
    assert sorted(o["kind"] for o in objects) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                                                  "ServiceAccount"]
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert role["rules"] == RULES
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trustwire-serve",
                                    "namespace": "trustwire-system"}]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trustwire-serve"
    assert pod["containers"][0]["args"] == ["serve", "--tls-secret", "$(POD_NAMESPACE)/serve-tls", "--port", "8443",
                                            "--public-url", "https://trust.example.com"]


def test_the_operator_selector_never_matches_serve_pods() -> None:
    objects = render_objects(SERVE)
    operator, serve = sorted((o for o in objects if o["kind"] == "Deployment"),
                             key=lambda o: o["metadata"]["name"])
    wanted = operator["spec"]["selector"]["matchLabels"]
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in wanted.items())
    (service,) = [o for o in _serve(objects) if o["kind"] == "Service"]
    assert service["spec"]["selector"] == serve["spec"]["selector"]["matchLabels"] == labels


def test_namespaced_mode_grants_only_the_served_namespaces_and_the_tls_secret() -> None:
    objects = _serve(render_objects({**SERVE, "rbac": {"mode": "namespaced", "namespaces": ["a", "b"]}}))
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["rules"] for o in objects if o["kind"] == "Role"}
    assert roles == {("a", "trustwire-serve"): RULES, ("b", "trustwire-serve"): RULES,
                     ("trustwire-system", "trustwire-serve-tls"): [
                         {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["serve-tls"],
                          "verbs": ["get"]}]}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-4:] == ["--namespace", "a",
                                                                                      "--namespace", "b"]
