"""The leaf certificate and its keystores: kept while good, re-issued when a check fires.

Phases: ``Waiting`` (no CA, a name clash or no keystore password: nothing is written),
``Issuing`` (a :data:`LEAF_TRIGGERS` check fired: a fresh key and certificate from the
injected key source), ``Valid`` (the stored pair is kept byte for byte).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from datetime import datetime, timedelta

from cryptography import x509

from trustwire import names, pki
from trustwire.model import KeystoreFormat, ServiceIdentity
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.conditions import Check, passed
from trustwire.plan.keys import KeySource
from trustwire.plan.material import CAMaterial, StoredObject, stable_output, stored_password
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.plan.status import CertificateStatus
from trustwire.times import rfc3339


class LeafPhase(enum.StrEnum):
    WAITING = "Waiting"
    ISSUING = "Issuing"
    VALID = "Valid"


def renewal_time(cert: x509.Certificate, renew_before: timedelta) -> datetime:
    """When to renew: ``renewBefore`` ahead of expiry, or at 2/3 of a lifetime shorter than that."""
    start, end = pki.not_before(cert), pki.not_after(cert)
    life = end - start
    if renew_before >= life:
        return start + life * 2 / 3
    return end - renew_before


@dataclasses.dataclass(frozen=True)
class LeafInput:
    identity: ServiceIdentity
    ca: CAMaterial
    stored: StoredObject | None
    now: datetime
    rotate: bool

    @functools.cached_property
    def parsed(self) -> tuple[x509.Certificate, pki.PrivateKey] | str:
        """The stored leaf and key, or why they do not load."""
        assert self.stored is not None
        try:
            chain = pki.load_certificates(self.stored.data["tls.crt"])
            return chain[0], pki.load_private_key(self.stored.data["tls.key"])
        except pki.PKIError as exc:
            return str(exc)

    @property
    def pair(self) -> tuple[x509.Certificate, pki.PrivateKey]:
        assert not isinstance(self.parsed, str)
        return self.parsed


# --------------------------------------------------------------------------------------
# Named checks (in chain order: each assumes the ones before it passed)
# --------------------------------------------------------------------------------------
def secret_missing(i: LeafInput) -> Verdict | None:
    if i.stored is None or ("tls.crt" not in i.stored.data and "tls.key" not in i.stored.data):
        return Verdict(Reason.CERTIFICATE_ISSUED, "no certificate yet")
    return None


def secret_missing_data(i: LeafInput) -> Verdict | None:
    assert i.stored is not None
    if not i.stored.data.get("tls.crt") or not i.stored.data.get("tls.key"):
        return Verdict(Reason.CERTIFICATE_REPAIRED, "tls.crt or tls.key was missing, empty or not valid base64")
    return None


def secret_unparseable(i: LeafInput) -> Verdict | None:
    if isinstance(i.parsed, str):
        return Verdict(Reason.CERTIFICATE_REPAIRED, f"the stored certificate or key was unusable ({i.parsed})")
    return None


def key_mismatch(i: LeafInput) -> Verdict | None:
    leaf, key = i.pair
    if not pki.public_key_matches(key, leaf):
        return Verdict(Reason.CERTIFICATE_REPAIRED, "the stored key does not match the stored certificate")
    return None


def certificate_invalid(i: LeafInput) -> Verdict | None:
    leaf, key = i.pair
    problems = pki.check_leaf(leaf, key, i.ca.cert, now=i.now, dns_names=i.identity.all_dns_names,
                              uri_sans=[i.identity.spiffe_id])
    return Verdict(Reason.CERTIFICATE_REISSUED, "; ".join(problems)) if problems else None


def dns_names_changed(i: LeafInput) -> Verdict | None:
    if set(pki.dns_sans(i.pair[0])) != set(i.identity.all_dns_names):
        return Verdict(Reason.CERTIFICATE_REISSUED, "the DNS names in the spec changed")
    return None


def key_algorithm_changed(i: LeafInput) -> Verdict | None:
    wanted = i.identity.certificate.key_algorithm
    if pki.key_algorithm_of(i.pair[1]) != wanted:
        return Verdict(Reason.CERTIFICATE_REISSUED, f"spec.certificate.keyAlgorithm is now {wanted}")
    return None


def renewal_time_reached(i: LeafInput) -> Verdict | None:
    at = renewal_time(i.pair[0], i.identity.certificate.renew_before)
    return Verdict(Reason.CERTIFICATE_RENEWED, f"renewal time {rfc3339(at)} reached") if i.now >= at else None


def rotation_requested(i: LeafInput) -> Verdict | None:
    if i.rotate:
        return Verdict(Reason.CERTIFICATE_RENEWED, f"requested with the {names.ROTATE_ANNOTATION} annotation")
    return None


#: Why the stored leaf cannot be kept (cert-manager's trigger chain, in priority order).
LEAF_TRIGGERS = (secret_missing, secret_missing_data, secret_unparseable, key_mismatch, certificate_invalid,
                 dns_names_changed, key_algorithm_changed, renewal_time_reached, rotation_requested)


# --------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LeafState:
    phase: LeafPhase
    cert: x509.Certificate
    key: pki.PrivateKey


def advance(i: LeafInput, keys: KeySource) -> tuple[LeafState, tuple[PlannedEvent, ...]]:
    """Keep the stored leaf (``Valid``) or issue a new one (``Issuing``) and say why."""
    verdict = evaluate(LEAF_TRIGGERS, i)
    if verdict is None:
        leaf, key = i.pair
        return LeafState(LeafPhase.VALID, leaf, key), ()
    ident = i.identity
    key = keys.private_key(ident.certificate.key_algorithm)
    leaf = pki.create_leaf(i.ca.cert, i.ca.key, key.public_key(), common_name=ident.service_name,
                           dns_names=ident.all_dns_names, uri_sans=[ident.spiffe_id], now=i.now,
                           lifetime=ident.certificate.duration, serial=keys.serial())
    event = PlannedEvent.of(verdict.reason, f"certificate serial {pki.serial_hex(leaf)} issued: {verdict.message}")
    return LeafState(LeafPhase.ISSUING, leaf, key), (event,)


@dataclasses.dataclass(frozen=True)
class LeafOutput:
    data: dict[str, bytes]
    records: dict[str, str]
    status: CertificateStatus
    check: Check
    renew_at: datetime


def credentials(i: LeafInput, state: LeafState, user_password: str | None, keys: KeySource) -> LeafOutput:
    """tls.crt/tls.key/ca.crt, the keystore password and the keystores of ``spec.keystores``."""
    ident, ca, leaf, leaf_key = i.identity, i.ca, state.cert, state.key
    data: dict[str, bytes] = {}
    records: dict[str, str] = {}
    leaf_pem, key_pem = pki.cert_to_pem(leaf), pki.private_key_to_pem(leaf_key)
    data["tls.crt"] = leaf_pem + ca.cert_pem
    data["tls.key"] = key_pem
    data["ca.crt"] = ca.cert_pem
    password = user_password or stored_password(i.stored, "keystore.password") or keys.password()
    data["keystore.password"] = password.encode()
    legacy = ident.keystores.legacy_pkcs12
    inputs = b"|".join([key_pem, leaf_pem, ca.cert_pem, password.encode(), b"legacy" if legacy else b"modern"])
    if KeystoreFormat.PKCS12 in ident.keystores.formats:
        data["keystore.p12"] = stable_output(
            "keystore.p12", inputs, lambda: pki.pkcs12_keystore(leaf_key, leaf, [ca.cert], password, legacy=legacy),
            i.stored, records)
    if KeystoreFormat.JKS in ident.keystores.formats:
        data["keystore.jks"] = stable_output(
            "keystore.jks", inputs, lambda: pki.jks_keystore(leaf_key, leaf, [ca.cert], password), i.stored, records)
    renew_at = renewal_time(leaf, ident.certificate.renew_before)
    status = CertificateStatus(pki.serial_hex(leaf), pki.fingerprint_sha256(leaf), rfc3339(pki.not_after(leaf)),
                               rfc3339(renew_at), tuple(ident.all_dns_names))
    check = passed("Valid", f"certificate serial {pki.serial_hex(leaf)} valid until {rfc3339(pki.not_after(leaf))}")
    return LeafOutput(data, records, status, check, renew_at)
