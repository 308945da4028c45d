"""Members outside the cluster: the CA bundle a user hands in, and what the outsider confirmed.

An external member is known only by its CA certificate(s), read from a ConfigMap or Secret
the user owns (never a private key). :data:`BUNDLE_CHECKS` decides whether a bundle can
be trusted; :func:`external_publication` turns a usable one into the
:class:`~trustwire.plan.publication.Publication` the in-cluster side trusts, like any peer's.
Rotation waits for the outsider's confirmation (:func:`outsiders_of`), since no status of
its own tells trustwire what it installed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from trustwire import pki
from trustwire.model import ExternalPeer, TrustRelationship
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.conditions import Check, passed, stalled
from trustwire.plan.material import StoredObject
from trustwire.plan.publication import Publication
from trustwire.plan.reasons import Reason
from trustwire.plan.rotation import Outsider


@dataclasses.dataclass(frozen=True)
class BundleInput:
    peer: ExternalPeer
    namespace: str
    stored: StoredObject | None
    now: datetime

    @property
    def field(self) -> str:
        return f"spec.between[{self.peer.index}].external.caBundleRef"

    @property
    def source(self) -> str:
        ref = self.peer.ca_bundle
        return f"{ref.kind} {self.namespace}/{ref.name}"

    @property
    def raw(self) -> bytes:
        return self.stored.data.get(self.peer.ca_bundle.key, b"") if self.stored is not None else b""

    def certificates(self) -> list[x509.Certificate]:
        try:
            return pki.load_certificates(self.raw)
        except pki.PKIError:
            return []


def _label(cert: x509.Certificate) -> str:
    return f"CN={pki.subject_common_name(cert) or '?'}, serial {pki.serial_hex(cert)}"


def _invalid(b: BundleInput, problem: str) -> Verdict:
    return Verdict(Reason.EXTERNAL_CA_INVALID, f"{b.field}: {b.source} {problem}")


def bundle_missing(b: BundleInput) -> Verdict | None:
    return Verdict(Reason.EXTERNAL_CA_NOT_FOUND, f"{b.field}: {b.source} does not exist") \
        if b.stored is None else None


def key_missing(b: BundleInput) -> Verdict | None:
    key = b.peer.ca_bundle.key
    return _invalid(b, f"has no key {key!r} (set {b.field}.key)") if not b.raw.strip() else None


def holds_private_key(b: BundleInput) -> Verdict | None:
    """A key next to the certificates means it was copied from the outsider's keystore:
    refused, so a private key never lands in what trustwire distributes."""
    return _invalid(b, f"key {b.peer.ca_bundle.key!r} contains a private key; give the CA certificate(s) "
                       "only (PEM 'CERTIFICATE' blocks)") if b"PRIVATE KEY-----" in b.raw else None


def not_certificates(b: BundleInput) -> Verdict | None:
    return _invalid(b, f"key {b.peer.ca_bundle.key!r} is not a PEM certificate bundle; "
                       "allowed: one or more PEM 'CERTIFICATE' blocks") if not b.certificates() else None


def not_a_ca(b: BundleInput) -> Verdict | None:
    leaves = [_label(c) for c in b.certificates() if not pki.is_ca(c)]
    return _invalid(b, f"holds certificate(s) that are not CAs ({', '.join(leaves)}); allowed: CA certificates "
                       "(basicConstraints CA:true)") if leaves else None


def expired(b: BundleInput) -> Verdict | None:
    gone = [_label(c) for c in b.certificates() if pki.not_after(c) <= b.now]
    return _invalid(b, f"holds expired CA certificate(s) ({', '.join(gone)}); replace them with current ones") \
        if gone else None


#: Why a bundle cannot be trusted (in priority order).
BUNDLE_CHECKS = (bundle_missing, key_missing, holds_private_key, not_certificates, not_a_ca, expired)


def external_publication(b: BundleInput) -> tuple[Publication | None, Check]:
    """The outsider's CA(s) as a peer's publication, or the condition saying why not."""
    verdict = evaluate(BUNDLE_CHECKS, b)
    if verdict is not None:
        return None, stalled(str(verdict.reason), verdict.message)
    certs = b.certificates()
    info = {"name": b.peer.name, "namespace": b.namespace, "external": True, "revokedKids": []}
    fingerprints = ", ".join(pki.fingerprint_sha256(c) for c in certs)
    return Publication(pki.certs_to_pem(certs), (), info), passed(
        "Valid", f"{len(certs)} CA certificate(s) from {b.source} (SHA-256 {fingerprints})")


def outsiders_of(relationships: Sequence[TrustRelationship]) -> list[Outsider]:
    """The external members a CA rotation waits for, with what each confirmed."""
    return [Outsider(rel.external.name, rel.namespace, rel.name, rel.external.confirmed)
            for rel in relationships if rel.external is not None and rel.mtls]
