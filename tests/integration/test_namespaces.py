"""Deleting a namespace that holds identities, on the real namespace controller.

The namespace controller deletes everything in a deleted namespace and waits for the
finalizers; meanwhile the NamespaceLifecycle admission plugin refuses every create there
(403, cause ``NamespaceTerminating``). The operator must release its finalizers, take those
refusals as final (no ``WriteRejected``, no retry loop), and, if it was not running when the
namespace was deleted, release them when it starts.

Each test deletes a namespace of its own, under a unique name: the namespace controller
waits 5 s before it starts on one, and a name is not free again until it is gone.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import OperatorAccess
from tests.cluster.proxy import ApiProxy, Recorded
from tests.integration.conftest import operator_config, terminating_namespace
from tests.integration.harness import (
    NAMESPACES,
    OPERATOR_AGENT,
    Cluster,
    denying_policy,
    deployment,
    identity,
    ready_with_peers,
    refused_dry_run,
    relationship,
    until,
)
from trustwire.k8s.client import Client
from trustwire.k8s.resources import IDENTITIES
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

#: the namespace controller's 5 s delay, its sweep, and our finalizers
GONE_SECONDS = 45.0
OPTIONS = OperatorOptions(workers=4, resync_interval=3600.0)


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def _populate(cluster: Cluster, namespace: str) -> None:
    """Two identities (one wiring a Deployment) and their relationship, all Ready."""
    await cluster.apply(deployment("app", namespace))
    await cluster.apply(identity("alpha", namespace, workloads=[{"kind": "Deployment", "name": "app"}]))
    await cluster.apply(identity("beta", namespace))
    await cluster.apply(relationship("alpha-beta", namespace, ("alpha", None), ("beta", None)))
    for name in ("alpha", "beta"):
        await cluster.wait_for("ServiceIdentity", namespace, name, lambda b: ready_with_peers(b, 1))
    await cluster.settle()


async def _gone(client: Client, namespace: str, timeout: float = GONE_SECONDS) -> None:
    left: list[str] = []

    async def gone() -> bool:
        body = await client.get(NAMESPACES, None, namespace)
        if body is not None:
            left[:] = [f"{body['status']}"] + [f"{b['metadata']['name']} finalizers={b['metadata'].get('finalizers')}"
                                              for b in await client.list(IDENTITIES, namespace)]
        return body is None

    await until(gone, lambda: f"namespace {namespace} to go; still there: {left}", timeout=timeout, interval=0.2)


def _operator(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if r.user_agent.startswith(OPERATOR_AGENT)]


def _in(namespace: str, requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if f"/namespaces/{namespace}/" in r.path]


def _reported_failure(request: Recorded) -> bool:
    """A status write that says a pass failed for good."""
    if request.method != "PATCH" or not request.path.endswith("/status"):
        return False
    conditions = ((request.data or {}).get("status") or {}).get("conditions") or []
    return any(c.get("reason") == "WriteRejected" or (c.get("type") == "Stalled" and c.get("status") == "True")
               for c in conditions)


def _assert_quiet_namespace_deletion(namespace: str, requests: list[Recorded]) -> None:
    ours = _in(namespace, requests)
    assert not [r.path for r in ours if _reported_failure(r)], "a refused create was reported as a failure"
    refused = [r for r in ours if r.status == 403]
    assert all(terminating_namespace(r) for r in refused), [r.error for r in refused]
    assert not [r for r in ours if r.status >= 500], "no request failed on the server"


async def test_deleting_a_namespace_while_the_operator_runs(cluster: Cluster) -> None:
    """The namespace controller deletes the identities' Secrets before the identities
    themselves; an admission policy holds the identities back a few seconds, so that the
    operator surely works on live identities whose Secrets it may no longer create."""
    namespace = _unique("doomed")
    await _populate(cluster, namespace)
    since = len(cluster.proxy.journal)
    alpha = IDENTITIES.path(namespace, "alpha")
    async with denying_policy(cluster.plane, f"hold-{namespace}", namespace,
                              [{"apiGroups": ["trustwire.io"], "apiVersions": ["*"], "operations": ["DELETE"],
                                "resources": ["serviceidentities"]}],
                              "false", "held back by the test",
                              lambda: refused_dry_run(cluster.plane, "DELETE", alpha)):
        await cluster.client.delete(NAMESPACES, None, namespace)
        await _namespace_condition(cluster.client, namespace, "NamespaceDeletionContentFailure")
        assert _refused_creates(namespace, cluster.proxy.journal[since:]), \
            "the operator never tried to restore a Secret the namespace controller deleted"
        # the sweep is over: no event comes any more, and a failed pass would be back within 2 s
        await cluster.settle()
        refused_then = len(_refused_creates(namespace, cluster.proxy.journal[since:]))
        await asyncio.sleep(2.5)
        assert len(_refused_creates(namespace, cluster.proxy.journal[since:])) == refused_then, \
            "a create refused as the namespace terminates was retried"
    await _gone(cluster.client, namespace)
    cluster.namespaces.discard(namespace)  # nothing left to clean, and the name is never reused

    _assert_quiet_namespace_deletion(namespace, _operator(cluster.proxy.journal[since:]))


def _refused_creates(namespace: str, requests: list[Recorded]) -> list[Recorded]:
    return [r for r in _in(namespace, _operator(requests)) if r.method == "POST" and terminating_namespace(r)
            and not r.path.endswith("/events")]


@pytest.fixture
async def operator_factory(control_plane: ControlPlane, operator_access: OperatorAccess, api_proxy: ApiProxy,
                           admin: Client) -> AsyncIterator[list[str]]:
    """Namespaces the test deletes itself; whatever it leaves, an operator cleans up."""
    doomed: list[str] = []
    yield doomed
    async with running_operator(operator_config(api_proxy, operator_access), OPTIONS):
        for namespace in doomed:
            await admin.delete(NAMESPACES, None, namespace)
        for namespace in doomed:
            await _gone(admin, namespace)


async def test_namespace_deleted_while_the_operator_is_down_goes_once_it_starts(
        control_plane: ControlPlane, operator_access: OperatorAccess, api_proxy: ApiProxy, admin: Client,
        operator_factory: list[str]) -> None:
    namespace = _unique("orphaned")
    operator_factory.append(namespace)
    config = operator_config(api_proxy, operator_access)
    async with running_operator(config, OPTIONS) as controller:
        await _populate(Cluster(control_plane, admin, controller, api_proxy), namespace)

    await admin.delete(NAMESPACES, None, namespace)
    # the namespace controller deletes what it can and then waits for our finalizers
    stuck = await _terminating_on_finalizers(admin, namespace)
    assert "trustwire.io/finalizer" in json.dumps(stuck["status"]["conditions"]), stuck["status"]
    # only the identity that wired a workload holds it: beta's objects go with the collector
    left = await admin.list(IDENTITIES, namespace)
    assert [b["metadata"]["name"] for b in left] == ["alpha"]
    assert all(b["metadata"].get("deletionTimestamp") for b in left)

    since = len(api_proxy.journal)
    async with running_operator(config, OPTIONS):
        await _gone(admin, namespace)
    operator_factory.remove(namespace)
    _assert_quiet_namespace_deletion(namespace, _operator(api_proxy.journal[since:]))


async def _namespace_condition(client: Client, namespace: str, type_: str, timeout: float = GONE_SECONDS,
                               ) -> dict[str, Any]:
    """The namespace once the namespace controller reports condition ``type_`` True."""
    async def reporting() -> dict[str, Any] | None:
        body = await client.get(NAMESPACES, None, namespace)
        assert body is not None, f"namespace {namespace} is gone"
        return body if any(c.get("type") == type_ and c.get("status") == "True"
                           for c in (body.get("status") or {}).get("conditions") or []) else None

    return await until(reporting, f"namespace {namespace} to report {type_}", timeout=timeout, interval=0.2)


async def _terminating_on_finalizers(client: Client, namespace: str) -> dict[str, Any]:
    """The namespace once the namespace controller reports that only finalizers hold it."""
    body = await _namespace_condition(client, namespace, "NamespaceFinalizersRemaining")
    assert body["status"].get("phase") == "Terminating", body["status"]
    return body
