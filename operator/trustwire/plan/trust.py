"""The trust files: peers' CAs, JWKS, shared secrets and rendered templates, within what Secrets hold.

:func:`plan_trust` builds the files for every accepted peer (:mod:`~trustwire.plan.packing`
lays them out in Secrets); when they outgrow what Secrets may hold it keeps the peers
already held plus, in a fixed order, as many waiting peers as still fit (``TrustTooLarge``),
so removals and revocations take effect at once, nothing already trusted is lost, and the
set only grows from pass to pass.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from trustwire import names, pki
from trustwire.model import IdentityRef, KeystoreFormat, ServiceIdentity, TrustRelationship
from trustwire.plan import shared, templates
from trustwire.plan.conditions import Check, passed, stalled, waiting
from trustwire.plan.jwt import JwtMaterial
from trustwire.plan.material import CAMaterial, StoredObject, bounded, stable_output, to_json
from trustwire.plan.packing import SECRET_DATA_LIMIT, fill, largest
from trustwire.plan.publication import Publication
from trustwire.plan.shared import SharedValue
from trustwire.plan.status import PeerStatus


@dataclasses.dataclass(frozen=True)
class PeerLink:
    relationship: TrustRelationship
    peer: IdentityRef
    publication: Publication | None
    shared_secret: SharedValue | None = None


@dataclasses.dataclass(frozen=True)
class TrustInput:
    identity: ServiceIdentity
    stored: StoredObject | None
    links: Sequence[PeerLink]
    ca: CAMaterial | None
    jwt: JwtMaterial | None
    password: str
    template_sources: Mapping[str, str | None]
    timer: templates.Timer
    #: bytes one Secret may hold (tests lower it to split and overflow cheaply)
    budget: int = SECRET_DATA_LIMIT
    #: enrolled applications (``plan.enrollment.enrolled_entry``): in ``peers.json`` and templates
    enrolled: Sequence[Mapping[str, Any]] = ()


@dataclasses.dataclass
class TrustContent:
    """The trust Secret's data for a set of peers, and what it tells status and peers."""

    data: dict[str, bytes]
    records: dict[str, str]
    peers_status: list[PeerStatus]
    trusted_cas: set[str]
    trusted_kids: set[str]
    #: TrustReady, and TemplatesReady when the identity has templates
    checks: dict[str, Check]
    #: False when the Secret must be left exactly as it is
    write: bool = True

    @property
    def size(self) -> int:
        return sum(len(value) for value in self.data.values())


def plan_trust(t: TrustInput) -> TrustContent:
    """The trust Secret for every peer, or the largest fitting part of it (``TrustTooLarge``)."""
    ident, ns = t.identity, t.identity.namespace
    trust = content(t, t.links)
    if fill(trust.data, t.budget) <= 1:
        return trust
    held = held_peers(t.stored)
    kept = [link for link in t.links if link_key(link) in held]
    waiting_links = sorted((link for link in t.links if link_key(link) not in held), key=link_order)
    fitting = content(t, kept)
    if fill(fitting.data, t.budget) > 1:  # even those no longer fit: leave the Secrets exactly as they are
        stored = dict(t.stored.data) if t.stored is not None else {}
        fitting = TrustContent(stored, {}, fitting.peers_status, *trusted_in(stored), fitting.checks, write=False)
    elif waiting_links:
        per_peer = (fill(trust.data, t.budget) - fill(fitting.data, t.budget)) / len(waiting_links)
        count = min(len(waiting_links), int((1 - fill(fitting.data, t.budget)) / max(per_peer, 1e-9)))
        while count > 0:
            candidate = content(t, [*kept, *waiting_links[:count]])
            if fill(candidate.data, t.budget) <= 1:
                fitting = candidate
                break
            count = min(count - 1, int(count * 0.97))
    trusted = len(fitting.peers_status)
    rendered = sum(len(trust.data.get(tpl.name, b"")) for tpl in ident.templates)
    big, big_size = largest(trust.data)
    fitting.checks["TrustReady"] = stalled(
        "TrustTooLarge",
        f"Secret {ns}/{names.trust_secret(ident.name)} and its split Secrets would need {trust.size:,} bytes "
        f"for {len(t.links)} peer(s) and {len(ident.templates)} template(s) ({rendered:,} bytes rendered), "
        f"{big_size:,} of them in {big}; Kubernetes limits a Secret to {t.budget:,} bytes and a file cannot "
        f"span Secrets. {trusted} peer(s) are trusted, "
        f"{len(t.links) - trusted} wait. Split the peers across several identities or shorten the templates")
    return fitting


