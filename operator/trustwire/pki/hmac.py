"""Symmetric JWT signing keys (HS256/HS384/HS512, RFC 7518 §3.2).

The key is the bytes of the mounted ``jwt.key``: base64url text of as many random bytes as
the hash is long, so the file is printable (an environment value or a properties line) and
any library that takes the file's bytes as the HMAC key — or the ``oct`` JWK of
``jwt.jwk`` — agrees on it. Such a key signs and verifies: it is never published.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets

from trustwire.pki.jwk import b64url_encode

__all__ = ["HMAC_RANDOM_BYTES", "HmacAlgorithm", "generate_hmac_key", "hmac_jwk", "hmac_key_fits"]


class HmacAlgorithm(enum.StrEnum):
    HS256 = "HS256"
    HS384 = "HS384"
    HS512 = "HS512"


#: Random bytes behind each key: the hash's output size, RFC 7518 §3.2's minimum key size.
HMAC_RANDOM_BYTES: dict[HmacAlgorithm, int] = {HmacAlgorithm.HS256: 32, HmacAlgorithm.HS384: 48,
                                               HmacAlgorithm.HS512: 64}
_B64URL = re.compile(rb"[A-Za-z0-9_-]+")


def _text_length(algorithm: HmacAlgorithm) -> int:
    return len(b64url_encode(bytes(HMAC_RANDOM_BYTES[algorithm])))


def generate_hmac_key(algorithm: HmacAlgorithm) -> bytes:
    """A fresh key for ``algorithm`` from :mod:`secrets`, as base64url text."""
    return b64url_encode(secrets.token_bytes(HMAC_RANDOM_BYTES[algorithm])).encode("ascii")


def hmac_key_fits(key: bytes, algorithm: HmacAlgorithm) -> bool:
    """Whether ``key`` is a key trustwire makes for ``algorithm`` (length and alphabet)."""
    return len(key) == _text_length(algorithm) and _B64URL.fullmatch(key) is not None


def hmac_jwk(key: bytes, algorithm: HmacAlgorithm) -> dict[str, str]:
    """The ``oct`` JWK of ``key`` with ``kid`` its RFC 7638 thumbprint (members ``k``, ``kty``)."""
    k = b64url_encode(key)
    canonical = json.dumps({"k": k, "kty": "oct"}, sort_keys=True, separators=(",", ":"))
    kid = b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())
    return {"kty": "oct", "k": k, "alg": str(algorithm), "kid": kid}
