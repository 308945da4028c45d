"""Where fresh key material comes from, injected into the planner.

The planner asks a :class:`KeySource` for every new private key, JWT key (asymmetric or
HMAC), password and
certificate serial, so the same observation, key source and clock plan the same bytes
(tests pass a fixed source and compare whole plans). Production uses :class:`SystemKeys`,
which draws from the OS through :mod:`trustwire.pki`.
"""

from __future__ import annotations

from typing import Protocol

from trustwire import pki


class KeySource(Protocol):
    def private_key(self, algorithm: pki.KeyAlgorithm) -> pki.PrivateKey: ...

    def jwt_key(self, algorithm: pki.JwtAlgorithm) -> pki.PrivateKey: ...

    def hmac_key(self, algorithm: pki.HmacAlgorithm) -> bytes: ...

    def password(self) -> str: ...

    def serial(self) -> int: ...


class SystemKeys:
    """Fresh OS randomness for every request (random serials are a security rule)."""

    def private_key(self, algorithm: pki.KeyAlgorithm) -> pki.PrivateKey:
        return pki.generate_private_key(algorithm)

    def jwt_key(self, algorithm: pki.JwtAlgorithm) -> pki.PrivateKey:
        return pki.generate_jwt_key(algorithm)

    def hmac_key(self, algorithm: pki.HmacAlgorithm) -> bytes:
        return pki.generate_hmac_key(algorithm)

    def password(self) -> str:
        return pki.random_password()

    def serial(self) -> int:
        return pki.random_serial()


SYSTEM_KEYS = SystemKeys()
