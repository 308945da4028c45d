"""Signing and verifying JWTs between identities, with an injected clock.

Why not just ``jwt.decode``: PyJWT reads the wall clock and lets the caller pass a
list of acceptable algorithms. Here the *verifier's JWK* decides the algorithm (the
token header must agree, so ``none``/HS* downgrades against an asymmetric key are
impossible), the key is selected by ``kid`` from the peer's published JWKS, revoked
kids are refused before any cryptography runs, and time checks use the ``now`` the
caller passes, with a leeway capped at 5 minutes. PyJWT is used only for the JWS
signature itself (``PyJWS``), which it does well.

Claim rules (RFC 7519): ``exp`` is required; ``nbf`` and ``iat`` must not be in the
future beyond the leeway; ``iss`` must equal ``issuer`` when one is given; if
``audience`` is given the token's ``aud`` (string or list) must contain it, and if
``audience`` is None a token that *carries* ``aud`` is refused (§4.1.3: a recipient
that does not identify with the audience must reject the token).

Scopes follow RFC 9068 §2.2.3 / RFC 8693 §4.2: one ``scope`` claim, a space-separated
string. :func:`access_token_claims` builds it and :func:`require_scopes` checks that a
token grants every scope a resource server demands (``verify_token(..., scopes=…)``).

Every failure raises :class:`TokenError` whose message says why (expired, wrong
audience, revoked kid, bad signature, unknown kid, …) and never echoes the token.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from trustwire.pki.certs import require_utc
from trustwire.pki.errors import PKIError
from trustwire.pki.jwk import (
    JwtAlgorithm,
    b64url_decode,
    jwt_algorithm_of_jwk,
    public_key_from_jwk,
    require_jwt_key,
)
from trustwire.pki.keys import PrivateKey

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_LIFETIME",
    "MAX_LEEWAY",
    "SHARED_SECRET_BYTES",
    "TokenError",
    "access_token_claims",
    "generate_shared_secret",
    "granted_scopes",
    "require_scopes",
    "sign_hs256",
    "sign_token",
    "verify_hs256",
    "verify_token",
]

DEFAULT_LIFETIME = timedelta(minutes=5)
DEFAULT_LEEWAY = timedelta(seconds=60)
MAX_LEEWAY = timedelta(minutes=5)
SHARED_SECRET_BYTES = 32
_RESERVED_TIME_CLAIMS = ("iat", "nbf", "exp")
#: Claims :func:`access_token_claims` sets itself; ``extra`` may not override them.
_RESERVED_ACCESS_CLAIMS = ("iss", "sub", "aud", "scope", "jti", *_RESERVED_TIME_CLAIMS)


class TokenError(ValueError):
    """A token was refused; the message says why (never contains the token or key material)."""


def generate_shared_secret() -> bytes:
    """32 random bytes (256 bits, the HS256 minimum of RFC 7518 §3.2) from :mod:`secrets`."""
    return secrets.token_bytes(SHARED_SECRET_BYTES)


def _scope_token(scope: str) -> bool:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return bool(scope) and all(c == "!" or "#" <= c <= "[" or "]" <= c <= "~" for c in scope)


def access_token_claims(
    *, issuer: str, subject: str, audience: str | Sequence[str], scopes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims of an access token: ``iss``, ``sub``, ``aud``, a space-separated ``scope``
    (omitted when empty), a random ``jti``, and ``extra`` (which may not set any of those).

    The time claims are added by :func:`sign_token`. :class:`PKIError` on an empty issuer,
    subject or audience, a scope that is no RFC 6749 scope-token, or a reserved claim in ``extra``.
    """
    audiences = [audience] if isinstance(audience, str) else list(audience)
    if not issuer or not subject or not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise PKIError("an access token needs a non-empty issuer, subject and audience")
    bad = [s for s in scopes if not isinstance(s, str) or not _scope_token(s)]
    if bad:
        raise PKIError(f"{len(bad)} scope(s) are not RFC 6749 scope tokens (printable ASCII, no space, quote "
                       "or backslash)")
    reserved = sorted(set(extra or {}) & set(_RESERVED_ACCESS_CLAIMS))
    if reserved:
        raise PKIError(f"extra claims may not set {', '.join(reserved)}")
    claims: dict[str, Any] = {"iss": issuer, "sub": subject,
                              "aud": audiences[0] if len(audiences) == 1 else audiences}
    if scopes:
        claims["scope"] = " ".join(dict.fromkeys(scopes))
    claims["jti"] = secrets.token_urlsafe(16)
    return claims | dict(extra or {})


