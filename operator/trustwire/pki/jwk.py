"""JSON Web Keys for the JWT signing keys of identities.

Why: peers verify each other's tokens from *published* public JWKs (the design's
DPM/DPE scenario, and OAuth2 gateways reading a JWKS). The ``kid`` of every key is
its RFC 7638 SHA-256 thumbprint, so a peer can recompute it from the key alone, two
identities can never claim the same kid for different keys, and a kid listed in
``jwt.revokedKids`` names exactly one key forever.

Encoding follows RFC 7517/7518 (EC: ``crv,x,y`` with coordinates left-padded to the
field size; RSA: ``n,e`` unpadded big-endian) and RFC 8037 (``OKP``/``Ed25519``).
:func:`jwks` strips everything but public members defensively, because a JWKS is
published in a ConfigMap and a private member leaking there is unrecoverable.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from trustwire.pki.errors import PKIError
from trustwire.pki.keys import KeyAlgorithm, PrivateKey, PublicKey, generate_private_key

__all__ = [
    "PUBLIC_MEMBERS",
    "JwtAlgorithm",
    "b64url_decode",
    "b64url_encode",
    "generate_jwt_key",
    "jwk_thumbprint",
    "jwks",
    "jwt_algorithm_accepts",
    "jwt_algorithm_of_jwk",
    "private_jwk",
    "public_jwk",
    "public_key_from_jwk",
    "require_jwt_key",
]


class JwtAlgorithm(enum.StrEnum):
    """JWS algorithms accepted in ``spec.jwt.algorithm`` (RFC 7518 / RFC 8037 names)."""

    ES256 = "ES256"
    ES384 = "ES384"
    RS256 = "RS256"
    PS256 = "PS256"
    EdDSA = "EdDSA"


_KEY_FOR: dict[JwtAlgorithm, KeyAlgorithm] = {
    JwtAlgorithm.ES256: KeyAlgorithm.ECDSAP256,
    JwtAlgorithm.ES384: KeyAlgorithm.ECDSAP384,
    JwtAlgorithm.RS256: KeyAlgorithm.RSA2048,
    JwtAlgorithm.PS256: KeyAlgorithm.RSA2048,
    JwtAlgorithm.EdDSA: KeyAlgorithm.Ed25519,
}

#: RFC 7638 §3.2 required members per key type, i.e. exactly what the thumbprint hashes.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
#: Members allowed in a published JWKS entry (public key material and metadata only).
PUBLIC_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"})
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
}
_MIN_RSA_BITS = 2048
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; :class:`PKIError` on invalid input."""
    # Strict: Python's decoder silently skips characters outside the alphabet.
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise PKIError("JWK member is not unpadded base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PKIError("JWK member is not valid base64url") from None


def _uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _to_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def generate_jwt_key(algorithm: JwtAlgorithm) -> PrivateKey:
    """A fresh signing key for ``algorithm``.

    ES256→P-256, ES384→P-384, RS256/PS256→RSA-2048, EdDSA→Ed25519.
    """
    return generate_private_key(_KEY_FOR[JwtAlgorithm(algorithm)])


def jwt_algorithm_accepts(algorithm: JwtAlgorithm, key: PrivateKey | PublicKey) -> bool:
    """True iff ``key`` (private or public) can sign/verify ``algorithm`` (RSA: at least 2048 bits)."""
    try:
        algorithm = JwtAlgorithm(algorithm)
    except ValueError:
        return False
    if algorithm in (JwtAlgorithm.ES256, JwtAlgorithm.ES384):
        curve = ec.SECP256R1 if algorithm is JwtAlgorithm.ES256 else ec.SECP384R1
        return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
            key.curve, curve
        )
    if algorithm in (JwtAlgorithm.RS256, JwtAlgorithm.PS256):
        return isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS
    return isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)


def require_jwt_key(algorithm: JwtAlgorithm, key: PrivateKey | PublicKey) -> JwtAlgorithm:
    """``algorithm`` as a :class:`JwtAlgorithm` if ``key`` fits it, else :class:`PKIError`."""
    try:
        algorithm = JwtAlgorithm(algorithm)
    except ValueError:
        raise PKIError(f"unsupported JWT algorithm {algorithm!r}") from None
    if not jwt_algorithm_accepts(algorithm, key):
        raise PKIError(f"a {type(key).__name__} cannot be used with JWT algorithm {algorithm}")
    return algorithm


def _public_members(key: PublicKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        for crv, (curve, size) in _EC_CURVES.items():
            if isinstance(key.curve, curve):
                numbers = key.public_numbers()
                return {"kty": "EC", "crv": crv, "x": _uint(numbers.x, size), "y": _uint(numbers.y, size)}
        raise PKIError(f"unsupported elliptic curve {key.curve.name} for a JWK")
    if isinstance(key, rsa.RSAPublicKey):
        numbers_rsa = key.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers_rsa.n), "e": _uint(numbers_rsa.e)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    raise PKIError(f"unsupported key type {type(key).__name__} for a JWK")


def public_jwk(key: PrivateKey | PublicKey, algorithm: JwtAlgorithm) -> dict[str, str]:
    """Public JWK of ``key`` with ``alg``, ``use: sig`` and ``kid`` = RFC 7638 SHA-256 thumbprint."""
    algorithm = require_jwt_key(algorithm, key)
    public = (
        key.public_key()
        if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        else key
    )
    members = _public_members(public)
    return {**members, "alg": str(algorithm), "use": "sig", "kid": jwk_thumbprint(members)}


