"""Checks that notice wrong material before it is mounted into a workload.

Why lists of sentences instead of exceptions: the operator reports *all* problems of
a piece of material at once in a status condition (``CAReady=False``, message: "CA
certificate expired at …; private key does not match …"), and a user fixing a
hand-made CA Secret wants the whole list, not one error per reconcile loop. An empty
list means the material is usable at ``now``. Sentences never contain key material.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from trustwire.pki.certs import dns_sans, is_ca, is_signed_by, not_after, not_before, require_utc
from trustwire.pki.certs import uri_sans as _uri_sans_of
from trustwire.pki.errors import PKIError
from trustwire.pki.keys import PrivateKey, key_algorithm_of, public_key_matches

__all__ = ["check_ca", "check_leaf"]


def _validity_problems(cert: x509.Certificate, what: str, now: datetime) -> list[str]:
    problems = []
    if now < not_before(cert):
        problems.append(f"{what} is not valid before {not_before(cert).isoformat()}")
    if now >= not_after(cert):
        problems.append(f"{what} expired at {not_after(cert).isoformat()}")
    return problems


def _key_problems(key: PrivateKey, cert: x509.Certificate, what: str) -> list[str]:
    problems = []
    try:
        key_algorithm_of(key)
    except PKIError as exc:
        problems.append(f"{what} private key: {exc}")
    if not public_key_matches(key, cert):
        problems.append(f"{what} private key does not match the {what} certificate")
    return problems


def _key_cert_sign(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except (x509.ExtensionNotFound, ValueError):
        return False


def check_ca(cert: x509.Certificate, key: PrivateKey, *, now: datetime) -> list[str]:
    """Problems that make ``cert``/``key`` unusable as an issuing CA at ``now`` (empty = fine)."""
    require_utc(now)
    problems = []
    if not is_ca(cert):
        problems.append("CA certificate lacks basicConstraints CA:true")
    if not _key_cert_sign(cert):
        problems.append("CA certificate keyUsage does not allow keyCertSign")
    problems += _key_problems(key, cert, "CA")
    problems += _validity_problems(cert, "CA certificate", now)
    return problems


def check_leaf(
    leaf: x509.Certificate,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    now: datetime,
    dns_names: Sequence[str] = (),
    uri_sans: Sequence[str] = (),
) -> list[str]:
    """Problems that make ``leaf``/``key`` unusable as this identity's certificate at ``now`` (empty = fine).

    Checks: key matches, signed by ``ca_cert``, within validity, every requested DNS
    (case-insensitive) and URI SAN present.
    """
    require_utc(now)
    problems = _key_problems(key, leaf, "leaf")
    if is_ca(leaf):
        problems.append("leaf certificate is a CA certificate")
    if not is_signed_by(leaf, ca_cert):
        problems.append("leaf certificate is not signed by the identity's CA")
    problems += _validity_problems(leaf, "leaf certificate", now)
    present_dns = {name.lower() for name in dns_sans(leaf)}
    missing_dns = [name for name in dns_names if name.lower() not in present_dns]
    if missing_dns:
        problems.append(f"leaf certificate lacks DNS SANs: {', '.join(missing_dns)}")
    present_uris = set(_uri_sans_of(leaf))
    missing_uris = [uri for uri in uri_sans if uri not in present_uris]
    if missing_uris:
        problems.append(f"leaf certificate lacks URI SANs: {', '.join(missing_uris)}")
    return problems
