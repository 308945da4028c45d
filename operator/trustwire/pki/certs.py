"""X.509 issuance and inspection: self-signed CAs and leaf certificates.

Why the profile is what it is:

* Every identity gets its **own** CA and every peer trusts exactly that CA, so a CA
  only ever signs leaves: ``basicConstraints CA:true, pathLen:0`` (critical) and
  ``keyUsage keyCertSign, cRLSign`` (critical).
* Leaves are used both as TLS server and TLS client certificates (mTLS in both
  directions), so EKU is ``serverAuth`` + ``clientAuth``; ``keyUsage`` is
  ``digitalSignature`` (+ ``keyEncipherment`` for RSA, which TLS 1.2 RSA key
  transport and some strict Java/OpenSSL checks still expect).
* Serial numbers are random (RFC 5280 §4.1.2.2, CA/B BR ≥ 64 bits of entropy): 159-bit
  values with the top bit forced, so they are positive, always 20 DER bytes, and
  never collide across re-issuance.
* ``notBefore`` is back-dated by 60 s so a peer whose clock is slightly behind does
  not reject a certificate issued a moment ago. A leaf never outlives its CA: a
  chain with an expired CA fails anyway, and capping makes renewal timing honest.
* Time is always injected (``now``, tz-aware): this layer is pure and testable.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustwire.pki.errors import PKIError
from trustwire.pki.keys import PrivateKey, PublicKey, key_algorithm_of, public_key_matches

__all__ = [
    "BACKDATE",
    "CLIENT_KEYS",
    "cert_to_pem",
    "certs_to_pem",
    "client_key_allowed",
    "create_ca",
    "create_client_certificate",
    "create_leaf",
    "dns_sans",
    "fingerprint_sha256",
    "is_ca",
    "is_signed_by",
    "load_certificates",
    "not_after",
    "not_before",
    "random_serial",
    "require_utc",
    "serial_hex",
    "subject_common_name",
    "uri_sans",
]

#: How far ``notBefore`` is back-dated to tolerate clock skew between issuer and peers.
BACKDATE = timedelta(seconds=60)

_MAX_CN_LENGTH = 64  # RFC 5280 ub-common-name


def require_utc(now: datetime, name: str = "now") -> datetime:
    """Return ``now`` if it is timezone-aware; naive datetimes are ambiguous and refused."""
    if not isinstance(now, datetime):
        raise PKIError(f"{name} must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise PKIError(f"{name} must be timezone-aware (UTC)")
    return now


def random_serial() -> int:
    """A positive 159-bit random serial with the top bit set (158 bits of entropy, < 2**159)."""
    return secrets.randbits(158) | (1 << 158)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # EdDSA signs the message itself; no separate digest.
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def _check_lifetime(lifetime: timedelta) -> None:
    if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
        raise PKIError("certificate lifetime must be a positive timedelta")


def _common_name(common_name: str) -> x509.NameAttribute[str]:
    if not isinstance(common_name, str) or not common_name.strip():
        raise PKIError("common name must be a non-empty string")
    if len(common_name) > _MAX_CN_LENGTH:
        raise PKIError(f"common name is {len(common_name)} characters; the X.509 limit is {_MAX_CN_LENGTH}")
    return x509.NameAttribute(NameOID.COMMON_NAME, common_name)


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    try:
        return builder.sign(private_key=key, algorithm=_hash_for(key))
    except (ValueError, TypeError) as exc:  # pragma: no cover - defensive, messages carry no key bytes
        raise PKIError(f"could not sign certificate: {exc}") from None


def create_ca(
    key: PrivateKey,
    *,
    common_name: str,
    now: datetime,
    lifetime: timedelta,
    organization: str = "trustwire",
    serial: int | None = None,
) -> x509.Certificate:
    """Create a self-signed CA certificate for ``key`` valid from ``now - 60s`` to ``now + lifetime``.

    ``serial`` defaults to :func:`random_serial`; tests pass one to get the same certificate twice.
    """
    require_utc(now)
    _check_lifetime(lifetime)
    key_algorithm_of(key)
    attributes = [_common_name(common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial() if serial is None else serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return _sign(builder, key)


def _key_usage(*, signs_certificates: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    """A CA signs certificates and CRLs only; a leaf signs handshakes (and RSA leaves encipher keys)."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _dns_name(name: str) -> x509.DNSName:
    if not isinstance(name, str) or not name or len(name) > 253:
        raise PKIError("DNS SAN must be a non-empty string of at most 253 characters")
    if not name.isascii():
        raise PKIError(f"DNS SAN {name!r} must be ASCII (use the IDNA A-label form)")
    labels = name.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 1:
            continue
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            raise PKIError(f"DNS SAN {name!r} is not a valid host name")
        if not all(ch.isalnum() or ch in "-_" for ch in label):
            raise PKIError(f"DNS SAN {name!r} is not a valid host name")
    return x509.DNSName(name.lower())


