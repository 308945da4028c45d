"""SIGKILL the operator at random moments; after the last restart everything converges and holds.

The emulator runs in the test process; the operator is a real subprocess,
``python -m trustwire.cli run --server <url> --standalone --liveness '' --metrics-port 0``.
Each run (seeded) makes a sequence of changes; after a random number (1-6) of the
operator's writes following each change, the operator is killed with SIGKILL (no cleanup,
no finalizers, half-done writes) and started again. Counting writes rather than
milliseconds puts the kill inside the work on a slow or loaded machine too. After the final restart and convergence:

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
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faults import (
    bundle_fingerprints,
    ca_lineage,
    fingerprint,
    is_operator_request,
    leaf_issuers,
    live_condition,
    live_data,
    live_object,
    material_problems,
    status_problems,
)
from tests.integration.harness import WRITE_METHODS, Cluster, identity, relationship
from trustwire import names, pki
from trustwire.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run_options() -> list[str]:
    """``--standalone --liveness '' --metrics-port 0``, as far as ``trustwire run`` offers them."""
    from trustwire.cli import run

    offered = {opt for param in run.params for opt in param.opts}
    options = ["--liveness", ""]
    for flag, values in (("--standalone", []), ("--metrics-port", ["0"]), ("--resync", ["3600"])):
        if flag in offered:
            options += [flag, *values]
    if os.environ.get("TRUSTWIRE_KILL_VERBOSE"):
        options.append("-v")
    return options


class OperatorProcess:
    """The operator as a subprocess we start, SIGKILL and restart (only by its own pid)."""

    def __init__(self, url: str, emulator: Any, log_dir: Path) -> None:
        self.url, self.emulator, self.log_dir = url, emulator, log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        seen = len(self.emulator.journal)
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")])}
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trustwire.cli", "run", "--server", self.url, *_run_options(),
            stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(ROOT))
        log.close()
        # started = kopf of this process has opened its watch on ServiceIdentities
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        while loop.time() < deadline:
            fresh = self.emulator.journal[seen:]
            if any(str(r.params.get("watch", "")) == "true" and "serviceidentities" in r.url.path
                   and is_operator_request(r) for r in fresh):
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"the operator did not start; see {self.log_dir}/operator-{self.starts}.log")

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None


@pytest.fixture
async def killable(tmp_path: Path) -> AsyncIterator[tuple[OperatorProcess, Client, Any]]:
    async with running_emulator() as emu:
        operator = OperatorProcess(emu.url, emu.emulator, tmp_path)
        async with Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
            try:
                yield operator, client, emu.emulator
            finally:
                await operator.kill()


async def _quiet(emulator: Any, seconds: float = 1.5, timeout: float = 30.0) -> None:
    """Until the operator has written nothing for ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = -1, loop.time()
    while loop.time() < deadline:
        writes = sum(1 for r in emulator.journal if is_operator_request(r)
                     and str(getattr(r.method, "value", r.method)) in WRITE_METHODS)
        if writes != last:
            last, since = writes, loop.time()
        elif loop.time() - since >= seconds:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the operator never went quiet")


PAIRS: list[tuple[str, str, tuple[str, str], tuple[str, str], dict[str, Any]]] = [
    # (relationship ns, name, (a, a_ns), (b, b_ns), spec)
    ("gov", "dgc-jobserver", ("dgc", "gov"), ("jobserver", "jobs"),
     {"initiator": "dgc", "jwt": {"enabled": True, "roles": ["IMPERSONATION"]}, "sharedSecret": {"enabled": True}}),
    ("proc", "dpm-dpe", ("dpm", "proc"), ("dpe", "proc"), {"jwt": {"enabled": True, "audience": "pf"}}),
]
IDENTITIES = [("gov", "dgc"), ("jobs", "jobserver"), ("proc", "dpm"), ("proc", "dpe")]
CONSENT = {("jobs", "jobserver"): ["gov"]}


def _changes(cluster: Cluster, rng: random.Random) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """The changes of one run, in order; each is followed by a SIGKILL at a random moment."""

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


