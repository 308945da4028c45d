"""Shared fixtures for the pki unit tests: a fixed clock and session-cached real keys.

Keys are real (RSA-4096 included) but generated once per session and per
(algorithm, slot), so table-driven tests over every algorithm stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from trustwire.pki import KeyAlgorithm, PrivateKey, create_ca, create_leaf, generate_private_key

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
CA_LIFETIME = timedelta(days=365)
LEAF_LIFETIME = timedelta(days=30)
DNS = ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"]
URIS = ["spiffe://cluster.local/ns/ns/sid/svc"]

KeyFactory = Callable[..., PrivateKey]


@pytest.fixture(scope="session")
def key_for() -> KeyFactory:
    """``key_for(alg, slot=0)``: a real key, the same object for the same (alg, slot) all session."""
    cache: dict[tuple[KeyAlgorithm, int], PrivateKey] = {}

    def get(algorithm: KeyAlgorithm, slot: int = 0) -> PrivateKey:
        if (algorithm, slot) not in cache:
            cache[(algorithm, slot)] = generate_private_key(algorithm)
        return cache[(algorithm, slot)]

    return get


@pytest.fixture(scope="session")
def ca_for(key_for: KeyFactory) -> Callable[..., tuple[x509.Certificate, PrivateKey]]:
    """``ca_for(alg, slot=0)``: a cached CA (cert, key) valid at NOW, key in slot ``100 + slot``."""
    cache: dict[tuple[KeyAlgorithm, int], tuple[x509.Certificate, PrivateKey]] = {}

    def get(algorithm: KeyAlgorithm, slot: int = 0) -> tuple[x509.Certificate, PrivateKey]:
        if (algorithm, slot) not in cache:
            key = key_for(algorithm, 100 + slot)
            cert = create_ca(key, common_name=f"{algorithm} CA {slot}", now=NOW, lifetime=CA_LIFETIME)
            cache[(algorithm, slot)] = (cert, key)
        return cache[(algorithm, slot)]

    return get


@pytest.fixture(scope="session")
def leaf_for(
    key_for: KeyFactory, ca_for: Callable[..., tuple[x509.Certificate, PrivateKey]]
) -> Callable[..., tuple[x509.Certificate, PrivateKey]]:
    """``leaf_for(leaf_alg, ca_alg=None)``: a cached leaf (cert, key) issued by ``ca_for(ca_alg)``."""
    cache: dict[tuple[KeyAlgorithm, KeyAlgorithm], tuple[x509.Certificate, PrivateKey]] = {}

    def get(
        algorithm: KeyAlgorithm, ca_algorithm: KeyAlgorithm | None = None
    ) -> tuple[x509.Certificate, PrivateKey]:
        ca_algorithm = ca_algorithm or algorithm
        if (algorithm, ca_algorithm) not in cache:
            ca_cert, ca_key = ca_for(ca_algorithm)
            key = key_for(algorithm, 200)
            cert = create_leaf(
                ca_cert,
                ca_key,
                key.public_key(),
                common_name="svc",
                dns_names=DNS,
                uri_sans=URIS,
                now=NOW,
                lifetime=LEAF_LIFETIME,
            )
            cache[(algorithm, ca_algorithm)] = (cert, key)
        return cache[(algorithm, ca_algorithm)]

    return get


@pytest.fixture(scope="session")
def jwt_key_for() -> Callable[..., PrivateKey]:
    """``jwt_key_for(alg, slot=0)``: a cached real JWT signing key for a JwtAlgorithm."""
    from trustwire.pki import JwtAlgorithm, generate_jwt_key

    cache: dict[tuple[JwtAlgorithm, int], PrivateKey] = {}

    def get(algorithm: JwtAlgorithm, slot: int = 0) -> PrivateKey:
        if (algorithm, slot) not in cache:
            cache[(algorithm, slot)] = generate_jwt_key(algorithm)
        return cache[(algorithm, slot)]

    return get
