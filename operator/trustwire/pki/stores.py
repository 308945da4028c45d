"""Keystores and truststores for Java (and everything else that reads PKCS#12).

Why this exists: half the workloads trustwire wires are JVM services that want a
``keystore.p12`` / ``truststore.p12`` pair (or the older ``.jks``) plus a password,
not PEM files. Two details make or break those files and are easy to get wrong:

* **Trusted-certificate entries.** Java's PKCS12 ``KeyStore`` only exposes a
  certificate bag as a ``trustedCertEntry`` if the bag carries Oracle's
  trusted-key-usage attribute (OID ``2.16.840.1.113894.746875.1.1`` with value
  ``anyExtendedKeyUsage``). A "CA certs only" PKCS#12 written by plain OpenSSL has no
  such attribute and Java silently shows an **empty** truststore. cryptography ≥ 45
  writes exactly this with
  :func:`cryptography.hazmat.primitives.serialization.pkcs12.serialize_java_truststore`,
  which we use (proven by ``keytool -list`` in ``tests/interop``).
* **Encryption profile.** The default (``legacy=False``) is the modern profile that
  OpenSSL 3 and Java ≥ 8u301/11.0.12 write by default: keys and certificates
  encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC.
  ``legacy=True`` writes the profile older readers need — Java < 8u301 (and
  < 11.0.12), old Android, OpenSSL 1.0, many appliances: ``pbeWithSHAAnd3-KeyTripleDES-CBC``
  for keys and certificates and an HMAC-SHA1 MAC. It is weaker; use it only for such
  peers.

JKS files are written by :mod:`trustwire.pki.jks` (the JKS format is Java-proprietary; its
key protection is weak SHA-1 based and JKS is deprecated since Java 9 — offered only
because some consumers still insist on it). Entry timestamps are the certificates'
``notBefore`` rather than the wall clock, so this module stays free of clock reads.

Passwords: every store has a random 32-character URL-safe password
(:func:`random_password`, ~190 bits); the store password also protects JKS private
key entries because most Java code assumes key password == store password.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from trustwire.pki.certs import fingerprint_sha256, not_before, subject_common_name
from trustwire.pki.errors import PKIError
from trustwire.pki.jks import JksKeyEntry, JksTrustedEntry, write_jks
from trustwire.pki.keys import PrivateKey, key_algorithm_of, public_key_matches

__all__ = [
    "DEFAULT_ALIAS",
    "jks_keystore",
    "jks_truststore",
    "pkcs12_keystore",
    "pkcs12_truststore",
    "random_password",
    "read_pkcs12",
    "truststore_alias",
]

DEFAULT_ALIAS = "trustwire"

#: PBKDF2 iterations for the modern PKCS#12 profile (Java and OpenSSL 3 write 10000 by default).
_KDF_ROUNDS = 10_000
#: Characters kept in truststore aliases; anything else becomes "-" (portable: keytool, JKS, OpenSSL).
_ALIAS_SAFE = re.compile(r"[^a-z0-9._-]+")


def random_password() -> str:
    """A random 32-character URL-safe password (24 bytes from :mod:`secrets`)."""
    return secrets.token_urlsafe(24)


def _check_password(password: str) -> bytes:
    if not isinstance(password, str) or not password:
        raise PKIError("store password must be a non-empty string")
    return password.encode("utf-8")


def _encryption(password: str, legacy: bool) -> serialization.KeySerializationEncryption:
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(_KDF_ROUNDS)
    if legacy:
        # SHA-1 here is the MAC/PBE of the legacy PKCS#12 profile old Java needs, chosen explicitly.
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(
            hashes.SHA1()  # noqa: S303
        )
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    return builder.build(_check_password(password))


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not alias or alias != alias.strip():
        raise PKIError("alias must be a non-empty string without surrounding whitespace")
    # Java's PKCS12 and JKS key stores treat aliases case-insensitively and report them lower-cased.
    return alias.lower()


def truststore_alias(cert: x509.Certificate) -> str:
    """Stable alias for a trusted CA.

    Sanitised lower-case subject CN, ``-``, first 8 hex digits of the SHA-256 fingerprint.
    """
    cn = subject_common_name(cert) or "ca"
    base = _ALIAS_SAFE.sub("-", cn.lower()).strip("-._") or "ca"
    return f"{base[:48]}-{fingerprint_sha256(cert)[:8]}"


def _unique_cas(cas: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if isinstance(cas, x509.Certificate):
        raise PKIError("cas must be a sequence of certificates, not a single certificate")
    unique: dict[str, x509.Certificate] = {}
    for cert in cas:
        if not isinstance(cert, x509.Certificate):
            raise PKIError(f"truststore entries must be certificates, not {type(cert).__name__}")
        unique.setdefault(fingerprint_sha256(cert), cert)
    if not unique:
        raise PKIError("a truststore needs at least one CA certificate")
    return list(unique.values())


def _check_key_and_cert(key: PrivateKey, cert: x509.Certificate) -> None:
    key_algorithm_of(key)
    if not public_key_matches(key, cert):
        raise PKIError("private key does not match the keystore certificate")


def pkcs12_keystore(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: str,
    *,
    alias: str = DEFAULT_ALIAS,
    legacy: bool = False,
) -> bytes:
    """PKCS#12 with one private-key entry ``alias``: ``key``, ``cert`` and its ``chain`` (issuer first).

    ``legacy=False`` (default): PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC for key and
    certificates, HMAC-SHA256 MAC — readable by Java ≥ 8u301 / 11.0.12 / 17, OpenSSL
    1.1.1+, Go, .NET. ``legacy=True``: PBE-SHA1-3DES for key and certificates and an
    HMAC-SHA1 MAC, the only profile Java < 8u301 (and < 11.0.12) and OpenSSL 1.0 read.
    The chain certificates carry no trusted attribute: in Java they belong to the key
    entry's chain and do not become trust anchors.
    """
    _check_key_and_cert(key, cert)
    name = _check_alias(alias).encode("utf-8")
    try:
        return pkcs12.serialize_key_and_certificates(
            name, key, cert, list(chain), _encryption(password, legacy)
        )
    except (TypeError, ValueError) as exc:
        raise PKIError(f"could not write PKCS#12 keystore: {exc}") from None


def pkcs12_truststore(cas: Sequence[x509.Certificate], password: str, *, legacy: bool = False) -> bytes:
    """PKCS#12 of trusted CA certificates that Java reads as ``trustedCertEntry`` entries.

    Each certificate bag carries the Oracle trusted-key-usage attribute
    (``2.16.840.1.113894.746875.1.1`` = ``anyExtendedKeyUsage``) and a friendly name
    from :func:`truststore_alias`. Duplicates (same fingerprint) are written once.
    ``legacy`` selects the encryption profile as in :func:`pkcs12_keystore`.
    """
    unique = _unique_cas(cas)
    bags = [pkcs12.PKCS12Certificate(cert, truststore_alias(cert).encode("utf-8")) for cert in unique]
    try:
        return pkcs12.serialize_java_truststore(bags, _encryption(password, legacy))
    except (TypeError, ValueError) as exc:
        raise PKIError(f"could not write PKCS#12 truststore: {exc}") from None


def _timestamp_ms(cert: x509.Certificate) -> int:
    return int(not_before(cert).timestamp()) * 1000


def jks_keystore(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: str,
    *,
    alias: str = DEFAULT_ALIAS,
) -> bytes:
    """JKS with one PrivateKeyEntry ``alias`` (key protected by the store password) and its chain."""
    _check_key_and_cert(key, cert)
    _check_password(password)
    name = _check_alias(alias)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain_der = tuple(c.public_bytes(serialization.Encoding.DER) for c in [cert, *chain])
    return write_jks([JksKeyEntry(name, _timestamp_ms(cert), pkcs8, chain_der)], [], password)


def jks_truststore(cas: Sequence[x509.Certificate], password: str) -> bytes:
    """JKS of ``trustedCertEntry`` entries, aliases from :func:`truststore_alias`."""
    unique = _unique_cas(cas)
    _check_password(password)
    entries = [
        JksTrustedEntry(truststore_alias(c), _timestamp_ms(c), c.public_bytes(serialization.Encoding.DER))
        for c in unique
    ]
    return write_jks([], entries, password)


def read_pkcs12(data: bytes, password: str) -> tuple[PrivateKey | None, list[x509.Certificate]]:
    """Open a PKCS#12 file: the private key (if any) and all certificates, the key's certificate first."""
    try:
        loaded = pkcs12.load_pkcs12(bytes(data), _check_password(password))
    except (TypeError, ValueError):
        raise PKIError("could not open PKCS#12: wrong password or corrupt data") from None
    key = loaded.key
    if key is not None and not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise PKIError(f"PKCS#12 holds an unsupported key type {type(key).__name__}")
    certs = [] if loaded.cert is None else [loaded.cert.certificate]
    certs += [c.certificate for c in loaded.additional_certs]
    return key, certs
