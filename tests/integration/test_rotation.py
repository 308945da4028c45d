"""Issue 5 acceptance: rotation without a failed handshake, proven by a continuous probe."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, deployment, identity, relationship
from trustwire import names, pki
from trustwire.drill import PodFiles, Probe, ProbeResult, RolloutSimulator, Side, SimulatedWorkload, TLSEndpoint
from trustwire.k8s.client import Resource
from trustwire.plan import rotation as rot
from trustwire.runtime import OperatorOptions

pytestmark = pytest.mark.integration

SHORT = {"ca": {"duration": "30m"}, "certificate": {"duration": "60s", "renewBefore": "42s"},
         "jwt": {"rotationPeriod": "25s"}}


@pytest.fixture
def operator_options() -> OperatorOptions:
    from datetime import timedelta
    return OperatorOptions(workers=4, resync_interval=3600.0, propagation_delay=timedelta(seconds=2))


async def _annotate(cluster: Cluster, name: str, value: str) -> None:
    await cluster.client.merge_patch(cluster_resource(), "team", name,
                                     {"metadata": {"annotations": {names.ROTATE_ANNOTATION: value}}})


def cluster_resource() -> Resource:
    from trustwire.k8s.client import IDENTITIES
    return IDENTITIES


async def _rotation(cluster: Cluster, name: str) -> dict:  # type: ignore[type-arg]
    body = await cluster.get("ServiceIdentity", "team", name)
    return ((body or {}).get("status") or {}).get("rotation") or {}


async def _setup(cluster: Cluster, tmp_path: Path) -> tuple[Side, Side, RolloutSimulator, asyncio.Task[None]]:
    for name in ("alpha", "beta"):
        await cluster.apply(deployment(name, "team"))
        await cluster.apply(identity(name, "team", workloads=[{"kind": "Deployment", "name": name}], **SHORT))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None),
                                     jwt={"enabled": True, "audience": "drill"}))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    pods = {name: PodFiles(tmp_path / name) for name in ("alpha", "beta")}
    workloads = [SimulatedWorkload("team", "alpha", "alpha", pods["alpha"], rollout_seconds=0.3),
                 SimulatedWorkload("team", "beta", "beta", pods["beta"], rollout_seconds=1.2)]
    simulator = RolloutSimulator(cluster.client, workloads)
    task = asyncio.create_task(simulator.run())
    for w in workloads:
        while w.rollouts == 0:
            await asyncio.sleep(0.05)
    await cluster.wait_for("ServiceIdentity", "team", "alpha",
                           lambda b: bool((b or {}).get("status", {}).get("rolledOut")), what="to roll out")
    sides = tuple(Side(n, f"{n}.team.svc", pods[n], TLSEndpoint(pods[n])) for n in ("alpha", "beta"))
    return sides[0], sides[1], simulator, task


async def _stop(task: asyncio.Task[None], *sides: Side) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for side in sides:
        side.endpoint.close()


async def _rotate_ca(cluster: Cluster, name: str, value: str, timeout: float = 60) -> None:
    before = (await cluster.get("ServiceIdentity", "team", name))["status"]["ca"]["fingerprint"]  # type: ignore[index]
    await _annotate(cluster, name, value)
    await cluster.wait_for("ServiceIdentity", "team", name,
                           lambda b: (b or {}).get("status", {}).get("ca", {}).get("fingerprint") != before
                           and b["status"]["rotation"]["ca"]["phase"] == rot.IDLE,  # type: ignore[index]
                           timeout=timeout, what="to finish a CA rotation")


async def test_zero_failed_handshakes_through_ca_leaf_and_jwt_rotations(cluster: Cluster, tmp_path: Path) -> None:
    alpha, beta, _, task = await _setup(cluster, tmp_path)
    kids = {(await cluster.get("ServiceIdentity", "team", "alpha"))["status"]["jwt"]["kid"]}  # type: ignore[index]
    leaves = {(await cluster.get("ServiceIdentity", "team", "alpha"))["status"]["certificate"]["serial"]}  # type: ignore[index]
    probe = Probe(alpha, beta, audience="drill")
    probe.start()
    try:
        cas = set()
        for i, who in enumerate(("alpha", "beta", "alpha")):
            await _rotate_ca(cluster, who, f"ca:{i}")
            cas.add((await cluster.get("ServiceIdentity", "team", who))["status"]["ca"]["fingerprint"])  # type: ignore[index]
        deadline = asyncio.get_running_loop().time() + 75
        while asyncio.get_running_loop().time() < deadline and (len(kids) < 3 or len(leaves) < 3):
            status = (await cluster.get("ServiceIdentity", "team", "alpha"))["status"]  # type: ignore[index]
            kids.add(status["jwt"]["kid"])
            leaves.add(status["certificate"]["serial"])
            await asyncio.sleep(0.2)
    finally:
        result: ProbeResult = probe.stop()
        await _stop(task, alpha, beta)
    assert len(cas) == 3, "three CA rotations completed"
    assert len(kids) >= 3, f"JWT key rolled over at least twice: {kids}"
    assert len(leaves) >= 3, f"leaf renewed at least twice: {leaves}"
    assert result.ok > 200
    assert result.failed == 0, result.failures


async def test_probe_sees_the_outage_when_distribution_is_skipped(cluster: Cluster, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, beta, _, task = await _setup(cluster, tmp_path)
    # the negative control: activate the next CA without waiting for the peers
    monkeypatch.setattr(rot, "distribution_gate", lambda *a, **k: rot.Gate(True, "skipped"))
    monkeypatch.setattr("trustwire.plan.identity._gate_with_outsiders", lambda gate, *a, **k: gate)
    probe = Probe(alpha, beta, audience="drill")
    probe.start()
    try:
        await _rotate_ca(cluster, "alpha", "ca:skip")
        await asyncio.sleep(2.0)
    finally:
        result = probe.stop()
        await _stop(task, alpha, beta)
    assert result.failed > 0, "without the distribution phase the probe must record failed handshakes"
    assert any("mTLS" in f for f in result.failures)


async def test_manual_rotation_acts_once_per_distinct_value(cluster: Cluster) -> None:
    await cluster.apply(identity("solo", "team"))
    await cluster.wait_condition("ServiceIdentity", "team", "solo", "Ready")

    async def serial() -> str:
        serial: str = (await cluster.get("ServiceIdentity", "team", "solo"))["status"]["certificate"]["serial"]  # type: ignore[index]
        return serial

    first = await serial()
    await _annotate(cluster, "solo", "certificate:1")
    await cluster.wait_for("ServiceIdentity", "team", "solo",
                           lambda b: b["status"]["certificate"]["serial"] != first, what="to renew")  # type: ignore[index]
    second = await serial()
    for _ in range(3):
        cluster.controller.resync_all()
        await cluster.settle()
    await _annotate(cluster, "solo", "certificate:1")  # same value again: nothing
    await cluster.settle()
    assert await serial() == second
    await _annotate(cluster, "solo", "certificate:2")
    await cluster.wait_for("ServiceIdentity", "team", "solo",
                           lambda b: b["status"]["certificate"]["serial"] != second, what="to renew again")  # type: ignore[index]
    await cluster.settle()  # the Event is posted after the status write the wait saw
    events = [e for e in (await cluster.events("team", "solo")) if e["reason"] == "CertificateRenewed"]
    assert len(events) == 2


async def test_revoked_kid_and_removed_relationship_take_effect_at_once(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", "team"))
    await cluster.apply(identity("beta", "team"))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    kid = (await cluster.data("Secret", "team", names.credentials_secret("alpha")))["jwt.kid"].decode()
    await cluster.apply(identity("alpha", "team", jwt={"revokedKids": [kid]}))

    def beta_refuses(body: dict | None) -> bool:  # type: ignore[type-arg]
        import base64
        jwks = json.loads(base64.b64decode((body or {}).get("data", {}).get("peers.jwks", "e30=")))
        kids = [k["kid"] for k in jwks.get("keys", [])]
        return bool(kids) and kid not in kids

    await cluster.wait_for("Secret", "team", names.trust_secret("beta"), beta_refuses, what="to drop the kid")
    peers = json.loads((await cluster.data("Secret", "team", names.trust_secret("beta")))["peers.json"])
    assert kid in peers[0]["revokedKids"]
    new_kid = (await cluster.data("Secret", "team", names.credentials_secret("alpha")))["jwt.kid"].decode()
    assert new_kid != kid
    key = pki.load_private_key((await cluster.data("Secret", "team", names.credentials_secret("alpha")))["jwt.key"])
    assert pki.public_jwk(key, pki.JwtAlgorithm.ES256)["kid"] == new_kid
