"""Behaviour of trustwire.pki.certs: the CA and leaf profiles, PEM, and accessors."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from trustwire.pki import (
    KeyAlgorithm,
    PKIError,
    PrivateKey,
    cert_to_pem,
    certs_to_pem,
    create_ca,
    create_leaf,
    dns_sans,
    fingerprint_sha256,
    is_ca,
    is_signed_by,
    load_certificates,
    not_after,
    not_before,
    serial_hex,
    uri_sans,
)

from .conftest import CA_LIFETIME, DNS, LEAF_LIFETIME, NOW, URIS, KeyFactory

Pair = Callable[..., tuple[x509.Certificate, PrivateKey]]

EXPECTED_HASH: dict[KeyAlgorithm, type] = {
    KeyAlgorithm.ECDSAP256: hashes.SHA256,
    KeyAlgorithm.ECDSAP384: hashes.SHA384,
    KeyAlgorithm.RSA2048: hashes.SHA256,
    KeyAlgorithm.RSA3072: hashes.SHA256,
    KeyAlgorithm.RSA4096: hashes.SHA256,
    KeyAlgorithm.Ed25519: type(None),
}


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def _spki_sha1(cert: x509.Certificate) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type,unused-ignore]


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_ca_profile(algorithm: KeyAlgorithm, ca_for: Pair) -> None:
    ca, _ = ca_for(algorithm)
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{algorithm} CA 0"
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "trustwire"
    assert is_ca(ca)
    assert is_signed_by(ca, ca)

    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=0)

    ku = _ext(ca, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign  # type: ignore[attr-defined]
    assert not ku.value.digital_signature and not ku.value.key_encipherment  # type: ignore[attr-defined]

    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    assert ski.digest == _spki_sha1(ca)  # type: ignore[attr-defined]
    aki = _ext(ca, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # type: ignore[attr-defined]

    assert 2**64 <= ca.serial_number < 2**159
    assert not_before(ca) == NOW - timedelta(seconds=60)
    assert not_after(ca) == NOW + CA_LIFETIME
    assert ca.version is x509.Version.v3
    assert isinstance(ca.signature_hash_algorithm, EXPECTED_HASH[algorithm])


def test_ca_organization_is_configurable_and_optional(key_for: KeyFactory) -> None:
    key = key_for(KeyAlgorithm.ECDSAP256)
    ca = create_ca(key, common_name="x", now=NOW, lifetime=CA_LIFETIME, organization="acme")
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    bare = create_ca(key, common_name="x", now=NOW, lifetime=CA_LIFETIME, organization="")
    assert bare.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []


# Every leaf algorithm under every CA algorithm: the profile must not depend on the pairing.
PAIRS = list(product(KeyAlgorithm, KeyAlgorithm))


@pytest.mark.parametrize(("leaf_alg", "ca_alg"), PAIRS, ids=[f"{a}-under-{b}" for a, b in PAIRS])
def test_leaf_profile(leaf_alg: KeyAlgorithm, ca_alg: KeyAlgorithm, ca_for: Pair, leaf_for: Pair) -> None:
    ca, _ = ca_for(ca_alg)
    leaf, _ = leaf_for(leaf_alg, ca_alg)
    assert leaf.issuer == ca.subject
    assert leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc")])
    assert is_signed_by(leaf, ca)
    assert not is_ca(leaf)
    assert isinstance(leaf.signature_hash_algorithm, EXPECTED_HASH[ca_alg])

    bc = _ext(leaf, x509.BasicConstraints)
    assert bc.value == x509.BasicConstraints(ca=False, path_length=None)

    ku = _ext(leaf, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature  # type: ignore[attr-defined]
    assert ku.value.key_encipherment == leaf_alg.value.startswith("RSA")  # type: ignore[attr-defined]
    assert not ku.value.key_cert_sign and not ku.value.crl_sign  # type: ignore[attr-defined]

    eku = _ext(leaf, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # type: ignore[call-overload]

    assert dns_sans(leaf) == DNS
    assert uri_sans(leaf) == URIS
    assert _ext(leaf, x509.SubjectKeyIdentifier).value.digest == _spki_sha1(leaf)  # type: ignore[attr-defined]
    ca_ski = _ext(ca, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    assert _ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski  # type: ignore[attr-defined]

    assert 2**64 <= leaf.serial_number < 2**159
    assert not_before(leaf) == NOW - timedelta(seconds=60)
    assert not_after(leaf) == NOW + LEAF_LIFETIME


def _leaf(ca: x509.Certificate, ca_key: PrivateKey, key: PrivateKey, **overrides: object) -> x509.Certificate:
    args: dict[str, object] = {
        "common_name": "svc",
        "dns_names": ["svc"],
        "uri_sans": [],
        "now": NOW,
        "lifetime": LEAF_LIFETIME,
    }
    args.update(overrides)
    return create_leaf(ca, ca_key, key.public_key(), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lifetime", "expected_not_after"),
    [
        (timedelta(days=30), NOW + timedelta(days=30)),
        (CA_LIFETIME - timedelta(seconds=1), NOW + CA_LIFETIME - timedelta(seconds=1)),
        (CA_LIFETIME, NOW + CA_LIFETIME),
        (CA_LIFETIME + timedelta(days=1), NOW + CA_LIFETIME),
        (timedelta(days=10_000), NOW + CA_LIFETIME),
    ],
)
def test_leaf_never_outlives_its_ca(
    lifetime: timedelta, expected_not_after: datetime, ca_for: Pair, key_for: KeyFactory
) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    leaf = _leaf(ca, ca_key, key_for(KeyAlgorithm.ECDSAP256, 3), lifetime=lifetime)
    assert not_after(leaf) == expected_not_after
    assert not_after(leaf) <= not_after(ca)


def test_leaf_late_in_ca_life_is_capped_at_ca_expiry(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    later = NOW + CA_LIFETIME - timedelta(days=5)
    leaf = _leaf(ca, ca_key, key_for(KeyAlgorithm.ECDSAP256, 3), now=later, lifetime=timedelta(days=30))
    assert not_after(leaf) == not_after(ca)
    assert not_before(leaf) == later - timedelta(seconds=60)


def test_serials_are_random_and_unique(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    key = key_for(KeyAlgorithm.ECDSAP256, 3)
    serials = {_leaf(ca, ca_key, key).serial_number for _ in range(50)}
    assert len(serials) == 50
    assert all(2**158 <= s < 2**159 for s in serials)


def test_dns_and_uri_sans_are_deduplicated_and_ordered(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    leaf = _leaf(
        ca,
        ca_key,
        key_for(KeyAlgorithm.ECDSAP256, 3),
        dns_names=["b.example", "a.example", "b.example", "*.wild.example"],
        uri_sans=["spiffe://td/ns/a/sid/x", "spiffe://td/ns/a/sid/x"],
    )
    assert dns_sans(leaf) == ["b.example", "a.example", "*.wild.example"]
    assert uri_sans(leaf) == ["spiffe://td/ns/a/sid/x"]


def test_uri_only_leaf_is_allowed(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    leaf = _leaf(ca, ca_key, key_for(KeyAlgorithm.ECDSAP256, 3), dns_names=[], uri_sans=URIS)
    assert dns_sans(leaf) == []
    assert uri_sans(leaf) == URIS


NAIVE = datetime(2030, 6, 1, 12, 0, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"now": NAIVE}, "timezone-aware"),
        ({"lifetime": timedelta(0)}, "positive"),
        ({"lifetime": timedelta(seconds=-1)}, "positive"),
        ({"dns_names": [], "uri_sans": []}, "at least one DNS or URI"),
        ({"dns_names": "svc"}, "sequences of strings"),
        ({"dns_names": ["bad name"]}, "not a valid host name"),
        ({"dns_names": ["-bad.example"]}, "not a valid host name"),
        ({"dns_names": ["a..b"]}, "not a valid host name"),
        ({"dns_names": ["bücher.example"]}, "ASCII"),
        ({"dns_names": ["x" * 64 + ".example"]}, "not a valid host name"),
        ({"dns_names": ["a.*.example"]}, "not a valid host name"),
        ({"uri_sans": ["not a uri"]}, "absolute ASCII URI"),
        ({"common_name": ""}, "non-empty"),
        ({"common_name": "x" * 65}, "limit is 64"),
        ({"now": NOW + CA_LIFETIME}, "CA expired"),
        ({"now": NOW - timedelta(days=1)}, "CA is not valid before"),
    ],
)
def test_create_leaf_refuses_bad_input(
    overrides: dict[str, object], message: str, ca_for: Pair, key_for: KeyFactory
) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.ECDSAP256)
    with pytest.raises(PKIError, match=message):
        _leaf(ca, ca_key, key_for(KeyAlgorithm.ECDSAP256, 3), **overrides)


def test_create_leaf_refuses_mismatched_ca_key(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, _ = ca_for(KeyAlgorithm.ECDSAP256)
    with pytest.raises(PKIError, match="does not match the CA certificate"):
        _leaf(ca, key_for(KeyAlgorithm.ECDSAP256, 7), key_for(KeyAlgorithm.ECDSAP256, 3))


def test_create_leaf_refuses_a_non_ca_issuer(leaf_for: Pair, key_for: KeyFactory) -> None:
    leaf, leaf_key = leaf_for(KeyAlgorithm.ECDSAP256)
    with pytest.raises(PKIError, match="not a CA"):
        _leaf(leaf, leaf_key, key_for(KeyAlgorithm.ECDSAP256, 3))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"now": NAIVE}, "timezone-aware"),
        ({"lifetime": timedelta(0)}, "positive"),
        ({"common_name": ""}, "non-empty"),
        ({"common_name": "y" * 65}, "limit is 64"),
    ],
)
def test_create_ca_refuses_bad_input(overrides: dict[str, object], message: str, key_for: KeyFactory) -> None:
    args: dict[str, object] = {"common_name": "ca", "now": NOW, "lifetime": CA_LIFETIME}
    args.update(overrides)
    with pytest.raises(PKIError, match=message):
        create_ca(key_for(KeyAlgorithm.ECDSAP256), **args)  # type: ignore[arg-type]


def test_pem_bundle_round_trip_keeps_order(ca_for: Pair, leaf_for: Pair) -> None:
    certs = [
        leaf_for(KeyAlgorithm.RSA2048)[0],
        ca_for(KeyAlgorithm.RSA2048)[0],
        ca_for(KeyAlgorithm.Ed25519)[0],
    ]
    pem = certs_to_pem(certs)
    assert pem == b"".join(cert_to_pem(c) for c in certs)
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 3
    assert load_certificates(pem) == certs
    assert load_certificates(cert_to_pem(certs[0])) == certs[:1]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_certificates_refuses_garbage(data: bytes) -> None:
    with pytest.raises(PKIError, match="PEM certificate"):
        load_certificates(data)


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_fingerprint_and_serial_hex(algorithm: KeyAlgorithm, leaf_for: Pair) -> None:
    cert, _ = leaf_for(algorithm)
    fp = fingerprint_sha256(cert)
    assert fp == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert len(fp) == 64 and fp == fp.lower() and ":" not in fp
    sh = serial_hex(cert)
    assert int(sh, 16) == cert.serial_number
    assert sh == sh.lower() and not sh.startswith("0x")


def test_is_signed_by_is_false_for_every_kind_of_mismatch(
    ca_for: Pair, leaf_for: Pair, key_for: KeyFactory
) -> None:
    ca, _ = ca_for(KeyAlgorithm.ECDSAP256)
    leaf, _ = leaf_for(KeyAlgorithm.ECDSAP256)
    # Same subject name as the real CA, different key: the name matches, the signature must not.
    impostor = create_ca(
        key_for(KeyAlgorithm.ECDSAP256, 9), common_name="ECDSAP256 CA 0", now=NOW, lifetime=CA_LIFETIME
    )
    assert impostor.subject == ca.subject
    assert is_signed_by(leaf, ca)
    assert not is_signed_by(leaf, impostor)
    assert not is_signed_by(leaf, ca_for(KeyAlgorithm.ECDSAP256, 1)[0])  # different name
    assert not is_signed_by(leaf, ca_for(KeyAlgorithm.RSA2048)[0])  # different key type
    assert not is_signed_by(ca, leaf)
    assert not is_signed_by(leaf, leaf)


def test_validity_accessors_are_utc_aware(leaf_for: Pair) -> None:
    cert, _ = leaf_for(KeyAlgorithm.Ed25519)
    for value in (not_before(cert), not_after(cert)):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert not_before(cert).astimezone(UTC) == NOW - timedelta(seconds=60)


def test_accessors_on_a_certificate_without_extensions(key_for: KeyFactory) -> None:
    key = key_for(KeyAlgorithm.ECDSAP256)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert not is_ca(bare)
    assert dns_sans(bare) == []
    assert uri_sans(bare) == []
    assert is_signed_by(bare, bare)


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda body: b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n",
            st.binary(max_size=120).map(base64.b64encode),
        ),
    )
)
def test_arbitrary_bytes_only_raise_pkierror(data: bytes) -> None:
    with pytest.raises(PKIError):
        load_certificates(data)


def test_load_certificates_refuses_a_certificate_that_only_fails_when_read(key_for: KeyFactory) -> None:
    """cryptography decodes a certificate's names lazily: one whose subject is garbled (here
    a byte of the CN's UTF8String flipped into invalid UTF-8) loads, then raises ValueError from
    whichever check reads it first — seen as the planner crashing on a garbled CA Secret
    (tests/test_fuzz.py). It must be refused at load, like any other bad certificate."""
    cert = create_ca(key_for(KeyAlgorithm.ECDSAP256), common_name="dgc", now=NOW, lifetime=CA_LIFETIME)
    der = cert.public_bytes(serialization.Encoding.DER)
    utf8 = b"\x0c\x03dgc"
    assert utf8 in der
    body = base64.encodebytes(der.replace(utf8, b"\x0c\x03d\xa7c"))
    pem = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
    with pytest.raises(PKIError, match="cannot be decoded"):
        load_certificates(pem)


def test_a_given_serial_makes_issuance_repeatable(key_for: KeyFactory) -> None:
    """With the serial given (and Ed25519's deterministic signatures) the same inputs give the same bytes."""
    ca_key, leaf_key = key_for(KeyAlgorithm.Ed25519), key_for(KeyAlgorithm.Ed25519, 1)

    def issue() -> tuple[bytes, bytes]:
        ca = create_ca(ca_key, common_name="ca", now=NOW, lifetime=CA_LIFETIME, serial=(1 << 158) | 7)
        leaf = create_leaf(ca, ca_key, leaf_key.public_key(), common_name="svc", dns_names=DNS, uri_sans=URIS,
                           now=NOW, lifetime=LEAF_LIFETIME, serial=(1 << 158) | 8)
        return cert_to_pem(ca), cert_to_pem(leaf)

    first = issue()
    assert first == issue()
    assert [load_certificates(pem)[0].serial_number for pem in first] == [(1 << 158) | 7, (1 << 158) | 8]
