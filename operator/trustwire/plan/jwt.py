"""The JWT signing key: generated, repaired, rotated through ``Publishing`` with a grace period.

Phases::

    Idle ──(a PUBLISH_TRIGGERS check fires)──▶ Publishing ──(token receivers hold next)──▶ Idle
      the next public key is published (verify-only) while the active key still signs; on
      activation the old public key stays published until ``previous-until`` (the grace)

The active key is replaced at once when a :data:`JWT_TRIGGERS` check fires (missing,
damaged, reused, revoked: security beats availability). State lives in the credentials
Secret (``jwt-next.key`` and the annotations), so a restarted operator resumes a phase.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from trustwire import names, pki
from trustwire.model import IdentityRef, ServiceIdentity
from trustwire.pki.keys import public_key_der
from trustwire.plan import rotation as rot
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.keys import KeySource
from trustwire.plan.material import StoredObject, to_json
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.plan.status import JwtRotationStatus, JwtStatus
from trustwire.times import parse_time, rfc3339

ACTIVE, NEXT = "jwt.key", "jwt-next.key"


class JwtPhase(enum.StrEnum):
    IDLE = rot.IDLE
    PUBLISHING = rot.PUBLISHING


@dataclasses.dataclass(frozen=True)
class JwtMaterial:
    key: pki.PrivateKey
    key_pem: bytes
    public: dict[str, str]
    private: dict[str, str]
    kid: str
    issued_at: datetime
    algorithm: pki.JwtAlgorithm

    @classmethod
    def of(cls, algorithm: pki.JwtAlgorithm, key: pki.PrivateKey, issued: datetime) -> JwtMaterial:
        public = pki.public_jwk(key, algorithm)
        return cls(key, pki.private_key_to_pem(key), public, pki.private_jwk(key, algorithm), public["kid"],
                   issued, algorithm)


def stored_algorithm(credentials: StoredObject) -> pki.JwtAlgorithm | None:
    try:
        return pki.JwtAlgorithm(json.loads(credentials.data.get("jwt.jwk", b"{}")).get("alg"))
    except (ValueError, AttributeError):
        return None


def stored_kty(credentials: StoredObject) -> str | None:
    try:
        kty = json.loads(credentials.data.get("jwt.jwk", b"{}")).get("kty")
    except (ValueError, AttributeError):
        return None
    return str(kty) if kty is not None else None


def key_algorithm(identity: ServiceIdentity | None, credentials: StoredObject, key_name: str,
                  key: pki.PrivateKey) -> pki.JwtAlgorithm | None:
    """The algorithm a stored JWT key is used with: the spec's, or — for the active key after
    ``spec.jwt.algorithm`` changed — the one it was issued for (``jwt.jwk``), so it keeps
    signing and stays published until its successor in the new algorithm is activated."""
    if identity is not None and pki.jwt_algorithm_accepts(identity.jwt.algorithm, key):
        return identity.jwt.algorithm
    if key_name != ACTIVE and identity is not None:
        return None
    stored = stored_algorithm(credentials)  # parsed only when the spec's does not fit
    return stored if stored is not None and pki.jwt_algorithm_accepts(stored, key) else None


def previous_jwk(annotations: Mapping[str, str]) -> tuple[dict[str, str] | None, datetime | None]:
    """The retired public JWK still published during its grace period (public data only)."""
    until = parse_time(annotations.get(names.JWT_PREVIOUS_UNTIL_ANNOTATION))
    try:
        jwk = json.loads(annotations.get(names.JWT_PREVIOUS_ANNOTATION, "null"))
    except ValueError:
        return None, None
    if not isinstance(jwk, dict) or until is None:
        return None, None
    return {str(k): str(v) for k, v in jwk.items() if k in pki.jwk.PUBLIC_MEMBERS}, until


# --------------------------------------------------------------------------------------
# Named checks on a stored key
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StoredKey:
    identity: ServiceIdentity
    stored: StoredObject | None
    key_name: str = ACTIVE
    #: DER public keys of the CA and TLS keys, which a signing key must not be
    reserved: frozenset[bytes] = frozenset()

    @functools.cached_property
    def key(self) -> pki.PrivateKey | str:
        assert self.stored is not None
        try:
            return pki.load_private_key(self.stored.data[self.key_name])
        except pki.PKIError as exc:
            return str(exc)

    @functools.cached_property
    def material(self) -> JwtMaterial:
        assert self.stored is not None and not isinstance(self.key, str)
        algorithm = key_algorithm(self.identity, self.stored, self.key_name, self.key)
        issued = parse_time(self.stored.annotations.get(self.issued_annotation))
        assert algorithm is not None and issued is not None
        return JwtMaterial.of(algorithm, self.key, issued)

    @property
    def issued_annotation(self) -> str:
        return names.JWT_ISSUED_ANNOTATION if self.key_name == ACTIVE else names.JWT_NEXT_ANNOTATION


def key_missing(s: StoredKey) -> Verdict | None:
    if s.stored is None or s.key_name not in s.stored.data:
        return Verdict(Reason.JWT_KEY_GENERATED, "no JWT key yet")
    return None


def key_empty(s: StoredKey) -> Verdict | None:
    assert s.stored is not None
    if not s.stored.data[s.key_name]:
        return Verdict(Reason.JWT_KEY_REPAIRED, f"the stored {s.key_name} was empty or not valid base64")
    return None


def key_was_symmetric(s: StoredKey) -> Verdict | None:
    """The stored key is an HMAC key (``spec.jwt.algorithm`` was HS*): replaced at once, as
    nobody verifies it but the identity itself."""
    assert s.stored is not None
    if s.key_name == ACTIVE and stored_kty(s.stored) == "oct":
        return Verdict(Reason.JWT_KEY_ROTATED, f"spec.jwt.algorithm is now {s.identity.jwt.algorithm}")
    return None


def key_unusable(s: StoredKey) -> Verdict | None:
    if isinstance(s.key, str):
        return Verdict(Reason.JWT_KEY_REPAIRED, f"the stored JWT key was unusable ({s.key})")
    return None


def algorithm_changed(s: StoredKey) -> Verdict | None:
    assert s.stored is not None and not isinstance(s.key, str)
    if key_algorithm(s.identity, s.stored, s.key_name, s.key) is None:
        return Verdict(Reason.JWT_KEY_ROTATED, f"spec.jwt.algorithm is now {s.identity.jwt.algorithm}")
    return None


def issue_time_missing(s: StoredKey) -> Verdict | None:
    assert s.stored is not None
    if parse_time(s.stored.annotations.get(s.issued_annotation)) is None:
        return Verdict(Reason.JWT_KEY_REPAIRED, "the stored JWT key has no usable issue time")
    return None


def witnesses_disagree(s: StoredKey) -> Verdict | None:
    """jwt.kid and jwt.jwk are both derived from jwt.key: when *both* name another key,
    jwt.key itself was replaced (one edited witness alone is simply restored)."""
    assert s.stored is not None
    data = s.stored.data
    if "jwt.kid" not in data or "jwt.jwk" not in data:
        return None
    kid = s.material.kid
    try:
        jwk_kid = json.loads(data["jwt.jwk"]).get("kid")
    except (ValueError, AttributeError):
        jwk_kid = None
    if data["jwt.kid"].decode("utf-8", "replace").strip() != kid and jwk_kid != kid:
        return Verdict(Reason.JWT_KEY_REPAIRED, "jwt.key matches neither jwt.kid nor jwt.jwk "
                                               "(the key was replaced or swapped)")
    return None


def key_reused(s: StoredKey) -> Verdict | None:
    if public_key_der(s.material.key) in s.reserved:
        return Verdict(Reason.JWT_KEY_REPAIRED,
                       "jwt.key is the same key as the CA or TLS key; a signing key must be its own")
    return None


def key_revoked(s: StoredKey) -> Verdict | None:
    kid = s.material.kid
    if kid in s.identity.jwt.revoked_kids:
        return Verdict(Reason.JWT_KEY_ROTATED, f"the active key {kid} is listed in spec.jwt.revokedKids; "
                                               "replaced at once")
    return None


#: Whether a stored key loads at all (for ``jwt-next.key``, and the start of the active chain).
KEY_UNUSABLE = (key_missing, key_empty, key_was_symmetric, key_unusable, algorithm_changed, issue_time_missing)
#: Why the active signing key is replaced at once.
JWT_TRIGGERS = (*KEY_UNUSABLE, witnesses_disagree, key_reused, key_revoked)


@dataclasses.dataclass(frozen=True)
class PublishInput:
    identity: ServiceIdentity
    active: JwtMaterial
    now: datetime
    rotate: bool


def spec_algorithm_changed(p: PublishInput) -> Verdict | None:
    wanted = p.identity.jwt.algorithm
    return None if p.active.algorithm == wanted else \
        Verdict(Reason.JWT_KEY_PUBLISHING, f"spec.jwt.algorithm is now {wanted}")


def rotation_requested(p: PublishInput) -> Verdict | None:
    return Verdict(Reason.JWT_KEY_PUBLISHING, "rotation requested") if p.rotate else None


def rotation_period_elapsed(p: PublishInput) -> Verdict | None:
    if p.now >= p.active.issued_at + p.identity.jwt.rotation_period:
        return Verdict(Reason.JWT_KEY_PUBLISHING, "spec.jwt.rotationPeriod elapsed")
    return None


#: Why an idle signing key gets a successor published.
PUBLISH_TRIGGERS = (spec_algorithm_changed, rotation_requested, rotation_period_elapsed)


# --------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class JwtState:
    active: JwtMaterial
    next: JwtMaterial | None = None
    previous: dict[str, str] | None = None
    previous_until: datetime | None = None

    @property
    def phase(self) -> JwtPhase:
        return JwtPhase.PUBLISHING if self.next is not None else JwtPhase.IDLE


@dataclasses.dataclass(frozen=True)
class JwtEvidence:
    identity: ServiceIdentity
    stored: StoredObject | None
    reserved: frozenset[bytes]
    rotate: bool
    #: the peers that accept our tokens, with what they report holding
    receivers: Sequence[tuple[IdentityRef, rot.PeerState | None]]
    propagation_delay: timedelta
    #: the credentials Secret is written this pass (a key generated otherwise is stored nowhere)
    writable: bool


@dataclasses.dataclass(frozen=True)
class JwtStep:
    state: JwtState
    events: tuple[PlannedEvent, ...] = ()
    wait: rot.Gate | None = None


def _fresh(ident: ServiceIdentity, now: datetime, keys: KeySource) -> JwtMaterial:
    return JwtMaterial.of(ident.jwt.algorithm, keys.jwt_key(ident.jwt.algorithm), now)


def observe(ev: JwtEvidence, now: datetime, keys: KeySource) -> JwtStep | None:
    """The stored keys, or a fresh active key when a JWT_TRIGGERS check fires (None when no
    key can be stored this pass)."""
    ident = ev.identity
    active = StoredKey(ident, ev.stored, ACTIVE, ev.reserved)
    verdict = evaluate(JWT_TRIGGERS, active)
    if verdict is None:
        upcoming = StoredKey(ident, ev.stored, NEXT)
        previous, until = previous_jwk(ev.stored.annotations if ev.stored else {})
        return JwtStep(JwtState(active.material, upcoming.material if evaluate(KEY_UNUSABLE, upcoming) is None
                                else None, previous, until))
    if not ev.writable:
        return None
    fresh = _fresh(ident, now, keys)
    return JwtStep(JwtState(fresh), (PlannedEvent.of(
        verdict.reason, f"JWT key {fresh.kid} ({ident.jwt.algorithm}) generated: {verdict.message}"),))


def advance(step: JwtStep, ev: JwtEvidence, now: datetime, keys: KeySource) -> JwtStep:
    """Idle → Publishing on a trigger; Publishing → Idle once every token receiver holds next."""
    ident, state, events, wait = ev.identity, step.state, list(step.events), None
    if state.next is not None and state.next.kid in ident.jwt.revoked_kids:
        state = dataclasses.replace(state, next=None)
    verdict = evaluate(PUBLISH_TRIGGERS, PublishInput(ident, state.active, now, ev.rotate))
    if state.next is None and ev.writable and verdict is not None:
        state = dataclasses.replace(state, next=_fresh(ident, now, keys))
        assert state.next is not None
        events.append(PlannedEvent.of(verdict.reason, f"next JWT key {state.next.kid} published to peers "
                                                      f"for verification ({verdict.message})"))
    if state.next is not None:
        nxt = state.next
        gate = rot.gate_with_outsiders(rot.distribution_gate(
            "JWT key", ev.receivers, nxt.kid, "kid", now=now, since=nxt.issued_at, delay=ev.propagation_delay),
            ev.receivers, now, nxt.issued_at, ev.propagation_delay)
        if gate.met:
            until = now + rot.jwt_grace(ident.jwt.rotation_period)
            state = JwtState(dataclasses.replace(nxt, issued_at=now), None, state.active.public, until)
            events.append(PlannedEvent.of(Reason.JWT_KEY_ACTIVATED,
                                          f"JWT key {nxt.kid} now signs tokens ({gate.message}); the previous "
                                          f"key stays published until {rfc3339(until)}"))
        else:
            wait = gate
    previous, grace_end = state.previous, state.previous_until
    if previous is not None and (grace_end is None or now >= grace_end
                                 or previous.get("kid") in ident.jwt.revoked_kids):
        state = dataclasses.replace(state, previous=None)
    return JwtStep(state, tuple(events), wait)


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
def own_jwks(state: JwtState) -> list[dict[str, str]]:
    keys = [state.active.public]
    if state.next is not None:
        keys.append(state.next.public)
    previous = state.previous
    if previous is not None and previous.get("kid") not in (state.active.kid, state.next.kid if state.next else None):
        keys.append(dict(previous))
    return keys


def rotation_time(ident: ServiceIdentity, state: JwtState) -> datetime:
    return state.active.issued_at + ident.jwt.rotation_period


def stored_content(state: JwtState) -> tuple[dict[str, bytes], dict[str, str]]:
    """The credentials Secret's JWT files and the annotations that keep the phase."""
    data = {"jwt.key": state.active.key_pem, "jwt.jwk": to_json(state.active.private),
            "jwt.kid": state.active.kid.encode()}
    annotations = {names.JWT_ISSUED_ANNOTATION: rfc3339(state.active.issued_at)}
    if state.next is not None:
        data["jwt-next.key"] = state.next.key_pem
        annotations[names.JWT_NEXT_ANNOTATION] = rfc3339(state.next.issued_at)
    if state.previous is not None and state.previous_until is not None:
        annotations[names.JWT_PREVIOUS_ANNOTATION] = json.dumps(state.previous, sort_keys=True)
        annotations[names.JWT_PREVIOUS_UNTIL_ANNOTATION] = rfc3339(state.previous_until)
    return data, annotations


def deadlines(ident: ServiceIdentity, state: JwtState) -> list[datetime]:
    until = state.previous_until if state.previous is not None else None
    return [*([until] if until is not None else []), rotation_time(ident, state)]


def jwt_status(ident: ServiceIdentity, state: JwtState) -> JwtStatus:
    return JwtStatus(state.active.kid, str(state.active.algorithm), tuple(j["kid"] for j in own_jwks(state)),
                     rfc3339(rotation_time(ident, state)))


def rotation_status(state: JwtState | None, wait: rot.Gate | None) -> JwtRotationStatus:
    if state is None:
        return JwtRotationStatus(JwtPhase.IDLE.value)
    nxt, previous = state.next, state.previous
    return JwtRotationStatus(state.phase.value, rfc3339(nxt.issued_at) if nxt else None, nxt.kid if nxt else None,
                             previous.get("kid") if previous else None, wait.message if wait else None)
