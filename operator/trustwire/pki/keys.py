"""Private keys: generation, PEM encoding and the algorithm vocabulary of the CRDs.

Why this module exists: the CRDs name key algorithms with a closed vocabulary
(``ECDSAP256`` … ``Ed25519``) and every other layer must be able to go from a name to
a key and from a key (possibly user-supplied, e.g. a CA from a Secret) back to the
name. Keeping that mapping total and in one place means a key the operator cannot
describe is rejected once, at load time, with a clear :class:`PKIError`, instead of
failing later deep inside certificate or keystore code.

Keys are always written as unencrypted PKCS#8 (``BEGIN PRIVATE KEY``): it is the one
PEM form every consumer we target reads (OpenSSL, Java via PEM loaders, Go, nginx,
Python), and Kubernetes Secrets are the protection boundary, not a PEM passphrase.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import Certificate

from trustwire.pki.errors import PKIError

__all__ = [
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "key_algorithm_of",
    "load_private_key",
    "private_key_to_pem",
    "public_key_der",
    "public_key_matches",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_RSA_PUBLIC_EXPONENT = 65537


class KeyAlgorithm(enum.StrEnum):
    """Key algorithms accepted in ``spec.ca.keyAlgorithm`` / ``spec.certificate.keyAlgorithm``."""

    ECDSAP256 = "ECDSAP256"
    ECDSAP384 = "ECDSAP384"
    RSA2048 = "RSA2048"
    RSA3072 = "RSA3072"
    RSA4096 = "RSA4096"
    Ed25519 = "Ed25519"


_RSA_SIZES: dict[KeyAlgorithm, int] = {
    KeyAlgorithm.RSA2048: 2048,
    KeyAlgorithm.RSA3072: 3072,
    KeyAlgorithm.RSA4096: 4096,
}
_EC_CURVES: dict[KeyAlgorithm, type[ec.EllipticCurve]] = {
    KeyAlgorithm.ECDSAP256: ec.SECP256R1,
    KeyAlgorithm.ECDSAP384: ec.SECP384R1,
}


def generate_private_key(algorithm: KeyAlgorithm) -> PrivateKey:
    """Generate a fresh private key for ``algorithm`` (randomness from the OS via cryptography)."""
    algorithm = KeyAlgorithm(algorithm)
    if algorithm in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[algorithm]())
    if algorithm in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=_RSA_PUBLIC_EXPONENT, key_size=_RSA_SIZES[algorithm])
    return ed25519.Ed25519PrivateKey.generate()


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (a ``BEGIN PRIVATE KEY`` block)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _describe(obj: object) -> str:
    # Only the type name: never the object (a key's repr could one day carry numbers).
    return type(obj).__name__


def key_algorithm_of(key: PrivateKey | PublicKey) -> KeyAlgorithm:
    """The :class:`KeyAlgorithm` of a private (or public) key; :class:`PKIError` if it has none."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for algorithm, curve in _EC_CURVES.items():
            if isinstance(key.curve, curve):
                return algorithm
        raise PKIError(f"unsupported elliptic curve {key.curve.name}: only P-256 and P-384 are supported")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        for algorithm, size in _RSA_SIZES.items():
            if key.key_size == size:
                return algorithm
        raise PKIError(f"unsupported RSA key size {key.key_size}: only 2048, 3072 and 4096 bits are allowed")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeyAlgorithm.Ed25519
    raise PKIError(f"unsupported key type {_describe(key)}")


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8 or traditional ``BEGIN RSA/EC PRIVATE KEY``).

    Raises :class:`PKIError` for anything that is not such a key, for encrypted keys
    and for keys outside :class:`KeyAlgorithm` (so :func:`key_algorithm_of` is total on
    the result). The message never quotes the input.
    """
    if isinstance(pem, str):
        pem = pem.encode("ascii", errors="replace")
    if not isinstance(pem, bytes | bytearray | memoryview):
        raise PKIError(f"private key must be PEM bytes, not {_describe(pem)}")
    try:
        key = serialization.load_pem_private_key(bytes(pem), password=None)
    except TypeError:
        # cryptography raises TypeError when the key is encrypted and no password was given.
        raise PKIError("encrypted private keys are not supported: provide an unencrypted PEM key") from None
    except UnsupportedAlgorithm:
        raise PKIError("private key uses an unsupported algorithm") from None
    except ValueError:
        raise PKIError("data is not a valid PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise PKIError(f"unsupported private key type {_describe(key)}")
    key_algorithm_of(key)
    return key


def public_key_der(key: PrivateKey | PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of a key: the canonical form to compare public keys."""
    public = (
        key.public_key()
        if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        else key
    )
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_matches(key: PrivateKey, cert: Certificate) -> bool:
    """True iff ``cert`` certifies the public half of ``key``."""
    try:
        cert_public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(cert_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return False
    return public_key_der(key) == public_key_der(cert_public)
