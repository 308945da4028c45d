"""Interop of our JWTs, JWKs and thumbprints with jwcrypto (an independent JOSE implementation).

For every JwtAlgorithm:

* tokens from ``sign_token`` (PyJWT underneath) verify in jwcrypto against the JWKS
  we publish, loaded with ``JWKSet.from_json``, with jwcrypto checking exp/iss/aud;
* jwcrypto's RFC 7638 ``thumbprint()`` (SHA-256) equals our ``kid``, for the public and
  the private JWK; jwcrypto accepts our private JWK and exports the same public key;
* tokens *signed by jwcrypto* with our private JWK verify in our ``verify_token``;
* a revoked kid, a wrong audience, an expired token and a tampered signature fail in
  our verifier, and the tampered signature also fails in jwcrypto.

jwcrypto checks time against the wall clock, so these tokens are signed at real "now".
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jws as jwc_jws
from jwcrypto import jwt as jwc_jwt
from jwcrypto.common import JWException

from trustwire.pki import (
    JwtAlgorithm,
    PrivateKey,
    TokenError,
    generate_jwt_key,
    jwks,
    private_jwk,
    public_jwk,
    sign_token,
    verify_token,
)

pytestmark = pytest.mark.interop

ISS = "spiffe://cluster.local/ns/dpm/sid/dpm"
AUD = "product-factory"


@pytest.fixture(scope="module")
def jwt_keys() -> Callable[[JwtAlgorithm], PrivateKey]:
    cache: dict[JwtAlgorithm, PrivateKey] = {}

    def get(algorithm: JwtAlgorithm) -> PrivateKey:
        if algorithm not in cache:
            cache[algorithm] = generate_jwt_key(algorithm)
        return cache[algorithm]

    return get


def _now() -> datetime:
    return datetime.fromtimestamp(int(time.time()), UTC)


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0x80
    return f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def _jwcrypto_verify(token: str, published: dict[str, Any], audience: str = AUD) -> dict[str, Any]:
    keyset = jwc_jwk.JWKSet.from_json(json.dumps(published))
    verified = jwc_jwt.JWT(jwt=token, key=keyset, check_claims={"iss": ISS, "aud": audience, "exp": None})
    return dict(json.loads(verified.claims))


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_our_tokens_verify_in_jwcrypto(
    algorithm: JwtAlgorithm, jwt_keys: Callable[[JwtAlgorithm], PrivateKey]
) -> None:
    key = jwt_keys(algorithm)
    jwk = public_jwk(key, algorithm)
    # A realistic peers.jwks: the signer's key among others.
    others = [public_jwk(jwt_keys(a), a) for a in JwtAlgorithm if a is not algorithm]
    published = jwks([*others, jwk])
    token = sign_token(key, algorithm, jwk["kid"], {"iss": ISS, "aud": AUD, "scope": "read"}, now=_now())
    claims = _jwcrypto_verify(token, published)
    assert claims["scope"] == "read" and claims["iss"] == ISS
    parsed = jwc_jws.JWS()
    parsed.deserialize(token)
    assert parsed.jose_header == {"alg": algorithm.value, "kid": jwk["kid"], "typ": "JWT"}


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_jwcrypto_thumbprint_equals_our_kid(
    algorithm: JwtAlgorithm, jwt_keys: Callable[[JwtAlgorithm], PrivateKey]
) -> None:
    key = jwt_keys(algorithm)
    public = public_jwk(key, algorithm)
    private = private_jwk(key, algorithm)
    theirs_public = jwc_jwk.JWK(**public)
    theirs_private = jwc_jwk.JWK(**private)
    assert theirs_public.thumbprint() == public["kid"]
    assert theirs_private.thumbprint() == public["kid"]
    assert theirs_private.has_private and not theirs_public.has_private
    exported = json.loads(theirs_private.export_public())
    assert {k: exported[k] for k in exported if k not in ("alg", "use", "kid")} == {
        k: v for k, v in public.items() if k not in ("alg", "use", "kid")
    }


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_jwcrypto_signed_tokens_verify_in_ours(
    algorithm: JwtAlgorithm, jwt_keys: Callable[[JwtAlgorithm], PrivateKey]
) -> None:
    key = jwt_keys(algorithm)
    private = private_jwk(key, algorithm)
    now = _now()
    t = int(now.timestamp())
    token = jwc_jwt.JWT(
        header={"alg": algorithm.value, "kid": private["kid"], "typ": "JWT"},
        claims={"iss": ISS, "aud": AUD, "iat": t, "nbf": t, "exp": t + 60, "sub": "jwcrypto"},
    )
    token.make_signed_token(jwc_jwk.JWK(**private))
    claims = verify_token(token.serialize(), jwks([private]), issuer=ISS, audience=AUD, now=now)
    assert claims["sub"] == "jwcrypto"


REFUSALS: list[tuple[str, str]] = [
    ("revoked", "is revoked"),
    ("wrong-audience", "wrong audience"),
    ("expired", "token expired"),
    ("tampered", "bad signature"),
]


@pytest.mark.parametrize(("case", "message"), REFUSALS, ids=[c for c, _ in REFUSALS])
@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_refusals_in_our_verifier_and_jwcrypto(
    algorithm: JwtAlgorithm, case: str, message: str, jwt_keys: Callable[[JwtAlgorithm], PrivateKey]
) -> None:
    key = jwt_keys(algorithm)
    jwk = public_jwk(key, algorithm)
    published = jwks([jwk])
    now = _now()
    claims = {"iss": ISS, "aud": AUD}
    signed_at = now - timedelta(minutes=10) if case == "expired" else now
    token = sign_token(key, algorithm, jwk["kid"], claims, now=signed_at, lifetime=timedelta(minutes=5))
    if case == "tampered":
        token = _tamper(token)
    kwargs: dict[str, Any] = {"issuer": ISS, "audience": AUD, "now": now}
    if case == "revoked":
        kwargs["revoked_kids"] = {jwk["kid"]}
    if case == "wrong-audience":
        kwargs["audience"] = "someone-else"
    with pytest.raises(TokenError, match=message):
        verify_token(token, published, **kwargs)
    # jwcrypto agrees on every case it can express (revocation is our policy, not a JOSE rule).
    if case == "tampered":
        with pytest.raises(JWException):
            _jwcrypto_verify(token, published)
    elif case == "wrong-audience":
        with pytest.raises(JWException):
            _jwcrypto_verify(token, published, audience="someone-else")
    elif case == "expired":
        with pytest.raises(JWException):
            _jwcrypto_verify(token, published)
    else:
        assert _jwcrypto_verify(token, published)["iss"] == ISS
