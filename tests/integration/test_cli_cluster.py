"""The CLI as a CI pipeline or a person runs it, against the real control plane: ``check``
asks the real discovery endpoint, Lease and authorizer (SelfSubjectAccessReview);
``status NAME`` lists Events with a field selector the real API server applies; ``rotate -l``
sends a label selector it applies (the emulator ignores both selectors).

The commands run as processes (``python -m trustwire.cli``) with a kubeconfig, so stdout,
stderr and the exit code are exactly what a script sees. The operator runs in the test's
event loop and holds the Lease ``trustwire-system/trustwire``, the one ``check`` looks at
unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, identity, ready_with_peers, relationship
from trustwire.k8s.client import Client
from trustwire.k8s.resources import IDENTITIES, LEASES
from trustwire.runtime import OperatorOptions
from trustwire.times import rfc3339_micro, utcnow

pytestmark = pytest.mark.integration

NS = "cli"
LEASE_NAMESPACE, LEASE_NAME = "trustwire-system", "trustwire"
OK, NOT_OK, USAGE, UNAVAILABLE = 0, 1, 2, 3


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def cli(kubeconfig: Path, *args: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustwire.cli", *args, "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=2, resync_interval=3600.0, lease=f"{LEASE_NAMESPACE}/{LEASE_NAME}")


@pytest.fixture(autouse=True)
async def no_lease(admin: Client) -> AsyncIterator[None]:
    """The operator's Lease and the test's own neither predate nor outlive the test."""
    for name in (LEASE_NAME, "stale", "later"):
        await admin.delete(LEASES, LEASE_NAMESPACE, name)
    yield
    for name in (LEASE_NAME, "stale", "later"):
        await admin.delete(LEASES, LEASE_NAMESPACE, name)


async def _pair(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", NS) | {"metadata": {"name": "alpha", "namespace": NS,
                                                              "labels": {"team": "a"}}})
    await cluster.apply(identity("beta", NS) | {"metadata": {"name": "beta", "namespace": NS,
                                                             "labels": {"team": "b"}}})
    # a relationship with the identity's name: its Events are not the identity's
    await cluster.apply(relationship("alpha", NS, ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", NS, "alpha", "Ready")
    for name in ("alpha", "beta"):
        await cluster.wait_for("ServiceIdentity", NS, name, lambda b: ready_with_peers(b, 1))


# ---- check ------------------------------------------------------------------------------------
async def test_check_passes_with_the_operator_running(cluster: Cluster) -> None:
    await _pair(cluster)  # the operator holds the Lease once it reconciles
    run = await cli(cluster.plane.admin_kubeconfig, "check", "-n", NS, "--wait", "--timeout", "30s")
    assert run.code == OK, run
    lines = run.stdout.splitlines()
    assert lines[0] == "✓ crds: trustwire.io/v1alpha1 serves serviceidentities, trustrelationships"
    assert lines[1].startswith(f"✓ lease: Lease {LEASE_NAMESPACE}/{LEASE_NAME} held by ")
    assert "✓ rbac patch serviceidentities.trustwire.io: allowed in namespace cli" in lines
    assert all(line.startswith("✓ ") for line in lines) and run.stderr == ""
    checks = json.loads((await cli(cluster.plane.admin_kubeconfig, "check", "-A", "-o", "json")).stdout)
    assert all(c["ok"] for c in checks) and {c["name"] for c in checks} >= {"crds", "lease"}


async def test_check_names_each_failing_check(cluster: Cluster) -> None:
    plane = cluster.plane
    nobody = plane.user_kubeconfig("nobody")
    stale = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "stale", "namespace": LEASE_NAMESPACE},
             "spec": {"holderIdentity": "gone-0", "leaseDurationSeconds": 15,
                      "renewTime": rfc3339_micro(utcnow() - timedelta(hours=1))}}
    await cluster.client.create(LEASES, LEASE_NAMESPACE, stale)
    cases = [
        (nobody, ["-n", NS, "--lease", ""], ["✗ rbac list serviceidentities.trustwire.io: you may not list "
                                             "serviceidentities.trustwire.io in namespace cli (trustwire status "
                                             "needs it)"]),
        (plane.admin_kubeconfig, ["--lease", f"{LEASE_NAMESPACE}/absent"],
         [f"✗ lease: Lease {LEASE_NAMESPACE}/absent does not exist (is the operator running with --lease "
          f"{LEASE_NAMESPACE}/absent?)"]),
        (plane.admin_kubeconfig, ["--lease", f"{LEASE_NAMESPACE}/stale"],
         [f"✗ lease: Lease {LEASE_NAMESPACE}/stale held by gone-0 was last renewed "]),
    ]
    for kubeconfig, args, expected in cases:
        run = await cli(kubeconfig, "check", *args)
        assert run.code == NOT_OK, (args, run)
        *lines, summary = run.stdout.splitlines()
        failing = [line for line in lines if line.startswith("✗ ")]
        for line in expected:
            assert any(f.startswith(line) for f in failing), (line, run.stdout)
        assert run.stdout.startswith("✓ crds: "), run.stdout  # discovery is open to every user
        assert summary == f"{len(failing)} of {len(lines)} checks failed" and run.stderr == ""
    refused = await cli(nobody, "check", "--lease", f"{LEASE_NAMESPACE}/{LEASE_NAME}")
    assert f"✗ lease: cannot read Lease {LEASE_NAMESPACE}/{LEASE_NAME}: GET " in refused.stdout
    assert "403 Forbidden" in refused.stdout
    # the commands check cannot vouch for answer 3: the question was refused, not judged
    status = await cli(nobody, "status", "-n", NS, "-o", "json")
    assert (status.code, status.stdout) == (UNAVAILABLE, "")
    assert status.stderr.startswith(f"Error: the API server refused list /apis/trustwire.io/v1alpha1/namespaces/{NS}/"
                                    "serviceidentities: 403 Forbidden"), status.stderr


async def test_check_wait_polls_until_the_lease_appears(cluster: Cluster) -> None:
    waiting = asyncio.create_task(cli(cluster.plane.admin_kubeconfig, "check", "--lease",
                                      f"{LEASE_NAMESPACE}/later", "--wait", "--timeout", "60s"))
    await asyncio.sleep(4)
    assert not waiting.done()
    await cluster.client.create(LEASES, LEASE_NAMESPACE, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "later", "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": "replica-0", "leaseDurationSeconds": 60, "renewTime": rfc3339_micro(utcnow())}})
    run = await waiting
    assert run.code == OK, run
    assert f"✓ lease: Lease {LEASE_NAMESPACE}/later held by replica-0" in run.stdout


async def test_check_wait_gives_up_at_the_timeout(cluster: Cluster) -> None:
    run = await cli(cluster.plane.admin_kubeconfig, "check", "--lease", f"{LEASE_NAMESPACE}/absent",
                    "--wait", "--timeout", "3s", "-o", "json")
    assert run.code == NOT_OK
    failed = [c for c in json.loads(run.stdout) if not c["ok"]]
    assert [c["name"] for c in failed] == ["lease"]


# ---- status NAME and rotate -l ---------------------------------------------------------------
async def test_status_name_shows_this_objects_events(cluster: Cluster) -> None:
    await _pair(cluster)
    run = await cli(cluster.plane.admin_kubeconfig, "status", "alpha", "-n", NS, "-o", "json")
    assert run.code == OK, run
    shown = json.loads(run.stdout)
    reasons = [e["reason"] for e in shown["events"]]
    assert "Issued" in reasons, reasons
    assert all(e["type"] in ("Normal", "Warning") and e["lastTimestamp"] for e in shown["events"])
    trust = json.loads((await cli(cluster.plane.admin_kubeconfig, "status", "trust/alpha", "-n", NS,
                                  "-o", "json")).stdout)
    assert trust["kind"] == "TrustRelationship" and trust["ready"] is True
    assert "Issued" not in [e["reason"] for e in trust["events"]]  # the identity's Events stay its own
    assert {c["type"] for c in trust["conditions"]} >= {"Ready", "Accepted", "Distributed"}
    assert all(c["lastTransitionTime"] for c in trust["conditions"])
    table = await cli(cluster.plane.admin_kubeconfig, "status", "alpha", "-n", NS)
    assert table.stdout.startswith(f"ServiceIdentity {NS}/alpha: Ready (Ready)")
    assert "Events (newest last)" in table.stdout and "Issued" in table.stdout


async def test_rotate_by_label_selector(cluster: Cluster) -> None:
    await _pair(cluster)
    before = await cluster.client.get(IDENTITIES, NS, "beta")
    assert before is not None
    run = await cli(cluster.plane.admin_kubeconfig, "rotate", "-l", "team=a", "-n", NS, "--what", "certificate",
                    "--wait", "-o", "json")
    assert run.code == OK, run
    (outcome,) = json.loads(run.stdout)
    assert (outcome["name"], outcome["handled"]) == ("alpha", True)
    assert outcome["before"] != outcome["after"]
    after = await cluster.client.get(IDENTITIES, NS, "beta")
    assert after is not None
    assert after["status"]["certificate"]["serial"] == before["status"]["certificate"]["serial"]
    none = await cli(cluster.plane.admin_kubeconfig, "rotate", "-l", "team=z", "-A", "--what", "ca")
    assert none.code == UNAVAILABLE
    assert none.stderr.strip() == "Error: no ServiceIdentities matching team=z in any namespace"
