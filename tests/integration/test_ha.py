"""Issue 6: replicas > 1 is safe — one Lease holder writes; a standby takes over when it dies.

The replicas are ``trustwire run --lease trustwire-system/trustwire`` processes with the
chart's ServiceAccount token (its Role lets them use that Lease), told apart in the proxy's
journal by their User-Agent ``trustwire-operator/<identity>``. Each test starts without the
Lease and deletes it when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.cluster.proxy import Recorded
from tests.integration.conftest import TEST_AGENT
from tests.integration.harness import (
    WRITE_METHODS,
    OperatorProcess,
    ProcessCluster,
    identity,
    ready_with_peers,
    relationship,
)
from trustwire import names
from trustwire.k8s.client import Client
from trustwire.k8s.resources import IDENTITIES, LEASES

pytestmark = pytest.mark.integration
LEASE_NAMESPACE, LEASE_NAME = "trustwire-system", "trustwire"
LEASE = f"{LEASE_NAMESPACE}/{LEASE_NAME}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
#: what the Lease holder lists and watches — and a standby nothing at all, workloads
#: included: it lists and watches when it takes the Lease
FOLLOWED = ("serviceidentities", "trustrelationships", "enrollments", "secrets", "configmaps",
            "deployments", "statefulsets", "daemonsets")


@pytest.fixture(autouse=True)
async def no_lease(admin: Client) -> AsyncIterator[None]:
    await admin.delete(LEASES, LEASE_NAMESPACE, LEASE_NAME)
    yield
    await admin.delete(LEASES, LEASE_NAMESPACE, LEASE_NAME)


def _replica(cluster: ProcessCluster, who: str) -> OperatorProcess:
    return cluster.spawn("--lease", LEASE, "--workers", "2", "--resync", "3600", identity=who)


async def _lease(client: Client) -> dict[str, Any]:
    return (await client.get(LEASES, LEASE_NAMESPACE, LEASE_NAME) or {}).get("spec") or {}


async def _wait_holder(client: Client, who: str, timeout: float) -> float:
    """Until ``who`` holds the Lease; how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while (await _lease(client)).get("holderIdentity") != who:
        assert loop.time() - start < timeout, f"{who} did not hold the Lease within {timeout} s: " \
                                              f"{await _lease(client)}"
        await asyncio.sleep(0.05)
    return loop.time() - start


def _is_lease(request: Recorded) -> bool:
    return request.path.startswith(LEASE_PATH)


def _holder_set(request: Recorded) -> str | None:
    """The holder a successful Lease create or patch of a replica made (None: not such a write)."""
    if not _is_lease(request) or request.method not in ("POST", "PATCH") or not 200 <= request.status < 300:
        return None
    if request.method == "POST":
        return str(((request.data or {}).get("spec") or {}).get("holderIdentity"))
    holders = [op["value"] for op in request.data or [] if op.get("op") == "add"
               and op.get("path") == "/spec/holderIdentity"]
    return str(holders[-1]) if holders else None


def _writes_without_the_lease(journal: list[Recorded]) -> list[str]:
    """Writes of a replica (other than to the Lease: that is the election) made while the
    Lease, as the journal's Lease writes tell it, named another holder."""
    holder, wrong = None, []
    for request in journal:
        if (new := _holder_set(request)) is not None:
            holder = new
        elif request.method in WRITE_METHODS and not _is_lease(request) \
                and request.user_agent.startswith("trustwire-operator/") \
                and request.user_agent != f"trustwire-operator/{holder}":
            wrong.append(f"{request.user_agent} {request.method} {request.path} (holder: {holder})")
    return wrong


def _collection(path: str) -> str | None:
    """The resource a path names a collection of (``/api/v1/namespaces/x/secrets``:
    secrets); None for one object, a subresource or a discovery path."""
    parts = path.strip("/").split("/")
    if parts[0] not in ("api", "apis"):
        return None
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 1:
        rest = rest[2:]
    return rest[0] if len(rest) == 1 else None


def _lists_or_watches(requests: list[Recorded]) -> list[Recorded]:
    """The lists and watches (GETs of a collection) of anything at all."""
    return [r for r in requests if r.method == "GET" and _collection(r.path) is not None]


def _kinds(requests: list[Recorded], *, watch: bool) -> set[str]:
    return {str(_collection(r.path)) for r in _lists_or_watches(requests) if r.is_watch == watch}


def _described(requests: list[Recorded]) -> list[str]:
    return [f"{r.user_agent} {r.method} {r.path} {r.params}" for r in requests]


