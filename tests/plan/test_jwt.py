"""trustwire.plan.jwt: each check alone, then the phase machine Idle → Publishing → Idle with its grace."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.plan.conftest import FixedKeys
from trustwire import names, pki
from trustwire.model import IdentityRef, parse_identity
from trustwire.pki import JwtAlgorithm, KeyAlgorithm
from trustwire.pki.keys import public_key_der
from trustwire.plan import jwt, rotation
from trustwire.plan.checks import evaluate
from trustwire.plan.material import StoredObject, to_json
from trustwire.plan.reasons import Reason
from trustwire.times import rfc3339

NOW = FIXED_NOW
PEER = IdentityRef("jobs", "jobserver")


@pytest.fixture(scope="module")
def world(real_key: Callable[..., pki.PrivateKey]) -> dict[str, Any]:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {}}
    ident = parse_identity(body)
    key = real_key(JwtAlgorithm.ES256, 720)
    material = jwt.JwtMaterial.of(JwtAlgorithm.ES256, key, NOW - timedelta(hours=1))
    stored = StoredObject("dgc-trustwire-credentials", True, "dgc",
                          {"jwt.key": material.key_pem, "jwt.jwk": to_json(material.private),
                           "jwt.kid": material.kid.encode()},
                          {names.JWT_ISSUED_ANNOTATION: rfc3339(material.issued_at)})
    return {"ident": ident, "jwt": material, "stored": stored, "other": real_key(JwtAlgorithm.ES256, 721),
            "ed": real_key(JwtAlgorithm.EdDSA, 722), "tls": real_key(KeyAlgorithm.ECDSAP256, 723)}


def _key(world: dict[str, Any], *, data: dict[str, bytes] | None = None, annotations: dict[str, str] | None = None,
         revoked: tuple[str, ...] = (), reserved: frozenset[bytes] = frozenset()) -> jwt.StoredKey:
    stored: StoredObject = world["stored"]
    stored = dataclasses.replace(stored, data={**stored.data, **(data or {})},
                                 annotations={**stored.annotations, **(annotations or {})})
    ident = world["ident"]
    ident = dataclasses.replace(ident, jwt=dataclasses.replace(ident.jwt, revoked_kids=revoked))
    return jwt.StoredKey(ident, stored, jwt.ACTIVE, reserved)


CASES: list[tuple[str, Callable[[dict[str, Any]], jwt.StoredKey], Reason, str]] = [
    ("key_missing", lambda w: jwt.StoredKey(w["ident"], None), Reason.JWT_KEY_GENERATED, "no JWT key yet"),
    ("key_empty", lambda w: _key(w, data={"jwt.key": b""}), Reason.JWT_KEY_REPAIRED, "was empty"),
    ("key_unusable", lambda w: _key(w, data={"jwt.key": b"junk"}), Reason.JWT_KEY_REPAIRED, "was unusable"),
    ("algorithm_changed", lambda w: _key(w, data={"jwt.key": pki.private_key_to_pem(w["ed"]), "jwt.jwk": b"{}"}),
     Reason.JWT_KEY_ROTATED, "spec.jwt.algorithm is now ES256"),
    ("issue_time_missing", lambda w: _key(w, annotations={names.JWT_ISSUED_ANNOTATION: "yesterday"}),
     Reason.JWT_KEY_REPAIRED, "no usable issue time"),
    ("witnesses_disagree", lambda w: _key(w, data={"jwt.key": pki.private_key_to_pem(w["other"])}),
     Reason.JWT_KEY_REPAIRED, "matches neither jwt.kid nor jwt.jwk"),
    ("key_reused", lambda w: _key(w, reserved=frozenset({public_key_der(w["jwt"].key)})),
     Reason.JWT_KEY_REPAIRED, "the same key as the CA or TLS key"),
    ("key_revoked", lambda w: _key(w, revoked=(w["jwt"].kid,)), Reason.JWT_KEY_ROTATED, "replaced at once"),
]


@pytest.mark.parametrize(("name", "make", "reason", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_check_alone(world: dict[str, Any], name: str, make: Callable[[dict[str, Any]], jwt.StoredKey],
                          reason: Reason, words: str) -> None:
    check = getattr(jwt, name)
    assert check in jwt.JWT_TRIGGERS
    verdict = check(make(world))
    assert verdict is not None and verdict.reason is reason and words in verdict.message
    assert check(_key(world)) is None


@pytest.mark.parametrize(
    ("name", "changes", "words"),
    [("spec_algorithm_changed", {"algorithm": JwtAlgorithm.EdDSA}, "spec.jwt.algorithm is now EdDSA"),
     ("rotation_requested", {"rotate": True}, "rotation requested"),
     ("rotation_period_elapsed", {"later": timedelta(days=31)}, "spec.jwt.rotationPeriod elapsed")],
)
def test_each_publish_trigger_alone(world: dict[str, Any], name: str, changes: dict[str, Any], words: str) -> None:
    ident = world["ident"]
    quiet = jwt.PublishInput(ident, world["jwt"], NOW, False)
    if "algorithm" in changes:
        ident = dataclasses.replace(ident, jwt=dataclasses.replace(ident.jwt, algorithm=changes["algorithm"]))
    fired = jwt.PublishInput(ident, world["jwt"], NOW + changes.get("later", timedelta()), changes.get("rotate", False))
    verdict = getattr(jwt, name)(fired)
    assert verdict is not None and verdict.reason is Reason.JWT_KEY_PUBLISHING and verdict.message == words
    assert evaluate(jwt.PUBLISH_TRIGGERS, quiet) is None


def _evidence(world: dict[str, Any], stored: StoredObject | None, *, rotate: bool = False, writable: bool = True,
              receivers: tuple[tuple[IdentityRef, rotation.PeerState | None], ...] = ()) -> jwt.JwtEvidence:
    return jwt.JwtEvidence(world["ident"], stored, frozenset(), rotate, receivers, timedelta(seconds=90), writable)


def test_no_key_is_generated_when_it_could_not_be_stored(world: dict[str, Any],
                                                          fixed_keys: Callable[[], FixedKeys]) -> None:
    keys = fixed_keys()
    assert jwt.observe(_evidence(world, None, writable=False), NOW, keys) is None and keys.requests == []
    step = jwt.observe(_evidence(world, None), NOW, keys)
    assert step is not None and [(e.type, e.reason) for e in step.events] == [("Normal", "JwtKeyGenerated")]
    assert keys.requests == ["jwt_key ES256"]


def test_phases_publishing_then_idle_with_grace(world: dict[str, Any], fixed_keys: Callable[[], FixedKeys]) -> None:
    keys = fixed_keys()
    first = jwt.observe(_evidence(world, world["stored"]), NOW, keys)
    assert first is not None and first.state.phase is jwt.JwtPhase.IDLE
    unaware = rotation.PeerState(PEER, frozenset(), frozenset(), rolled_out=True, has_workloads=False)
    publishing = jwt.advance(first, _evidence(world, world["stored"], rotate=True, receivers=((PEER, unaware),)),
                             NOW, keys)
    assert publishing.state.phase is jwt.JwtPhase.PUBLISHING and publishing.wait is not None
    assert [e.reason for e in publishing.events] == ["JwtKeyPublishing"]
    nxt = publishing.state.next
    assert nxt is not None and [j["kid"] for j in jwt.own_jwks(publishing.state)] == [world["jwt"].kid, nxt.kid]
    holder = dataclasses.replace(unaware, trusted_kids=frozenset({nxt.kid}))
    later = NOW + timedelta(minutes=2)
    active = jwt.advance(publishing, _evidence(world, None, receivers=((PEER, holder),)), later, keys)
    assert active.state.phase is jwt.JwtPhase.IDLE and active.state.active.kid == nxt.kid
    assert active.state.previous is not None and active.state.previous["kid"] == world["jwt"].kid
    assert active.events[-1].reason == "JwtKeyActivated"
    _, annotations = jwt.stored_content(active.state)
    assert json.loads(annotations[names.JWT_PREVIOUS_ANNOTATION])["kid"] == world["jwt"].kid
    # after the grace the previous key is dropped
    assert active.state.previous_until is not None
    after = jwt.advance(jwt.JwtStep(active.state), _evidence(world, None), active.state.previous_until, keys)
    assert after.state.previous is None
    assert keys.requests == ["jwt_key ES256"]
