"""Fixtures of the planner tests: a key source that hands out the same real keys every run."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from trustwire import pki

KeyPool = Callable[..., pki.PrivateKey]


class FixedKeys:
    """A :class:`~trustwire.plan.keys.KeySource` whose n-th answer is the same in every run:
    real keys from the session's pool, numbered passwords and serials."""

    def __init__(self, pool: KeyPool, first_slot: int = 900) -> None:
        self._pool = pool
        self._slots = itertools.count(first_slot)
        self._serials = itertools.count(0x7000_0000)
        self._passwords = itertools.count(1)
        self.requests: list[str] = []

    def private_key(self, algorithm: pki.KeyAlgorithm) -> pki.PrivateKey:
        self.requests.append(f"private_key {algorithm}")
        return self._pool(algorithm, next(self._slots))

    def jwt_key(self, algorithm: pki.JwtAlgorithm) -> pki.PrivateKey:
        self.requests.append(f"jwt_key {algorithm}")
        return self._pool(algorithm, next(self._slots))

    def hmac_key(self, algorithm: pki.HmacAlgorithm) -> bytes:
        self.requests.append(f"hmac_key {algorithm}")
        slot = next(self._slots)
        return pki.jwk.b64url_encode(bytes([slot % 256]) * pki.HMAC_RANDOM_BYTES[algorithm]).encode()

    def password(self) -> str:
        self.requests.append("password")
        return f"fixed-password-{next(self._passwords):04d}"

    def serial(self) -> int:
        self.requests.append("serial")
        return next(self._serials)


@pytest.fixture
def fixed_keys(real_key: KeyPool) -> Callable[[], FixedKeys]:
    """``fixed_keys()``: a fresh fixed key source; two of them answer the same sequence."""

    def make() -> FixedKeys:
        return FixedKeys(real_key)

    return make