def _uri_name(uri: str) -> x509.UniformResourceIdentifier:
    if not isinstance(uri, str) or ":" not in uri or not uri.isascii() or any(c.isspace() for c in uri):
        raise PKIError(f"URI SAN {uri!r} must be an absolute ASCII URI such as spiffe://domain/path")
    return x509.UniformResourceIdentifier(uri)


def _dedupe(items: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def create_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    common_name: str,
    dns_names: Sequence[str],
    uri_sans: Sequence[str],
    now: datetime,
    lifetime: timedelta,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a TLS server+client leaf for ``public_key`` signed by ``ca_key``.

    ``notAfter`` is ``min(now + lifetime, ca notAfter)``. Raises :class:`PKIError` if
    the CA key does not match the CA certificate, the CA certificate is not a CA, the
    CA is not valid at ``now``, or no SAN is given. ``serial`` defaults to
    :func:`random_serial`.
    """
    require_utc(now)
    _check_lifetime(lifetime)
    if isinstance(dns_names, str) or isinstance(uri_sans, str):
        raise PKIError("dns_names and uri_sans must be sequences of strings, not a single string")
    _check_issuer(ca_cert, ca_key)
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise PKIError(f"leaf public key must be a public key, not {type(public_key).__name__}")
    key_algorithm_of(public_key)
    _check_issuer_validity(ca_cert, now)
    return _end_entity(ca_cert, ca_key, public_key, x509.Name([_common_name(common_name)]),
                       _subject_alt_names(dns_names, uri_sans),
                       [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], now, lifetime, serial)


#: The keys an enrolled application may bring (its CSR's key), in words for refusals.
CLIENT_KEYS = "EC P-256 or P-384, RSA of 2048 to 16384 bits, or Ed25519"
_CLIENT_RSA_BITS = range(2048, 16385)


def client_key_allowed(key: object) -> bool:
    """Whether an application's own key is strong enough and of a kind every TLS stack speaks;
    RSA is bounded above too, so a CSR cannot make the server verify a huge signature."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size in _CLIENT_RSA_BITS
    return isinstance(key, ed25519.Ed25519PublicKey)


def create_client_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    subject: x509.Name,
    uri_san: str,
    now: datetime,
    lifetime: timedelta,
    serial: int | None = None,
) -> x509.Certificate:
    """Issue a TLS client certificate (clientAuth only, never a CA) for an enrolled application.

    The subject is given whole (an application's CSR names O and OU as well as CN); the one
    SAN is a URI naming the enrollment, so a server can tell which application connected.
    ``notAfter`` is ``min(now + lifetime, ca notAfter)``.
    """
    require_utc(now)
    _check_lifetime(lifetime)
    _check_issuer(ca_cert, ca_key)
    if not client_key_allowed(public_key):
        raise PKIError(f"client key not allowed: {CLIENT_KEYS}")
    _check_issuer_validity(ca_cert, now)
    return _end_entity(ca_cert, ca_key, public_key, subject, [_uri_name(uri_san)],
                       [ExtendedKeyUsageOID.CLIENT_AUTH], now, lifetime, serial)


