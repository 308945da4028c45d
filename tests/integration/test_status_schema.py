"""Every status field the operator writes is declared in the CRD, so a real API server
(which prunes undeclared fields from structural schemas) keeps all of it — including the
rollout and trust evidence the rotation gates read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import Cluster, deployment, identity, relationship
from trustwire import names

pytestmark = pytest.mark.integration
CRDS = Path(__file__).parents[2] / "crds"


def pruned_paths(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Paths in ``value`` that a structural schema would prune."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in value.items():
            if key not in props:
                out.append(f"{path}.{key}")
            else:
                out += pruned_paths(sub, props[key], f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += pruned_paths(item, schema.get("items") or {}, f"{path}[{i}]")
    return out


def status_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"trustwire.io_{plural}.yaml").read_text())
    status: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return status


def test_the_checker_flags_an_undeclared_field() -> None:
    schema = status_schema("serviceidentities")
    assert pruned_paths({"peerCount": 1, "bogus": {"x": 1}}, schema) == ["status.bogus"]
    assert pruned_paths({"workloads": [{"kind": "Deployment", "extra": 1}]}, schema) == ["status.workloads[0].extra"]


def _rolled_out(body: dict[str, Any] | None) -> bool:
    return bool(((body or {}).get("status") or {}).get("rolledOut"))


async def test_everything_the_operator_writes_survives_pruning(cluster: Cluster) -> None:
    await cluster.apply(deployment("alpha", "team"))
    await cluster.apply(identity("alpha", "team", workloads=[{"kind": "Deployment", "name": "alpha"}]))
    await cluster.apply(identity("beta", "team", jwt={"rotationPeriod": "30s"}))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None), sharedSecret={"enabled": True}))
    # a symmetric key (no rotation time), a shared-secret group rotated, a refused relationship
    await cluster.apply(identity("gamma", "team", jwt={"algorithm": "HS256"}))
    group = {"enabled": True, "group": "g", "clientId": "c", "gracePeriod": "10m"}
    rotated = relationship("bg", "team", ("beta", None), ("gamma", None), sharedSecret=group)
    rotated["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "shared-secret:1"}
    await cluster.apply(rotated)
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    await cluster.wait_condition("TrustRelationship", "team", "bg", "JwtAllowed", "False", reason="SymmetricJwtKey")
    fixed = relationship("bg", "team", ("beta", None), ("gamma", None), initiator="beta", sharedSecret=group)
    fixed["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "shared-secret:2"}
    await cluster.apply(fixed)
    await cluster.wait_condition("TrustRelationship", "team", "bg", "SharedSecretReady", reason="Rotated")
    alpha = await cluster.wait_for("ServiceIdentity", "team", "alpha", _rolled_out, timeout=60,
                                   what="to be rolled out by the Deployment controller")
    workload = await cluster.get("Deployment", "team", "alpha")
    assert alpha is not None and workload is not None
    assert alpha["status"]["workloads"][0]["rolloutGeneration"] == workload["metadata"]["generation"]
    await cluster.settle()

    # every status patch the operator sent names declared fields only ...
    schemas = {plural: status_schema(plural) for plural in ("serviceidentities", "trustrelationships")}
    patches = [r for r in cluster.operator_writes() if r.method == "PATCH" and r.path.endswith("/status")]
    assert patches, "the operator wrote statuses"
    for patch in patches:
        plural = patch.path.split("/")[-3]
        assert pruned_paths(patch.data["status"], schemas[plural]) == [], patch.path

    # ... and the apiserver stored all of it: each status is exactly what the operator meant
    for key, kind, name in (("identity", "ServiceIdentity", "alpha"), ("identity", "ServiceIdentity", "beta"),
                            ("identity", "ServiceIdentity", "gamma"), ("relationship", "TrustRelationship", "ab"),
                            ("relationship", "TrustRelationship", "bg")):
        body = await cluster.get(kind, "team", name)
        assert body is not None
        assert body["status"] == cluster.controller.statuses[(key, "team", name)], name
