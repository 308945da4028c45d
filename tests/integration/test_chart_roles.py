"""Issue 19 acceptance: the chart's aggregated roles on the real control plane.

The chart installs <fullname>-<namespace>-view and -edit, labelled to aggregate into the
built-in view, edit and admin ClusterRoles; the control plane's clusterrole-aggregation
controller copies their rules there. A user bound (by a RoleBinding in one namespace) to
`edit` then creates ServiceIdentities and TrustRelationships in that namespace, a user bound
to `view` reads them but cannot write, and neither reaches another namespace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import is_aggregated
from tests.cluster.controlplane import ControlPlane
from tests.integration.harness import until

pytestmark = pytest.mark.integration

TENANT = "tenant-roles"
ELSEWHERE = "tenant-roles-other"


def _sid(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
                           "metadata": {"name": name, "namespace": TENANT}, "spec": {}})


def _bind(plane: ControlPlane, user: str, cluster_role: str) -> None:
    plane.kubectl("create", "rolebinding", f"{user}-{cluster_role}", "-n", TENANT,
                  f"--clusterrole={cluster_role}", f"--user={user}")


def _can(plane: ControlPlane, kubeconfig: Path, verb: str, resource: str, namespace: str = TENANT,
         *flags: str) -> bool:
    done = plane.kubectl("auth", "can-i", verb, resource, "-n", namespace, *flags, kubeconfig=kubeconfig,
                         check=False)
    return done.stdout.strip() == "yes"


def _aggregated_rules(plane: ControlPlane, role: str) -> set[tuple[str, str]]:
    """(verb, resource) of trustwire.io that the built-in ``role`` holds now."""
    body = plane.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
    return {(verb, resource) for rule in body.get("rules") or [] if "trustwire.io" in rule.get("apiGroups", [])
            for verb in rule["verbs"] for resource in rule["resources"]}


async def test_edit_creates_identities_and_view_only_reads(control_plane: ControlPlane,
                                                           chart_objects: list[dict[str, Any]]) -> None:
    plane = control_plane
    assert {o["metadata"]["name"] for o in chart_objects if is_aggregated(o)} == {
        "trustwire-trustwire-system-view", "trustwire-trustwire-system-edit"}
    for namespace in (TENANT, ELSEWHERE):
        plane.kubectl("create", "namespace", namespace, check=False)
    editor, viewer = plane.user_kubeconfig("tenant-editor"), plane.user_kubeconfig("tenant-viewer")
    _bind(plane, "tenant-editor", "edit")
    _bind(plane, "tenant-viewer", "view")
    try:
        # the aggregation controller fills the built-in roles, the authorizer learns of them
        await until(lambda: ("create", "serviceidentities") in _aggregated_rules(plane, "edit"),
                    "the edit ClusterRole to aggregate trustwire's edit rules", timeout=60)
        assert ("get", "serviceidentities") in _aggregated_rules(plane, "view")
        assert not {v for v, _ in _aggregated_rules(plane, "view")} - {"get", "list", "watch"}
        assert ("delete", "trustrelationships") in _aggregated_rules(plane, "admin")
        await until(lambda: _can(plane, editor, "create", "serviceidentities.trustwire.io"),
                    "the editor to be allowed to create ServiceIdentities", timeout=60)

        created = await asyncio.to_thread(plane.kubectl, "apply", "-f", "-", input=_sid("by-editor"),
                                          kubeconfig=editor, check=False)
        assert created.returncode == 0, created.stderr
        assert _can(plane, editor, "delete", "trustrelationships.trustwire.io")
        assert _can(plane, editor, "patch", "enrollments.trustwire.io")  # trustwire enroll --renew-token
        # status is the operator's: edit does not reach the subresource
        assert not _can(plane, editor, "patch", "serviceidentities.trustwire.io", TENANT, "--subresource=status")

        await until(lambda: _can(plane, viewer, "list", "serviceidentities.trustwire.io"),
                    "the viewer to be allowed to list ServiceIdentities", timeout=60)
        listed = plane.kubectl("get", "sid", "-n", TENANT, "-o", "name", kubeconfig=viewer)
        assert listed.stdout.split() == ["serviceidentity.trustwire.io/by-editor"]
        refused = plane.kubectl("apply", "-f", "-", input=_sid("by-viewer"), kubeconfig=viewer, check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
        assert not _can(plane, viewer, "delete", "serviceidentities.trustwire.io")

        # a RoleBinding reaches its own namespace only
        assert not _can(plane, editor, "create", "serviceidentities.trustwire.io", ELSEWHERE)
        assert not _can(plane, viewer, "get", "serviceidentities.trustwire.io", ELSEWHERE)
    finally:
        plane.kubectl("delete", "sid", "--all", "-n", TENANT, "--wait=false", check=False)
        for namespace in (TENANT, ELSEWHERE):
            plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
