"""The rotation gates over clock positions: wait, open, propagation delay, clock skew."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from trustwire.model import IdentityRef
from trustwire.plan import rotation as rot

PEER = IdentityRef("jobs", "jobserver")
FP = "ab" * 32
DELAY = timedelta(seconds=90)


def state(*, trusts: bool, rolled_out: bool, workloads: bool, in_place: bool = False) -> rot.PeerState:
    return rot.PeerState(PEER, frozenset({FP} if trusts else ()), frozenset({"kid-next"} if trusts else ()),
                         rolled_out=rolled_out, has_workloads=workloads, reloads_in_place=in_place)


@pytest.mark.parametrize(("peer", "elapsed", "met", "why"), [
    (None, 0, False, "does not trust"),                                                   # peer never reported
    (state(trusts=False, rolled_out=True, workloads=True), 600, False, "does not trust"),  # old trust, however long
    (state(trusts=True, rolled_out=False, workloads=True), 600, False, "rolling out"),      # gate not met → wait
    (state(trusts=True, rolled_out=True, workloads=True), 0, True, "every consumer"),       # evidence, no delay needed
    (state(trusts=True, rolled_out=False, workloads=False), 10, False, "propagation"),     # no workloads: delay...
    (state(trusts=True, rolled_out=False, workloads=False), 90, True, "every consumer"),    # ...then open
    (state(trusts=True, rolled_out=False, workloads=False), -30, False, "propagation"),    # clock behind the start
    (state(trusts=True, rolled_out=True, workloads=False, in_place=True), 10, False, "reloads in place"),
    (state(trusts=True, rolled_out=True, workloads=False, in_place=True), 90, True, "every consumer"),
    (state(trusts=True, rolled_out=False, workloads=True, in_place=True), 90, False, "rolling out"),  # both kinds
    (state(trusts=True, rolled_out=True, workloads=True, in_place=True), 10, False, "reloads in place"),
    (state(trusts=True, rolled_out=True, workloads=True, in_place=True), 90, True, "every consumer"),
])
@pytest.mark.parametrize("kind", ["ca", "kid"])
def test_distribution_gate(now: datetime, peer: rot.PeerState | None, elapsed: int, met: bool, why: str,
                           kind: str) -> None:
    since = now - timedelta(seconds=elapsed)
    gate = rot.distribution_gate("CA", [(PEER, peer)], FP if kind == "ca" else "kid-next", kind,
                                 now=now, since=since, delay=DELAY)
    assert gate.met is met
    assert why in gate.message
    if not met and why == "propagation":
        assert gate.retry_at == since + DELAY, "a time-based gate says when to look again"


def test_distribution_gate_waits_for_every_consumer(now: datetime) -> None:
    ready = state(trusts=True, rolled_out=True, workloads=True)
    other = IdentityRef("jobs", "other")
    gate = rot.distribution_gate("CA", [(PEER, ready), (other, None)], FP, "ca", now=now, since=now, delay=DELAY)
    assert not gate.met and "jobs/other" in gate.message and "jobs/jobserver" not in gate.message
    assert rot.distribution_gate("CA", [], FP, "ca", now=now, since=now, delay=DELAY).met


@pytest.mark.parametrize(("workloads", "in_place", "rolled", "current", "elapsed", "met"), [
    (True, False, None, "h2", 999, False),      # nothing rolled out yet, whatever the time
    (True, False, "h1", "h2", 999, False),      # rolled out the old material only
    (True, False, "h2", "h2", 0, True),         # runs the new leaf
    (False, False, None, "h2", 30, False),      # no workloads: wait the delay
    (False, False, None, "h2", 90, True),
    (False, True, None, "h2", 30, False),       # workloads reload in place: the delay too
    (False, True, None, "h2", 90, True),
    (True, True, "h2", "h2", 30, False),        # some roll, some reload: both kinds of evidence
    (True, True, "h1", "h2", 90, False),
    (True, True, "h2", "h2", 90, True),
])
def test_own_rollout_gate(now: datetime, workloads: bool, in_place: bool, rolled: str | None, current: str,
                          elapsed: int, met: bool) -> None:
    gate = rot.own_rollout_gate(has_workloads=workloads, reloads_in_place=in_place, rolled_out_hash=rolled,
                                current_hash=current, now=now, since=now - timedelta(seconds=elapsed), delay=DELAY)
    assert gate.met is met


@pytest.mark.parametrize(("period", "grace"), [
    (timedelta(hours=720), timedelta(days=1)),          # capped at a day
    (timedelta(hours=8), timedelta(hours=2)),           # a quarter of the period
    (timedelta(hours=1), timedelta(minutes=15)),
    (timedelta(minutes=40), timedelta(minutes=10)),     # never below 10 minutes for real periods
    (timedelta(seconds=20), timedelta(seconds=5)),      # demo/test periods: a quarter
])
def test_jwt_grace_outlives_tokens(period: timedelta, grace: timedelta) -> None:
    assert rot.jwt_grace(period) == grace
    if period >= timedelta(minutes=40):
        assert rot.jwt_grace(period) > timedelta(minutes=5), "longer than the 5-minute token lifetime we issue"
