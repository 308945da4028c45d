"""What ``trustwire serve`` accepts from an enrolling application, and what it issues.

Two chains of named checks: :data:`CSR_CHECKS` over a certificate signing request (the
key, the subject, the extensions it asks for) and :data:`RENEWAL_CHECKS` over the client
certificate a renewal is authenticated with. The first verdict is the refusal's reason.
The issued certificate's subject is built from ``spec.subject``, never copied from the CSR:
the checks prove they are equal, and the certificate carries only what trustwire decides.
Pure: the clock and the serial are parameters.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID

from trustwire import pki
from trustwire.model import Enrollment, Subject
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.enrollment import TokenRecord, subject_name, token_hash
from trustwire.plan.reasons import Reason
from trustwire.times import rfc3339

#: The ASN.1 errors cryptography raises while decoding a hostile CSR lazily.
_UNREADABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
               x509.UnsupportedGeneralNameType)


def enrollment_uri(trust_domain: str, namespace: str, name: str) -> str:
    """The one URI SAN of an enrolled application's certificate: which Enrollment it is."""
    return f"spiffe://{trust_domain}/ns/{namespace}/enrollment/{name}"


def enrollment_of(cert: x509.Certificate) -> tuple[str, str] | None:
    """(namespace, name) from a client certificate's enrollment URI SAN, or None."""
    for uri in pki.uri_sans(cert):
        parts = uri.split("/")
        if uri.startswith("spiffe://") and len(parts) == 7 and parts[3] == "ns" and parts[5] == "enrollment" \
                and parts[4] and parts[6]:
            return parts[4], parts[6]
    return None


def load_csr(pem: str) -> x509.CertificateSigningRequest | None:
    try:
        return x509.load_pem_x509_csr(pem.encode())
    except (*_UNREADABLE, UnicodeEncodeError):
        return None


# ---- the one-time token --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TokenInput:
    revoked: bool
    #: ``status.token``: the one outstanding token's hash and expiry
    record: TokenRecord | None
    presented: str
    now: datetime


def token_revoked(t: TokenInput) -> Verdict | None:
    return Verdict(Reason.ENROLLMENT_REVOKED, "the Enrollment is revoked (spec.revoked)") if t.revoked else None


def token_not_outstanding(t: TokenInput) -> Verdict | None:
    if t.record is not None and hmac.compare_digest(t.record.sha256, token_hash(t.presented)):
        return None
    return Verdict(Reason.TOKEN_INVALID, "the token is not valid (unknown, or already used)")


def token_expired(t: TokenInput) -> Verdict | None:
    if t.record is None or t.record.expires_at > t.now:
        return None
    return Verdict(Reason.TOKEN_EXPIRED, f"the token expired at {rfc3339(t.record.expires_at)}; ask the "
                                         "administrator for a new one (trustwire enroll --renew-token)")


TOKEN_CHECKS = (token_revoked, token_not_outstanding, token_expired)


# ---- the CSR -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CSRInput:
    subject: Subject
    csr: x509.CertificateSigningRequest


def key_not_allowed(c: CSRInput) -> Verdict | None:
    try:
        allowed = pki.client_key_allowed(c.csr.public_key())
    except _UNREADABLE:
        allowed = False
    return None if allowed else Verdict(Reason.CSR_KEY_NOT_ALLOWED, f"csr: the key must be {pki.CLIENT_KEYS}")


def signature_invalid(c: CSRInput) -> Verdict | None:
    try:
        valid = c.csr.is_signature_valid
    except _UNREADABLE:
        valid = False
    return None if valid else Verdict(Reason.CSR_SIGNATURE_INVALID,
                                      "csr: the signature does not verify with the CSR's own key")


def extensions_unreadable(c: CSRInput) -> Verdict | None:
    try:
        c.csr.extensions  # noqa: B018 - decoding them is the check
    except _UNREADABLE:
        return Verdict(Reason.CSR_UNREADABLE, "csr: the requested extensions cannot be decoded")
    return None


def _attributes(name: x509.Name) -> list[tuple[str, str]]:
    return sorted((a.oid.dotted_string, str(a.value)) for a in name)


def subject_mismatch(c: CSRInput) -> Verdict | None:
    expected = subject_name(c.subject)
    try:
        same = _attributes(c.csr.subject) == _attributes(expected)
    except _UNREADABLE:
        same = False
    return None if same else Verdict(Reason.CSR_SUBJECT_MISMATCH,
                                     f"csr: the subject must be exactly {expected.rfc4514_string()} "
                                     "(spec.subject of the Enrollment)")


