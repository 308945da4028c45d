"""trustwire.plan.ca: each check alone, then the phase machine Idle → Distributing → Retiring → Idle."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.plan.conftest import FixedKeys
from trustwire import names, pki
from trustwire.model import IdentityRef, parse_identity
from trustwire.pki import KeyAlgorithm
from trustwire.plan import ca, rotation
from trustwire.plan.checks import evaluate
from trustwire.plan.material import CAMaterial, StoredObject
from trustwire.plan.reasons import Reason

NOW = FIXED_NOW
PEER = IdentityRef("jobs", "jobserver")
DELAY = timedelta(seconds=90)


@pytest.fixture(scope="module")
def world(real_key: Callable[..., pki.PrivateKey]) -> dict[str, Any]:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {}}
    ident = parse_identity(body)
    key = real_key(KeyAlgorithm.ECDSAP256, 710)
    material = CAMaterial.of(pki.create_ca(key, common_name="dgc CA", now=NOW - timedelta(days=1),
                                           lifetime=timedelta(days=365)), key)
    stored = StoredObject("dgc-trustwire-ca", True, "dgc", {"tls.crt": material.cert_pem, "tls.key": material.key_pem})
    return {"ident": ident, "ca": material, "stored": stored}


def _stored(world: dict[str, Any], **data: bytes) -> StoredObject:
    good: StoredObject = world["stored"]
    return dataclasses.replace(good, data={**good.data, **data})


@pytest.mark.parametrize(
    ("check", "make", "reason", "words"),
    [
        (ca.ca_missing, lambda w: None, Reason.CA_ISSUED, "no CA yet"),
        (ca.ca_unloadable, lambda w: _stored(w, **{"tls.crt": b"junk"}), Reason.CA_REPAIRED, "was unusable"),
        (ca.ca_invalid, lambda w: w["stored"], Reason.CA_REPAIRED, "was unusable"),
    ],
    ids=["ca_missing", "ca_unloadable", "ca_invalid"],
)
def test_each_reissue_check_alone(world: dict[str, Any], check: Any, make: Any, reason: Reason, words: str) -> None:
    now = NOW + timedelta(days=400) if check is ca.ca_invalid else NOW  # expired
    verdict = check(ca.StoredCA(make(world), now))
    assert verdict is not None and verdict.reason is reason and words in verdict.message
    assert check(ca.StoredCA(world["stored"], NOW)) is None
    assert check in ca.CA_REISSUE


@pytest.mark.parametrize(
    ("check", "changes", "words"),
    [
        (ca.rotation_requested, {"rotate": True}, f"requested with the {names.ROTATE_ANNOTATION} annotation"),
        (ca.renewal_time_reached, {"now": NOW + timedelta(days=340)}, "reached"),
        (ca.key_algorithm_changed, {"algorithm": KeyAlgorithm.Ed25519}, "spec.ca.keyAlgorithm is now Ed25519"),
    ],
    ids=["rotation_requested", "renewal_time_reached", "key_algorithm_changed"],
)
def test_each_rotation_trigger_alone(world: dict[str, Any], check: Any, changes: dict[str, Any], words: str) -> None:
    ident = world["ident"]
    quiet = ca.RotationInput(ident, world["ca"], NOW, False)
    if "algorithm" in changes:
        ident = dataclasses.replace(ident, ca=dataclasses.replace(ident.ca, key_algorithm=changes["algorithm"]))
    fired = ca.RotationInput(ident, world["ca"], changes.get("now", NOW), changes.get("rotate", False))
    verdict = check(fired)
    assert verdict is not None and verdict.reason is Reason.CA_ROTATION_DISTRIBUTING and words in verdict.message
    assert check(quiet) is None and evaluate(ca.ROTATION_TRIGGERS, quiet) is None


def _evidence(world: dict[str, Any], stored: StoredObject | None, *, rotate: bool = False,
              consumers: tuple[tuple[IdentityRef, rotation.PeerState | None], ...] = ()) -> ca.CAEvidence:
    return ca.CAEvidence(world["ident"], stored, rotate, consumers, DELAY)


def test_a_missing_ca_is_issued_from_the_key_source(world: dict[str, Any], fixed_keys: Callable[[], FixedKeys]) -> None:
    keys = fixed_keys()
    step = ca.observe(_evidence(world, None), NOW, keys)
    assert step.state.phase is ca.CAPhase.IDLE and keys.requests == ["private_key ECDSAP256", "serial"]
    assert [(e.type, e.reason, e.message) for e in step.events] == [
        ("Normal", "CAIssued", "CA serial 70000000 issued: no CA yet")]


def test_phases_distributing_retiring_idle(world: dict[str, Any], fixed_keys: Callable[[], FixedKeys]) -> None:
    keys = fixed_keys()
    start = ca.observe(_evidence(world, world["stored"]), NOW, keys)
    assert start.state.phase is ca.CAPhase.IDLE and start.events == ()
    # Idle → Distributing on request; the one peer does not hold the next CA yet
    unaware = rotation.PeerState(PEER, frozenset(), frozenset(), rolled_out=True, has_workloads=True)
    step = ca.advance(start.state, _evidence(world, world["stored"], rotate=True, consumers=((PEER, unaware),)),
                      NOW, keys)
    assert step.state.phase is ca.CAPhase.DISTRIBUTING and [e.reason for e in step.events] == ["CARotationDistributing"]
    assert step.wait is not None and "does not trust the next CA yet" in step.wait.message
    stored = ca.ca_object(world["ident"], step.state)
    assert stored.annotations == {names.CA_SINCE_ANNOTATION: "2031-03-14T09:26:53Z"}
    # Distributing → Retiring once the peer trusts and runs it (resumed from the stored Secret)
    assert step.state.next is not None
    holder = dataclasses.replace(unaware, trusted_cas=frozenset({pki.fingerprint_sha256(step.state.next.cert)}))
    later = NOW + timedelta(minutes=5)
    resumed = ca.observe(_evidence(world, StoredObject(stored.name, True, "dgc", stored.data, stored.annotations)),
                         later, keys)
    assert resumed.state.phase is ca.CAPhase.DISTRIBUTING and resumed.state.since == NOW
    active = ca.advance(resumed.state, _evidence(world, None, consumers=((PEER, holder),)), later, keys)
    assert active.state.phase is ca.CAPhase.RETIRING and [e.reason for e in active.events] == ["CARotationActivated"]
    assert active.state.active.cert == step.state.next.cert and active.state.previous == world["ca"].cert
    # Retiring holds until the own workloads roll out, then → Idle
    waiting = ca.retire(active, rotation.Gate(False, "waiting for own workloads"), later)
    assert waiting.state.phase is ca.CAPhase.RETIRING and waiting.wait is not None
    done = ca.retire(active, rotation.Gate(True, "own workloads rolled out"), later)
    assert done.state.phase is ca.CAPhase.IDLE and [e.reason for e in done.events][-1] == "CARotationRetired"
    assert keys.requests == ["private_key ECDSAP256", "serial"]  # only the next CA was generated


def test_a_bring_your_own_ca_is_checked_not_issued(world: dict[str, Any]) -> None:
    ident = world["ident"]
    assert ca.byo(ident, None, NOW)[1].reason == "CASecretNotFound"
    material, check = ca.byo(ident, world["stored"], NOW)
    assert material is not None and check.ok
    material, check = ca.byo(ident, world["stored"], NOW + timedelta(days=400))
    assert material is None and (check.reason, check.stalled) == ("CASecretInvalid", True)
