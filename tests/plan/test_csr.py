"""The CSR and renewal chains, and the issued client certificate (proven with openssl)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from trustwire import pki
from trustwire.model import Enrollment, Subject
from trustwire.plan import csr as plan
from trustwire.plan.checks import evaluate
from trustwire.plan.enrollment import TokenRecord, make_token, subject_name, token_hash
from trustwire.plan.reasons import Reason

KeyPool = Callable[..., pki.PrivateKey]
A = pki.KeyAlgorithm
SUBJECT = Subject("erp", ("Acme",), ("Finance", "Ops"))
NAME = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
                  x509.NameAttribute(NameOID.COMMON_NAME, "erp"),
                  x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Finance"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")])


def _csr(key: object, name: x509.Name = NAME, *, ca: bool | None = None, sans: bool = False) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("erp.example.com")]),
                                        critical=False)
    algorithm = None if isinstance(key, ed448.Ed448PrivateKey | ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


def _tampered(pem: str) -> str:
    """The same CSR with its subject's common name changed after signing."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    at = der.index(b"erp")
    der[at:at + 3] = b"erq"
    body = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    return body


@pytest.mark.parametrize(("case", "make", "reason"), [
    ("EC P-256", lambda k: _csr(k(A.ECDSAP256)), None),
    ("EC P-384", lambda k: _csr(k(A.ECDSAP384)), None),
    ("RSA 2048", lambda k: _csr(k(A.RSA2048)), None),
    ("Ed25519", lambda k: _csr(k(A.Ed25519)), None),
    ("subject in the spec's order", lambda k: _csr(k(A.ECDSAP256), subject_name(SUBJECT)), None),
    ("CA=false asked", lambda k: _csr(k(A.ECDSAP256), ca=False), None),
    ("not PEM", lambda k: "hello", Reason.CSR_UNREADABLE),
    ("a certificate, not a CSR", lambda k: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                                           "REQUEST-----\n", Reason.CSR_UNREADABLE),
    ("EC P-521", lambda k: _csr(ec.generate_private_key(ec.SECP521R1())), Reason.CSR_KEY_NOT_ALLOWED),
    ("EC secp256k1", lambda k: _csr(ec.generate_private_key(ec.SECP256K1())), Reason.CSR_KEY_NOT_ALLOWED),
    ("RSA 1024", lambda k: _csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - refused
     Reason.CSR_KEY_NOT_ALLOWED),
    ("Ed448", lambda k: _csr(ed448.Ed448PrivateKey.generate()), Reason.CSR_KEY_NOT_ALLOWED),
    ("DSA", lambda k: _csr(dsa.generate_private_key(key_size=2048)), Reason.CSR_KEY_NOT_ALLOWED),
    ("signature broken", lambda k: _tampered(_csr(k(A.ECDSAP256))), Reason.CSR_SIGNATURE_INVALID),
    ("CN only", lambda k: _csr(k(A.ECDSAP256), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "erp")])),
     Reason.CSR_SUBJECT_MISMATCH),
    ("an extra C", lambda k: _csr(k(A.ECDSAP256), x509.Name([*NAME, x509.NameAttribute(NameOID.COUNTRY_NAME,
                                                                                         "DE")])),
     Reason.CSR_SUBJECT_MISMATCH),
    ("another CN", lambda k: _csr(k(A.ECDSAP256), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crm"),
                                                             *list(NAME)[:1], *list(NAME)[2:]])),
     Reason.CSR_SUBJECT_MISMATCH),
    ("CA=true", lambda k: _csr(k(A.ECDSAP256), ca=True), Reason.CSR_CA_REQUESTED),
    ("a DNS SAN", lambda k: _csr(k(A.ECDSAP256), sans=True), Reason.CSR_SANS_NOT_ALLOWED),
])
def test_csr_chain(real_key: KeyPool, case: str, make: Callable[[KeyPool], str], reason: Reason | None) -> None:
    _, verdict = plan.check_csr(SUBJECT, make(real_key))
    assert (verdict.reason if verdict else None) is reason, case
    if verdict is not None:
        assert "csr" in verdict.message


def test_refusal_names_the_expected_subject(real_key: KeyPool) -> None:
    _, verdict = plan.check_csr(SUBJECT, _csr(real_key(A.ECDSAP256), x509.Name([])))
    assert verdict is not None and "OU=Ops,OU=Finance,O=Acme,CN=erp" in verdict.message


# ---- issuing ---------------------------------------------------------------------------------
def _ca(real_key: KeyPool, now: datetime, lifetime: timedelta = timedelta(days=365), slot: int = 0,
        ) -> plan.Issuer:
    key = real_key(A.ECDSAP256, slot + 10)
    cert = pki.create_ca(key, common_name=f"enrollment CA {slot}", now=now, lifetime=lifetime)
    return plan.Issuer(cert, key, "example.org")


ENROLLMENT = Enrollment("shop", "erp", "billing", SUBJECT, timedelta(minutes=10), timedelta(days=30), False)


