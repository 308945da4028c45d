"""Behaviour of trustwire.pki.stores: PKCS#12 profiles, truststore aliases, JKS round trips.

The JKS format itself is tested in tests/pki/test_jks.py.

Java's view (trustedCertEntry, PrivateKeyEntry) is proven in tests/interop with keytool;
here we prove content, encryption profile and error handling without leaving Python.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from trustwire.pki import (
    KeyAlgorithm,
    PKIError,
    PrivateKey,
    create_ca,
    fingerprint_sha256,
    jks_keystore,
    jks_truststore,
    pkcs12_keystore,
    pkcs12_truststore,
    random_password,
    read_jks,
    read_pkcs12,
    truststore_alias,
)

from .conftest import CA_LIFETIME, NOW, KeyFactory

Pair = Callable[..., tuple[x509.Certificate, PrivateKey]]
PASSWORD = "s3cret-password-for-tests"


def oid_der(dotted: str) -> bytes:
    """DER encoding of an OBJECT IDENTIFIER, to look for algorithm identifiers in a PKCS#12 file."""
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.insert(0, 0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(chunk)
    return bytes([0x06, len(body)]) + bytes(body)


PBES2 = oid_der("1.2.840.113549.1.5.13")
PBKDF2 = oid_der("1.2.840.113549.1.5.12")
AES256_CBC = oid_der("2.16.840.1.101.3.4.1.42")
HMAC_SHA256 = oid_der("1.2.840.113549.2.9")
SHA256 = oid_der("2.16.840.1.101.3.4.2.1")
PBE_SHA1_3DES = oid_der("1.2.840.113549.1.12.1.3")
SHA1 = oid_der("1.3.14.3.2.26")

PROFILES = {
    False: {"present": [PBES2, PBKDF2, AES256_CBC, HMAC_SHA256, SHA256], "absent": [PBE_SHA1_3DES, SHA1]},
    True: {"present": [PBE_SHA1_3DES, SHA1], "absent": [PBES2, AES256_CBC, SHA256]},
}


def test_oid_der_helper_matches_a_known_encoding() -> None:
    # sha256WithRSAEncryption as it appears in every RSA-signed certificate.
    assert oid_der("1.2.840.113549.1.1.11") == bytes.fromhex("06092a864886f70d01010b")


def test_random_password() -> None:
    passwords = [random_password() for _ in range(200)]
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert all(len(p) == 32 and set(p) <= alphabet for p in passwords)
    assert len(set(passwords)) == 200


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_pkcs12_keystore_round_trip_and_profile(
    algorithm: KeyAlgorithm, legacy: bool, ca_for: Pair, leaf_for: Pair
) -> None:
    ca, _ = ca_for(algorithm)
    leaf, key = leaf_for(algorithm)
    data = pkcs12_keystore(key, leaf, [ca], PASSWORD, alias="MyService", legacy=legacy)

    loaded_key, certs = read_pkcs12(data, PASSWORD)
    assert loaded_key is not None
    assert loaded_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert certs == [leaf, ca]

    raw = pkcs12.load_pkcs12(data, PASSWORD.encode())
    assert raw.cert is not None and raw.cert.friendly_name == b"myservice"

    for oid in PROFILES[legacy]["present"]:
        assert oid in data
    for oid in PROFILES[legacy]["absent"]:
        assert oid not in data


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
def test_pkcs12_truststore_holds_exactly_the_cas_with_stable_aliases(legacy: bool, ca_for: Pair) -> None:
    cas = [ca_for(a)[0] for a in KeyAlgorithm]
    data = pkcs12_truststore([*cas, cas[0]], PASSWORD, legacy=legacy)  # duplicate written once
    key, certs = read_pkcs12(data, PASSWORD)
    assert key is None
    assert certs == cas
    names = [c.friendly_name for c in pkcs12.load_pkcs12(data, PASSWORD.encode()).additional_certs]
    assert names == [truststore_alias(c).encode() for c in cas]
    for oid in PROFILES[legacy]["present"]:
        assert oid in data


@pytest.mark.parametrize(
    ("cn", "prefix"),
    [
        ("dgc CA", "dgc-ca-"),
        ("ECDSAP256 CA 0", "ecdsap256-ca-0-"),
        ("Ünïcode / Slashes", "n-code-slashes-"),
        ("---", "ca-"),
        ("x" * 64, "x" * 48 + "-"),
    ],
)
def test_truststore_alias_is_sanitised_cn_plus_fingerprint(cn: str, prefix: str, key_for: KeyFactory) -> None:
    ca = create_ca(key_for(KeyAlgorithm.ECDSAP256), common_name=cn, now=NOW, lifetime=CA_LIFETIME)
    alias = truststore_alias(ca)
    assert alias == prefix + fingerprint_sha256(ca)[:8]
    assert re.fullmatch(r"[a-z0-9._-]+", alias)
    assert truststore_alias(ca) == alias  # stable


def test_truststore_alias_without_cn(key_for: KeyFactory) -> None:
    key = key_for(KeyAlgorithm.ECDSAP256)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no cn")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2**70)
        .not_valid_before(NOW)
        .not_valid_after(NOW + CA_LIFETIME)
        .sign(key, hashes.SHA256())
    )
    assert truststore_alias(cert) == "ca-" + fingerprint_sha256(cert)[:8]


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_jks_keystore_round_trip(algorithm: KeyAlgorithm, ca_for: Pair, leaf_for: Pair) -> None:
    ca, _ = ca_for(algorithm)
    leaf, key = leaf_for(algorithm)
    data = jks_keystore(key, leaf, [ca], PASSWORD)
    store = read_jks(data, PASSWORD)  # the key opens with the store password: key password == store password
    assert store.trusted == ()
    (entry,) = store.keys
    assert entry.alias == "trustwire"
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert entry.pkcs8 == pkcs8
    assert list(entry.chain) == [c.public_bytes(serialization.Encoding.DER) for c in (leaf, ca)]
    assert entry.timestamp_ms == int(leaf.not_valid_before_utc.timestamp()) * 1000  # no wall clock
    with pytest.raises(PKIError, match="wrong password"):
        read_jks(data, "wrong password")


