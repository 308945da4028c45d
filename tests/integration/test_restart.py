"""A restarted operator (its informer lists every object again and each gets a pass: the
"resume") makes zero writes once everything has converged — no finalizer re-added, no status
rewritten, no Secret touched, no workload patched, no Event posted.

The operator is ``trustwire run`` as a process of its own, with the chart's ServiceAccount
token, through the journaling proxy; the real Deployment controller rolls the wired workload
out before the first process stops, so the restarted one finds every rollout complete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.cluster.proxy import Recorded
from tests.integration.harness import ProcessCluster, deployment, identity, relationship, until

pytestmark = pytest.mark.integration

SPOKES = 8
REPLAY_SECONDS = 5.0


def _rolled_out(body: dict[str, Any] | None) -> bool:
    return bool(((body or {}).get("status") or {}).get("rolledOut"))


def _watches_identities(request: Recorded) -> bool:
    return request.is_watch and request.path.endswith("/serviceidentities")


async def _converge(cluster: ProcessCluster) -> None:
    await cluster.apply(deployment("alpha", "governance"))
    await cluster.apply(identity("alpha", "governance", workloads=[{"kind": "Deployment", "name": "alpha"}],
                                 keystores={"formats": ["PKCS12", "JKS"]}))
    await cluster.apply(identity("beta", "jobs", acceptFrom={"namespaces": ["governance"]}))
    await cluster.apply(relationship("ab", "governance", ("alpha", None), ("beta", "jobs"),
                                     sharedSecret={"enabled": True}))
    for i in range(SPOKES):  # a star: the hub has many relationships for the replay to race with
        await cluster.apply(identity(f"spoke-{i}", "governance"))
        await cluster.apply(relationship(f"hub-{i}", "governance", ("alpha", None), (f"spoke-{i}", None)))
    await cluster.wait_condition("TrustRelationship", "governance", "ab", "Ready")
    for i in range(SPOKES):
        await cluster.wait_condition("TrustRelationship", "governance", f"hub-{i}", "Ready")
    await cluster.wait_for("ServiceIdentity", "governance", "alpha", _rolled_out, timeout=60,
                           what="to be rolled out by the Deployment controller")


async def test_resume_after_restart_makes_zero_writes(process_cluster: ProcessCluster) -> None:
    cluster = process_cluster
    operator = cluster.spawn("--standalone")
    await operator.start()
    await _converge(cluster)
    await cluster.settle()
    assert await operator.stop() == 0

    before, reads_before = len(cluster.operator_writes()), len(cluster.operator_requests())
    await operator.start()
    await until(lambda: any(_watches_identities(r) for r in cluster.proxy.journal[operator.since:]),
                f"the restarted operator to watch identities; see {operator.log}", timeout=30, interval=0.05)
    await asyncio.sleep(REPLAY_SECONDS)  # the replay of every object, a full pass over each
    assert await operator.stop() == 0
    assert len(cluster.operator_requests()) > reads_before + 10, "the restarted operator did reconcile"
    writes = cluster.operator_writes()[before:]
    assert writes == [], [f"{w.method} {w.path} {w.data}" for w in writes]