def link_order(link: PeerLink) -> tuple[str, str, str]:
    return str(link.peer), link.relationship.namespace, link.relationship.name


def link_key(link: PeerLink) -> tuple[str, str, str]:
    rel = link.relationship
    return link.peer.namespace, link.peer.name, f"{rel.namespace}/{rel.name}"


def held_peers(trust: StoredObject | None) -> set[tuple[str, str, str]]:
    """(namespace, identity, relationship) of every peer in a stored ``peers.json``."""
    try:
        entries = json.loads(trust.data.get("peers.json", b"[]")) if trust is not None else []
    except ValueError:
        return set()
    if not isinstance(entries, list):
        return set()
    return {(str(e.get("namespace")), str(e.get("identity")), str(e.get("relationship")))
            for e in entries if isinstance(e, dict)}


def trusted_in(data: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
    """CA fingerprints and kids a stored trust Secret really holds."""
    try:
        cas = {pki.fingerprint_sha256(c) for c in pki.load_certificates(data.get("trust-bundle.pem", b""))}
    except pki.PKIError:
        cas = set()
    try:
        keys = json.loads(data.get("peers.jwks", b"{}")).get("keys", [])
        kids = {str(k.get("kid")) for k in keys if isinstance(k, dict)}
    except (ValueError, AttributeError):
        kids = set()
    return cas, kids


@dataclasses.dataclass
class _Peers:
    """What the peers of one candidate set add up to."""

    data: dict[str, bytes] = dataclasses.field(default_factory=dict)
    status: list[PeerStatus] = dataclasses.field(default_factory=list)
    context: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending: list[str] = dataclasses.field(default_factory=list)
    bundle: dict[str, x509.Certificate] = dataclasses.field(default_factory=dict)
    keys: dict[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    entries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: what templates see of each shared secret, by group (or peer)
    shared: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def _add_peer(acc: _Peers, ident: ServiceIdentity, link: PeerLink, short_names: Sequence[str]) -> str | None:
    """Add one peer's material to ``acc``; or why it cannot be trusted yet."""
    rel, pub = link.relationship, link.publication
    if pub is None and rel.issuer is not None:
        return (f"the keys of issuer {rel.issuer.url} are not fetched yet "
                f"(see TrustRelationship {rel.namespace}/{rel.name})")
    if pub is None and rel.external is not None:
        return (f"the CA bundle of external peer {rel.external.name} is not usable "
                f"(see TrustRelationship {rel.namespace}/{rel.name})")
    if pub is None:
        return f"{link.peer} has not published its material yet"
    secret_file = None
    if rel.shared_secret is not None:
        if link.shared_secret is None:
            return f"the shared secret of relationship {rel.namespace}/{rel.name} is not ready"
        key_name = link.peer.name if short_names.count(link.peer.name) == 1 else \
            f"{link.peer.namespace}.{link.peer.name}"
        delivered = shared.delivery(rel.shared_secret, key_name, link.shared_secret, ident.mount_path)
        if delivered.clashes(acc.data):
            return (f"relationship {rel.namespace}/{rel.name}: the shared secret files of "
                    f"{delivered.context['name']!r} are taken by another shared secret (a group named like a peer)")
        acc.data |= delivered.files
        acc.shared[delivered.context["name"]] = delivered.context
        secret_file = names.shared_files(delivered.context["name"])[0]
    ca_fingerprints: list[str] = []
    ca_pem = b""
    if rel.mtls:
        try:
            peer_cas = pki.load_certificates(pub.ca_pem)
        except pki.PKIError:
            return f"{link.peer} publishes an unreadable CA"
        for cert in peer_cas:
            acc.bundle[pki.fingerprint_sha256(cert)] = cert
            ca_fingerprints.append(pki.fingerprint_sha256(cert))
        ca_pem = pki.certs_to_pem(peer_cas)
    revoked = set(pub.revoked_kids)
    peer_jwks = [dict(j) for j in pub.jwks if j.get("kid") not in revoked]
    accepts_tokens = rel.jwt and rel.sends_to(link.peer)
    if accepts_tokens:
        for j in peer_jwks:
            acc.keys[str(j["kid"])] = j
    me = IdentityRef(ident.namespace, ident.name)
    entry = {
        "identity": link.peer.name, "namespace": link.peer.namespace,
        "relationship": f"{rel.namespace}/{rel.name}",
        "direction": "both" if rel.initiator is None else ("outbound" if rel.initiator == me else "inbound"),
        "mtls": rel.mtls, "jwt": rel.jwt,
        "kids": [str(j["kid"]) for j in peer_jwks] if rel.jwt and accepts_tokens else [],
        "roles": list(rel.roles), "audience": rel.audience, "scopes": list(rel.scopes),
        "revoked": bool(revoked) and not peer_jwks, "revokedKids": sorted(revoked),
        "issuer": str(pub.info.get("issuer", "")), "spiffeId": str(pub.info.get("spiffeId", "")),
        "caFingerprints": ca_fingerprints, "sharedSecretFile": secret_file,
        "external": rel.outside,
    }
    acc.entries.append(entry)
    acc.status.append(PeerStatus(link.peer.name, link.peer.namespace, f"{rel.namespace}/{rel.name}", rel.mtls,
                                 rel.jwt, rel.shared_secret is not None))
    acc.context.append({**entry, "jwks": peer_jwks if accepts_tokens else [], "caPem": ca_pem.decode(),
                        "caFingerprint": ca_fingerprints[0] if ca_fingerprints else "",
                        "sharedSecretFile": f"{ident.mount_path}/{secret_file}" if secret_file else None})
    return None


def content(t: TrustInput, links: Sequence[PeerLink]) -> TrustContent:
    """Peers' CAs, JWKS, shared secrets and rendered templates for ``links``."""
    ident = t.identity
    acc = _Peers()
    short_names = [link.peer.name for link in links]
    for link in sorted(links, key=link_order):
        problem = _add_peer(acc, ident, link, short_names)
        if problem is not None:
            acc.pending.append(problem)
    data, records = acc.data, dict[str, str]()
    bundle_certs = [acc.bundle[fp] for fp in sorted(acc.bundle)]
    data["trust-bundle.pem"] = pki.certs_to_pem(bundle_certs) if bundle_certs else b""
    data["truststore.password"] = t.password.encode()
    data |= _truststores(t, bundle_certs, data["trust-bundle.pem"], records)
    data["peers.jwks"] = to_json(pki.jwks([acc.keys[k] for k in sorted(acc.keys)]))
    data["peers.json"] = to_json([*acc.entries, *t.enrolled])
    checks = {"TrustReady": waiting("PeerPending", bounded(acc.pending)) if acc.pending else
              passed("Distributed", f"{len(acc.entries)} peer(s) trusted")}
    if ident.templates:
        ctx = templates.context(ident, t.ca, t.jwt, acc.context, acc.shared, t.enrolled)
        rendered, checks["TemplatesReady"] = templates.render_all(ident, t.template_sources, ctx, t.stored, t.timer)
        data |= rendered
    return TrustContent(data, records, acc.status, set(acc.bundle), set(acc.keys), checks)


def _truststores(t: TrustInput, bundle_certs: Sequence[x509.Certificate], bundle_pem: bytes,
                 records: dict[str, str]) -> dict[str, bytes]:
    """A truststore exists only with something to trust: PKCS#12 cannot be empty, and an
    identity without mTLS peers should not pretend to trust anyone (README: "Files")."""
    formats, legacy, password = t.identity.keystores.formats, t.identity.keystores.legacy_pkcs12, t.password
    inputs = b"|".join([bundle_pem, password.encode(), b"legacy" if legacy else b"modern"])
    out: dict[str, bytes] = {}
    if bundle_certs and KeystoreFormat.PKCS12 in formats:
        out["truststore.p12"] = stable_output(
            "truststore.p12", inputs, lambda: pki.pkcs12_truststore(list(bundle_certs), password, legacy=legacy),
            t.stored, records)
    if bundle_certs and KeystoreFormat.JKS in formats:
        out["truststore.jks"] = stable_output(
            "truststore.jks", inputs, lambda: pki.jks_truststore(list(bundle_certs), password), t.stored, records)
    return out
