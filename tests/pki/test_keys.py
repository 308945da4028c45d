"""Behaviour of trustwire.pki.keys over every KeyAlgorithm with real keys."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustwire.pki import (
    KeyAlgorithm,
    PKIError,
    PrivateKey,
    generate_private_key,
    key_algorithm_of,
    load_private_key,
    private_key_to_pem,
    public_key_matches,
)

from .conftest import KeyFactory

EXPECTED_SHAPE = {
    KeyAlgorithm.ECDSAP256: (ec.EllipticCurvePrivateKey, "secp256r1", 256),
    KeyAlgorithm.ECDSAP384: (ec.EllipticCurvePrivateKey, "secp384r1", 384),
    KeyAlgorithm.RSA2048: (rsa.RSAPrivateKey, None, 2048),
    KeyAlgorithm.RSA3072: (rsa.RSAPrivateKey, None, 3072),
    KeyAlgorithm.RSA4096: (rsa.RSAPrivateKey, None, 4096),
    KeyAlgorithm.Ed25519: (ed25519.Ed25519PrivateKey, None, None),
}


def _spki(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem_body_lines(pem: bytes) -> list[bytes]:
    return [line for line in pem.splitlines() if line and not line.startswith(b"-----")]


def test_vocabulary_is_exactly_the_crd_enum() -> None:
    assert [a.value for a in KeyAlgorithm] == [
        "ECDSAP256",
        "ECDSAP384",
        "RSA2048",
        "RSA3072",
        "RSA4096",
        "Ed25519",
    ]
    assert KeyAlgorithm("RSA2048") is KeyAlgorithm.RSA2048


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_generated_key_has_the_requested_shape(algorithm: KeyAlgorithm, key_for: KeyFactory) -> None:
    key = key_for(algorithm)
    kind, curve, size = EXPECTED_SHAPE[algorithm]
    assert isinstance(key, kind)
    if curve is not None:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == curve
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == size
        assert key.public_key().public_numbers().e == 65537
    assert key_algorithm_of(key) is algorithm
    assert key_algorithm_of(key.public_key()) is algorithm


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_pem_is_unencrypted_pkcs8_and_round_trips(algorithm: KeyAlgorithm, key_for: KeyFactory) -> None:
    key = key_for(algorithm)
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert pem.rstrip().endswith(b"-----END PRIVATE KEY-----")
    assert b"ENCRYPTED" not in pem
    loaded = load_private_key(pem)
    assert _spki(loaded) == _spki(key)
    assert key_algorithm_of(loaded) is algorithm
    assert private_key_to_pem(loaded) == pem


@pytest.mark.parametrize(
    ("algorithm", "header"),
    [
        (KeyAlgorithm.ECDSAP256, b"-----BEGIN EC PRIVATE KEY-----"),
        (KeyAlgorithm.ECDSAP384, b"-----BEGIN EC PRIVATE KEY-----"),
        (KeyAlgorithm.RSA2048, b"-----BEGIN RSA PRIVATE KEY-----"),
        (KeyAlgorithm.RSA4096, b"-----BEGIN RSA PRIVATE KEY-----"),
    ],
)
def test_traditional_openssl_pem_is_accepted(
    algorithm: KeyAlgorithm, header: bytes, key_for: KeyFactory
) -> None:
    key = key_for(algorithm)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(header)
    assert _spki(load_private_key(pem)) == _spki(key)


def test_distinct_generations_give_distinct_keys() -> None:
    spkis = {_spki(generate_private_key(KeyAlgorithm.ECDSAP256)) for _ in range(20)}
    assert len(spkis) == 20


def _encrypted_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


BAD_KEYS = [
    pytest.param(b"", "not a valid PEM private key", id="empty"),
    pytest.param(b"hello world", "not a valid PEM private key", id="garbage"),
    pytest.param(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a valid PEM", id="truncated"
    ),
    pytest.param(_encrypted_pem(), "encrypted private keys are not supported", id="encrypted"),
    pytest.param(_pem(ec.generate_private_key(ec.SECP521R1())), "unsupported elliptic curve", id="p521"),
    pytest.param(
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - deliberately weak
        "unsupported RSA key size 1024",
        id="rsa1024",
    ),
    pytest.param(_pem(ed448.Ed448PrivateKey.generate()), "unsupported", id="ed448"),
    pytest.param(_pem(dsa.generate_private_key(key_size=2048)), "unsupported", id="dsa"),
]


@pytest.mark.parametrize(("pem", "message"), BAD_KEYS)
def test_bad_keys_raise_pkierror_without_echoing_input(pem: bytes, message: str) -> None:
    with pytest.raises(PKIError) as info:
        load_private_key(pem)
    text = str(info.value) + repr(info.value)
    assert message in text
    for line in _pem_body_lines(pem):
        assert line.decode() not in text
    assert isinstance(info.value, ValueError)


def test_load_private_key_refuses_non_bytes() -> None:
    with pytest.raises(PKIError, match="PEM bytes"):
        load_private_key(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_public_key_matches_only_its_own_certificate(
    algorithm: KeyAlgorithm, key_for: KeyFactory, leaf_for: object
) -> None:
    cert, key = leaf_for(algorithm)  # type: ignore[operator]
    assert public_key_matches(key, cert)
    assert not public_key_matches(key_for(algorithm, 1), cert)
    for other in KeyAlgorithm:
        if other is not algorithm:
            assert not public_key_matches(key_for(other), cert)


def test_key_algorithm_of_refuses_foreign_objects() -> None:
    with pytest.raises(PKIError, match="unsupported key type"):
        key_algorithm_of(ed448.Ed448PrivateKey.generate())  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda body: b"-----BEGIN PRIVATE KEY-----\n" + body + b"\n-----END PRIVATE KEY-----\n",
            st.binary(max_size=120).map(base64.b64encode),
        ),
    )
)
def test_arbitrary_bytes_only_raise_pkierror(data: bytes) -> None:
    with pytest.raises(PKIError):
        load_private_key(data)
