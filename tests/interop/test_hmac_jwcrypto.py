"""Symmetric JWT keys (HS256/HS384/HS512) against PyJWT and jwcrypto, neither written here.

* tokens signed by PyJWT with the bytes of ``jwt.key`` verify in jwcrypto with the ``oct``
  JWK of ``jwt.jwk``, and tokens jwcrypto signs with that JWK verify in PyJWT with the bytes;
* jwcrypto's RFC 7638 thumbprint of the JWK is its ``kid``;
* a key of another algorithm's size, or a tampered token, is refused.
"""

from __future__ import annotations

import base64
import time

import jwt as pyjwt
import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt

from trustwire.pki import HMAC_RANDOM_BYTES, HmacAlgorithm, generate_hmac_key, hmac_jwk, hmac_key_fits

pytestmark = pytest.mark.interop

HASH_BITS = {HmacAlgorithm.HS256: 256, HmacAlgorithm.HS384: 384, HmacAlgorithm.HS512: 512}


@pytest.mark.parametrize("algorithm", list(HmacAlgorithm))
def test_the_key_is_printable_and_as_long_as_the_hash(algorithm: HmacAlgorithm) -> None:
    key = generate_hmac_key(algorithm)
    assert key.decode("ascii").isprintable()
    raw = base64.urlsafe_b64decode(key + b"=" * (-len(key) % 4))
    assert len(raw) * 8 == HASH_BITS[algorithm] == HMAC_RANDOM_BYTES[algorithm] * 8
    assert hmac_key_fits(key, algorithm)
    assert all(not hmac_key_fits(key, other) for other in HmacAlgorithm if other is not algorithm)
    assert generate_hmac_key(algorithm) != key


@pytest.mark.parametrize("algorithm", list(HmacAlgorithm))
def test_pyjwt_and_jwcrypto_agree_on_the_key(algorithm: HmacAlgorithm) -> None:
    key = generate_hmac_key(algorithm)
    jwk = hmac_jwk(key, algorithm)
    theirs = jwc_jwk.JWK(**jwk)
    assert theirs.thumbprint() == jwk["kid"]
    now = int(time.time())
    claims = {"sub": "__datahub_system", "iat": now, "exp": now + 300}
    token = pyjwt.encode(claims, key, algorithm=str(algorithm), headers={"kid": jwk["kid"]})
    verified = jwc_jwt.JWT(jwt=token, key=theirs, algs=[str(algorithm)])
    assert verified.claims and '"__datahub_system"' in verified.claims
    signed = jwc_jwt.JWT(header={"alg": str(algorithm), "kid": jwk["kid"]}, claims=claims)
    signed.make_signed_token(theirs)
    assert pyjwt.decode(signed.serialize(), key, algorithms=[str(algorithm)])["sub"] == "__datahub_system"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(tampered, key, algorithms=[str(algorithm)])
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, generate_hmac_key(algorithm), algorithms=[str(algorithm)])


@pytest.mark.parametrize(("key", "fits"), [
    (b"A" * 43, True), (b"A" * 42, False), (b"A" * 44, False), (b"A" * 42 + b"=", False),
    (b"A" * 42 + b"+", False), (b"-----BEGIN PRIVATE KEY-----", False), (b"", False),
])
def test_which_stored_keys_fit_hs256(key: bytes, fits: bool) -> None:
    assert hmac_key_fits(key, HmacAlgorithm.HS256) is fits
