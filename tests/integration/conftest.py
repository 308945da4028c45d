"""Fixtures: the real operator, with the chart's ServiceAccount token, against the session's
real control plane, one operator per test.

Each test creates the namespaces it uses (``Cluster.apply`` does it on first use). When the
test ends, its identities and relationships are deleted *while the operator still runs* and
must be gone within a minute (a finalizer never released fails the test), then whatever else
it left in those namespaces. Any request of the operator that the real RBAC authorizer
refused (403) fails the test too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import OperatorAccess
from tests.cluster.proxy import ApiProxy, Recorded, running_proxy
from tests.integration.harness import Cluster, ProcessCluster, until
from trustwire import names
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import NAMESPACE_TERMINATING
from trustwire.k8s.resources import CONFIGMAPS, IDENTITIES, RELATIONSHIPS, SECRETS, WORKLOADS, Resource
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

TEST_AGENT = "trustwire-tests"
GONE_SECONDS = 60.0


def admin_config(plane: ControlPlane) -> ApiConfig:
    """The test's own identity: cluster-admin by client certificate, straight to the apiserver."""
    return ApiConfig(server=plane.server, ca_data=plane.ca.pem,
                     cert_data=(plane.dir / "admin.crt").read_bytes(),
                     key_data=(plane.dir / "admin.key").read_bytes())


def operator_config(proxy: ApiProxy, access: OperatorAccess) -> ApiConfig:
    return ApiConfig(server=proxy.url, token=access.token)


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0)


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with Client(admin_config(control_plane), user_agent=TEST_AGENT, field_manager="kubectl") as client:
        yield client


@pytest.fixture
async def api_proxy(control_plane: ControlPlane) -> AsyncIterator[ApiProxy]:
    async with running_proxy(control_plane.server, str(control_plane.dir / "ca.crt")) as proxy:
        yield proxy


@pytest.fixture
async def cluster(control_plane: ControlPlane, operator_access: OperatorAccess, api_proxy: ApiProxy,
                  admin: Client, operator_options: OperatorOptions) -> AsyncIterator[Cluster]:
    async with running_operator(operator_config(api_proxy, operator_access), operator_options) as controller:
        cluster = Cluster(control_plane, admin, controller, api_proxy)
        try:
            yield cluster
        finally:
            api_proxy.fault = None
            await clean_namespaces(control_plane, admin, cluster.namespaces)
    refused = [f"{r.method} {r.path}: {(r.error or {}).get('message')}" for r in cluster.operator_requests()
               if r.status == 403 and not terminating_namespace(r) and id(r) not in cluster.unready]
    assert not refused, f"the chart's RBAC refused the operator: {refused}"


def terminating_namespace(request: Recorded) -> bool:
    causes = ((request.error or {}).get("details") or {}).get("causes") or []
    return any(c.get("reason") == NAMESPACE_TERMINATING for c in causes)


async def clean_namespaces(plane: ControlPlane, client: Client, namespaces: set[str]) -> None:
    """Delete the test's identities and relationships (the operator still running releases
    their finalizers), then everything else the test left in its namespaces. Anything still
    there after the wait fails the test.

    The namespaces themselves stay: the namespace controller waits 5 s before it starts on a
    deleted namespace, and the next test uses the same names. ``test_namespaces.py`` deletes
    namespaces with identities inside.
    """
    for resource in (RELATIONSHIPS, IDENTITIES):
        for namespace in namespaces:
            for body in await client.list(resource, namespace):
                await client.delete(resource, namespace, body["metadata"]["name"])
    await _gone("identities and relationships", lambda: _left(client, (RELATIONSHIPS, IDENTITIES), namespaces))

    async def leftovers() -> list[str]:
        # again while any is left: a pass that was running when its identity went may still
        # write (or the garbage collector not yet have deleted) what the next test would find
        managed = f"{names.MANAGED_BY}={names.MANAGER}"  # kube-root-ca.crt comes back by design
        left = [f"{r.kind} {ns}/{b['metadata']['name']}" for r in (SECRETS, CONFIGMAPS) for ns in sorted(namespaces)
                for b in await client.list(r, ns, label_selector=managed)]
        left += await _left(client, tuple(WORKLOADS.values()), namespaces)
        if left:
            for namespace in namespaces:
                for path in LEFTOVERS:
                    plane.request("DELETE", path.format(ns=namespace) + "?propagationPolicy=Background")
        return left

    await leftovers()
    await _gone("Secrets, ConfigMaps and workloads", leftovers)


#: What a test may leave in its namespaces, as deletecollection paths.
LEFTOVERS = ("/api/v1/namespaces/{ns}/events", "/api/v1/namespaces/{ns}/secrets",
             "/api/v1/namespaces/{ns}/configmaps", "/apis/apps/v1/namespaces/{ns}/deployments",
             "/apis/apps/v1/namespaces/{ns}/statefulsets", "/apis/apps/v1/namespaces/{ns}/daemonsets",
             "/apis/trustwire.io/v1alpha1/namespaces/{ns}/enrollments")


async def _left(client: Client, resources: tuple[Resource, ...], namespaces: set[str]) -> list[str]:
    return [f"{r.kind} {ns}/{b['metadata']['name']}" for r in resources for ns in sorted(namespaces)
            for b in await client.list(r, ns)]


async def _gone(what: str, left: Callable[[], Awaitable[list[str]]]) -> None:
    remaining: list[str] = []

    async def none_left() -> bool:
        remaining[:] = await left()
        return not remaining

    await until(none_left, lambda: f"{what} to go after deletion; still there: {remaining}", timeout=GONE_SECONDS)


@pytest.fixture
def operator_kubeconfig(control_plane: ControlPlane, operator_access: OperatorAccess, api_proxy: ApiProxy) -> Path:
    """What ``trustwire run --kubeconfig`` reads: the chart's ServiceAccount token, the proxy as server."""
    return control_plane.kubeconfig("operator", {"token": operator_access.token}, server=api_proxy.url)


@pytest.fixture
async def process_cluster(control_plane: ControlPlane, operator_access: OperatorAccess, api_proxy: ApiProxy,
                          admin: Client, operator_kubeconfig: Path, tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    """Operators as processes the test starts (``ProcessCluster.spawn``). When the test ends
    they are killed, and an in-process operator releases the finalizers while the test's
    namespaces are cleaned (a killed or standing-by replica would not)."""
    cluster = ProcessCluster(control_plane, admin, api_proxy, operator_kubeconfig, tmp_path)
    try:
        yield cluster
    finally:
        api_proxy.fault = None
        for process in cluster.processes:
            await process.kill()
        async with running_operator(operator_config(api_proxy, operator_access),
                                    OperatorOptions(workers=4, resync_interval=3600.0)):
            await clean_namespaces(control_plane, admin, cluster.namespaces)
    refused = [f"{r.user_agent} {r.method} {r.path}: {(r.error or {}).get('message')}"
               for r in cluster.operator_requests() if r.status == 403 and not terminating_namespace(r)]
    assert not refused, f"the chart's RBAC refused the operator: {refused}"