def granted_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token's ``scope`` claim grants (none when absent); :class:`TokenError` if malformed."""
    scope = claims.get("scope")
    if scope is None:
        return frozenset()
    if not isinstance(scope, str):
        raise TokenError("claim scope is not a space-separated string")
    return frozenset(scope.split())


def require_scopes(claims: Mapping[str, Any], required: Collection[str]) -> None:
    """:class:`TokenError` naming the scopes ``claims`` lacks of ``required``."""
    if isinstance(required, str):
        raise ValueError("required scopes must be a collection of scopes, not a single string")
    missing = sorted(set(required) - granted_scopes(claims))
    if missing:
        raise TokenError(f"missing scope: {' '.join(missing)}")


def _time_claims(claims: Mapping[str, Any], now: datetime, lifetime: timedelta) -> dict[str, Any]:
    require_utc(now)
    if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
        raise PKIError("token lifetime must be a positive timedelta")
    if not isinstance(claims, Mapping):
        raise PKIError("claims must be a mapping")
    issued = int(now.timestamp())
    payload = dict(claims)
    payload.update(iat=issued, nbf=issued, exp=issued + max(1, int(lifetime.total_seconds())))
    return payload


def sign_token(
    key: PrivateKey,
    algorithm: JwtAlgorithm,
    kid: str,
    claims: Mapping[str, Any],
    *,
    now: datetime,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> str:
    """A compact JWS with header ``{alg, kid, typ: JWT}``; ``iat``/``nbf`` = now, ``exp`` = now + lifetime.

    ``iat``, ``nbf`` and ``exp`` in ``claims`` are overwritten. :class:`PKIError` if the
    key does not fit ``algorithm`` or ``kid`` is empty.
    """
    algorithm = require_jwt_key(algorithm, key)
    if not isinstance(kid, str) or not kid:
        raise PKIError("kid must be a non-empty string")
    payload = _time_claims(claims, now, lifetime)
    return jwt.encode(payload, key, algorithm=str(algorithm), headers={"kid": kid, "typ": "JWT"})


def _check_leeway(leeway: timedelta) -> float:
    if not isinstance(leeway, timedelta) or leeway < timedelta(0) or leeway > MAX_LEEWAY:
        raise ValueError("leeway must be a timedelta between 0 and 5 minutes")
    return leeway.total_seconds()


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise TokenError("malformed token: not a compact JWS")
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (PKIError, ValueError, UnicodeDecodeError):
        raise TokenError("malformed token header") from None
    if not isinstance(header, dict):
        raise TokenError("malformed token header: not a JSON object")
    if header.get("crit") is not None:
        raise TokenError("token uses critical header extensions, which are not supported")
    return header


def _verified_payload(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    try:
        decoded = PyJWS(algorithms=[algorithm]).decode_complete(token, key, algorithms=[algorithm])
    except jwt.InvalidSignatureError:
        raise TokenError("bad signature") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError(f"token algorithm is not {algorithm}") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"token could not be verified: {type(exc).__name__}") from None
    try:
        payload = json.loads(decoded["payload"])
    except (ValueError, UnicodeDecodeError):
        raise TokenError("token payload is not JSON") from None
    if not isinstance(payload, dict):
        raise TokenError("token payload is not a JSON object")
    return payload


def _numeric(payload: Mapping[str, Any], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"claim {claim} is not a NumericDate")
    return float(value)


def _check_claims(
    payload: Mapping[str, Any], *, issuer: str | None, audience: str | None, now: datetime, leeway: float
) -> None:
    require_utc(now)
    t = now.timestamp()
    exp = _numeric(payload, "exp")
    if exp is None:
        raise TokenError("token has no exp claim")
    if t - leeway >= exp:
        raise TokenError("token expired")
    nbf = _numeric(payload, "nbf")
    if nbf is not None and t + leeway < nbf:
        raise TokenError("token is not yet valid (nbf in the future)")
    iat = _numeric(payload, "iat")
    if iat is not None and t + leeway < iat:
        raise TokenError("token was issued in the future (iat)")
    if issuer is not None and payload.get("iss") != issuer:
        raise TokenError("wrong issuer")
    aud = payload.get("aud")
    if audience is None:
        if aud is not None:
            raise TokenError("token has an audience but this verifier expects none")
    else:
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise TokenError("wrong audience: token has no valid aud claim")
        if audience not in audiences:
            raise TokenError("wrong audience")


def verify_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str | None,
    audience: str | None,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
    revoked_kids: Collection[str] = (),
    scopes: Collection[str] = (),
) -> dict[str, Any]:
    """Verify ``token`` against the key with its ``kid`` in ``jwks`` and return its claims.

    Order: header parse → kid present and not revoked → key found in ``jwks`` →
    header ``alg`` equals the JWK's algorithm → signature → exp/nbf/iat (with
    ``leeway`` ≤ 5 min) → iss → aud → every scope in ``scopes`` granted. Raises
    :class:`TokenError` with the reason.
    """
    leeway_s = _check_leeway(leeway)
    if isinstance(revoked_kids, str):
        # A bare string would make "kid in revoked_kids" a substring test.
        raise ValueError("revoked_kids must be a collection of kids, not a single string")
    header = _header(token)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token header has no kid")
    if kid in revoked_kids:
        raise TokenError(f"kid {kid} is revoked")
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise TokenError("JWKS has no 'keys' list")
    matches = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
    if not matches:
        raise TokenError(f"unknown kid {kid}")
    if len(matches) > 1:
        raise TokenError(f"JWKS holds more than one key with kid {kid}")
    jwk = matches[0]
    if jwk.get("use", "sig") != "sig":
        raise TokenError(f"key {kid} is not a signing key")
    try:
        algorithm = jwt_algorithm_of_jwk(jwk)
        public_key = public_key_from_jwk(jwk)
    except PKIError as exc:
        raise TokenError(f"key {kid} is unusable: {exc}") from None
    if header.get("alg") != str(algorithm):
        raise TokenError(f"algorithm mismatch: token says {header.get('alg')!r}, key {kid} is {algorithm}")
    payload = _verified_payload(token, public_key, str(algorithm))
    _check_claims(payload, issuer=issuer, audience=audience, now=now, leeway=leeway_s)
    require_scopes(payload, scopes)
    return payload


