"""Hostile CSRs through the CSR chain and issuance.

Properties: ``check_csr`` never raises on any text; a CSR it accepts yields a certificate
(openssl-free check here; the integration test runs openssl) whose subject is exactly
``spec.subject``, which is no CA and names exactly the enrollment URI; a CSR with a subject
other than ``spec.subject`` is never accepted.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustwire import pki
from trustwire.model import Enrollment, Subject
from trustwire.plan import csr as plan
from trustwire.plan.enrollment import subject_name

NOW = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)
SUBJECT = Subject("erp", ("Acme",), ())
ENROLLMENT = Enrollment("shop", "erp", "billing", SUBJECT, timedelta(minutes=10), timedelta(days=30), False)
_CA_KEY = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
ISSUER = plan.Issuer(pki.create_ca(_CA_KEY, common_name="ca", now=NOW, lifetime=timedelta(days=90)), _CA_KEY,
                     "example.org")
_KEY = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
_GOOD = x509.CertificateSigningRequestBuilder().subject_name(subject_name(SUBJECT)).sign(_KEY, hashes.SHA256())
GOOD_DER = _GOOD.public_bytes(serialization.Encoding.DER)

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_ATTRS = st.lists(st.tuples(st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME,
                                             NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COUNTRY_NAME]),
                            st.text(min_size=1, max_size=8)), max_size=4)


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _accepted_is_sound(pem: str) -> None:
    request, verdict = plan.check_csr(SUBJECT, pem)
    if verdict is not None:
        return
    assert request is not None
    cert = plan.issue(ENROLLMENT, request, ISSUER, NOW, pki.random_serial())
    assert cert.subject == subject_name(SUBJECT)
    assert [a.value for a in request.subject] and sorted(str(a.value) for a in request.subject) == ["Acme", "erp"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert pki.uri_sans(cert) == ["spiffe://example.org/ns/shop/enrollment/erp"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_any_text(text: str) -> None:
    _accepted_is_sound(text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_der(data: st.DataObject) -> None:
    der = bytearray(GOOD_DER)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(der) - 1))
        der[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(der) // 2, len(der)))
    _accepted_is_sound(_pem(bytes(der[:cut])))


@settings(max_examples=100, deadline=None)
@given(_ATTRS)
def test_any_subject_is_accepted_only_when_it_is_the_spec(attributes: list[tuple[x509.ObjectIdentifier, str]]) -> None:
    name = x509.Name([x509.NameAttribute(oid, value if oid != NameOID.COUNTRY_NAME else "DE")
                      for oid, value in attributes])
    pem = x509.CertificateSigningRequestBuilder().subject_name(name).sign(_KEY, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM).decode()
    _, verdict = plan.check_csr(SUBJECT, pem)
    same = sorted((a.oid.dotted_string, a.value) for a in name) == \
        sorted((a.oid.dotted_string, a.value) for a in subject_name(SUBJECT))
    assert (verdict is None) is same
    _accepted_is_sound(pem)