def _extension(csr: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> x509.Extension[Any] | None:
    try:
        return csr.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def ca_requested(c: CSRInput) -> Verdict | None:
    ext = _extension(c.csr, ExtensionOID.BASIC_CONSTRAINTS)
    if ext is not None and isinstance(ext.value, x509.BasicConstraints) and ext.value.ca:
        return Verdict(Reason.CSR_CA_REQUESTED, "csr: asks for CA=true; only client certificates are issued")
    return None


def sans_present(c: CSRInput) -> Verdict | None:
    if _extension(c.csr, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) is None:
        return None
    return Verdict(Reason.CSR_SANS_NOT_ALLOWED, "csr: names subject alternative names; only the subject is "
                                                "allowed (trustwire adds the one URI SAN itself)")


#: Order is priority: nothing is read from a CSR whose key or signature is refused, and the
#: extension checks run only on extensions that decode.
CSR_CHECKS = (key_not_allowed, signature_invalid, extensions_unreadable, subject_mismatch, ca_requested,
              sans_present)


def check_csr(subject: Subject, pem: str) -> tuple[x509.CertificateSigningRequest | None, Verdict | None]:
    """The parsed CSR and the first refusal of :data:`CSR_CHECKS` (None: it may be signed)."""
    csr = load_csr(pem)
    if csr is None:
        return None, Verdict(Reason.CSR_UNREADABLE, "csr: is no PEM certificate signing request")
    return csr, evaluate(CSR_CHECKS, CSRInput(subject, csr))


# ---- renewal with the current certificate --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RenewalInput:
    revoked: bool
    presented: x509.Certificate
    #: the identity's enrollment CAs (active, and during a rotation the others it trusts)
    cas: Sequence[x509.Certificate]
    #: ``status.certificate.serial``: the one certificate that may renew
    current_serial: str | None
    now: datetime


def renewal_revoked(r: RenewalInput) -> Verdict | None:
    return Verdict(Reason.ENROLLMENT_REVOKED, "the Enrollment is revoked (spec.revoked)") if r.revoked else None


def not_issued_here(r: RenewalInput) -> Verdict | None:
    if any(pki.is_signed_by(r.presented, ca) for ca in r.cas):
        return None
    return Verdict(Reason.CERTIFICATE_NOT_ISSUED_HERE,
                   "the client certificate is not signed by the identity's enrollment CA")


def not_current(r: RenewalInput) -> Verdict | None:
    if r.current_serial is not None and pki.serial_hex(r.presented) == r.current_serial:
        return None
    return Verdict(Reason.CERTIFICATE_NOT_CURRENT,
                   "the client certificate is not the Enrollment's current one (renewed or replaced since)")


def presented_expired(r: RenewalInput) -> Verdict | None:
    if pki.not_after(r.presented) > r.now:
        return None
    return Verdict(Reason.ENROLLMENT_CERTIFICATE_EXPIRED,
                   f"the client certificate expired at {rfc3339(pki.not_after(r.presented))}; enrol again with a "
                   "new one-time token")


RENEWAL_CHECKS = (renewal_revoked, not_issued_here, not_current, presented_expired)


# ---- what is issued ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Issuer:
    """The identity's active enrollment CA and the trust domain its certificates name."""

    certificate: x509.Certificate
    key: pki.PrivateKey
    trust_domain: str


def issue(enr: Enrollment, csr: x509.CertificateSigningRequest, issuer: Issuer, now: datetime,
          serial: int) -> x509.Certificate:
    """The client certificate for a CSR :data:`CSR_CHECKS` accepted."""
    return pki.create_client_certificate(
        issuer.certificate, issuer.key, csr.public_key(),  # type: ignore[arg-type]
        subject=subject_name(enr.subject), uri_san=enrollment_uri(issuer.trust_domain, enr.namespace, enr.name),
        now=now, lifetime=enr.certificate_duration, serial=serial)


def fingerprint(cert: x509.Certificate) -> str:
    """How status and the API spell a certificate's fingerprint."""
    return "sha256:" + pki.fingerprint_sha256(cert)


def certificate_status(cert: x509.Certificate) -> dict[str, str]:
    """``status.certificate`` for the certificate just issued."""
    return {"serial": pki.serial_hex(cert), "fingerprint": fingerprint(cert),
            "notAfter": rfc3339(pki.not_after(cert))}