def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes | bytearray) or len(secret) < SHARED_SECRET_BYTES:
        raise PKIError(f"HS256 shared secret must be at least {SHARED_SECRET_BYTES} bytes")
    return bytes(secret)


def sign_hs256(
    secret: bytes, claims: Mapping[str, Any], *, now: datetime, lifetime: timedelta = DEFAULT_LIFETIME
) -> str:
    """An HS256 JWT with ``iat``/``nbf``/``exp`` set from ``now``; the secret must be ≥ 32 bytes."""
    payload = _time_claims(claims, now, lifetime)
    return jwt.encode(payload, _check_secret(secret), algorithm="HS256", headers={"typ": "JWT"})


def verify_hs256(
    token: str,
    secret: bytes,
    *,
    issuer: str | None,
    audience: str | None,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify an HS256 token with ``secret`` (header must say HS256).

    The claim rules are those of :func:`verify_token`.
    """
    leeway_s = _check_leeway(leeway)
    try:
        key = _check_secret(secret)
    except PKIError as exc:
        raise TokenError(str(exc)) from None
    header = _header(token)
    if header.get("alg") != "HS256":
        raise TokenError(f"algorithm mismatch: token says {header.get('alg')!r}, expected HS256")
    payload = _verified_payload(token, key, "HS256")
    _check_claims(payload, issuer=issuer, audience=audience, now=now, leeway=leeway_s)
    return payload
