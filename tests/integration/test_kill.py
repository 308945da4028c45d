"""SIGKILL the operator at write boundaries; after the last restart everything converges and holds.

The operator is a real process (``trustwire run --standalone`` with the chart's ServiceAccount
token, through the journaling proxy). Each run (seeded) makes a sequence of changes; at a
random one (1-6) of the operator's writes after each change, counted in the proxy, the
operator is killed with SIGKILL (no cleanup, no finalizers, the write at hand either reaching
the server or not, its answer never heard) and started again. Counting writes rather than
milliseconds puts the kill inside the work on a slow or loaded machine too.

The test's own watch records every version of every Secret from before the operator's first
start. After the final restart and convergence:

* one CA lineage per identity — never two different CA fingerprints for one identity
  unless the earlier one was never referenced by any leaf;
* every trust bundle holds the CA of every current peer's leaf (and only peers' CAs);
* material verifies and status agrees with the Secrets (fingerprints, kid).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.cluster.proxy import Fault, Recorded
from tests.integration.faults import (
    bundle_fingerprints,
    ca_lineage,
    fingerprint,
    leaf_issuers,
    material_problems,
    status_problems,
)
from tests.integration.harness import (
    OPERATOR_AGENT,
    WRITE_METHODS,
    History,
    OperatorProcess,
    ProcessCluster,
    condition,
    identity,
    relationship,
    until,
)
from trustwire import names
from trustwire.k8s.resources import SECRETS

pytestmark = pytest.mark.integration

PAIRS: list[tuple[str, str, tuple[str, str], tuple[str, str], dict[str, Any]]] = [
    # (relationship ns, name, (a, a_ns), (b, b_ns), spec)
    ("gov", "dgc-jobserver", ("dgc", "gov"), ("jobserver", "jobs"),
     {"initiator": "dgc", "jwt": {"enabled": True, "roles": ["IMPERSONATION"]}, "sharedSecret": {"enabled": True}}),
    ("proc", "dpm-dpe", ("dpm", "proc"), ("dpe", "proc"), {"jwt": {"enabled": True, "audience": "pf"}}),
]
IDENTITIES = [("gov", "dgc"), ("jobs", "jobserver"), ("proc", "dpm"), ("proc", "dpe")]
CONSENT = {("jobs", "jobserver"): ["gov"]}


def _operator(cluster: ProcessCluster) -> OperatorProcess:
    verbose = ["-v"] if os.environ.get("TRUSTWIRE_KILL_VERBOSE") else []
    return cluster.spawn("--standalone", "--resync", "3600", *verbose)


async def _start(operator: OperatorProcess) -> None:
    """Started = it listed everything and watches ServiceIdentities."""
    await operator.start()
    await operator.wait_request(lambda r: r.is_watch and r.path.endswith("/serviceidentities"),
                                "watched ServiceIdentities")


def _is_operator_write(request: Recorded) -> bool:
    return request.user_agent.startswith(OPERATOR_AGENT) and request.method in WRITE_METHODS


class WriteTrap:
    """A proxy hook that counts the operator's writes and SIGKILLs it at the ``wanted``-th:
    that write reaches the server (``land``) or is refused — the operator hears neither."""

    def __init__(self, operator: OperatorProcess, wanted: int, land: bool) -> None:
        self.operator, self.wanted, self.land = operator, wanted, land
        self.writes = 0
        self.fired = False

    def __call__(self, request: Recorded) -> Fault | None:
        if self.fired or not _is_operator_write(request):
            return None
        self.writes += 1
        if self.writes < self.wanted:
            return None
        self.operator.kill_now()
        self.fired = True
        return None if self.land else Fault(status=503)

    async def sprung(self, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Until the trap fired, or the operator went quiet after fewer writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        made, since = 0, loop.time()
        while not self.fired and loop.time() < deadline:
            if self.writes != made:
                made, since = self.writes, loop.time()
            elif made and loop.time() - since >= quiet:
                return
            await asyncio.sleep(0.01)


def _changes(cluster: ProcessCluster, rng: random.Random) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """The changes of one run, in order; each is followed by a SIGKILL at a write boundary."""

    def ident(ns: str, name: str, **spec: Any) -> dict[str, Any]:
        if (ns, name) in CONSENT:
            spec.setdefault("acceptFrom", {"namespaces": CONSENT[(ns, name)]})
        return identity(name, ns, **spec)

    async def create_pair(index: int) -> None:
        ns, rel, (a, a_ns), (b, b_ns), spec = PAIRS[index]
        for i_ns, i_name in ((a_ns, a), (b_ns, b)):
            if await cluster.get("ServiceIdentity", i_ns, i_name) is None:
                await cluster.apply(ident(i_ns, i_name))
        await cluster.apply(relationship(rel, ns, (a, None), (b, b_ns if b_ns != ns else None), **spec))

    async def edit_dns() -> None:
        await cluster.apply(ident("proc", "dpm", dnsNames=[f"dpm-{rng.randrange(1000)}.example.com"]))

    async def rotate(what: str) -> None:
        body = ident("gov", "dgc")
        body["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: f"{what}:{rng.randrange(10**6)}"}
        await cluster.apply(body)

    async def recreate_relationship() -> None:
        await cluster.delete("TrustRelationship", "proc", "dpm-dpe")
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        await create_pair(1)

    return [
        ("create dgc-jobserver", lambda: create_pair(0)),
        ("create dpm-dpe", lambda: create_pair(1)),
        ("edit dpm dnsNames", edit_dns),
        ("rotate dgc jwt", lambda: rotate(rng.choice(["jwt", "certificate"]))),
        ("recreate dpm-dpe", recreate_relationship),
    ]


async def _not_ready(cluster: ProcessCluster, *, relationships: bool = True) -> list[str]:
    wanted = [("ServiceIdentity", ns, name) for ns, name in IDENTITIES]
    wanted += [("TrustRelationship", ns, rel) for ns, rel, *_ in PAIRS] if relationships else []
    pending = []
    for kind, ns, name in wanted:
        ready = condition(await cluster.get(kind, ns, name), "Ready")
        if ready is None or ready["status"] != "True":
            pending.append(f"{kind} {ns}/{name}: {ready}")
    return pending


async def _all_ready(cluster: ProcessCluster, timeout: float = 40.0) -> None:
    pending: list[str] = []

    async def ready() -> bool:
        pending[:] = await _not_ready(cluster)
        return not pending

    await until(ready, lambda: f"Ready after the last restart; not Ready: {pending}", timeout=timeout)


def _first_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem)[0]


async def _check_invariants(cluster: ProcessCluster, history: History) -> None:
    cas: dict[str, str] = {}
    for ns, name in IDENTITIES:
        ca = await cluster.data("Secret", ns, names.ca_secret(name))
        creds = await cluster.data("Secret", ns, names.credentials_secret(name))
        current = fingerprint(_first_cert(ca["tls.crt"]))
        cas[name] = current
        lineage = ca_lineage(history, ns, name)
        assert lineage[-1] == current, (name, lineage, current)
        used = leaf_issuers(history, ns, name, lineage[:-1])
        assert not used, f"{ns}/{name}: {len(lineage)} CAs over history and leaves were issued from {used}"
        assert material_problems(ca["tls.crt"], creds, ca_key_pem=ca["tls.key"]) == [], (ns, name)
        body = await cluster.get("ServiceIdentity", ns, name)
        assert body is not None
        assert status_problems(body["status"], ca["tls.crt"], creds) == [], (ns, name)

    peers: dict[str, set[str]] = {name: set() for _, name in IDENTITIES}
    for _, _, (a, _), (b, _), spec in PAIRS:
        if spec.get("mtls", {}).get("enabled", True):
            peers[a].add(b)
            peers[b].add(a)
    for ns, name in IDENTITIES:
        trust = await cluster.data("Secret", ns, names.trust_secret(name))
        assert bundle_fingerprints(trust) == {cas[p] for p in peers[name]}, \
            f"{name}'s trust bundle must hold exactly its peers' current CAs {sorted(peers[name])}"
        # and each peer's current leaf verifies against that bundle
        bundle = x509.load_pem_x509_certificates(trust["trust-bundle.pem"])
        for peer in peers[name]:
            peer_ns = next(n for n, i in IDENTITIES if i == peer)
            leaf = _first_cert((await cluster.data("Secret", peer_ns, names.credentials_secret(peer)))["tls.crt"])
            assert any(_issued_by(leaf, ca) for ca in bundle), (name, peer)
    await _check_jwt_and_shared(cluster)


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


async def _check_jwt_and_shared(cluster: ProcessCluster) -> None:
    dpe_trust = await cluster.data("Secret", "proc", names.trust_secret("dpe"))
    dpm_kid = (await cluster.data("Secret", "proc", names.credentials_secret("dpm")))["jwt.kid"].decode()
    assert dpm_kid in [k["kid"] for k in json.loads(dpe_trust["peers.jwks"])["keys"]]
    job_trust = await cluster.data("Secret", "jobs", names.trust_secret("jobserver"))
    dgc_kid = (await cluster.data("Secret", "gov", names.credentials_secret("dgc")))["jwt.kid"].decode()
    assert dgc_kid in [k["kid"] for k in json.loads(job_trust["peers.jwks"])["keys"]]
    dgc = await cluster.data("Secret", "gov", names.trust_secret("dgc"))
    assert dgc["shared-jobserver.key"] == job_trust["shared-dgc.key"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("seed", [7, 1234])
async def test_sigkill_at_write_boundaries_leaves_one_ca_lineage_and_consistent_trust(
        process_cluster: ProcessCluster, seed: int) -> None:
    cluster = process_cluster
    rng = random.Random(seed)
    changes = _changes(cluster, rng)
    operator = _operator(cluster)
    killed: list[tuple[str, int, bool, bool]] = []  # (change, writes made, whether it landed, mid-work)
    async with History(cluster.client, [SECRETS]) as history:
        await _start(operator)
        for what, change in changes:
            trap = WriteTrap(operator, rng.randint(1, 6), land=rng.random() < 0.5)
            cluster.proxy.fault = trap
            await change()
            await trap.sprung()
            await operator.kill()
            cluster.proxy.fault = None
            busy = trap.writes > 0 and bool(await _not_ready(cluster, relationships=False))
            killed.append((what, trap.writes, trap.land, busy))
            await _start(operator)
        await _all_ready(cluster)
        await cluster.settle()
        await history.sync()
        await _check_invariants(cluster, history)
    assert operator.starts == len(changes) + 1
    # the kills really interrupted work in progress (else this test proves nothing)
    assert sum(busy for *_, busy in killed) >= 2, killed
