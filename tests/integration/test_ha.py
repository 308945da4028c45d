"""Issue 6: replicas > 1 is safe — one Lease holder writes; a standby takes over when it dies."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from tests.integration.harness import Cluster, identity, relationship
from trustwire import names
from trustwire.emulator import running_emulator
from trustwire.k8s.client import LEASES, ApiConfig, Client, Resource
from trustwire.model import IdentityRef
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration
LEASE = "trustwire-system/trustwire"


def _writes_by(cluster: Cluster, who: str) -> list[str]:
    return [f"{r.method.value} {r.url.path}" for r in cluster.operator_writes()
            if r.headers.get("User-Agent") == f"trustwire-operator/{who}"]


def _options(who: str) -> OperatorOptions:
    return OperatorOptions(workers=2, resync_interval=3600.0, lease=LEASE, identity=who,
                           lease_seconds=3.0, renew_seconds=0.5)


async def _start_leader(url: str, client: Client) -> subprocess.Popen[bytes]:
    """Replica "op-a" as a real process (so it can die the hard way), once it holds the Lease."""
    replica = subprocess.Popen(
        [sys.executable, "-m", "trustwire.cli", "run", "--server", url, "--lease", LEASE,
         "--identity", "op-a", "--liveness", "", "--metrics-port", "0", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        lease = await client.get(LEASES, "trustwire-system", "trustwire")
        if lease and lease["spec"]["holderIdentity"] == "op-a":
            break
        await asyncio.sleep(0.05)
    return replica


async def test_only_the_lease_holder_writes_and_a_standby_takes_over() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
        config = ApiConfig(server=emu.url)
        replica_a = await _start_leader(emu.url, client)
        try:
            async with running_operator(config, _options("op-b")) as controller_b:
                cluster = Cluster(emu.emulator, client, controller_b)
                await cluster.apply(identity("alpha", "team"))
                await cluster.apply(identity("beta", "team"))
                await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
                await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
                await asyncio.sleep(0.5)
                assert controller_b.election is not None and not controller_b.election.leading.is_set()
                assert _writes_by(cluster, "op-a"), "the leader did the work"
                assert _writes_by(cluster, "op-b") == [], "the standby writes nothing"
                # a standby lists and watches nothing: it fills its caches when it takes the Lease
                assert controller_b.state.identities == {} and controller_b.client.counts["watch"] == 0

                replica_a.send_signal(signal.SIGKILL)
                replica_a.wait(10)
                await cluster.apply(identity("gamma", "team"))
                await asyncio.wait_for(controller_b.election.leading.wait(), 20)
                await cluster.wait_condition("ServiceIdentity", "team", "gamma", "Ready")
                assert set(controller_b.state.identities) == {IdentityRef("team", n)
                                                              for n in ("alpha", "beta", "gamma")}
                lease = await client.get(LEASES, "trustwire-system", "trustwire")
                assert lease is not None and lease["spec"]["holderIdentity"] == "op-b"
                assert lease["spec"]["leaseTransitions"] == 1
                await cluster.settle()
        finally:
            if replica_a.poll() is None:
                replica_a.kill()
                replica_a.wait(10)

        # one CA per identity was ever created, never a second one
        created = [r.data or {} for r in cluster.operator_writes() if r.method.value == "POST"]
        ca_names = [d["metadata"]["name"] for d in created
                    if d.get("kind") == "Secret" and d["metadata"]["name"].endswith("-trustwire-ca")]
        assert sorted(ca_names) == sorted(names.ca_secret(n) for n in ("alpha", "beta", "gamma"))


async def test_a_lost_lease_stops_the_writer() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
        config = ApiConfig(server=emu.url)
        async with running_operator(config, _options("op-a")) as controller:
            assert controller.election is not None
            await asyncio.wait_for(controller.election.leading.wait(), 10)
            # someone else grabs the Lease (an operator with a skewed view, or an admin)
            await client.merge_patch(LEASES, "trustwire-system", "trustwire",
                                     {"spec": {"holderIdentity": "intruder",
                                               "renewTime": "2999-01-01T00:00:00.000000Z"}})
            await asyncio.wait_for(controller.election.lost.wait(), 10)
            cluster = Cluster(emu.emulator, client, controller)
            since = len(cluster.operator_writes())
            await cluster.apply(identity("alpha", "team"))
            await asyncio.sleep(2.0)
            assert [w for w in cluster.operator_writes()[since:] if "/leases/" not in w.url.path] == []
            assert (await client.get(cluster_resource(), "team", "alpha") or {}).get("status") is None


def cluster_resource() -> Resource:
    from trustwire.k8s.client import IDENTITIES
    return IDENTITIES


async def test_a_graceful_stop_hands_the_lease_over_at_once() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
        config = ApiConfig(server=emu.url)
        replica_a = await _start_leader(emu.url, client)
        try:
            slow = OperatorOptions(workers=2, resync_interval=3600.0, lease=LEASE, identity="op-b",
                                   lease_seconds=60.0, renew_seconds=0.5)
            async with running_operator(config, slow) as b:
                assert b.election is not None
                await asyncio.sleep(1.0)
                assert not b.election.leading.is_set()
                replica_a.send_signal(signal.SIGTERM)  # a rolling update stops the old pod like this
                assert await asyncio.to_thread(replica_a.wait, 15) == 0  # the emulator runs on this loop
                # the Lease says 15 s; only the release explains a takeover within a few seconds
                await asyncio.wait_for(b.election.leading.wait(), 5)
        finally:
            if replica_a.poll() is None:
                replica_a.kill()
                replica_a.wait(10)