@pytest.mark.parametrize("algorithm", [A.ECDSAP256, A.RSA2048, A.Ed25519])
def test_issued_certificate_is_a_client_certificate_openssl_accepts(
        real_key: KeyPool, now: datetime, tmp_path: Path, algorithm: pki.KeyAlgorithm) -> None:
    issuer = _ca(real_key, now)
    request, verdict = plan.check_csr(SUBJECT, _csr(real_key(algorithm)))
    assert request is not None and verdict is None
    cert = plan.issue(ENROLLMENT, request, issuer, now, pki.random_serial())

    assert cert.subject == subject_name(SUBJECT)
    assert pki.uri_sans(cert) == ["spiffe://example.org/ns/shop/enrollment/erp"]
    assert plan.enrollment_of(cert) == ("shop", "erp")
    assert cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert pki.not_after(cert) == now + ENROLLMENT.certificate_duration
    (tmp_path / "ca.pem").write_bytes(pki.cert_to_pem(issuer.certificate))
    (tmp_path / "leaf.pem").write_bytes(pki.cert_to_pem(cert))
    verify = ["openssl", "verify", "-attime", str(int(now.timestamp()) + 60), "-CAfile", str(tmp_path / "ca.pem")]
    client = subprocess.run([*verify, "-purpose", "sslclient", str(tmp_path / "leaf.pem")],
                            capture_output=True, text=True, check=False)
    assert client.returncode == 0, client.stdout + client.stderr
    server = subprocess.run([*verify, "-purpose", "sslserver", str(tmp_path / "leaf.pem")],
                            capture_output=True, text=True, check=False)
    assert server.returncode != 0, "a client certificate must not serve TLS"


def test_not_after_is_capped_at_the_ca(real_key: KeyPool, now: datetime) -> None:
    issuer = _ca(real_key, now, lifetime=timedelta(days=3))
    request, _ = plan.check_csr(SUBJECT, _csr(real_key(A.ECDSAP256)))
    assert request is not None
    cert = plan.issue(ENROLLMENT, request, issuer, now, pki.random_serial())
    assert pki.not_after(cert) == pki.not_after(issuer.certificate)


def test_serials_are_random_and_status_spells_them(real_key: KeyPool, now: datetime) -> None:
    issuer = _ca(real_key, now)
    request, _ = plan.check_csr(SUBJECT, _csr(real_key(A.ECDSAP256)))
    assert request is not None
    certs = [plan.issue(ENROLLMENT, request, issuer, now, pki.random_serial()) for _ in range(2)]
    assert certs[0].serial_number != certs[1].serial_number
    status = plan.certificate_status(certs[0])
    assert status == {"serial": format(certs[0].serial_number, "x"),
                      "fingerprint": "sha256:" + certs[0].fingerprint(hashes.SHA256()).hex(),
                      "notAfter": "2031-04-13T09:26:53Z"}


# ---- renewal -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "revoked", "other_ca", "current", "later", "reason"), [
    ("the current certificate", False, False, True, timedelta(0), None),
    ("revoked", True, False, True, timedelta(0), Reason.ENROLLMENT_REVOKED),
    ("signed by another CA", False, True, True, timedelta(0), Reason.CERTIFICATE_NOT_ISSUED_HERE),
    ("renewed since", False, False, False, timedelta(0), Reason.CERTIFICATE_NOT_CURRENT),
    ("expired", False, False, True, timedelta(days=31), Reason.ENROLLMENT_CERTIFICATE_EXPIRED),
])
def test_renewal_chain(real_key: KeyPool, now: datetime, case: str, revoked: bool, other_ca: bool, current: bool,
                       later: timedelta, reason: Reason | None) -> None:
    issuer, stranger = _ca(real_key, now), _ca(real_key, now, slot=1)
    request, _ = plan.check_csr(SUBJECT, _csr(real_key(A.ECDSAP256)))
    assert request is not None
    cert = plan.issue(ENROLLMENT, request, stranger if other_ca else issuer, now, pki.random_serial())
    serial = pki.serial_hex(cert) if current else "5a1f"
    verdict = evaluate(plan.RENEWAL_CHECKS, plan.RenewalInput(revoked, cert, [issuer.certificate], serial, now + later))
    assert (verdict.reason if verdict else None) is reason, case


@pytest.mark.parametrize(("uri", "expected"), [
    ("spiffe://example.org/ns/shop/enrollment/erp", ("shop", "erp")),
    ("spiffe://example.org/ns/shop/sid/erp", None),
    ("spiffe://example.org/ns//enrollment/erp", None),
    ("spiffe://example.org/ns/shop/enrollment/erp/x", None),
    ("https://example.org/ns/shop/enrollment/erp", None),
])
def test_enrollment_of(real_key: KeyPool, now: datetime, uri: str, expected: tuple[str, str] | None) -> None:
    issuer = _ca(real_key, now)
    cert = pki.create_client_certificate(issuer.certificate, issuer.key, real_key(A.ECDSAP256).public_key(),
                                         subject=NAME, uri_san=uri, now=now, lifetime=timedelta(days=1))
    assert plan.enrollment_of(cert) == expected


# ---- the one-time token --------------------------------------------------------------------------
TOKEN = make_token("shop", "erp", b"\x01" * 32)


@pytest.mark.parametrize(("case", "revoked", "record", "presented", "reason"), [
    ("the outstanding token", False, (TOKEN, 60), TOKEN, None),
    ("revoked", True, (TOKEN, 60), TOKEN, Reason.ENROLLMENT_REVOKED),
    ("no token outstanding (used)", False, None, TOKEN, Reason.TOKEN_INVALID),
    ("another token", False, (make_token("shop", "erp", b"\x02" * 32), 60), TOKEN, Reason.TOKEN_INVALID),
    ("expired", False, (TOKEN, -1), TOKEN, Reason.TOKEN_EXPIRED),
])
def test_token_chain(now: datetime, case: str, revoked: bool, record: tuple[str, int] | None, presented: str,
                     reason: Reason | None) -> None:
    stored = TokenRecord(token_hash(record[0]), now + timedelta(seconds=record[1])) if record else None
    verdict = evaluate(plan.TOKEN_CHECKS, plan.TokenInput(revoked, stored, presented, now))
    assert (verdict.reason if verdict else None) is reason, case
    assert verdict is None or TOKEN not in verdict.message
