"""trustwire.controller.leader against the API emulator, with injected clocks.

Expiry must not depend on the replicas' wall clocks agreeing: a replica judges a Lease by
how long it has itself seen it unchanged (its monotonic clock), as client-go does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trustwire.controller.leader import LeaderElection
from trustwire.demo.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import LEASES

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def _replica(client: Client, who: str, ticks: Ticks, wall: datetime) -> LeaderElection:
    """A replica whose wall clock reads ``wall`` at start and runs with its own ticks."""
    start = ticks.value
    return LeaderElection(client, namespace="system", identity=who, lease_seconds=15.0,
                          clock=lambda: wall + timedelta(seconds=ticks.value - start), monotonic=ticks)


async def test_a_skewed_wall_clock_neither_steals_a_live_lease_nor_waits_on_a_dead_one() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        a_ticks, b_ticks = Ticks(), Ticks()
        a = _replica(client, "a", a_ticks, NOW - timedelta(hours=1))  # a's wall clock is an hour behind
        b = _replica(client, "b", b_ticks, NOW)
        assert await a._attempt()
        assert not await b._attempt()  # renewTime looks an hour old to b, yet a holds it
        for _ in range(5):  # a keeps renewing; b never sees the same record for 15 s
            a_ticks.value += 10.0
            b_ticks.value += 10.0
            assert await a._attempt()
            assert not await b._attempt()
        b_ticks.value += 14.9  # a died: the record stops changing
        assert not await b._attempt()
        b_ticks.value += 0.2
        assert await b._attempt()
        lease = await client.get(LEASES, "system", "trustwire")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1


async def test_a_lease_renewed_far_in_the_future_expires_after_one_duration() -> None:
    """A holder whose clock runs a year ahead stops renewing: the Lease is free 15 s later,
    not a year later."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        b_ticks = Ticks()
        assert await _replica(client, "a", Ticks(), NOW + timedelta(days=365))._attempt()
        b = _replica(client, "b", b_ticks, NOW)
        assert not await b._attempt()
        b_ticks.value += 15.0
        assert await b._attempt()


async def test_a_released_lease_is_taken_at_once() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        a, b = _replica(client, "a", Ticks(), NOW), _replica(client, "b", Ticks(), NOW)
        assert await a._attempt()
        assert not await b._attempt()
        await a.release()
        assert await b._attempt()  # no waiting for the lease duration
        await a.release()  # a no longer holds it: nothing changes
        lease = await client.get(LEASES, "system", "trustwire")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b"