def _end_entity(ca_cert: x509.Certificate, ca_key: PrivateKey, public_key: PublicKey, subject: x509.Name,
                sans: Sequence[x509.GeneralName], usages: Sequence[x509.ObjectIdentifier], now: datetime,
                lifetime: timedelta, serial: int | None) -> x509.Certificate:
    """What every certificate trustwire signs for a service or an application has: never a CA,
    the SANs and extended usages given, valid until ``min(now + lifetime, ca notAfter)``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial() if serial is None else serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, not_after(ca_cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca_cert, ca_key), critical=False)
    )
    return _sign(builder, ca_key)


def _check_issuer(ca_cert: x509.Certificate, ca_key: PrivateKey) -> None:
    if not is_ca(ca_cert):
        raise PKIError("issuer certificate is not a CA (basicConstraints CA:true missing)")
    if not public_key_matches(ca_key, ca_cert):
        raise PKIError("CA private key does not match the CA certificate")


def _check_issuer_validity(ca_cert: x509.Certificate, now: datetime) -> None:
    ca_not_after = not_after(ca_cert)
    if ca_not_after <= now:
        raise PKIError(f"CA expired at {ca_not_after.isoformat()}; cannot issue a leaf")
    if not_before(ca_cert) > now:
        raise PKIError(f"CA is not valid before {not_before(ca_cert).isoformat()}; cannot issue a leaf")


def _subject_alt_names(dns_names: Sequence[str], uri_sans: Sequence[str]) -> list[x509.GeneralName]:
    general_names: list[x509.GeneralName] = [_dns_name(n) for n in _dedupe(list(dns_names))]
    general_names += [_uri_name(u) for u in _dedupe(list(uri_sans))]
    if not general_names:
        raise PKIError("a leaf certificate needs at least one DNS or URI subject alternative name")
    return general_names


def _authority_key_id(ca_cert: x509.Certificate, ca_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    """The CA's own subject key identifier when it has one, so chains link by the same bytes."""
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM of ``certs`` in the given order (e.g. leaf then chain, or a trust bundle)."""
    return b"".join(cert_to_pem(c) for c in certs)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, in order; :class:`PKIError` if there are none or one is invalid."""
    if isinstance(pem, str):
        pem = pem.encode("ascii", errors="replace")
    if not isinstance(pem, bytes | bytearray | memoryview):
        raise PKIError(f"certificates must be PEM bytes, not {type(pem).__name__}")
    try:
        certs = x509.load_pem_x509_certificates(bytes(pem))
    except ValueError:
        raise PKIError("data is not a valid PEM certificate bundle") from None
    if not certs:  # pragma: no cover - cryptography already raises on an empty bundle
        raise PKIError("no certificate found in PEM data")
    for cert in certs:
        try:  # cryptography decodes names, extensions and the key only when first asked: ask now
            cert.subject, cert.issuer, cert.extensions, cert.public_key()
        except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm):
            raise PKIError("data holds a certificate whose names, extensions or key cannot be decoded") from None
    return certs


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate: 64 lowercase hex chars, no colons."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    """Serial number as lowercase hex without prefix."""
    return format(cert.serial_number, "x")


def is_ca(cert: x509.Certificate) -> bool:
    """True iff the certificate has ``basicConstraints CA:true``."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True iff ``cert`` names ``issuer``'s subject as its issuer and ``issuer``'s key verifies its signature.

    Any mismatch (name, key type, signature) yields False rather than an exception.
    """
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def not_after(cert: x509.Certificate) -> datetime:
    """End of validity, tz-aware UTC."""
    return cert.not_valid_after_utc


def not_before(cert: x509.Certificate) -> datetime:
    """Start of validity, tz-aware UTC."""
    return cert.not_valid_before_utc


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def dns_sans(cert: x509.Certificate) -> list[str]:
    """DNS subject alternative names, in certificate order."""
    san = _san(cert)
    return [] if san is None else list(san.get_values_for_type(x509.DNSName))


def uri_sans(cert: x509.Certificate) -> list[str]:
    """URI subject alternative names, in certificate order."""
    san = _san(cert)
    return [] if san is None else list(san.get_values_for_type(x509.UniformResourceIdentifier))


def subject_common_name(cert: x509.Certificate) -> str | None:
    """The first subject CN as a string, or None."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
