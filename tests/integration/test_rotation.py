"""Issue 5 acceptance: rotation without a failed handshake, proven by a continuous probe.

The real Deployment controller rolls the wired templates out and kwok marks the pods Ready;
what no process here plays is the kubelet, which gives a new pod the Secrets' content as its
files. :class:`Kubelet` does that part: when a Deployment's rollout of a new
``trustwire.io/material-hash`` completes, that side's :class:`PodFiles` switch to the content
the hash names."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, deployment, identity, relationship, until
from trustwire import names, pki
from trustwire.demo.drill import PodFiles, Probe, ProbeResult, Side, TLSEndpoint
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import DEPLOYMENTS, IDENTITIES, SECRETS, Resource, decode_data
from trustwire.plan import rotation as rot
from trustwire.plan.workloads import material_hash
from trustwire.runtime import OperatorOptions

pytestmark = pytest.mark.integration

SHORT = {"ca": {"duration": "30m"}, "certificate": {"duration": "60s", "renewBefore": "42s"},
         "jwt": {"rotationPeriod": "25s"}}
#: beta's pods count as available only after this long, so its rollouts finish after
#: alpha's: the window the negative control needs to see an outage.
BETA_MIN_READY_SECONDS = 2


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0, propagation_delay=timedelta(seconds=2))


@dataclasses.dataclass
class Pod:
    """One side's pods as their files see it: the material of the last completed rollout."""

    deployment: str
    identity: str
    files: PodFiles
    running: str | None = None
    rollouts: int = 0


class Kubelet:
    """Gives each side's pod the mounted content of the template its Deployment rolled out.

    It follows the namespace's Secrets (remembering every mounted content by its material
    hash, as the pod template names it) and Deployments; once a rollout of a new hash is
    complete (the controller observed the generation, every replica is updated and
    available) the pod's files become that content."""

    def __init__(self, client: Client, namespace: str, pods: list[Pod]) -> None:
        self.client, self.namespace, self.pods = client, namespace, pods
        self._secrets: dict[str, dict[str, bytes]] = {}
        self._deployments: dict[str, dict[str, Any]] = {}
        self._material: dict[str, dict[str, bytes]] = {}

    async def run(self) -> None:
        await asyncio.gather(self._follow(SECRETS, self._secret), self._follow(DEPLOYMENTS, self._deployment))

    async def _follow(self, resource: Resource, seen: Callable[[dict[str, Any]], None]) -> None:
        """List, then watch from the listing; list again when the watch ends or fails."""
        while True:
            version = None
            async for page in self.client.pages(resource, self.namespace):
                for body in page.items:
                    seen(body)
                version = page.resource_version
            with contextlib.suppress(ApiError):
                async for event in self.client.watch(resource, self.namespace, resource_version=version):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        seen(event["object"])
            await asyncio.sleep(0.1)

    def _secret(self, body: dict[str, Any]) -> None:
        self._secrets[body["metadata"]["name"]] = decode_data(SECRETS, body)
        for pod in self.pods:
            mounted = [self._secrets.get(n) for n in (names.credentials_secret(pod.identity),
                                                      names.trust_secret(pod.identity))]
            if mounted[0] is not None and mounted[1] is not None:
                files = {**mounted[0], **mounted[1]}
                self._material[material_hash(files)] = files
            self._start(pod)

    def _deployment(self, body: dict[str, Any]) -> None:
        self._deployments[body["metadata"]["name"]] = body
        for pod in self.pods:
            self._start(pod)

    def _start(self, pod: Pod) -> None:
        body = self._deployments.get(pod.deployment)
        wanted = _template_hash(body)
        if body is None or wanted is None or wanted == pod.running or not _rollout_complete(body):
            return
        files = self._material.get(wanted)
        if files is not None:  # else its Secrets' watch event is still on its way
            pod.files.update(files)
            pod.running = wanted
            pod.rollouts += 1


def _template_hash(body: dict[str, Any] | None) -> str | None:
    template = ((body or {}).get("spec") or {}).get("template") or {}
    hashed: str | None = ((template.get("metadata") or {}).get("annotations") or {}).get(
        names.MATERIAL_HASH_ANNOTATION)
    return hashed


def _rollout_complete(body: dict[str, Any]) -> bool:
    status, replicas = body.get("status") or {}, body["spec"]["replicas"]
    return bool(status.get("observedGeneration", 0) >= body["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("availableReplicas")
                == status.get("replicas") == replicas)


async def _annotate(cluster: Cluster, name: str, value: str) -> None:
    await cluster.client.merge_patch(IDENTITIES, "team", name,
                                     {"metadata": {"annotations": {names.ROTATE_ANNOTATION: value}}})


def _rolled_out(body: dict[str, Any] | None) -> bool:
    return bool(((body or {}).get("status") or {}).get("rolledOut"))


async def _setup(cluster: Cluster, tmp_path: Path) -> tuple[Side, Side, asyncio.Task[None]]:
    for name in ("alpha", "beta"):
        workload = deployment(name, "team")
        if name == "beta":
            workload["spec"]["minReadySeconds"] = BETA_MIN_READY_SECONDS
        await cluster.apply(workload)
        await cluster.apply(identity(name, "team", workloads=[{"kind": "Deployment", "name": name}], **SHORT))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None),
                                     jwt={"enabled": True, "audience": "drill"}))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    pods = [Pod(name, name, PodFiles(tmp_path / name)) for name in ("alpha", "beta")]
    task = asyncio.create_task(Kubelet(cluster.client, "team", pods).run())
    for name in ("alpha", "beta"):
        await cluster.wait_for("ServiceIdentity", "team", name, _rolled_out, timeout=60, what="to roll out")
    await until(lambda: all(p.rollouts for p in pods), "every pod to start with its material", timeout=30,
                interval=0.05)
    alpha, beta = (Side(p.identity, f"{p.identity}.team.svc", p.files, TLSEndpoint(p.files)) for p in pods)
    return alpha, beta, task


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
    alpha, beta, task = await _setup(cluster, tmp_path)
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
    alpha, beta, task = await _setup(cluster, tmp_path)
    # the negative control: activate the next CA without waiting for the peers
    monkeypatch.setattr(rot, "distribution_gate", lambda *a, **k: rot.Gate(True, "skipped"))
    monkeypatch.setattr("trustwire.plan.rotation.gate_with_outsiders", lambda gate, *a, **k: gate)
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
    events = await cluster.events_of("team", "solo", "CertificateRenewed")
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