async def test_only_the_lease_holder_writes_and_a_standby_takes_over(process_cluster: ProcessCluster) -> None:
    cluster, journal = process_cluster, process_cluster.proxy.journal
    leader, standby = _replica(cluster, "op-a"), _replica(cluster, "op-b")
    await leader.start()
    await _wait_holder(cluster.client, "op-a", 30)
    await standby.start()
    await standby.wait_request(lambda r: _is_lease(r) and r.status == 200, "read the Lease")
    await cluster.apply(identity("alpha", "team"))
    await cluster.apply(identity("beta", "team"))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    for name in ("alpha", "beta"):
        await cluster.wait_for("ServiceIdentity", "team", name, lambda b: ready_with_peers(b, 1), what="Ready")
    await cluster.settle()

    assert [r for r in leader.requests() if r.method in WRITE_METHODS and not _is_lease(r)], "the leader did the work"
    # every request through the proxy is the tests' or names its replica: none escapes the checks below
    assert {r.user_agent for r in journal} <= {TEST_AGENT, leader.agent, standby.agent}, _described(journal)
    # the leader lists and watches every kind it serves, workloads included, and nothing else
    for watch in (False, True):
        assert _kinds(leader.requests(), watch=watch) == set(FOLLOWED), _described(leader.requests())
    # a standby only reads the Lease: no write, and no list or watch of anything
    assert _described(_lists_or_watches(standby.requests())) == []
    assert [f"{r.method} {r.path}" for r in standby.requests() if not (r.method == "GET" and _is_lease(r))] == []

    await leader.kill()
    killed = len(journal)
    await cluster.apply(identity("gamma", "team"))
    await _wait_holder(cluster.client, "op-b", 30)
    await cluster.wait_condition("ServiceIdentity", "team", "gamma", "Ready")
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    for name in ("alpha", "beta"):
        await cluster.wait_for("ServiceIdentity", "team", name, lambda b: ready_with_peers(b, 1), what="Ready")
    await cluster.settle()
    lease = await _lease(cluster.client)
    assert lease["holderIdentity"] == "op-b" and lease["leaseTransitions"] == 1
    # the new leader listed and watches what it reconciles, from the moment it leads
    for watch in (False, True):
        assert _kinds(standby.requests(), watch=watch) == set(FOLLOWED), _described(standby.requests())
    assert [r for r in journal[killed:] if r.user_agent == leader.agent] == []

    assert _writes_without_the_lease(journal) == []
    # one CA per identity was ever created, never a second one
    ca_names = [(r.data or {}).get("metadata", {}).get("name") for r in cluster.operator_writes()
                if r.method == "POST" and r.path.endswith("/secrets")
                and (r.data or {}).get("metadata", {}).get("name", "").endswith("-trustwire-ca")]
    assert sorted(ca_names) == sorted(names.ca_secret(n) for n in ("alpha", "beta", "gamma"))


async def test_a_lost_lease_stops_the_writer(process_cluster: ProcessCluster) -> None:
    cluster = process_cluster
    replica = _replica(cluster, "op-a")
    await replica.start()
    await _wait_holder(cluster.client, "op-a", 30)
    for kind in FOLLOWED:
        await replica.wait_request(lambda r, kind=kind: r.is_watch and _collection(r.path) == kind, f"watched {kind}")
    # someone else grabs the Lease (an operator with a skewed view, or an admin)
    await cluster.client.merge_patch(LEASES, LEASE_NAMESPACE, LEASE_NAME, {
        "spec": {"holderIdentity": "intruder", "renewTime": "2999-01-01T00:00:00.000000Z"}})
    await _wait_log(replica, "op-a lost lease")
    # every watch it had open is closed, not merely left unread
    watches = [r for r in replica.requests() if r.is_watch]
    assert {str(_collection(r.path)) for r in watches} == set(FOLLOWED)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while open_ := [r for r in watches if r.streaming()]:
        assert loop.time() < deadline, f"watches still open after the Lease was lost: {_described(open_)}"
        await asyncio.sleep(0.05)
    since = len(cluster.proxy.journal)
    await cluster.apply(identity("alpha", "team"))
    await asyncio.sleep(2.0)
    after = [r for r in cluster.proxy.journal[since:] if r.user_agent == replica.agent]
    assert [f"{r.method} {r.path}" for r in after if not (r.method == "GET" and _is_lease(r))] == []
    assert (await cluster.client.get(IDENTITIES, "team", "alpha") or {}).get("status") is None


async def test_a_graceful_stop_hands_the_lease_over_at_once(process_cluster: ProcessCluster) -> None:
    cluster = process_cluster
    leader, standby = _replica(cluster, "op-a"), _replica(cluster, "op-b")
    await leader.start()
    await _wait_holder(cluster.client, "op-a", 30)
    await standby.start()
    await standby.wait_request(lambda r: _is_lease(r) and r.status == 200, "read the Lease")
    assert (await _lease(cluster.client))["leaseDurationSeconds"] == 15
    assert await leader.stop() == 0  # SIGTERM: a rolling update stops the old pod like this
    released = [r for r in leader.requests() if _holder_set(r) == ""]
    assert released, "the stopping leader cleared the holder"
    # the Lease says 15 s; only the release explains a takeover within a few seconds
    assert await _wait_holder(cluster.client, "op-b", 5) < 5


async def _wait_log(process: OperatorProcess, line: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while line not in process.log.read_text(errors="replace"):
        assert loop.time() < deadline, f"{process.agent} never logged {line!r}"
        await asyncio.sleep(0.1)