def test_jks_truststore_round_trip(ca_for: Pair) -> None:
    cas = [ca_for(a)[0] for a in KeyAlgorithm]
    store = read_jks(jks_truststore([*cas, cas[-1]], PASSWORD), PASSWORD)
    assert store.keys == ()
    assert [e.alias for e in store.trusted] == [truststore_alias(c) for c in cas]
    assert [e.cert for e in store.trusted] == [c.public_bytes(serialization.Encoding.DER) for c in cas]


def test_read_pkcs12_wrong_password_and_garbage(ca_for: Pair, leaf_for: Pair) -> None:
    leaf, key = leaf_for(KeyAlgorithm.ECDSAP256)
    data = pkcs12_keystore(key, leaf, [ca_for(KeyAlgorithm.ECDSAP256)[0]], PASSWORD)
    for blob, password in [(data, "wrong"), (b"garbage", PASSWORD), (data[:-10], PASSWORD)]:
        with pytest.raises(PKIError, match="wrong password or corrupt data") as info:
            read_pkcs12(blob, password)
        assert PASSWORD not in str(info.value)


def test_store_errors(ca_for: Pair, leaf_for: Pair, key_for: KeyFactory) -> None:
    ca, _ = ca_for(KeyAlgorithm.ECDSAP256)
    leaf, key = leaf_for(KeyAlgorithm.ECDSAP256)
    other = key_for(KeyAlgorithm.ECDSAP256, 9)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: pkcs12_keystore(other, leaf, [ca], PASSWORD), "does not match"),
        (lambda: jks_keystore(other, leaf, [ca], PASSWORD), "does not match"),
        (lambda: pkcs12_keystore(key, leaf, [ca], ""), "non-empty"),
        (lambda: jks_keystore(key, leaf, [ca], ""), "non-empty"),
        (lambda: jks_keystore(key, leaf, [ca], PASSWORD, alias=" x"), "alias"),
        (lambda: pkcs12_keystore(key, leaf, [ca], PASSWORD, alias=""), "alias"),
        (lambda: pkcs12_truststore([], PASSWORD), "at least one"),
        (lambda: jks_truststore([], PASSWORD), "at least one"),
        (lambda: jks_truststore([ca], ""), "non-empty"),
        (lambda: pkcs12_truststore(ca, PASSWORD), "not a single certificate"),  # type: ignore[arg-type]
        (lambda: pkcs12_truststore([b"pem"], PASSWORD), "must be certificates"),  # type: ignore[list-item]
        (lambda: pkcs12_truststore([ca], ""), "non-empty"),
    ]
    for call, message in cases:
        with pytest.raises(PKIError, match=message):
            call()


def test_keystores_are_encrypted_not_plaintext(ca_for: Pair, leaf_for: Pair) -> None:
    """The PKCS#8 key must not appear in clear inside either keystore format."""
    leaf, key = leaf_for(KeyAlgorithm.RSA2048)
    ca, _ = ca_for(KeyAlgorithm.RSA2048)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    secret_slice = pkcs8[-64:]
    for data in (
        pkcs12_keystore(key, leaf, [ca], PASSWORD),
        pkcs12_keystore(key, leaf, [ca], PASSWORD, legacy=True),
        jks_keystore(key, leaf, [ca], PASSWORD),
    ):
        assert secret_slice not in data
