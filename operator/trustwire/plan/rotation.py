"""Rotation without a failed handshake: phase machines for the CA and the JWT signing key.

Adapted from SPIRE (prepare/activate/retire) and Linkerd (switch only once every consumer
holds the new trust): each phase advances only on *evidence*, never on hope.

CA::

    Idle ──(renewal time | rotate=ca | new key algorithm)──▶ Distributing
      next CA published beside the active one; every mTLS peer's trust bundle gains it
    Distributing ──(gate: every peer trusts next and has rolled out)──▶ Retiring
      next becomes active, the leaf is re-issued from it, the old CA stays trusted
    Retiring ──(gate: own workloads rolled out with the new leaf, or old CA expired)──▶ Idle
      the old CA is dropped from every bundle

JWT::

    Idle ──(rotationPeriod elapsed | rotate=jwt)──▶ Publishing
      next public key published to peers (verify-only); tokens still signed by the active key
    Publishing ──(gate: every token receiver trusts next kid and has rolled out)──▶ Idle
      next becomes the signing key; the previous public key stays published for a grace
      period longer than any token lifetime, then is dropped

A revoked active kid is replaced at once (security beats availability) and never kept.

The evidence is a :class:`PeerState` per peer, read by the controller from the peer's own
status (what it trusts, whether its workloads run that material). For consumers without
workloads the gate is a propagation delay measured from the phase start. All state lives
in the CA Secret (CA phases) and the credentials Secret (JWT phases), so a restarted
operator resumes exactly where it stopped. Pure: the clock is a parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from trustwire.model import IdentityRef

IDLE = "Idle"
DISTRIBUTING = "Distributing"
RETIRING = "Retiring"
PUBLISHING = "Publishing"

#: Default wait for consumers that have no workloads to report a rollout for.
DEFAULT_PROPAGATION_DELAY = timedelta(seconds=90)


@dataclasses.dataclass(frozen=True)
class PeerState:
    """What a peer reports in its status about the material it holds."""

    ref: IdentityRef
    trusted_cas: frozenset[str]
    trusted_kids: frozenset[str]
    rolled_out: bool
    #: workloads that roll when the material changes (their rollout is the evidence)
    has_workloads: bool
    #: workloads that reload the files in place (only the propagation delay is evidence)
    reloads_in_place: bool = False


@dataclasses.dataclass(frozen=True)
class Gate:
    met: bool
    message: str
    retry_at: datetime | None = None


def distribution_gate(what: str, consumers: Sequence[tuple[IdentityRef, PeerState | None]],
                      holds: str, kind: str, *, now: datetime, since: datetime, delay: timedelta) -> Gate:
    """Every consumer reports holding ``holds`` (a CA fingerprint or kid) and runs it.

    ``kind`` is ``"ca"`` or ``"kid"``. A consumer with workloads must have rolled them out
    with the material; one without workloads, or with workloads that reload files in place,
    gets ``delay`` after the phase started.
    """
    pending: list[str] = []
    retry: datetime | None = None
    for ref, state in consumers:
        trusted = (state.trusted_cas if kind == "ca" else state.trusted_kids) if state else frozenset()
        if state is None or holds not in trusted:
            pending.append(f"{ref} does not trust the next {what} yet")
        elif state.has_workloads and not state.rolled_out:
            pending.append(f"{ref} is rolling out its workloads")
        elif (state.reloads_in_place or not state.has_workloads) and now < since + delay:
            why = "reloads in place" if state.reloads_in_place else "has no workloads"
            pending.append(f"{ref} {why}; waiting for the propagation delay")
            retry = since + delay if retry is None else min(retry, since + delay)
    if pending:
        return Gate(False, "; ".join(pending), retry)
    return Gate(True, f"every consumer holds the next {what}")


def own_rollout_gate(*, has_workloads: bool, rolled_out_hash: str | None, current_hash: str | None,
                     now: datetime, since: datetime, delay: timedelta, reloads_in_place: bool = False) -> Gate:
    """The identity's own workloads run ``current_hash`` (``has_workloads``: those that roll),
    and the delay passed when none roll or some reload in place."""
    if has_workloads and not (current_hash is not None and rolled_out_hash == current_hash):
        return Gate(False, "waiting for own workloads to roll out the new certificate")
    if (reloads_in_place or not has_workloads) and now < since + delay:
        why = "workloads reload in place" if reloads_in_place else "no workloads"
        return Gate(False, f"{why}; waiting for the propagation delay", since + delay)
    return Gate(True, "own workloads rolled out" if has_workloads and not reloads_in_place
                else "propagation delay passed")


def jwt_grace(rotation_period: timedelta) -> timedelta:
    """How long a retired JWT public key stays published: longer than any token lifetime we
    issue (5 minutes by default), at most a day, and a quarter of the rotation period."""
    return max(min(rotation_period / 4, timedelta(days=1)), timedelta(minutes=10)) \
        if rotation_period >= timedelta(minutes=40) else rotation_period / 4


def gate_with_outsiders(gate: Gate, consumers: Sequence[object], now: datetime, since: datetime,
                        delay: timedelta) -> Gate:
    """With no in-cluster consumer, parties outside the cluster still read the public
    ConfigMap: give them the propagation delay before switching."""
    if consumers or not gate.met or now >= since + delay:
        return gate
    return Gate(False, "no peers; waiting the propagation delay for outside consumers", since + delay)