def private_jwk(key: PrivateKey, algorithm: JwtAlgorithm) -> dict[str, str]:
    """Private JWK: the public members of :func:`public_jwk` plus ``d`` (and ``p,q,dp,dq,qi`` for RSA)."""
    jwk = public_jwk(key, algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk["d"] = _uint(key.private_numbers().private_value, _EC_CURVES[jwk["crv"]][1])
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        jwk.update(
            d=_uint(numbers.d),
            p=_uint(numbers.p),
            q=_uint(numbers.q),
            dp=_uint(numbers.dmp1),
            dq=_uint(numbers.dmq1),
            qi=_uint(numbers.iqmp),
        )
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        jwk["d"] = b64url_encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    else:
        raise PKIError(f"private_jwk needs a private key, not {type(key).__name__}")
    return jwk


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 SHA-256 thumbprint: hash of the required members only, lexicographic order, no whitespace."""
    kty = jwk.get("kty")
    if kty not in _REQUIRED:
        raise PKIError(f"unsupported or missing JWK key type {kty!r}")
    required = _REQUIRED[kty]
    missing = [m for m in required if not isinstance(jwk.get(m), str) or not jwk.get(m)]
    if missing:
        raise PKIError(f"JWK of type {kty} lacks required members: {', '.join(missing)}")
    canonical = json.dumps(
        {m: jwk[m] for m in required}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def jwks(keys: Sequence[Mapping[str, str]]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set ``{"keys": [...]}`` of the public members of ``keys`` (private members are dropped).

    Keys without ``kid`` get their thumbprint; symmetric (``oct``) keys are refused;
    exact duplicates are written once and two different keys with one ``kid`` are refused.
    """
    if isinstance(keys, Mapping):
        raise PKIError("jwks() takes a sequence of JWKs, not a single JWK")
    out: list[dict[str, str]] = []
    by_kid: dict[str, dict[str, str]] = {}
    for jwk in keys:
        if not isinstance(jwk, Mapping):
            raise PKIError("every JWK must be a mapping")
        if jwk.get("kty") == "oct":
            raise PKIError("symmetric (oct) keys must never be published in a JWKS")
        public = {k: str(v) for k, v in jwk.items() if k in PUBLIC_MEMBERS}
        public.setdefault("kid", jwk_thumbprint(public))
        public_key_from_jwk(public)  # validates the key material itself
        kid = public["kid"]
        if kid in by_kid:
            if by_kid[kid] != public:
                raise PKIError(f"two different keys share kid {kid}")
            continue
        by_kid[kid] = public
        out.append(public)
    return {"keys": out}


def public_key_from_jwk(jwk: Mapping[str, str]) -> PublicKey:
    """The public key of a JWK (private members, if any, are ignored); :class:`PKIError` if invalid."""
    if not isinstance(jwk, Mapping):
        raise PKIError("a JWK must be a mapping")
    kty = jwk.get("kty")
    jwk_thumbprint(jwk)  # checks kty and required members
    if kty == "EC":
        crv = jwk["crv"]
        if crv not in _EC_CURVES:
            raise PKIError(f"unsupported JWK curve {crv!r}")
        curve, size = _EC_CURVES[crv]
        x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
        if len(x) != size or len(y) != size:
            raise PKIError(f"JWK {crv} coordinates must be {size} bytes")
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()
            ).public_key()
        except ValueError:
            raise PKIError(f"JWK point is not on curve {crv}") from None
    if kty == "RSA":
        n, e = _to_int(jwk["n"]), _to_int(jwk["e"])
        if n.bit_length() < _MIN_RSA_BITS:
            raise PKIError(f"JWK RSA modulus has {n.bit_length()} bits; at least {_MIN_RSA_BITS} required")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise PKIError("JWK RSA public numbers are invalid") from None
    if jwk["crv"] != "Ed25519":
        raise PKIError(f"unsupported OKP curve {jwk['crv']!r}")
    raw = b64url_decode(jwk["x"])
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise PKIError("JWK Ed25519 key must be 32 bytes") from None


def jwt_algorithm_of_jwk(jwk: Mapping[str, str]) -> JwtAlgorithm:
    """The algorithm a JWK is for: its ``alg`` member, else inferred where unambiguous (EC curve, Ed25519).

    RSA keys without ``alg`` are refused: RS256 and PS256 cannot be told apart and
    letting the token header choose would reintroduce algorithm confusion.
    """
    alg = jwk.get("alg")
    key = public_key_from_jwk(jwk)
    if alg is None:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = JwtAlgorithm.ES256 if isinstance(key.curve, ec.SECP256R1) else JwtAlgorithm.ES384
        elif isinstance(key, ed25519.Ed25519PublicKey):
            algorithm = JwtAlgorithm.EdDSA
        else:
            raise PKIError("RSA JWK without 'alg' is ambiguous (RS256 or PS256)")
    else:
        try:
            algorithm = JwtAlgorithm(alg)
        except ValueError:
            raise PKIError(f"unsupported JWK alg {alg!r}") from None
    if not jwt_algorithm_accepts(algorithm, key):
        raise PKIError(f"JWK alg {algorithm} does not fit its {jwk.get('kty')} key")
    return algorithm
