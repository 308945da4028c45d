"""Behaviour of trustwire.pki.jwk: RFC 7517/7518/8037 encoding and RFC 7638 thumbprints."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustwire.pki import (
    JwtAlgorithm,
    KeyAlgorithm,
    PKIError,
    PrivateKey,
    generate_jwt_key,
    jwk_thumbprint,
    jwks,
    jwt_algorithm_accepts,
    jwt_algorithm_of_jwk,
    key_algorithm_of,
    private_jwk,
    public_jwk,
    public_key_from_jwk,
)
from trustwire.pki.jwk import b64url_decode, b64url_encode

from .conftest import KeyFactory

JwtKeys = Callable[..., PrivateKey]

KEY_OF = {
    JwtAlgorithm.ES256: KeyAlgorithm.ECDSAP256,
    JwtAlgorithm.ES384: KeyAlgorithm.ECDSAP384,
    JwtAlgorithm.RS256: KeyAlgorithm.RSA2048,
    JwtAlgorithm.PS256: KeyAlgorithm.RSA2048,
    JwtAlgorithm.EdDSA: KeyAlgorithm.Ed25519,
}
PUBLIC = {
    JwtAlgorithm.ES256: {"kty", "crv", "x", "y"},
    JwtAlgorithm.ES384: {"kty", "crv", "x", "y"},
    JwtAlgorithm.RS256: {"kty", "n", "e"},
    JwtAlgorithm.PS256: {"kty", "n", "e"},
    JwtAlgorithm.EdDSA: {"kty", "crv", "x"},
}
PRIVATE = {
    JwtAlgorithm.ES256: {"d"},
    JwtAlgorithm.ES384: {"d"},
    JwtAlgorithm.RS256: {"d", "p", "q", "dp", "dq", "qi"},
    JwtAlgorithm.PS256: {"d", "p", "q", "dp", "dq", "qi"},
    JwtAlgorithm.EdDSA: {"d"},
}
# Which key algorithms each JWT algorithm accepts (all RSA sizes ≥ 2048 are fine for RS/PS).
ACCEPTS = {
    JwtAlgorithm.ES256: {KeyAlgorithm.ECDSAP256},
    JwtAlgorithm.ES384: {KeyAlgorithm.ECDSAP384},
    JwtAlgorithm.RS256: {KeyAlgorithm.RSA2048, KeyAlgorithm.RSA3072, KeyAlgorithm.RSA4096},
    JwtAlgorithm.PS256: {KeyAlgorithm.RSA2048, KeyAlgorithm.RSA3072, KeyAlgorithm.RSA4096},
    JwtAlgorithm.EdDSA: {KeyAlgorithm.Ed25519},
}

RFC7638_RSA = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPe"
        "bWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
        "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2N"
        "cRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_generate_jwt_key_fits_its_algorithm(algorithm: JwtAlgorithm) -> None:
    key = generate_jwt_key(algorithm)
    assert key_algorithm_of(key) is KEY_OF[algorithm]
    assert jwt_algorithm_accepts(algorithm, key)


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
@pytest.mark.parametrize("key_algorithm", list(KeyAlgorithm))
def test_accepts_matrix(algorithm: JwtAlgorithm, key_algorithm: KeyAlgorithm, key_for: KeyFactory) -> None:
    key = key_for(key_algorithm)
    expected = key_algorithm in ACCEPTS[algorithm]
    assert jwt_algorithm_accepts(algorithm, key) is expected
    assert jwt_algorithm_accepts(algorithm, key.public_key()) is expected
    if not expected:
        with pytest.raises(PKIError, match="cannot be used with JWT algorithm"):
            public_jwk(key, algorithm)


def test_accepts_refuses_short_rsa_and_unknown_algorithms() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - deliberately weak
    assert not jwt_algorithm_accepts(JwtAlgorithm.RS256, short)
    assert not jwt_algorithm_accepts("HS256", short)  # type: ignore[arg-type]
    assert not jwt_algorithm_accepts("none", short)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_public_jwk_members_kid_and_round_trip(algorithm: JwtAlgorithm, jwt_key_for: JwtKeys) -> None:
    key = jwt_key_for(algorithm)
    jwk = public_jwk(key, algorithm)
    assert set(jwk) == PUBLIC[algorithm] | {"alg", "use", "kid"}
    assert jwk["alg"] == algorithm.value and jwk["use"] == "sig"
    assert jwk["kid"] == jwk_thumbprint(jwk)
    assert len(b64url_decode(jwk["kid"])) == 32
    assert _spki(public_key_from_jwk(jwk)) == _spki(key.public_key())
    assert public_jwk(key.public_key(), algorithm) == jwk  # public half gives the same JWK
    assert all(isinstance(v, str) and "=" not in v for v in jwk.values())


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_private_jwk_reconstructs_the_private_key(algorithm: JwtAlgorithm, jwt_key_for: JwtKeys) -> None:
    key = jwt_key_for(algorithm)
    jwk = private_jwk(key, algorithm)
    assert set(jwk) == PUBLIC[algorithm] | PRIVATE[algorithm] | {"alg", "use", "kid"}
    assert jwk["kid"] == public_jwk(key, algorithm)["kid"]

    def num(member: str) -> int:
        return int.from_bytes(b64url_decode(jwk[member]), "big")

    rebuilt: PrivateKey
    if isinstance(key, ec.EllipticCurvePrivateKey):
        rebuilt = ec.derive_private_key(num("d"), key.curve)
        assert len(b64url_decode(jwk["d"])) == (key.curve.key_size + 7) // 8
    elif isinstance(key, rsa.RSAPrivateKey):
        rebuilt = rsa.RSAPrivateNumbers(
            p=num("p"),
            q=num("q"),
            d=num("d"),
            dmp1=num("dp"),
            dmq1=num("dq"),
            iqmp=num("qi"),
            public_numbers=rsa.RSAPublicNumbers(num("e"), num("n")),
        ).private_key()
    else:
        rebuilt = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
    assert _spki(rebuilt.public_key()) == _spki(key.public_key())


def test_rfc7638_rsa_example_thumbprint() -> None:
    assert jwk_thumbprint(RFC7638_RSA) == RFC7638_THUMBPRINT
    # Member order and extra members do not change the thumbprint.
    reordered = dict(reversed(list(RFC7638_RSA.items())))
    assert jwk_thumbprint({**reordered, "use": "sig", "x5t": "ignored"}) == RFC7638_THUMBPRINT


def test_rfc8037_ed25519_example() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    jwk = private_jwk(key, JwtAlgorithm.EdDSA)
    assert jwk["x"] == RFC8037_X
    assert jwk["d"] == RFC8037_D
    assert jwk["kid"] == RFC8037_THUMBPRINT


@pytest.mark.parametrize(("curve", "size", "length"), [(ec.SECP256R1(), 32, 43), (ec.SECP384R1(), 48, 64)])
def test_ec_coordinates_are_left_padded(curve: ec.EllipticCurve, size: int, length: int) -> None:
    # Deterministically find a small scalar whose public x has a leading zero byte.
    scalar = next(
        d
        for d in range(1, 5000)
        if ec.derive_private_key(d, curve).public_key().public_numbers().x < 2 ** (8 * size - 8)
    )
    key = ec.derive_private_key(scalar, curve)
    algorithm = JwtAlgorithm.ES256 if size == 32 else JwtAlgorithm.ES384
    jwk = private_jwk(key, algorithm)
    assert len(jwk["x"]) == len(jwk["y"]) == len(jwk["d"]) == length
    assert b64url_decode(jwk["x"])[0] == 0
    assert _spki(public_key_from_jwk(jwk)) == _spki(key.public_key())


def test_jwks_publishes_public_members_only(jwt_key_for: JwtKeys) -> None:
    privates = [private_jwk(jwt_key_for(a), a) for a in JwtAlgorithm]
    published = jwks([{**p, "x5c": "junk", "key_ops": "sign"} for p in privates])
    assert list(published) == ["keys"]
    assert [k["kid"] for k in published["keys"]] == [p["kid"] for p in privates]
    for entry, algorithm in zip(published["keys"], JwtAlgorithm, strict=True):
        assert entry == public_jwk(jwt_key_for(algorithm), algorithm)
        assert not set(entry) & {"d", "p", "q", "dp", "dq", "qi", "x5c", "key_ops"}


def test_jwks_dedupes_and_fills_missing_kid(jwt_key_for: JwtKeys) -> None:
    jwk = public_jwk(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    without_kid = {k: v for k, v in jwk.items() if k != "kid"}
    assert jwks([jwk, without_kid, jwk]) == {"keys": [jwk]}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"kty": "oct", "k": "c2VjcmV0"}], "symmetric"),
        ([{"kty": "EC", "crv": "P-256", "x": "AA"}], "lacks required members: y"),
        ([{"kty": "RSA", "n": "AQAB", "e": "AQAB"}], "at least 2048"),
    ],
)
def test_jwks_refuses_bad_entries(entries: list[dict[str, str]], message: str) -> None:
    with pytest.raises(PKIError, match=message):
        jwks(entries)


def test_jwks_refuses_two_keys_with_one_kid(jwt_key_for: JwtKeys) -> None:
    a = public_jwk(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    b = public_jwk(jwt_key_for(JwtAlgorithm.ES256, 1), JwtAlgorithm.ES256)
    with pytest.raises(PKIError, match="share kid"):
        jwks([a, {**b, "kid": a["kid"]}])
    with pytest.raises(PKIError, match="sequence of JWKs"):
        jwks(a)  # type: ignore[arg-type]


def _ec_jwk(jwt_key_for: JwtKeys) -> dict[str, str]:
    return public_jwk(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: {**j, "kty": "XYZ"}, "unsupported or missing JWK key type"),
        (lambda j: {k: v for k, v in j.items() if k != "kty"}, "unsupported or missing JWK key type"),
        (lambda j: {**j, "crv": "P-521"}, "unsupported JWK curve"),
        (lambda j: {**j, "x": j["y"]}, "not on curve"),
        (lambda j: {**j, "x": b64url_encode(b"\x01" * 31)}, "must be 32 bytes"),
        (lambda j: {**j, "x": j["x"][:-2]}, "base64url"),
        (lambda j: {**j, "x": j["x"].replace(j["x"][5], "+", 1)}, "base64url"),
        (lambda j: {**j, "x": j["x"] + "=="}, "base64url"),
        (lambda j: {**j, "x": "!!!!"}, "base64url"),
        (lambda j: {**j, "y": ""}, "lacks required members: y"),
        (lambda j: {"kty": "OKP", "crv": "Ed448", "x": j["x"]}, "unsupported OKP curve"),
        (lambda j: {"kty": "OKP", "crv": "Ed25519", "x": j["x"][:20]}, "32 bytes"),
    ],
)
def test_public_key_from_jwk_refuses_invalid_keys(
    mutate: Callable[[dict[str, str]], dict[str, str]], message: str, jwt_key_for: JwtKeys
) -> None:
    with pytest.raises(PKIError, match=message):
        public_key_from_jwk(mutate(_ec_jwk(jwt_key_for)))


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm))
def test_jwt_algorithm_of_jwk(algorithm: JwtAlgorithm, jwt_key_for: JwtKeys) -> None:
    jwk = public_jwk(jwt_key_for(algorithm), algorithm)
    assert jwt_algorithm_of_jwk(jwk) is algorithm
    no_alg = {k: v for k, v in jwk.items() if k != "alg"}
    if algorithm in (JwtAlgorithm.RS256, JwtAlgorithm.PS256):
        with pytest.raises(PKIError, match="ambiguous"):
            jwt_algorithm_of_jwk(no_alg)
    else:
        assert jwt_algorithm_of_jwk(no_alg) is algorithm
    with pytest.raises(PKIError, match="unsupported JWK alg"):
        jwt_algorithm_of_jwk({**jwk, "alg": "HS256"})
    wrong = JwtAlgorithm.EdDSA if algorithm is not JwtAlgorithm.EdDSA else JwtAlgorithm.ES256
    with pytest.raises(PKIError, match="does not fit"):
        jwt_algorithm_of_jwk({**jwk, "alg": wrong.value})


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 31, bytes(range(256))])
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


_MEMBER = st.text(alphabet="ABCDEFabcdef0123456789-_+/=!", max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    jwk=st.dictionaries(
        st.sampled_from(["kty", "crv", "x", "y", "n", "e", "alg", "kid"]),
        st.one_of(st.sampled_from(["EC", "RSA", "OKP", "oct", "P-256", "P-384", "Ed25519", "AQAB"]), _MEMBER),
    )
)
def test_arbitrary_jwks_only_raise_pkierror(jwk: dict[str, str]) -> None:
    try:
        key = public_key_from_jwk(jwk)
    except PKIError:
        return
    # Anything accepted must be a real public key whose JWK thumbprint is computable.
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
    jwk_thumbprint(jwk)
