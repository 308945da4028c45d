"""The chart's `trustwire serve` objects: off by default; when on, their own ServiceAccount,
least-privilege roles in the scope of rbac.mode, a Deployment whose arguments `trustwire serve`
accepts, and a Service in front of it."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from click.testing import CliRunner

from tests.chart.render import NAMESPACE, of_kind, one, render_objects, validate_strict

SERVE = {"enabled": True, "tlsSecret": "serve-tls", "publicUrl": "https://enrol.example"}
NAME = "trustwire-serve"

#: (verb, apiGroup, resource, resourceName) the server may use in a served namespace.
SERVED = {("get", "trustwire.io", "enrollments", None), ("list", "trustwire.io", "enrollments", None),
          ("get", "trustwire.io", "enrollments/status", None),
          ("patch", "trustwire.io", "enrollments/status", None), ("update", "trustwire.io", "enrollments/status", None),
          ("get", "trustwire.io", "serviceidentities", None), ("get", "", "secrets", None),
          ("get", "", "configmaps", None), ("create", "", "events", None)}
TLS = {("get", "", "secrets", "serve-tls")}


def _serve(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "serve"]


def _grants(objects: list[dict[str, Any]]) -> dict[str | None, set[tuple[str, str, str, str | None]]]:
    """Where each grant bound to the serve ServiceAccount applies: a namespace, or None (cluster)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in {"Role", "ClusterRole"}}
    out: dict[str | None, set[tuple[str, str, str, str | None]]] = {}
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        if {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE} not in binding["subjects"]:
            continue
        where = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], where if ref["kind"] == "Role" else None, ref["name"])]
        out.setdefault(where, set()).update(
            (verb, group, resource, name) for rule in role["rules"] for verb in rule["verbs"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for name in rule.get("resourceNames") or [None])
    return out


def test_off_by_default() -> None:
    assert _serve(render_objects()) == []


def test_enabled_without_a_tls_secret_is_refused_by_the_values_schema() -> None:
    with pytest.raises(Exception, match="tlsSecret"):
        render_objects({"serve": {"enabled": True}})


@pytest.mark.parametrize(("rbac", "expected"), [
    ({}, {None: SERVED, NAMESPACE: TLS}),
    ({"rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-b"]}},
     {"team-a": SERVED, "team-b": SERVED, NAMESPACE: TLS}),
], ids=["cluster", "namespaced"])
def test_the_server_gets_exactly_its_own_permissions(rbac: dict[str, Any],
                                                     expected: dict[str | None, set[Any]]) -> None:
    objects = render_objects({**rbac, "serve": SERVE})
    assert _grants(objects) == expected
    for obj in _serve(objects):
        validate_strict(obj)


def test_the_operator_and_the_server_share_no_service_account_or_role() -> None:
    objects = render_objects({"serve": SERVE})
    accounts = {o["metadata"]["name"] for o in of_kind(objects, "ServiceAccount")}
    assert accounts == {"trustwire", NAME}
    bindings = of_kind(_serve(objects), "ClusterRoleBinding")
    assert {s["name"] for b in bindings for s in b["subjects"]} == {NAME}
    assert {b["roleRef"]["name"] for b in bindings} == {f"{NAME}-{NAMESPACE}"}

def test_deployment_and_service() -> None:
    objects = _serve(render_objects({"rbac": {"mode": "namespaced", "namespaces": ["team-a"]},
                                     "serve": {**SERVE, "replicaCount": 3}}))
    deployment, service = one(objects, "Deployment"), one(objects, "Service")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["spec"]["serviceAccountName"] == NAME
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["serve", "--tls-secret", f"{NAMESPACE}/serve-tls", "--port", "8443",
                                 "--public-url", "https://enrol.example", "--namespace", "team-a"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "serve"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    # the operator's Deployment, Service and PDB never select the server's pods, nor the other way round
    everything = render_objects({"serve": SERVE})
    operator = [o for o in everything if o not in _serve(everything)]
    operator_pod = one(operator, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for selector in (one(operator, "Deployment")["spec"]["selector"]["matchLabels"],
                     one(operator, "Service")["spec"]["selector"],
                     one(operator, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= pod["metadata"]["labels"].items(), selector
    assert not service["spec"]["selector"].items() <= operator_pod.items()


def test_trustwire_serve_accepts_the_rendered_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from trustwire.cli import main

    serve = sys.modules["trustwire.cli.serve"]

    (deployment,) = of_kind(_serve(render_objects({"serve": SERVE})), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(serve, "load", lambda *a: None)
    monkeypatch.setattr(serve, "_serve", lambda *a: _record(seen, a))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen and seen[0][1] == f"{NAMESPACE}/serve-tls" and seen[0][5] == 8443


async def _record(seen: list[tuple[Any, ...]], args: tuple[Any, ...]) -> None:
    seen.append(args)
