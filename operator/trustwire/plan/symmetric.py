"""The symmetric JWT key of an identity whose ``spec.jwt.algorithm`` is HS256, HS384 or HS512.

Such a key signs and verifies, so whoever holds it can mint the identity's tokens: it lives
in the identity's credentials Secret only (``jwt.key``, ``jwt.jwk``, ``jwt.kid``), is in no
JWKS, no public ConfigMap and no peer's trust Secret, and a relationship that would send the
identity's tokens to a peer is refused (:func:`trustwire.plan.relationship.symmetric_jwt`).
It is generated once and kept — every token it signed stays valid until the key is replaced:
when it is missing or damaged, when ``spec.jwt.algorithm`` names another algorithm, or on
``trustwire.io/rotate: jwt`` (there is no grace: the old key's tokens stop verifying).
"""

from __future__ import annotations

import dataclasses
import json

from trustwire import pki
from trustwire.model import ServiceIdentity
from trustwire.plan.keys import KeySource
from trustwire.plan.material import StoredObject, to_json
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.plan.status import JwtStatus


@dataclasses.dataclass(frozen=True)
class HmacStep:
    key: bytes
    jwk: dict[str, str]
    events: tuple[PlannedEvent, ...] = ()

    @property
    def kid(self) -> str:
        return self.jwk["kid"]


def _stored_algorithm(credentials: StoredObject) -> str | None:
    try:
        alg = json.loads(credentials.data.get("jwt.jwk", b"{}")).get("alg")
    except (ValueError, AttributeError):
        return None
    return str(alg) if alg is not None else None


def _replacement(algorithm: pki.HmacAlgorithm, credentials: StoredObject | None,
                 rotate: bool) -> tuple[Reason, str] | None:
    """Why the stored key is replaced, or ``None`` when it is kept."""
    key = credentials.data.get("jwt.key") if credentials is not None else None
    if credentials is None or key is None:
        return Reason.JWT_KEY_GENERATED, "no JWT key yet"
    if _stored_algorithm(credentials) != algorithm and not pki.hmac_key_fits(key, algorithm):
        return Reason.JWT_KEY_ROTATED, f"spec.jwt.algorithm is now {algorithm}"
    if not pki.hmac_key_fits(key, algorithm):
        return Reason.JWT_KEY_REPAIRED, f"the stored jwt.key is not a {algorithm} key"
    return (Reason.JWT_KEY_ROTATED, "rotation requested") if rotate else None


def plan_hmac(ident: ServiceIdentity, credentials: StoredObject | None, keys: KeySource,
              writable: bool, rotate: bool) -> HmacStep | None:
    """The kept key, or a fresh one (``None`` when a fresh one could not be stored this pass)."""
    algorithm = ident.jwt.hmac
    assert algorithm is not None
    why = _replacement(algorithm, credentials, rotate)
    if why is None:
        assert credentials is not None
        key = credentials.data["jwt.key"]
        return HmacStep(key, pki.hmac_jwk(key, algorithm))
    if not writable:
        return None
    key = keys.hmac_key(algorithm)
    jwk = pki.hmac_jwk(key, algorithm)
    reason, message = why
    return HmacStep(key, jwk, (PlannedEvent.of(reason, f"JWT key {jwk['kid']} ({algorithm}) generated: {message}"),))


def stored_content(step: HmacStep) -> dict[str, bytes]:
    """The credentials Secret's JWT files: the key, its ``oct`` JWK and its kid."""
    return {"jwt.key": step.key, "jwt.jwk": to_json(step.jwk), "jwt.kid": step.kid.encode()}


def hmac_status(step: HmacStep) -> JwtStatus:
    """Never rotated by time and never published: no published kids, no rotation time."""
    return JwtStatus(step.kid, step.jwk["alg"], (), None)
