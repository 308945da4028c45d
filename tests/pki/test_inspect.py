"""Behaviour of trustwire.pki.inspect: every wrong-material case is reported as a sentence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from trustwire.pki import KeyAlgorithm, PKIError, PrivateKey, check_ca, check_leaf, create_leaf

from .conftest import CA_LIFETIME, DNS, LEAF_LIFETIME, NOW, URIS, KeyFactory

Pair = Callable[..., tuple[x509.Certificate, PrivateKey]]


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_good_ca_has_no_problems(algorithm: KeyAlgorithm, ca_for: Pair) -> None:
    ca, key = ca_for(algorithm)
    assert check_ca(ca, key, now=NOW) == []
    assert check_ca(ca, key, now=NOW + CA_LIFETIME - timedelta(seconds=1)) == []
    assert check_ca(ca, key, now=NOW - timedelta(seconds=60)) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", ["CA certificate expired at"]),
        ("not-yet-valid", ["CA certificate is not valid before"]),
        ("wrong-key", ["CA private key does not match the CA certificate"]),
        ("leaf-as-ca", ["lacks basicConstraints CA:true", "does not allow keyCertSign"]),
        ("no-key-usage", ["does not allow keyCertSign"]),
    ],
)
def test_broken_ca_is_reported(
    case: str, expected: list[str], ca_for: Pair, leaf_for: Pair, key_for: KeyFactory
) -> None:
    ca, key = ca_for(KeyAlgorithm.ECDSAP256)
    now = NOW
    if case == "expired":
        now = NOW + CA_LIFETIME
    elif case == "not-yet-valid":
        now = NOW - timedelta(seconds=61)
    elif case == "wrong-key":
        key = key_for(KeyAlgorithm.ECDSAP256, 5)
    elif case == "leaf-as-ca":
        ca, key = leaf_for(KeyAlgorithm.ECDSAP256)
    elif case == "no-key-usage":
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ku-less")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(2**70)
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
    problems = check_ca(ca, key, now=now)
    assert len(problems) == len(expected), problems
    for fragment, problem in zip(expected, problems, strict=True):
        assert fragment in problem


def test_check_ca_reports_all_problems_at_once(leaf_for: Pair, key_for: KeyFactory) -> None:
    leaf, _ = leaf_for(KeyAlgorithm.RSA2048)
    problems = check_ca(leaf, key_for(KeyAlgorithm.Ed25519, 5), now=NOW + timedelta(days=400))
    assert len(problems) == 4
    joined = " | ".join(problems)
    for fragment in ("CA:true", "keyCertSign", "does not match", "expired"):
        assert fragment in joined


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_good_leaf_has_no_problems(algorithm: KeyAlgorithm, ca_for: Pair, leaf_for: Pair) -> None:
    ca, _ = ca_for(algorithm)
    leaf, key = leaf_for(algorithm)
    assert check_leaf(leaf, key, ca, now=NOW, dns_names=DNS, uri_sans=URIS) == []
    assert check_leaf(leaf, key, ca, now=NOW, dns_names=["SVC.NS"]) == []  # DNS is case-insensitive
    assert check_leaf(leaf, key, ca, now=NOW + LEAF_LIFETIME - timedelta(seconds=1)) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-key", "leaf private key does not match the leaf certificate"),
        ("other-ca", "not signed by the identity's CA"),
        ("expired", "leaf certificate expired at"),
        ("not-yet-valid", "leaf certificate is not valid before"),
        ("missing-dns", "lacks DNS SANs: other.ns"),
        ("missing-uri", "lacks URI SANs: spiffe://cluster.local/ns/ns/sid/other"),
        ("is-a-ca", "is a CA certificate"),
    ],
)
def test_broken_leaf_is_reported(
    case: str, expected: str, ca_for: Pair, leaf_for: Pair, key_for: KeyFactory
) -> None:
    ca, _ = ca_for(KeyAlgorithm.ECDSAP384)
    leaf, key = leaf_for(KeyAlgorithm.ECDSAP384)
    kwargs: dict[str, object] = {"now": NOW, "dns_names": DNS, "uri_sans": URIS}
    if case == "wrong-key":
        key = key_for(KeyAlgorithm.ECDSAP384, 5)
    elif case == "other-ca":
        ca = ca_for(KeyAlgorithm.ECDSAP384, 1)[0]
    elif case == "expired":
        kwargs["now"] = NOW + LEAF_LIFETIME
    elif case == "not-yet-valid":
        kwargs["now"] = NOW - timedelta(minutes=2)
    elif case == "missing-dns":
        kwargs["dns_names"] = [*DNS, "other.ns"]
    elif case == "missing-uri":
        kwargs["uri_sans"] = ["spiffe://cluster.local/ns/ns/sid/other"]
    elif case == "is-a-ca":
        # A CA presented as its own leaf: it is "signed by itself", but it is a CA.
        leaf, key = ca_for(KeyAlgorithm.ECDSAP384)
        ca = leaf
        kwargs["dns_names"] = []
        kwargs["uri_sans"] = []
    problems = check_leaf(leaf, key, ca, **kwargs)  # type: ignore[arg-type]
    assert problems == [p for p in problems if expected in p], problems
    assert len(problems) == 1


def test_check_leaf_reports_all_problems_at_once(ca_for: Pair, leaf_for: Pair, key_for: KeyFactory) -> None:
    leaf, _ = leaf_for(KeyAlgorithm.RSA2048)
    problems = check_leaf(
        leaf,
        key_for(KeyAlgorithm.RSA2048, 5),
        ca_for(KeyAlgorithm.Ed25519)[0],
        now=NOW + timedelta(days=365),
        dns_names=["nope"],
        uri_sans=["spiffe://x/y"],
    )
    assert len(problems) == 5, problems


def test_naive_now_is_refused(ca_for: Pair, leaf_for: Pair) -> None:
    ca, key = ca_for(KeyAlgorithm.ECDSAP256)
    leaf, leaf_key = leaf_for(KeyAlgorithm.ECDSAP256)
    with pytest.raises(PKIError, match="timezone-aware"):
        check_ca(ca, key, now=NOW.replace(tzinfo=None))
    with pytest.raises(PKIError, match="timezone-aware"):
        check_leaf(leaf, leaf_key, ca, now=NOW.replace(tzinfo=None))


def test_leaf_from_create_leaf_passes_check_with_real_sans(ca_for: Pair, key_for: KeyFactory) -> None:
    ca, ca_key = ca_for(KeyAlgorithm.RSA3072)
    key = key_for(KeyAlgorithm.ECDSAP256, 6)
    leaf = create_leaf(
        ca,
        ca_key,
        key.public_key(),
        common_name="x",
        dns_names=["x.y"],
        uri_sans=[],
        now=NOW,
        lifetime=LEAF_LIFETIME,
    )
    assert check_leaf(leaf, key, ca, now=NOW, dns_names=["x.y"]) == []