async def _all_ready(emulator: Any, timeout: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending: list[str] = []
    while loop.time() < deadline:
        pending = []
        for ns, name in IDENTITIES:
            c = live_condition(emulator, "serviceidentities", ns, name, "Ready")
            if c is None or c["status"] != "True":
                pending.append(f"sid {ns}/{name}: {c}")
        for ns, rel, *_ in PAIRS:
            c = live_condition(emulator, "trustrelationships", ns, rel, "Ready")
            if c is None or c["status"] != "True":
                pending.append(f"trust {ns}/{rel}: {c}")
        if not pending:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not Ready after the last restart: {pending}")


def _check_invariants(emulator: Any) -> None:
    cas: dict[str, str] = {}
    for ns, name in IDENTITIES:
        ca = live_data(emulator, ns, names.ca_secret(name))
        creds = live_data(emulator, ns, names.credentials_secret(name))
        current = fingerprint(pki.load_certificates(ca["tls.crt"])[0])
        cas[name] = current
        lineage = ca_lineage(emulator, ns, name)
        assert lineage[-1] == current, (name, lineage, current)
        earlier = lineage[:-1]
        used = leaf_issuers(emulator, ns, name, earlier)
        assert not used, f"{ns}/{name}: {len(lineage)} CAs over history and leaves were issued from {used}"
        assert material_problems(ca["tls.crt"], creds, ca_key_pem=ca["tls.key"]) == [], (ns, name)
        body = live_object(emulator, "serviceidentities", ns, name)
        assert body is not None
        assert status_problems(body["status"], ca["tls.crt"], creds) == [], (ns, name)

    peers: dict[str, set[str]] = {name: set() for _, name in IDENTITIES}
    for _, _, (a, _), (b, _), spec in PAIRS:
        if spec.get("mtls", {}).get("enabled", True):
            peers[a].add(b)
            peers[b].add(a)
    for ns, name in IDENTITIES:
        trust = live_data(emulator, ns, names.trust_secret(name))
        assert bundle_fingerprints(trust) == {cas[p] for p in peers[name]}, \
            f"{name}'s trust bundle must hold exactly its peers' current CAs {sorted(peers[name])}"
        # and each peer's current leaf verifies against that bundle
        for peer in peers[name]:
            peer_ns = next(n for n, i in IDENTITIES if i == peer)
            leaf = pki.load_certificates(live_data(emulator, peer_ns, names.credentials_secret(peer))["tls.crt"])[0]
            assert any(pki.is_signed_by(leaf, ca) for ca in pki.load_certificates(trust["trust-bundle.pem"]))
    dpe_trust = live_data(emulator, "proc", names.trust_secret("dpe"))
    dpm_kid = live_data(emulator, "proc", names.credentials_secret("dpm"))["jwt.kid"].decode()
    assert dpm_kid in [k["kid"] for k in json.loads(dpe_trust["peers.jwks"])["keys"]]
    job_trust = live_data(emulator, "jobs", names.trust_secret("jobserver"))
    dgc_kid = live_data(emulator, "gov", names.credentials_secret("dgc"))["jwt.kid"].decode()
    assert dgc_kid in [k["kid"] for k in json.loads(job_trust["peers.jwks"])["keys"]]
    dgc = live_data(emulator, "gov", names.trust_secret("dgc"))
    assert dgc["shared-jobserver.key"] == job_trust["shared-dgc.key"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [7, 1234])
async def test_sigkill_at_random_moments_leaves_one_ca_lineage_and_consistent_trust(
        killable: tuple[OperatorProcess, Client, Any], seed: int) -> None:
    operator, client, emulator = killable
    cluster = Cluster(emulator, client, controller=None)  # type: ignore[arg-type]
    rng = random.Random(seed)
    changes = _changes(cluster, rng)
    killed: list[tuple[str, int, bool]] = []  # (change, writes after it, whether the operator was mid-work)
    await operator.start()
    for what, change in changes:
        writes_before = _operator_writes(emulator)
        await change()
        made = await _writes_since(emulator, writes_before, rng.randint(1, 6))
        busy = made > 0 and not _converged(emulator)
        await operator.kill()
        killed.append((what, made, busy))
        await operator.start()
    await _all_ready(emulator)
    await _quiet(emulator)
    _check_invariants(emulator)
    assert operator.starts == len(changes) + 1
    # the kills really interrupted work in progress (else this test proves nothing)
    assert sum(busy for *_, busy in killed) >= 2, killed


async def _writes_since(emulator: Any, before: int, wanted: int, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """Until the operator has made ``wanted`` writes since ``before`` (or went quiet after fewer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    made, since = 0, loop.time()
    while loop.time() < deadline:
        now = _operator_writes(emulator) - before
        if now >= wanted:
            return now
        if now != made:
            made, since = now, loop.time()
        elif made and loop.time() - since >= quiet:
            return made
        await asyncio.sleep(0.005)
    return made


def _operator_writes(emulator: Any) -> int:
    return sum(1 for r in emulator.journal if is_operator_request(r)
               and str(getattr(r.method, "value", r.method)) in WRITE_METHODS)


def _converged(emulator: Any) -> bool:
    return all((c := live_condition(emulator, "serviceidentities", ns, name, "Ready")) is not None
               and c["status"] == "True" for ns, name in IDENTITIES)
