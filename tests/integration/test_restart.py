"""A restarted operator (kopf replays every object: the "resume") makes zero writes once
everything has converged — no finalizer re-added, no status rewritten, no Secret touched."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.integration.harness import Cluster, deployment, identity, relationship
from trustwire.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client

pytestmark = pytest.mark.integration


def _start(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "trustwire.cli", "run", "--server", url, "--standalone",
                             "--liveness", "", "--metrics-port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_resume_after_restart_makes_zero_writes() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
        cluster = Cluster(emu.emulator, client, controller=None)  # type: ignore[arg-type]
        first = _start(emu.url)
        try:
            await cluster.apply(deployment("alpha", "governance"))
            await cluster.apply(identity("alpha", "governance", workloads=[{"kind": "Deployment", "name": "alpha"}],
                                         keystores={"formats": ["PKCS12", "JKS"]}))
            await cluster.apply(identity("beta", "jobs", acceptFrom={"namespaces": ["governance"]}))
            await cluster.apply(relationship("ab", "governance", ("alpha", None), ("beta", "jobs"),
                                             sharedSecret={"enabled": True}))
            for i in range(8):  # a star: the hub has many relationships for the replay to race with
                await cluster.apply(identity(f"spoke-{i}", "governance"))
                await cluster.apply(relationship(f"hub-{i}", "governance", ("alpha", None), (f"spoke-{i}", None)))
            await cluster.wait_condition("TrustRelationship", "governance", "ab", "Ready", timeout=30)
            for i in range(8):
                await cluster.wait_condition("TrustRelationship", "governance", f"hub-{i}", "Ready", timeout=30)
            await asyncio.sleep(2.0)
        finally:
            first.terminate()
            first.wait(10)
        before = len(cluster.operator_writes())
        reads_before = len(cluster.operator_requests())
        second = _start(emu.url)
        try:
            await asyncio.sleep(6.0)  # start-up, replay of every object, a full pass over each
        finally:
            second.terminate()
            second.wait(10)
        assert len(cluster.operator_requests()) > reads_before + 10, "the restarted operator did reconcile"
        writes = cluster.operator_writes()[before:]
        assert writes == [], [f"{w.method.value} {w.url.path}" for w in writes]
