"""trustwire.plan.identity.plan_identity: desired objects, checks, events and wake-up from an observation.

Observations are built by hand: Secrets and ConfigMaps as :class:`StoredObject`, peers as
:class:`Publication`. The central property is convergence: feeding a plan's own output
back as the observation plans byte-identical objects and no events ("a resync writes
nothing"), and material that was damaged is repaired and then converges too.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto.jwk import JWK

from trustwire import names, pki
from trustwire.model import (
    IdentityRef,
    KeystoreFormat,
    ServiceIdentity,
    SpecError,
    TrustRelationship,
    parse_identity,
    parse_relationship,
)
from trustwire.pki import JwtAlgorithm, KeyAlgorithm
from trustwire.plan import rotation as rot
from trustwire.plan.ca import renewal_time as ca_renewal_time
from trustwire.plan.identity import MIN_WAKE, IdentityObservation, IdentityPlan, plan_identity
from trustwire.plan.leaf import renewal_time
from trustwire.plan.material import DesiredObject, StoredObject
from trustwire.plan.material import to_json as _json
from trustwire.plan.objects import object_body, object_patch
from trustwire.plan.publication import Publication, publication_from_secrets
from trustwire.plan.shared import SharedValue
from trustwire.plan.trust import SECRET_DATA_LIMIT, PeerLink

NS = "gov"
PEER_NS = "jobs"
ME = IdentityRef(NS, "dgc")

Factory = Callable[..., dict[str, Any]]
KeyPool = Callable[..., pki.PrivateKey]

CREDENTIAL_KEYS = {
    "tls.crt",
    "tls.key",
    "ca.crt",
    "keystore.p12",
    "keystore.jks",
    "keystore.password",
    "jwt.key",
    "jwt.jwk",
    "jwt.kid",
}
TRUST_KEYS = {
    "trust-bundle.pem",
    "truststore.p12",
    "truststore.jks",
    "truststore.password",
    "peers.jwks",
    "peers.json",
}


# ======================================================================================
# Helpers
# ======================================================================================
def stored(desired: DesiredObject, *, managed: bool = True) -> StoredObject:
    """What the API server would hand back after the controller wrote ``desired``."""
    return StoredObject(
        name=desired.name,
        managed=managed,
        owner=desired.labels.get(names.IDENTITY_LABEL),
        data=dict(desired.data),
        annotations=dict(desired.annotations),
        type=desired.type,
    )


def by_name(plan: IdentityPlan) -> dict[str, DesiredObject]:
    out = {o.name: o for o in plan.objects}
    assert len(out) == len(plan.objects), "an object is planned twice"
    return out


def observe(ident: ServiceIdentity, now: datetime, **kwargs: Any) -> IdentityObservation:
    """An observation; inline templates are passed as sources as the controller does."""
    kwargs.setdefault("template_sources", {t.name: t.inline for t in ident.templates if t.inline is not None})
    return IdentityObservation(identity=ident, now=now, **kwargs)


def feed_back(obs: IdentityObservation, plan: IdentityPlan, **changes: Any) -> IdentityObservation:
    """The next observation: everything the plan wrote, as stored managed objects."""
    objects, name = by_name(plan), obs.identity.name

    def after(object_name: str, current: StoredObject | None) -> StoredObject | None:
        desired = objects.get(object_name)
        return stored(desired) if desired is not None else current

    files = {f: part for f in names.TRUST_SPLIT_KEYS  # as the controller: written, kept, or deleted
             if (part := after(names.trust_file_secret(name, f), obs.trust_files.get(f))) is not None
             and part.name not in plan.obsolete}
    return dataclasses.replace(
        obs,
        ca=after(names.ca_secret(name), obs.ca),
        credentials=after(names.credentials_secret(name), obs.credentials),
        trust=after(names.trust_secret(name), obs.trust),
        trust_files=files,
        public=after(names.public_configmap(name), obs.public),
        **changes,
    )


def edit(
    obj: StoredObject | None,
    data: Mapping[str, bytes | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> StoredObject:
    assert obj is not None
    new_data, new_annotations = dict(obj.data), dict(obj.annotations)
    for key, value in (data or {}).items():
        if value is None:
            new_data.pop(key, None)
        else:
            new_data[key] = value
    for key, text in (annotations or {}).items():
        if text is None:
            new_annotations.pop(key, None)
        else:
            new_annotations[key] = text
    return dataclasses.replace(obj, data=new_data, annotations=new_annotations)


def events_of(plan: IdentityPlan) -> dict[str, str]:
    return {e.reason: e.type for e in plan.events}


def creds(plan: IdentityPlan, ident: ServiceIdentity) -> Mapping[str, bytes]:
    return by_name(plan)[names.credentials_secret(ident.name)].data


def trust(plan: IdentityPlan, ident: ServiceIdentity) -> Mapping[str, bytes]:
    """The trust files the plan writes, from every Secret they are split across."""
    objects = by_name(plan)
    files: dict[str, bytes] = {}
    for name in names.trust_secrets(ident.name):
        files |= objects[name].data if name in objects else {}
    return files


def public(plan: IdentityPlan, ident: ServiceIdentity) -> Mapping[str, bytes]:
    return by_name(plan)[names.public_configmap(ident.name)].data


def leaf_of(plan: IdentityPlan, ident: ServiceIdentity) -> x509.Certificate:
    return pki.load_certificates(creds(plan, ident)["tls.crt"])[0]


def rfc7638_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 §3, written out here rather than taken from trustwire.pki."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x"),
                "oct": ("k", "kty")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def assert_material_valid(
    plan: IdentityPlan, ident: ServiceIdentity, now: datetime, ca_cert: x509.Certificate | None = None
) -> None:
    """Everything in the credentials Secret is consistent, valid at ``now`` and matches ``ca_cert``."""
    data = creds(plan, ident)
    if ca_cert is None:
        ca_cert = pki.load_certificates(by_name(plan)[names.ca_secret(ident.name)].data["tls.crt"])[0]
        ca_key = pki.load_private_key(by_name(plan)[names.ca_secret(ident.name)].data["tls.key"])
        assert pki.check_ca(ca_cert, ca_key, now=now) == []
    chain = pki.load_certificates(data["tls.crt"])
    assert [pki.fingerprint_sha256(c) for c in chain[1:]] == [pki.fingerprint_sha256(ca_cert)]  # leaf + chain
    key = pki.load_private_key(data["tls.key"])
    assert data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert (
        pki.check_leaf(
            chain[0], key, ca_cert, now=now, dns_names=ident.all_dns_names, uri_sans=[ident.spiffe_id]
        )
        == []
    )
    assert data["ca.crt"] == pki.cert_to_pem(ca_cert)
    password = data["keystore.password"].decode()
    if "keystore.p12" in data:
        p12_key, p12_certs = pki.read_pkcs12(data["keystore.p12"], password)
        assert p12_key is not None and pki.public_key_matches(p12_key, chain[0])
        assert [pki.fingerprint_sha256(c) for c in p12_certs] == [
            pki.fingerprint_sha256(chain[0]),
            pki.fingerprint_sha256(ca_cert),
        ]
    if "keystore.jks" in data:
        store = pki.read_jks(data["keystore.jks"], password)
        (entry,) = store.keys
        assert list(entry.chain) == [c.public_bytes(Encoding.DER) for c in chain]
    if ident.jwt.enabled:
        jwk = json.loads(data["jwt.jwk"])
        assert data["jwt.kid"].decode() == jwk["kid"] == rfc7638_thumbprint(jwk)
        if ident.jwt.hmac is not None:  # a symmetric key: the JWK's k is the file's bytes
            assert base64.urlsafe_b64decode(jwk["k"] + "=" * (-len(jwk["k"]) % 4)) == data["jwt.key"]
        else:
            assert pki.public_jwk(pki.load_private_key(data["jwt.key"]), ident.jwt.algorithm)["kid"] == jwk["kid"]


@pytest.fixture
def make_ident(identity_body: Factory) -> Callable[..., ServiceIdentity]:
    def make(name: str = "dgc", namespace: str = NS, **spec: Any) -> ServiceIdentity:
        return parse_identity(identity_body(name=name, namespace=namespace, **spec))

    return make


@pytest.fixture
def make_rel(relationship_body: Factory) -> Callable[..., TrustRelationship]:
    """``make_rel(peer="jobserver", peer_ns=PEER_NS, **spec)``: a relationship dgc ↔ peer declared in NS."""

    def make(
        peer: str = "jobserver",
        peer_ns: str = PEER_NS,
        *,
        name: str | None = None,
        **spec: Any,
    ) -> TrustRelationship:
        return parse_relationship(
            relationship_body(
                "dgc", peer, name=name or f"dgc-{peer}", namespace=NS, b_namespace=peer_ns, **spec
            )
        )

    return make


@dataclasses.dataclass(frozen=True)
class Peer:
    ref: IdentityRef
    ca: x509.Certificate
    jwks: tuple[dict[str, str], ...]

    def publication(self, *, revoked: tuple[str, ...] = (), ca_pem: bytes | None = None) -> Publication:
        info = {
            "name": self.ref.name,
            "namespace": self.ref.namespace,
            "issuer": f"https://{self.ref.name}.example",
            "spiffeId": f"spiffe://cluster.local/ns/{self.ref.namespace}/sid/{self.ref.name}",
            "kids": [j["kid"] for j in self.jwks],
            "revokedKids": list(revoked),
        }
        return Publication(pki.cert_to_pem(self.ca) if ca_pem is None else ca_pem, self.jwks, info)

    @property
    def kids(self) -> list[str]:
        return [j["kid"] for j in self.jwks]


@pytest.fixture
def make_peer(real_key: KeyPool, now: datetime) -> Callable[..., Peer]:
    """``make_peer(name, namespace=PEER_NS, slot=0, keys=1)``: a peer with its own real CA and JWT keys."""

    def make(name: str = "jobserver", namespace: str = PEER_NS, slot: int = 0, keys: int = 1) -> Peer:
        ca_key = real_key(KeyAlgorithm.ECDSAP256, 500 + slot)
        ca = pki.create_ca(
            ca_key,
            common_name=f"{name}.{namespace} CA",
            now=now - timedelta(days=1),
            lifetime=timedelta(days=365),
        )
        jwks = tuple(
            pki.public_jwk(real_key(JwtAlgorithm.ES256, 500 + 10 * slot + i), JwtAlgorithm.ES256)
            for i in range(keys)
        )
        return Peer(IdentityRef(namespace, name), ca, jwks)

    return make


def link(rel: TrustRelationship, publication: Publication | None, shared: bytes | None = None) -> PeerLink:
    peer = rel.peer_of(ME)
    assert peer is not None
    return PeerLink(rel, peer, publication, SharedValue(shared) if shared is not None else None)


def b64url(raw: bytes) -> bytes:
    """A shared secret as delivered by default: base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


# ======================================================================================
# A fresh identity
# ======================================================================================
def test_fresh_identity_plans_every_object_with_the_contract_keys(
    make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident = make_ident(serviceName="dgc-svc", dnsNames=["dgc.example.com"])
    plan = plan_identity(observe(ident, now))

    assert sorted((o.kind, o.name, o.type) for o in plan.objects) == [
        ("ConfigMap", "dgc-trustwire-public", None),
        ("Secret", "dgc-trustwire-ca", "kubernetes.io/tls"),
        ("Secret", "dgc-trustwire-credentials", "kubernetes.io/tls"),
        ("Secret", "dgc-trustwire-trust", "Opaque"),
    ]
    # written in plan order: the CA before the leaf it signs, the leaf and key before they are published,
    # so a crash between two writes leaves state the next pass adopts rather than re-issues
    order = [o.name for o in plan.objects]
    assert order[0] == "dgc-trustwire-ca"
    assert order.index("dgc-trustwire-credentials") < order.index("dgc-trustwire-public")
    roles = {
        "dgc-trustwire-ca": "ca",
        "dgc-trustwire-credentials": "credentials",
        "dgc-trustwire-public": "public",
        "dgc-trustwire-trust": "trust",
    }
    for obj in plan.objects:
        assert obj.labels == {
            names.MANAGED_BY: names.MANAGER,
            names.IDENTITY_LABEL: "dgc",
            names.ROLE_LABEL: roles[obj.name],
        }
        assert obj.owned is (obj.name != "dgc-trustwire-ca")  # the CA survives deletion under Retain

    objects = by_name(plan)
    assert set(objects["dgc-trustwire-ca"].data) == {"tls.crt", "tls.key"}
    assert set(creds(plan, ident)) == {
        "tls.crt",
        "tls.key",
        "ca.crt",
        "keystore.p12",
        "keystore.password",
        "jwt.key",
        "jwt.jwk",
        "jwt.kid",
    }
    assert set(trust(plan, ident)) == {"trust-bundle.pem", "truststore.password", "peers.jwks", "peers.json"}
    assert set(public(plan, ident)) == {"ca.crt", "jwks.json", "identity.json"}
    assert not set(creds(plan, ident)) & set(trust(plan, ident))  # one directory at mountPath

    ca_cert = pki.load_certificates(objects["dgc-trustwire-ca"].data["tls.crt"])[0]
    assert pki.is_ca(ca_cert)
    assert pki.not_after(ca_cert) == now + timedelta(hours=8760)
    assert_material_valid(plan, ident, now)

    leaf = leaf_of(plan, ident)
    assert pki.dns_sans(leaf) == [
        "dgc-svc",
        "dgc-svc.gov",
        "dgc-svc.gov.svc",
        "dgc-svc.gov.svc.cluster.local",
        "dgc.example.com",
    ]
    assert pki.uri_sans(leaf) == ["spiffe://cluster.local/ns/gov/sid/dgc"]
    assert pki.not_after(leaf) == now + timedelta(hours=720)
    assert pki.key_algorithm_of(pki.load_private_key(creds(plan, ident)["tls.key"])) is KeyAlgorithm.ECDSAP256

    jwk = json.loads(creds(plan, ident)["jwt.jwk"])
    assert (
        jwk["kid"] == JWK(**{k: v for k, v in jwk.items() if k != "kid"}).thumbprint()
    )  # third-party RFC 7638
    assert jwk["alg"] == "ES256" and "d" in jwk

    published = json.loads(public(plan, ident)["jwks.json"])
    assert published == {"keys": [{k: v for k, v in jwk.items() if k != "d"}]}
    info = json.loads(public(plan, ident)["identity.json"])
    assert info["issuer"] == info["spiffeId"] == "spiffe://cluster.local/ns/gov/sid/dgc"
    assert info["kids"] == [jwk["kid"]]
    assert info["caFingerprints"] == [pki.fingerprint_sha256(ca_cert)]
    assert public(plan, ident)["ca.crt"] == pki.cert_to_pem(ca_cert)

    assert trust(plan, ident)["trust-bundle.pem"] == b""  # peers' CAs only, never our own
    assert json.loads(trust(plan, ident)["peers.jwks"]) == {"keys": []}
    assert json.loads(trust(plan, ident)["peers.json"]) == []

    assert events_of(plan) == {"Issued": "Normal"}  # one Event for the three first issuances
    (issued,) = plan.events
    assert [m.split(" ", 1)[0] for m in issued.message.split("; ")] == ["CA", "certificate", "JWT"], issued.message
    assert {k: (c.ok, c.reason) for k, c in plan.checks.items()} == {
        "CAReady": (True, "Valid"),
        "CertificateReady": (True, "Valid"),
        "TrustReady": (True, "Distributed"),
    }
    assert plan.mounted == {**creds(plan, ident), **trust(plan, ident)}


def test_status_summarizes_without_key_material(
    make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident = make_ident()
    plan = plan_identity(observe(ident, now))
    leaf = leaf_of(plan, ident)
    kid = creds(plan, ident)["jwt.kid"].decode()
    status = plan.status.to_dict()
    assert status["spiffeId"] == status["issuer"] == ident.spiffe_id
    assert status["certificate"]["serial"] == pki.serial_hex(leaf)
    assert status["certificate"]["fingerprint"] == pki.fingerprint_sha256(leaf)
    assert status["certificate"]["notAfter"] == (now + timedelta(hours=720)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["certificate"]["renewalTime"] == (now + timedelta(hours=480)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["certificate"]["dnsNames"] == list(ident.all_dns_names)
    assert status["jwt"] == {
        "kid": kid,
        "algorithm": "ES256",
        "publishedKids": [kid],
        "rotationTime": (now + timedelta(hours=720)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert status["ca"]["source"] == "SelfSigned"
    assert (status["peers"], status["peerCount"]) == ([], 0)

    text = json.dumps(status) + json.dumps([dataclasses.asdict(e) for e in plan.events])
    secrets = [
        creds(plan, ident)["keystore.password"].decode(),
        trust(plan, ident)["truststore.password"].decode(),
        json.loads(creds(plan, ident)["jwt.jwk"])["d"],
    ]
    assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize(
    ("algorithm", "jwt_algorithm"),
    [
        (KeyAlgorithm.ECDSAP384, JwtAlgorithm.ES384),
        (KeyAlgorithm.Ed25519, JwtAlgorithm.EdDSA),
        (KeyAlgorithm.RSA2048, JwtAlgorithm.PS256),
    ],
)
def test_algorithms_from_the_spec_are_used(
    make_ident: Callable[..., ServiceIdentity],
    now: datetime,
    algorithm: KeyAlgorithm,
    jwt_algorithm: JwtAlgorithm,
) -> None:
    ident = make_ident(
        ca={"keyAlgorithm": str(algorithm)},
        certificate={"keyAlgorithm": str(algorithm)},
        jwt={"algorithm": str(jwt_algorithm)},
    )
    plan = plan_identity(observe(ident, now))
    assert_material_valid(plan, ident, now)
    ca_key = pki.load_private_key(by_name(plan)["dgc-trustwire-ca"].data["tls.key"])
    assert pki.key_algorithm_of(ca_key) is algorithm
    assert pki.key_algorithm_of(pki.load_private_key(creds(plan, ident)["tls.key"])) is algorithm
    assert json.loads(creds(plan, ident)["jwt.jwk"])["alg"] == str(jwt_algorithm)


def test_leaf_lifetime_is_capped_at_the_ca(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    ident = make_ident(ca={"duration": "100h"})
    plan = plan_identity(observe(ident, now))
    ca_cert = pki.load_certificates(by_name(plan)["dgc-trustwire-ca"].data["tls.crt"])[0]
    leaf = leaf_of(plan, ident)
    assert pki.not_after(leaf) == pki.not_after(ca_cert) == now + timedelta(hours=100)
    # renewBefore (240h) exceeds the capped lifetime: renew at 2/3 of it instead of at once
    life = pki.not_after(leaf) - pki.not_before(leaf)
    assert renewal_time(leaf, ident.certificate.renew_before) == pki.not_before(leaf) + life * 2 / 3
    assert plan.status.to_dict()["certificate"]["renewalTime"] == (pki.not_before(leaf) + life * 2 / 3).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_jwt_disabled_writes_no_jwt_files(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    ident = make_ident(jwt={"enabled": False})
    plan = plan_identity(observe(ident, now))
    assert not {"jwt.key", "jwt.jwk", "jwt.kid"} & set(creds(plan, ident))
    assert json.loads(public(plan, ident)["jwks.json"]) == {"keys": []}
    assert json.loads(public(plan, ident)["identity.json"])["jwtAlgorithm"] is None
    assert "jwt" not in plan.status.to_dict()
    assert "JwtKeyGenerated" not in events_of(plan)


@pytest.mark.parametrize("algorithm", list(pki.HmacAlgorithm))
def test_a_symmetric_jwt_key_stays_in_the_credentials_secret(
    make_ident: Callable[..., ServiceIdentity], now: datetime, algorithm: pki.HmacAlgorithm
) -> None:
    ident = make_ident(jwt={"algorithm": str(algorithm)})
    obs = observe(ident, now)
    plan = plan_identity(obs)
    data = creds(plan, ident)
    key = data["jwt.key"]
    assert pki.hmac_key_fits(key, algorithm)
    jwk = json.loads(data["jwt.jwk"])
    assert jwk == {"kty": "oct", "k": pki.jwk.b64url_encode(key), "alg": str(algorithm),
                   "kid": data["jwt.kid"].decode()}
    assert jwk["kid"] == rfc7638_thumbprint(jwk)
    assert events_of(plan) == {"Issued": "Normal"}
    assert plan.status.jwt is not None and plan.status.jwt.to_dict() == {
        "kid": jwk["kid"], "algorithm": str(algorithm), "publishedKids": []}
    # published nowhere: not in the public ConfigMap, not to peers
    assert json.loads(public(plan, ident)["jwks.json"]) == {"keys": []}
    assert all(key not in v and jwk["k"].encode() not in v for v in public(plan, ident).values())
    again = feed_back(obs, plan)
    publication = publication_from_secrets(ME, ident, again.ca, again.credentials)
    assert publication is not None and publication.jwks == ()
    # kept on the next pass; replaced on demand, with an Event
    kept = plan_identity(again)
    assert creds(kept, ident)["jwt.key"] == key and kept.events == []
    rotated = plan_identity(again, rotate="jwt")
    assert creds(rotated, ident)["jwt.key"] != key
    assert events_of(rotated) == {"JwtKeyRotated": "Normal"}


@pytest.mark.parametrize(("before", "after", "reason"), [
    ({"algorithm": "HS256"}, {"algorithm": "HS512"}, "JwtKeyRotated"),
    ({"algorithm": "ES256"}, {"algorithm": "HS256"}, "JwtKeyRotated"),
    ({"algorithm": "HS256"}, {"algorithm": "ES256"}, "JwtKeyRotated"),  # no receiver to publish to first
])
def test_changing_to_or_from_a_symmetric_algorithm_replaces_the_key(
    make_ident: Callable[..., ServiceIdentity], now: datetime, before: dict[str, str], after: dict[str, str],
    reason: str,
) -> None:
    first = make_ident(jwt=before)
    obs = observe(first, now)
    plan = plan_identity(obs)
    changed = make_ident(jwt=after)
    replanned = plan_identity(dataclasses.replace(feed_back(obs, plan), identity=changed))
    data = creds(replanned, changed)
    if changed.jwt.hmac is not None:
        assert pki.hmac_key_fits(data["jwt.key"], changed.jwt.hmac)
    else:
        assert pki.jwt_algorithm_accepts(changed.jwt.algorithm, pki.load_private_key(data["jwt.key"]))
    assert "jwt-next.key" not in data
    assert events_of(replanned) == {reason: "Normal"}


def test_a_damaged_symmetric_key_is_repaired(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    ident = make_ident(jwt={"algorithm": "HS256"})
    obs = observe(ident, now)
    plan = plan_identity(obs)
    damaged = feed_back(obs, plan)
    damaged = dataclasses.replace(damaged, credentials=edit(damaged.credentials, {"jwt.key": b"short"}))
    repaired = plan_identity(damaged)
    assert pki.hmac_key_fits(creds(repaired, ident)["jwt.key"], pki.HmacAlgorithm.HS256)
    assert events_of(repaired) == {"JwtKeyRepaired": "Warning"}


# ======================================================================================
# Idempotence: a resync writes nothing
# ======================================================================================
IDEMPOTENCE_CASES = {
    "pkcs12": {"keystores": {"formats": ["PKCS12"]}},
    "pkcs12+jks": {"keystores": {"formats": ["PKCS12", "JKS"]}},
    "jks": {"keystores": {"formats": ["JKS"]}},
    "legacy-pkcs12": {"keystores": {"legacyPKCS12": True}},
    "pem-only": {"keystores": {"formats": []}},
    "ed25519-eddsa": {"certificate": {"keyAlgorithm": "Ed25519"}, "jwt": {"algorithm": "EdDSA"}},
    "jwt-disabled": {"jwt": {"enabled": False}},
    "hs512": {"jwt": {"algorithm": "HS512"}},
}
TEMPLATE = (
    "kid={{ self.kid }}\n{% for p in peers %}{{ p.identity }}={{ p.kids | join(',') }} "
    "{{ p.caFingerprint }}\n{% endfor %}"
)


@pytest.mark.parametrize("spec", list(IDEMPOTENCE_CASES.values()), ids=list(IDEMPOTENCE_CASES))
@pytest.mark.parametrize("with_peers", [False, True], ids=["alone", "with-peers"])
def test_feeding_the_plan_back_plans_identical_bytes_and_no_events(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    spec: dict[str, Any],
    with_peers: bool,
) -> None:
    ident = make_ident(templates=[{"name": "app.properties", "inline": TEMPLATE}], **spec)
    links: tuple[PeerLink, ...] = ()
    if with_peers:
        peer_a, peer_b = make_peer("jobserver", slot=1), make_peer("metadata", "meta", slot=2)
        links = (
            link(make_rel("jobserver", sharedSecret={"enabled": True}), peer_a.publication(), b"s" * 32),
            link(make_rel("metadata", "meta", initiator="dgc"), peer_b.publication()),
        )
    obs = observe(ident, now, links=links)
    first = plan_identity(obs)
    assert first.events  # issuance happened

    previous, observation = first, feed_back(obs, first)
    for later in (now, now, now + timedelta(hours=1), now + timedelta(hours=100)):
        observation = dataclasses.replace(observation, now=later)
        again = plan_identity(observation)
        assert again.events == []
        assert [o.name for o in again.objects] == [o.name for o in first.objects]
        for before, after in zip(first.objects, again.objects, strict=True):
            assert dict(after.data) == dict(before.data), f"{after.name} changed"
            assert dict(after.annotations) == dict(before.annotations)
            assert dict(after.labels) == dict(before.labels)
            assert after.type == before.type
            # and the controller's diff of the object it wrote last time is empty: zero API writes
            assert object_patch(after, object_body(before, NS)) is None
        assert again.mounted == first.mounted
        assert {k: c for k, c in again.checks.items()} == first.checks
        assert again.status == first.status
        previous, observation = again, feed_back(observation, again)
    del previous
    if with_peers:
        assert_material_valid(first, ident, now)
        data = trust(first, ident)
        if KeystoreFormat.PKCS12 in ident.keystores.formats:
            assert "truststore.p12" in data
        assert data["shared-jobserver.key"] == b64url(b"s" * 32)


# ======================================================================================
# Damaged material is repaired with the right events, then converges
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class Damage:
    target: str  # ca | credentials | trust | public
    data: Mapping[str, bytes | None] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    delete: bool = False


@pytest.fixture
def foreign(real_key: KeyPool, now: datetime) -> dict[str, bytes]:
    """Real but wrong material: a leaf (not a CA) with its key, another key, another CA."""
    ca_key = real_key(KeyAlgorithm.ECDSAP256, 900)
    ca = pki.create_ca(ca_key, common_name="other CA", now=now, lifetime=timedelta(days=30))
    leaf_key = real_key(KeyAlgorithm.ECDSAP256, 901)
    leaf = pki.create_leaf(
        ca,
        ca_key,
        leaf_key.public_key(),
        common_name="x",
        dns_names=["x"],
        uri_sans=[],
        now=now,
        lifetime=timedelta(days=1),
    )
    return {
        "leaf": pki.cert_to_pem(leaf),
        "leaf_key": pki.private_key_to_pem(leaf_key),
        "other_key": pki.private_key_to_pem(real_key(KeyAlgorithm.ECDSAP256, 902)),
        "other_ca": pki.cert_to_pem(ca),
    }


DAMAGES: dict[
    str, tuple[Callable[[dict[str, bytes], Mapping[str, bytes]], Damage], dict[str, str], set[str]]
] = {
    # name: (damage, expected events {reason: type}, credential keys that must change)
    "truncated-leaf": (
        lambda f, c: Damage("credentials", {"tls.crt": c["tls.crt"][:180]}),
        {"CertificateRepaired": "Warning"},
        {"tls.crt", "tls.key"},
    ),
    "garbage-leaf-key": (
        lambda f, c: Damage("credentials", {"tls.key": b"not a key"}),
        {"CertificateRepaired": "Warning"},
        {"tls.crt", "tls.key"},
    ),
    "key-not-matching-cert": (
        lambda f, c: Damage("credentials", {"tls.key": f["other_key"]}),
        {"CertificateRepaired": "Warning"},
        {"tls.crt", "tls.key"},
    ),
    "leaf-missing": (  # half a key pair gone is damage, not a first issuance
        lambda f, c: Damage("credentials", {"tls.crt": None}),
        {"CertificateRepaired": "Warning"},
        {"tls.crt", "tls.key"},
    ),
    "leaf-from-another-ca": (
        lambda f, c: Damage("credentials", {"tls.crt": f["leaf"], "tls.key": f["leaf_key"]}),
        {"CertificateReissued": "Normal"},
        {"tls.crt", "tls.key"},
    ),
    "ca-is-not-a-ca": (
        lambda f, c: Damage("ca", {"tls.crt": f["leaf"], "tls.key": f["leaf_key"]}),
        {"CARepaired": "Warning", "CertificateReissued": "Normal"},
        {"tls.crt", "tls.key", "ca.crt"},
    ),
    "ca-key-missing": (
        lambda f, c: Damage("ca", {"tls.key": None}),
        {"CARepaired": "Warning", "CertificateReissued": "Normal"},
        {"tls.crt", "tls.key", "ca.crt"},
    ),
    "ca-key-not-matching": (
        lambda f, c: Damage("ca", {"tls.key": f["other_key"]}),
        {"CARepaired": "Warning", "CertificateReissued": "Normal"},
        {"tls.crt", "tls.key", "ca.crt"},
    ),
    "ca-secret-deleted": (
        lambda f, c: Damage("ca", delete=True),
        {"CAIssued": "Normal", "CertificateReissued": "Normal"},
        {"tls.crt", "tls.key", "ca.crt"},
    ),
    "credentials-deleted": (
        lambda f, c: Damage("credentials", delete=True),
        {"Issued": "Normal"},
        {"tls.crt", "tls.key", "jwt.key", "jwt.kid"},
    ),
    "garbage-keystore-p12": (
        lambda f, c: Damage("credentials", {"keystore.p12": b"\x30\x82garbage"}),
        {},
        {"keystore.p12"},
    ),
    "garbage-keystore-jks": (
        lambda f, c: Damage("credentials", {"keystore.jks": b"\xfe\xed\xfe\xedgarbage"}),
        {},
        {"keystore.jks"},
    ),
    "keystore-missing": (lambda f, c: Damage("credentials", {"keystore.p12": None}), {}, set()),
    "edited-ca-crt": (lambda f, c: Damage("credentials", {"ca.crt": f["other_ca"]}), {}, set()),
    "edited-jwt-kid": (lambda f, c: Damage("credentials", {"jwt.kid": b"forged"}), {}, set()),
    "edited-jwt-jwk": (lambda f, c: Damage("credentials", {"jwt.jwk": b"{}"}), {}, set()),
    "garbage-jwt-key": (
        lambda f, c: Damage("credentials", {"jwt.key": b"-----BEGIN PRIVATE KEY-----\nAA\n"}),
        {"JwtKeyRepaired": "Warning"},
        {"jwt.key", "jwt.kid", "jwt.jwk"},
    ),
    "jwt-issue-time-lost": (
        lambda f, c: Damage("credentials", annotations={names.JWT_ISSUED_ANNOTATION: None}),
        {"JwtKeyRepaired": "Warning"},
        {"jwt.key", "jwt.kid"},
    ),
    "garbage-truststore-p12": (lambda f, c: Damage("trust", {"truststore.p12": b"garbage"}), {}, set()),
    "garbage-truststore-jks": (lambda f, c: Damage("trust", {"truststore.jks": b"garbage"}), {}, set()),
    "edited-trust-bundle": (lambda f, c: Damage("trust", {"trust-bundle.pem": f["other_ca"]}), {}, set()),
    "edited-peers-jwks": (lambda f, c: Damage("trust", {"peers.jwks": b'{"keys": []}'}), {}, set()),
    "trust-deleted": (lambda f, c: Damage("trust", delete=True), {}, set()),
    "edited-public-jwks": (
        lambda f, c: Damage("public", {"jwks.json": b'{"keys": []}', "ca.crt": f["other_ca"]}),
        {},
        set(),
    ),
    "derived-record-garbled": (
        lambda f, c: Damage("credentials", annotations={names.DERIVED_ANNOTATION: "{"}),
        {},
        set(),
    ),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_material_is_repaired_then_converges(
    case: str,
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    foreign: dict[str, bytes],
    now: datetime,
) -> None:
    make_damage, expected_events, must_change = DAMAGES[case]
    ident = make_ident(keystores={"formats": ["PKCS12", "JKS"]})
    peer = make_peer()
    obs = observe(ident, now, links=(link(make_rel(), peer.publication()),))
    first = plan_identity(obs)
    healthy = feed_back(obs, first)

    damage = make_damage(foreign, creds(first, ident))
    current = getattr(healthy, damage.target)
    replacement: dict[str, Any] = {
        damage.target: None if damage.delete else edit(current, damage.data, damage.annotations)
    }
    damaged = dataclasses.replace(healthy, **replacement)
    repaired = plan_identity(damaged)

    assert events_of(repaired) == expected_events
    assert set(creds(repaired, ident)) == set(creds(first, ident))
    for key in must_change:
        assert creds(repaired, ident)[key] != creds(first, ident)[key], f"{key} should have been replaced"
    # every file that was damaged is good again
    assert_material_valid(repaired, ident, now)
    assert trust(repaired, ident)["trust-bundle.pem"] == pki.cert_to_pem(peer.ca)
    assert json.loads(trust(repaired, ident)["peers.jwks"])["keys"] == list(peer.jwks)
    _, trusted = pki.read_pkcs12(
        trust(repaired, ident)["truststore.p12"], trust(repaired, ident)["truststore.password"].decode()
    )
    assert [pki.fingerprint_sha256(c) for c in trusted] == [pki.fingerprint_sha256(peer.ca)]
    store = pki.read_jks(
        trust(repaired, ident)["truststore.jks"], trust(repaired, ident)["truststore.password"].decode()
    )
    assert [e.cert for e in store.trusted] == [peer.ca.public_bytes(Encoding.DER)]
    ca_pem = by_name(repaired)["dgc-trustwire-ca"].data["tls.crt"]
    assert public(repaired, ident)["ca.crt"] == ca_pem
    assert (
        json.loads(public(repaired, ident)["jwks.json"])["keys"][0]["kid"]
        == creds(repaired, ident)["jwt.kid"].decode()
    )
    if not expected_events:
        # nothing was re-issued: the identity's key material is the same as before the damage
        for key in ("tls.crt", "tls.key", "jwt.key"):
            assert creds(repaired, ident)[key] == creds(first, ident)[key]
        assert by_name(repaired)["dgc-trustwire-ca"].data == by_name(first)["dgc-trustwire-ca"].data

    settled = plan_identity(feed_back(damaged, repaired))
    assert settled.events == []
    for before, after in zip(repaired.objects, settled.objects, strict=True):
        assert dict(after.data) == dict(before.data)
        assert dict(after.annotations) == dict(before.annotations)


# ======================================================================================
# Objects trustwire does not manage
# ======================================================================================
ALL_ISSUED = {"Issued"}
CLASHES = {
    # target: (object name, check that reports it, objects still planned, events)
    "ca": ("dgc-trustwire-ca", "CAReady", {"dgc-trustwire-trust"}, set()),
    "credentials": (
        "dgc-trustwire-credentials",
        "CertificateReady",
        {"dgc-trustwire-ca", "dgc-trustwire-public", "dgc-trustwire-trust"},
        {"CAIssued"},
    ),
    "trust": (
        "dgc-trustwire-trust",
        "TrustReady",
        {"dgc-trustwire-ca", "dgc-trustwire-credentials", "dgc-trustwire-public"},
        ALL_ISSUED,
    ),
    "public": (
        "dgc-trustwire-public",
        "CAReady",
        {"dgc-trustwire-ca", "dgc-trustwire-credentials", "dgc-trustwire-trust"},
        ALL_ISSUED,
    ),
}


@pytest.mark.parametrize("target", list(CLASHES))
def test_unmanaged_object_with_a_contract_name_is_reported_and_left_alone(
    target: str, make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    name, check, still_planned, events = CLASHES[target]
    ident = make_ident()
    users = StoredObject(name=name, managed=False, owner=None, data={"tls.crt": b"mine", "ca.crt": b"mine"})
    plan = plan_identity(observe(ident, now, **{target: users}))
    assert set(by_name(plan)) == still_planned
    verdict = plan.checks[check]
    assert (verdict.ok, verdict.stalled, verdict.reason) == (False, True, "NameConflict")
    kind = "ConfigMap" if target == "public" else "Secret"
    assert f"{kind} gov/{name} exists and is not managed by trustwire" in verdict.message
    assert set(events_of(plan)) == events
    if target in ("ca", "credentials"):
        assert plan.mounted == {}  # nothing to mount, so no workload is rolled
    # the user's object is never in the plan, so the controller cannot overwrite it
    assert name not in {o.name for o in plan.objects}


def test_name_clash_on_the_ca_stops_issuing_the_leaf(
    make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident = make_ident()
    users = StoredObject(name="dgc-trustwire-ca", managed=False, owner=None, data={})
    plan = plan_identity(observe(ident, now, ca=users))
    assert (plan.checks["CertificateReady"].ok, plan.checks["CertificateReady"].reason) == (
        False,
        "CANotReady",
    )
    assert plan.checks["CertificateReady"].stalled is False


# ======================================================================================
# Renewal and rotation
# ======================================================================================
@pytest.fixture
def settled(
    make_ident: Callable[..., ServiceIdentity],
    now: datetime,
) -> Callable[..., tuple[ServiceIdentity, IdentityPlan, IdentityObservation]]:
    """``settled(**spec)``: (identity, first plan, observation of what it wrote) at ``now``."""

    def make(**spec: Any) -> tuple[ServiceIdentity, IdentityPlan, IdentityObservation]:
        ident = make_ident(**spec)
        obs = observe(ident, now)
        plan = plan_identity(obs)
        return ident, plan, feed_back(obs, plan)

    return make


@pytest.mark.parametrize(
    ("offset", "event"),
    [
        (timedelta(0), None),
        (timedelta(hours=479, minutes=59, seconds=59), None),
        (timedelta(hours=480), "CertificateRenewed"),  # notAfter (now + 720h) - renewBefore (240h)
        (timedelta(hours=600), "CertificateRenewed"),
        (timedelta(hours=721), "CertificateReissued"),  # already expired (the operator was down)
    ],
)
def test_leaf_is_renewed_at_renewal_time(
    settled: Callable[..., Any], now: datetime, offset: timedelta, event: str | None
) -> None:
    ident, first, obs = settled(jwt={"rotationPeriod": "2000h"})
    later = now + offset
    plan = plan_identity(dataclasses.replace(obs, now=later))
    old_leaf, new_leaf = leaf_of(first, ident), leaf_of(plan, ident)
    if event is None:
        assert plan.events == []
        assert creds(plan, ident) == creds(first, ident)
        return
    assert events_of(plan) == {event: "Normal"}
    assert pki.serial_hex(new_leaf) != pki.serial_hex(old_leaf)
    assert creds(plan, ident)["tls.key"] != creds(first, ident)["tls.key"]  # a fresh key
    assert creds(plan, ident)["keystore.p12"] != creds(first, ident)["keystore.p12"]
    assert creds(plan, ident)["jwt.key"] == creds(first, ident)["jwt.key"]
    assert pki.not_after(new_leaf) == later + timedelta(hours=720)
    assert_material_valid(plan, ident, later)


@pytest.mark.parametrize(
    "spec_change",
    [
        {"dnsNames": ["dgc.example.com"]},
        {"serviceName": "renamed"},
        {"trustDomain": "prod.example"},
        {"certificate": {"keyAlgorithm": "ECDSAP384"}},
        {"certificate": {"keyAlgorithm": "Ed25519"}},
    ],
    ids=["dnsNames", "serviceName", "trustDomain", "ECDSAP384", "Ed25519"],
)
def test_spec_change_reissues_the_leaf(
    settled: Callable[..., Any],
    make_ident: Callable[..., ServiceIdentity],
    now: datetime,
    spec_change: dict[str, Any],
) -> None:
    _, first, obs = settled()
    changed = make_ident(**spec_change)
    plan = plan_identity(dataclasses.replace(obs, identity=changed))
    assert events_of(plan) == {"CertificateReissued": "Normal"}
    leaf = leaf_of(plan, changed)
    assert pki.dns_sans(leaf) == list(changed.all_dns_names)
    assert pki.uri_sans(leaf) == [changed.spiffe_id]
    assert (
        pki.key_algorithm_of(pki.load_private_key(creds(plan, changed)["tls.key"]))
        is changed.certificate.key_algorithm
    )
    assert by_name(plan)["dgc-trustwire-ca"].data == by_name(first)["dgc-trustwire-ca"].data
    assert_material_valid(plan, changed, now)


def test_dropping_a_dns_name_reissues_too(
    settled: Callable[..., Any], make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    _, _, obs = settled(dnsNames=["a.example", "b.example"])
    changed = make_ident(dnsNames=["a.example"])
    plan = plan_identity(dataclasses.replace(obs, identity=changed))
    assert events_of(plan) == {"CertificateReissued": "Normal"}
    assert "b.example" not in pki.dns_sans(leaf_of(plan, changed))


def jwks_kids(plan: IdentityPlan, ident: ServiceIdentity) -> list[str]:
    return [k["kid"] for k in json.loads(public(plan, ident)["jwks.json"])["keys"]]


def step(
    obs: IdentityObservation,
    plan: IdentityPlan,
    at: datetime,
    **changes: Any,
) -> tuple[IdentityObservation, IdentityPlan]:
    """Feed ``plan`` back and plan again at ``at``."""
    nxt = feed_back(obs, plan, now=at, **changes)
    return nxt, plan_identity(nxt)


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=59, seconds=59)])
def test_jwt_key_is_kept_before_the_rotation_period(
    settled: Callable[..., Any], now: datetime, offset: timedelta
) -> None:
    ident, first, obs = settled(jwt={"rotationPeriod": "1h"})
    plan = plan_identity(dataclasses.replace(obs, now=now + offset))
    assert plan.events == []
    assert creds(plan, ident) == creds(first, ident)


def test_jwt_key_rotation_publishes_first_then_activates(settled: Callable[..., Any], now: datetime) -> None:
    """After rotationPeriod a new kid signs tokens, but only after it was published (verify-only)."""
    ident, first, obs = settled(jwt={"rotationPeriod": "1h"})
    old_kid = creds(first, ident)["jwt.kid"].decode()

    # 1. rotation period elapsed: the next key is published, the old one still signs
    obs, publishing = step(obs, first, now + timedelta(hours=1))
    assert events_of(publishing) == {"JwtKeyPublishing": "Normal"}
    assert creds(publishing, ident)["jwt.kid"].decode() == old_kid
    next_kid = publishing.status.to_dict()["rotation"]["jwt"]["nextKid"]
    assert next_kid != old_kid
    assert jwks_kids(publishing, ident) == [old_kid, next_kid]
    assert publishing.status.to_dict()["jwt"]["publishedKids"] == [old_kid, next_kid]
    assert publishing.status.to_dict()["rotation"]["jwt"]["phase"] == "Publishing"
    rotating = {c.type: c for c in publishing.extra_conditions}["Rotating"]
    assert (rotating.status, rotating.reason) == ("True", "Publishing")
    assert_material_valid(publishing, ident, now + timedelta(hours=1))

    # 2. a resync while waiting changes nothing
    obs, waiting_again = step(obs, publishing, now + timedelta(hours=1, seconds=30))
    assert waiting_again.events == []
    for before, after in zip(publishing.objects, waiting_again.objects, strict=True):
        assert dict(after.data) == dict(before.data)
        assert dict(after.annotations) == dict(before.annotations)

    # 3. after the propagation delay the next key signs; the old one stays published for a while
    obs, activated = step(obs, waiting_again, now + timedelta(hours=1) + obs.propagation_delay)
    assert events_of(activated) == {"JwtKeyActivated": "Normal"}
    assert creds(activated, ident)["jwt.kid"].decode() == next_kid
    assert set(jwks_kids(activated, ident)) == {next_kid, old_kid}
    assert_material_valid(activated, ident, now + timedelta(hours=1) + obs.propagation_delay)

    # 4. ... and is dropped when its grace period ends (the plan wakes up for it)
    assert activated.wake_at is not None
    obs, retired = step(obs, activated, activated.wake_at)
    assert jwks_kids(retired, ident) == [next_kid]
    obs, settled_again = step(obs, retired, activated.wake_at)
    assert settled_again.events == []


def test_jwt_activation_waits_for_every_token_receiver(
    settled: Callable[..., Any],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident, first, obs = settled(jwt={"rotationPeriod": "1h"})
    peer = make_peer()
    links = (link(make_rel(), peer.publication()),)
    obs, publishing = step(obs, first, now + timedelta(hours=1), links=links)
    next_kid = publishing.status.to_dict()["rotation"]["jwt"]["nextKid"]
    much_later = now + timedelta(hours=1, minutes=30)
    obs, still = step(obs, publishing, much_later)
    assert still.events == []  # the peer has not reported the next kid: no switch, however long
    assert "jobs/jobserver" in still.status.to_dict()["rotation"]["jwt"]["waitingFor"]
    holds = rot.PeerState(peer.ref, frozenset(), frozenset({next_kid}), rolled_out=True, has_workloads=True)
    obs, activated = step(obs, still, much_later, peer_states={peer.ref: holds})
    assert events_of(activated) == {"JwtKeyActivated": "Normal"}
    assert creds(activated, ident)["jwt.kid"].decode() == next_kid


def test_revoked_current_kid_is_replaced_at_once_and_never_published(
    settled: Callable[..., Any], make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident, first, obs = settled()
    old_kid = creds(first, ident)["jwt.kid"].decode()
    revoking = make_ident(jwt={"revokedKids": [old_kid]})
    plan = plan_identity(dataclasses.replace(obs, identity=revoking))
    assert events_of(plan) == {"JwtKeyRotated": "Normal"}
    new_kid = creds(plan, revoking)["jwt.kid"].decode()
    assert new_kid != old_kid
    assert jwks_kids(plan, revoking) == [new_kid]
    assert json.loads(public(plan, revoking)["identity.json"])["revokedKids"] == [old_kid]
    assert old_kid not in json.dumps(plan.status.to_dict()["jwt"])
    settled_again = plan_identity(feed_back(dataclasses.replace(obs, identity=revoking), plan))
    assert settled_again.events == []


def test_revoking_the_previous_kid_drops_it_at_once(
    settled: Callable[..., Any], make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident, first, obs = settled(jwt={"rotationPeriod": "1h"})
    old_kid = creds(first, ident)["jwt.kid"].decode()
    obs, publishing = step(obs, first, now + timedelta(hours=1))
    obs, activated = step(obs, publishing, now + timedelta(hours=1) + obs.propagation_delay)
    assert old_kid in jwks_kids(activated, ident)
    revoking = make_ident(jwt={"rotationPeriod": "1h", "revokedKids": [old_kid]})
    _, plan = step(obs, activated, obs.now, identity=revoking)
    assert old_kid not in jwks_kids(plan, revoking)


def test_jwt_algorithm_change_publishes_the_new_key_before_it_signs(
    settled: Callable[..., Any], make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    """A new spec.jwt.algorithm is a rotation, not a swap: the old key (in its old algorithm)
    keeps signing and stays published until the new one has reached every receiver."""
    ident, first, obs = settled()
    old_kid = creds(first, ident)["jwt.kid"].decode()
    changed = make_ident(jwt={"algorithm": "EdDSA"})
    obs = dataclasses.replace(obs, identity=changed)
    publishing = plan_identity(obs)
    assert events_of(publishing) == {"JwtKeyPublishing": "Normal"}
    assert "spec.jwt.algorithm is now EdDSA" in publishing.events[0].message
    data = creds(publishing, changed)
    assert data["jwt.kid"].decode() == old_kid and json.loads(data["jwt.jwk"])["alg"] == "ES256"
    assert pki.key_algorithm_of(pki.load_private_key(data["jwt-next.key"])) is KeyAlgorithm.Ed25519
    assert publishing.status.to_dict()["jwt"]["algorithm"] == "ES256"  # what signs now
    published = {k["kid"]: k["alg"] for k in json.loads(public(publishing, changed)["jwks.json"])["keys"]}
    assert published[old_kid] == "ES256" and sorted(published.values()) == ["ES256", "EdDSA"]
    # what peers trust (derived from the Secrets) holds both keys in their own algorithms
    written = {o.name: stored(o) for o in publishing.objects}
    publication = publication_from_secrets(ME, changed, written[names.ca_secret("dgc")],
                                           written[names.credentials_secret("dgc")])
    assert publication is not None and {j["kid"]: j["alg"] for j in publication.jwks} == published
    # after the propagation delay (no peers) the EdDSA key signs
    at = now + obs.propagation_delay
    obs, activated = step(obs, publishing, at)
    assert events_of(activated) == {"JwtKeyActivated": "Normal"}
    assert json.loads(creds(activated, changed)["jwt.jwk"])["kty"] == "OKP"
    assert activated.status.to_dict()["jwt"]["algorithm"] == "EdDSA"
    assert_material_valid(activated, changed, at)


@pytest.mark.parametrize(
    ("rotate", "events", "changed"),
    [
        (None, {}, set()),
        ("certificate", {"CertificateRenewed": "Normal"}, {"tls.crt", "tls.key", "keystore.p12"}),
        ("jwt", {"JwtKeyPublishing": "Normal"}, {"jwt-next.key"}),
        ("ca", {"CARotationDistributing": "Normal"}, set()),
        ("bogus", {}, set()),
    ],
)
def test_manual_rotation(
    settled: Callable[..., Any], now: datetime, rotate: str | None, events: dict[str, str], changed: set[str]
) -> None:
    ident, first, obs = settled()
    plan = plan_identity(obs, rotate=rotate)
    assert events_of(plan) == events
    before, after = creds(first, ident), creds(plan, ident)
    differs = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert differs == changed
    assert_material_valid(plan, ident, now)


def test_ca_rotation_distributes_then_activates_then_retires(
    settled: Callable[..., Any], now: datetime
) -> None:
    # a leaf that outlives the CA's renewal time, so only the CA acts when the clock jumps there
    ident, first, obs = settled(certificate={"duration": "8700h"}, jwt={"enabled": False})
    old_ca = by_name(first)["dgc-trustwire-ca"].data["tls.crt"]
    renewal = ca_renewal_time(pki.load_certificates(old_ca)[0])
    assert renewal == now + timedelta(hours=8760) - timedelta(days=30)

    obs, distributing = step(obs, first, renewal - timedelta(seconds=1))
    assert distributing.events == []  # not yet

    obs, distributing = step(obs, distributing, renewal)
    assert events_of(distributing) == {"CARotationDistributing": "Normal"}
    ca_data = by_name(distributing)["dgc-trustwire-ca"].data
    assert ca_data["tls.crt"] == old_ca
    published = pki.load_certificates(public(distributing, ident)["ca.crt"])
    assert [pki.cert_to_pem(c) for c in published] == [old_ca, ca_data["next.crt"]]  # peers learn it first
    assert creds(distributing, ident)["ca.crt"] == old_ca  # the leaf is still from the old CA
    assert_material_valid(distributing, ident, renewal)

    obs, activated = step(obs, distributing, renewal + obs.propagation_delay)
    assert events_of(activated) == {"CARotationActivated": "Normal", "CertificateReissued": "Normal"}
    new_ca = by_name(activated)["dgc-trustwire-ca"].data["tls.crt"]
    assert new_ca == ca_data["next.crt"]
    assert by_name(activated)["dgc-trustwire-ca"].data["previous.crt"] == old_ca
    assert {pki.cert_to_pem(c) for c in pki.load_certificates(public(activated, ident)["ca.crt"])} == {
        old_ca,
        new_ca,
    }
    assert_material_valid(activated, ident, renewal + obs.propagation_delay)

    assert activated.wake_at is not None
    obs, retired = step(obs, activated, activated.wake_at)
    assert events_of(retired) == {"CARotationRetired": "Normal"}
    assert public(retired, ident)["ca.crt"] == new_ca
    assert "previous.crt" not in by_name(retired)["dgc-trustwire-ca"].data
    _, quiet = step(obs, retired, activated.wake_at)
    assert quiet.events == []


def test_mid_rotation_resync_writes_nothing(
    settled: Callable[..., Any],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    """Both machines held by a gate (a peer that never reports): every pass plans the same bytes."""
    _, first, obs = settled(jwt={"rotationPeriod": "1h"}, keystores={"formats": ["PKCS12", "JKS"]})
    links = (link(make_rel(), make_peer().publication()),)
    obs = dataclasses.replace(obs, links=links)
    obs, publishing = step(obs, first, now + timedelta(hours=1))  # JWT: Publishing, held by the peer
    assert publishing.status.to_dict()["rotation"]["jwt"]["phase"] == "Publishing"
    obs = feed_back(obs, publishing)
    held = plan_identity(obs, rotate="ca")  # CA: Distributing, held by the peer
    assert held.status.to_dict()["rotation"]["ca"]["phase"] == "Distributing"
    obs = feed_back(obs, held)
    for later in (timedelta(hours=1, minutes=5), timedelta(hours=2), timedelta(hours=3)):
        again = plan_identity(dataclasses.replace(obs, now=now + later))
        assert again.events == []
        for before, after in zip(held.objects, again.objects, strict=True):
            assert dict(after.data) == dict(before.data), after.name
            assert dict(after.annotations) == dict(before.annotations), after.name
            assert object_patch(after, object_body(before, NS)) is None
        assert again.mounted == held.mounted


# ======================================================================================
# Peers
# ======================================================================================
def peers_json(plan: IdentityPlan, ident: ServiceIdentity) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = json.loads(trust(plan, ident)["peers.json"])
    return value


def test_mtls_and_jwt_peer(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident(keystores={"formats": ["PKCS12", "JKS"]})
    peer = make_peer()
    rel = make_rel(jwt={"roles": ["IMPERSONATION"], "audience": "product-factory", "scopes": ["read"]})
    plan = plan_identity(observe(ident, now, links=(link(rel, peer.publication()),)))
    data = trust(plan, ident)
    assert data["trust-bundle.pem"] == pki.cert_to_pem(peer.ca)
    key, certs = pki.read_pkcs12(data["truststore.p12"], data["truststore.password"].decode())
    assert key is None
    assert [pki.fingerprint_sha256(c) for c in certs] == [pki.fingerprint_sha256(peer.ca)]
    store = pki.read_jks(data["truststore.jks"], data["truststore.password"].decode())
    assert [e.cert for e in store.trusted] == [peer.ca.public_bytes(Encoding.DER)]
    assert json.loads(data["peers.jwks"]) == {"keys": list(peer.jwks)}
    assert peers_json(plan, ident) == [
        {
            "identity": "jobserver",
            "namespace": PEER_NS,
            "relationship": f"{NS}/dgc-jobserver",
            "direction": "both",
            "mtls": True,
            "jwt": True,
            "kids": peer.kids,
            "roles": ["IMPERSONATION"],
            "audience": "product-factory",
            "scopes": ["read"],
            "revoked": False,
            "revokedKids": [],
            "issuer": "https://jobserver.example",
            "spiffeId": "spiffe://cluster.local/ns/jobs/sid/jobserver",
            "caFingerprints": [pki.fingerprint_sha256(peer.ca)],
            "sharedSecretFile": None,
            "external": False,
        }
    ]
    assert (plan.checks["TrustReady"].ok, plan.checks["TrustReady"].reason) == (True, "Distributed")
    assert plan.status.to_dict()["peerCount"] == 1
    assert plan.status.to_dict()["peers"] == [
        {
            "identity": "jobserver",
            "namespace": PEER_NS,
            "relationship": f"{NS}/dgc-jobserver",
            "mtls": True,
            "jwt": True,
            "sharedSecret": False,
        }
    ]
    own_ca = by_name(plan)["dgc-trustwire-ca"].data["tls.crt"]
    assert own_ca not in data["trust-bundle.pem"]


@pytest.mark.parametrize(
    ("initiator", "direction", "trusts_peer_tokens"),
    [
        (None, "both", True),
        ("dgc", "outbound", False),  # we send tokens; the peer verifies them, we do not need its keys
        ("jobserver", "inbound", True),
    ],
)
def test_peer_jwt_keys_only_when_the_peer_sends_tokens_to_us(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    initiator: str | None,
    direction: str,
    trusts_peer_tokens: bool,
) -> None:
    ident = make_ident()
    peer = make_peer()
    rel = make_rel(**({"initiator": initiator} if initiator else {}))
    plan = plan_identity(observe(ident, now, links=(link(rel, peer.publication()),)))
    data = trust(plan, ident)
    assert json.loads(data["peers.jwks"])["keys"] == (list(peer.jwks) if trusts_peer_tokens else [])
    (entry,) = peers_json(plan, ident)
    assert entry["direction"] == direction
    assert entry["kids"] == (peer.kids if trusts_peer_tokens else [])
    assert data["trust-bundle.pem"] == pki.cert_to_pem(peer.ca)  # mTLS verifies both ends either way


def test_mtls_disabled_relationship_adds_no_ca(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    peer = make_peer()
    plan = plan_identity(
        observe(ident, now, links=(link(make_rel(mtls={"enabled": False}), peer.publication()),))
    )
    data = trust(plan, ident)
    assert data["trust-bundle.pem"] == b""
    assert "truststore.p12" not in data
    assert json.loads(data["peers.jwks"])["keys"] == list(peer.jwks)
    assert peers_json(plan, ident)[0]["caFingerprints"] == []


def test_jwt_disabled_relationship_adds_no_keys(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    peer = make_peer()
    plan = plan_identity(
        observe(ident, now, links=(link(make_rel(jwt={"enabled": False}), peer.publication()),))
    )
    assert json.loads(trust(plan, ident)["peers.jwks"]) == {"keys": []}
    assert peers_json(plan, ident)[0]["kids"] == []
    assert trust(plan, ident)["trust-bundle.pem"] == pki.cert_to_pem(peer.ca)


@pytest.mark.parametrize(
    ("revoke", "kept", "all_revoked"),
    [
        ((), (0, 1), False),
        ((0,), (1,), False),
        ((0, 1), (), True),
    ],
)
def test_peer_revoked_kids_are_excluded(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    revoke: tuple[int, ...],
    kept: tuple[int, ...],
    all_revoked: bool,
) -> None:
    ident = make_ident()
    peer = make_peer(keys=2)
    revoked = tuple(peer.kids[i] for i in revoke)
    plan = plan_identity(observe(ident, now, links=(link(make_rel(), peer.publication(revoked=revoked)),)))
    published = [k["kid"] for k in json.loads(trust(plan, ident)["peers.jwks"])["keys"]]
    assert sorted(published) == sorted(peer.kids[i] for i in kept)
    (entry,) = peers_json(plan, ident)
    assert entry["kids"] == [peer.kids[i] for i in kept]
    assert entry["revokedKids"] == sorted(revoked)
    assert entry["revoked"] is all_revoked


def test_shared_secret_file_for_each_peer(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    one, two = make_peer("jobserver", slot=1), make_peer("metadata", "meta", slot=2)
    links = (
        link(make_rel("jobserver", sharedSecret={"enabled": True}), one.publication(), b"1" * 32),
        link(make_rel("metadata", "meta", sharedSecret={"enabled": True}), two.publication(), b"2" * 32),
    )
    plan = plan_identity(observe(ident, now, links=links))
    data = trust(plan, ident)
    assert data["shared-jobserver.key"] == b64url(b"1" * 32)
    assert data["shared-metadata.key"] == b64url(b"2" * 32)
    assert {e["identity"]: e["sharedSecretFile"] for e in peers_json(plan, ident)} == {
        "jobserver": "shared-jobserver.key",
        "metadata": "shared-metadata.key",
    }
    # two CAs in the bundle and truststore, in a stable order
    _, certs = pki.read_pkcs12(data["truststore.p12"], data["truststore.password"].decode())
    assert {pki.fingerprint_sha256(c) for c in certs} == {
        pki.fingerprint_sha256(one.ca),
        pki.fingerprint_sha256(two.ca),
    }
    assert len(pki.load_certificates(data["trust-bundle.pem"])) == 2
    reversed_plan = plan_identity(feed_back(observe(ident, now, links=tuple(reversed(links))), plan))
    assert trust(reversed_plan, ident) == data


def test_peers_with_the_same_name_get_distinct_shared_secret_files(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    one, two = make_peer("api", "a", slot=1), make_peer("api", "b", slot=2)
    links = (
        link(make_rel("api", "a", name="r1", sharedSecret={"enabled": True}), one.publication(), b"a" * 32),
        link(make_rel("api", "b", name="r2", sharedSecret={"enabled": True}), two.publication(), b"b" * 32),
    )
    data = trust(plan_identity(observe(ident, now, links=links)), ident)
    assert data["shared-a.api.key"] == b64url(b"a" * 32)
    assert data["shared-b.api.key"] == b64url(b"b" * 32)


def test_shared_secret_not_ready_keeps_the_peer_pending(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    rel = make_rel(sharedSecret={"enabled": True})
    plan = plan_identity(observe(ident, now, links=(link(rel, make_peer().publication(), None),)))
    check = plan.checks["TrustReady"]
    assert (check.ok, check.stalled, check.reason) == (False, False, "PeerPending")
    assert "shared secret" in check.message
    assert not [k for k in trust(plan, ident) if k.startswith("shared-")]


DATAHUB_ENV = (
    "{% set s = sharedSecrets['datahub'] %}DATAHUB_SYSTEM_CLIENT_ID={{ s.clientId }}\n"
    "DATAHUB_SYSTEM_CLIENT_SECRET={{ s.value }}\n"
    "{% if s.previous %}DATAHUB_SYSTEM_CLIENT_SECRET_PREVIOUS={{ s.previous }}\n{% endif %}"
)


@pytest.mark.parametrize("previous", [None, b"p" * 32])
def test_a_group_shared_secret_is_one_set_of_files_and_reaches_templates(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    previous: bytes | None,
) -> None:
    """Two relationships of one group deliver one value under the group's name; templates
    render it, the rest of the trust Secret and peers.json carry only file names."""
    ident = make_ident(templates=[{"name": "datahub.env", "inline": DATAHUB_ENV}])
    group = {"enabled": True, "group": "datahub", "clientId": "__datahub_system"}
    value = SharedValue(b"g" * 32, previous)
    one, two = make_peer("frontend", slot=1), make_peer("actions", slot=2)
    links = (
        PeerLink(make_rel("frontend", sharedSecret=group), one.ref, one.publication(), value),
        PeerLink(make_rel("actions", sharedSecret=group), two.ref, two.publication(), value),
    )
    plan = plan_identity(observe(ident, now, links=links))
    data = trust(plan, ident)
    expected = {"shared-datahub.key": b64url(b"g" * 32), "shared-datahub.client-id": b"__datahub_system"}
    if previous is not None:
        expected["shared-datahub.key.previous"] = b64url(previous)
    assert {k: v for k, v in data.items() if k.startswith("shared-")} == expected
    assert {e["identity"]: e["sharedSecretFile"] for e in peers_json(plan, ident)} == {
        "frontend": "shared-datahub.key", "actions": "shared-datahub.key"}
    lines = data["datahub.env"].decode().splitlines()
    assert lines[:2] == ["DATAHUB_SYSTEM_CLIENT_ID=__datahub_system",
                         f"DATAHUB_SYSTEM_CLIENT_SECRET={b64url(b'g' * 32).decode()}"]
    assert lines[2:] == ([f"DATAHUB_SYSTEM_CLIENT_SECRET_PREVIOUS={b64url(previous).decode()}"] if previous else [])
    secret_text = b64url(b"g" * 32)
    assert [k for k, v in data.items() if secret_text in v] == ["shared-datahub.key", "datahub.env"]
    assert all(secret_text not in v for obj in plan.objects if obj.kind == "ConfigMap" for v in obj.data.values())


def test_a_group_named_like_a_peer_does_not_overwrite_its_secret(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    one, two = make_peer("jobserver", slot=1), make_peer("other", slot=2)
    links = (
        PeerLink(make_rel("jobserver", sharedSecret={"enabled": True}), one.ref, one.publication(),
                 SharedValue(b"1" * 32)),
        PeerLink(make_rel("other", sharedSecret={"enabled": True, "group": "jobserver"}), two.ref,
                 two.publication(), SharedValue(b"2" * 32)),
    )
    plan = plan_identity(observe(ident, now, links=links))
    assert trust(plan, ident)["shared-jobserver.key"] == b64url(b"1" * 32)
    check = plan.checks["TrustReady"]
    assert (check.ok, check.reason) == (False, "PeerPending")
    assert "taken by another shared secret" in check.message


@pytest.mark.parametrize("publication", ["missing", "unreadable-ca"])
def test_pending_peer(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    publication: str,
) -> None:
    ident = make_ident()
    ready, pending = make_peer("metadata", "meta", slot=2), make_peer("jobserver", slot=1)
    pub = None if publication == "missing" else pending.publication(ca_pem=b"-----BEGIN CERTIFICATE-----\nxx")
    links = (link(make_rel("jobserver"), pub), link(make_rel("metadata", "meta"), ready.publication()))
    plan = plan_identity(observe(ident, now, links=links))
    check = plan.checks["TrustReady"]
    assert (check.ok, check.stalled, check.reason) == (False, False, "PeerPending")
    assert "jobs/jobserver" in check.message
    # the ready peer is trusted meanwhile; the pending one is not half-trusted
    assert [e["identity"] for e in peers_json(plan, ident)] == ["metadata"]
    assert trust(plan, ident)["trust-bundle.pem"] == pki.cert_to_pem(ready.ca)
    assert [k["kid"] for k in json.loads(trust(plan, ident)["peers.jwks"])["keys"]] == ready.kids


@pytest.mark.parametrize(("jobserver", "imminent", "trust_written", "waits"), [
    ("unpublished", {"jobserver"}, False, True),  # written once, with what it publishes in a moment
    ("unpublished", set(), False, False),  # no pass of it in sight: written now, the peer pending
    ("published", {"jobserver"}, False, False),  # nothing to wait for
    ("unpublished", {"jobserver"}, True, False),  # only the first version waits
])
def test_the_first_trust_secret_waits_for_peers_about_to_publish(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
    jobserver: str,
    imminent: set[str],
    trust_written: bool,
    waits: bool,
) -> None:
    ident = make_ident(workloads=[{"kind": "Deployment", "name": "dgc"}])
    ready, other = make_peer("metadata", "meta", slot=2), make_peer("jobserver", slot=1)
    links = (link(make_rel("jobserver"), other.publication() if jobserver == "published" else None),
             link(make_rel("metadata", "meta"), ready.publication()))
    obs = observe(ident, now, links=links, imminent=frozenset(IdentityRef(PEER_NS, n) for n in imminent))
    if trust_written:
        obs = feed_back(obs, plan_identity(dataclasses.replace(obs, imminent=frozenset())))
    plan = plan_identity(obs)
    assert (names.trust_secret("dgc") in by_name(plan) or trust_written) is not waits
    assert plan.awaited == (frozenset({other.ref}) if waits else frozenset())
    if waits:
        check = plan.checks["TrustReady"]
        assert (check.ok, check.stalled, check.reason) == (False, False, "PeerPending")
        assert str(other.ref) in check.message
        assert plan.mounted == {}, "workloads were wired before their trust Secret exists"
        assert plan.status.trust is not None and not plan.status.trust.ca_fingerprints, \
            "status claims trust that is not written"
        assert names.credentials_secret("dgc") in by_name(plan), "its own material waits for nobody"


def test_peer_ca_change_rebuilds_the_truststore(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    rel = make_rel()
    old, new = make_peer(slot=1), make_peer(slot=3)
    obs = observe(ident, now, links=(link(rel, old.publication()),))
    first = plan_identity(obs)
    plan = plan_identity(feed_back(obs, first, links=(link(rel, new.publication()),)))
    data = trust(plan, ident)
    assert plan.events == []
    assert data["truststore.password"] == trust(first, ident)["truststore.password"]
    _, certs = pki.read_pkcs12(data["truststore.p12"], data["truststore.password"].decode())
    assert [pki.fingerprint_sha256(c) for c in certs] == [pki.fingerprint_sha256(new.ca)]
    assert creds(plan, ident) == creds(first, ident)  # our own material is untouched


def test_removing_the_relationship_removes_trust_at_once(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident()
    obs = observe(
        ident,
        now,
        links=(link(make_rel(sharedSecret={"enabled": True}), make_peer().publication(), b"k" * 32),),
    )
    first = plan_identity(obs)
    plan = plan_identity(feed_back(obs, first, links=()))
    data = trust(plan, ident)
    assert set(data) == {"trust-bundle.pem", "truststore.password", "peers.jwks", "peers.json"}
    assert data["trust-bundle.pem"] == b""
    assert json.loads(data["peers.jwks"]) == {"keys": []}
    # the controller's patch deletes the stale keys
    patch = object_patch(
        by_name(plan)["dgc-trustwire-trust"], object_body(by_name(first)["dgc-trustwire-trust"], NS)
    )
    assert patch is not None
    assert patch["data"]["truststore.p12"] is None
    assert patch["data"]["shared-jobserver.key"] is None


# ======================================================================================
# Bring-your-own CA
# ======================================================================================
@pytest.fixture
def byo_ca(real_key: KeyPool, now: datetime) -> Callable[..., StoredObject]:
    def make(
        slot: int = 0,
        *,
        issued: datetime | None = None,
        lifetime: timedelta = timedelta(days=365),
        not_a_ca: bool = False,
    ) -> StoredObject:
        key = real_key(KeyAlgorithm.ECDSAP256, 700 + slot)
        cert = pki.create_ca(
            key, common_name=f"corp CA {slot}", now=issued or now - timedelta(days=1), lifetime=lifetime
        )
        if not_a_ca:
            leaf_key = real_key(KeyAlgorithm.ECDSAP256, 750 + slot)
            cert = pki.create_leaf(
                cert,
                key,
                leaf_key.public_key(),
                common_name="x",
                dns_names=["x"],
                uri_sans=[],
                now=issued or now - timedelta(days=1),
                lifetime=lifetime,
            )
            key = leaf_key
        return StoredObject(
            name="corp-ca",
            managed=False,
            owner=None,
            data={"tls.crt": pki.cert_to_pem(cert), "tls.key": pki.private_key_to_pem(key)},
            type="kubernetes.io/tls",
        )

    return make


BYO = {"ca": {"source": "Secret", "secretRef": {"name": "corp-ca"}}}


def test_byo_ca_issues_the_leaf_and_writes_no_ca_secret(
    make_ident: Callable[..., ServiceIdentity], byo_ca: Callable[..., StoredObject], now: datetime
) -> None:
    ident = make_ident(**BYO)
    secret = byo_ca()
    ca_cert = pki.load_certificates(secret.data["tls.crt"])[0]
    obs = observe(ident, now, byo_ca=secret)
    plan = plan_identity(obs)
    assert set(by_name(plan)) == {"dgc-trustwire-credentials", "dgc-trustwire-public", "dgc-trustwire-trust"}
    assert (plan.checks["CAReady"].ok, plan.checks["CAReady"].reason) == (True, "Valid")
    assert "gov/corp-ca" in plan.checks["CAReady"].message
    assert_material_valid(plan, ident, now, ca_cert=ca_cert)
    assert public(plan, ident)["ca.crt"] == secret.data["tls.crt"]
    assert plan.status.to_dict()["ca"]["source"] == "Secret"
    assert events_of(plan) == {"Issued": "Normal"}
    assert plan_identity(feed_back(obs, plan)).events == []

    # the user replaces their CA: the leaf follows at the next resync
    replaced = byo_ca(slot=1)
    again = plan_identity(feed_back(obs, plan, byo_ca=replaced))
    assert events_of(again) == {"CertificateReissued": "Normal"}
    assert_material_valid(again, ident, now, ca_cert=pki.load_certificates(replaced.data["tls.crt"])[0])


@pytest.mark.parametrize("problem", ["not-a-ca", "expired", "garbage", "no-key"])
def test_invalid_byo_ca_is_stalled(
    make_ident: Callable[..., ServiceIdentity],
    byo_ca: Callable[..., StoredObject],
    now: datetime,
    problem: str,
) -> None:
    ident = make_ident(**BYO)
    secret = {
        "not-a-ca": lambda: byo_ca(not_a_ca=True),
        "expired": lambda: byo_ca(issued=now - timedelta(days=40), lifetime=timedelta(days=30)),
        "garbage": lambda: edit(byo_ca(), {"tls.crt": b"garbage"}),
        "no-key": lambda: edit(byo_ca(), {"tls.key": None}),
    }[problem]()
    plan = plan_identity(observe(ident, now, byo_ca=secret))
    check = plan.checks["CAReady"]
    assert (check.ok, check.stalled, check.reason) == (False, True, "CASecretInvalid")
    assert "Secret gov/corp-ca is not a usable CA" in check.message
    assert "dgc-trustwire-credentials" not in by_name(plan)
    assert (plan.checks["CertificateReady"].ok, plan.checks["CertificateReady"].reason) == (
        False,
        "CANotReady",
    )


def test_missing_byo_ca_waits(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    ident = make_ident(**BYO)
    plan = plan_identity(observe(ident, now))
    check = plan.checks["CAReady"]
    assert (check.ok, check.stalled, check.reason) == (False, False, "CASecretNotFound")
    assert "gov/corp-ca" in check.message
    assert set(by_name(plan)) == {"dgc-trustwire-trust"}


@pytest.mark.parametrize("blocker", ["byo-ca-missing", "password-missing"])
def test_no_key_is_generated_while_the_credentials_cannot_be_written(
    make_ident: Callable[..., ServiceIdentity], now: datetime, blocker: str
) -> None:
    """A JWT key that is never stored would be a new one on every pass: new Events, a new
    material hash (rolling every workload each resync) and a kid in status nobody holds."""
    if blocker == "byo-ca-missing":
        obs = observe(make_ident(**BYO), now)
    else:
        obs = observe(
            make_ident(keystores={"passwordSecretRef": {"name": "pw"}}),
            now,
            user_password_problem="spec.keystores.passwordSecretRef: Secret gov/pw does not exist",
        )
    plans = [plan_identity(obs), plan_identity(obs)]
    for plan in plans:
        assert "dgc-trustwire-credentials" not in by_name(plan)
        assert not [e for e in plan.events if e.reason.startswith(("JwtKey", "Certificate"))]
        assert plan.mounted == {}
        assert "jwt" not in plan.status.to_dict()
    if blocker == "password-missing":
        check = plans[0].checks["CertificateReady"]
        assert (check.ok, check.stalled, check.reason) == (False, True, "KeystorePasswordMissing")


def test_password_problem_keeps_the_published_key(
    settled: Callable[..., Any], make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    """While the keystore password Secret is missing, the existing JWT key stays published."""
    ident, first, obs = settled()
    blocked = make_ident(keystores={"passwordSecretRef": {"name": "pw"}})
    plan = plan_identity(dataclasses.replace(obs, identity=blocked, user_password_problem="missing"))
    kid = creds(first, ident)["jwt.kid"].decode()
    assert [k["kid"] for k in json.loads(public(plan, blocked)["jwks.json"])["keys"]] == [kid]
    assert plan.events == []


# ======================================================================================
# Keystore password
# ======================================================================================
def test_user_password_protects_both_stores(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident(keystores={"passwordSecretRef": {"name": "pw"}})
    obs = observe(
        ident, now, user_password="changeit-1", links=(link(make_rel(), make_peer().publication()),)
    )
    plan = plan_identity(obs)
    assert creds(plan, ident)["keystore.password"] == b"changeit-1"
    assert trust(plan, ident)["truststore.password"] == b"changeit-1"
    pki.read_pkcs12(creds(plan, ident)["keystore.p12"], "changeit-1")
    pki.read_pkcs12(trust(plan, ident)["truststore.p12"], "changeit-1")

    changed = plan_identity(feed_back(obs, plan, user_password="changeit-2"))
    assert changed.events == []
    assert creds(changed, ident)["tls.key"] == creds(plan, ident)["tls.key"]
    for store, data in (("keystore.p12", creds(changed, ident)), ("truststore.p12", trust(changed, ident))):
        pki.read_pkcs12(data[store], "changeit-2")
        with pytest.raises(pki.PKIError):
            pki.read_pkcs12(data[store], "changeit-1")


# ======================================================================================
# Templates
# ======================================================================================
def test_template_is_rendered_into_the_trust_secret(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    now: datetime,
) -> None:
    ident = make_ident(
        templates=[
            {"name": "app.properties", "inline": TEMPLATE},
            {"name": "files.txt", "configMapRef": {"name": "tpl", "key": "f"}},
        ]
    )
    peer = make_peer()
    obs = observe(
        ident,
        now,
        links=(link(make_rel(), peer.publication()),),
        template_sources={"app.properties": TEMPLATE, "files.txt": "{{ self.files.truststore }}"},
    )
    plan = plan_identity(obs)
    kid = creds(plan, ident)["jwt.kid"].decode()
    assert (
        trust(plan, ident)["app.properties"]
        == (f"kid={kid}\njobserver={peer.kids[0]} {pki.fingerprint_sha256(peer.ca)}\n").encode()
    )
    assert trust(plan, ident)["files.txt"] == b"/var/run/trustwire/truststore.p12"
    assert (plan.checks["TemplatesReady"].ok, plan.checks["TemplatesReady"].reason) == (True, "Rendered")
    assert plan.mounted["app.properties"] == trust(plan, ident)["app.properties"]


@pytest.mark.parametrize("source", ["{{ nope.nothing }}", "{% for %}", "{{ self.__class__ }}"])
def test_template_error_keeps_the_last_good_output(
    make_ident: Callable[..., ServiceIdentity], now: datetime, source: str
) -> None:
    ident = make_ident(templates=[{"name": "app.properties", "inline": TEMPLATE}])
    obs = observe(ident, now)
    good = plan_identity(obs)
    last_good = trust(good, ident)["app.properties"]
    assert last_good.startswith(b"kid=")

    broken = plan_identity(feed_back(obs, good, template_sources={"app.properties": source}))
    check = broken.checks["TemplatesReady"]
    assert (check.ok, check.stalled, check.reason) == (False, True, "TemplateError")
    assert "app.properties" in check.message
    assert trust(broken, ident)["app.properties"] == last_good

    # without an earlier output nothing is written for it
    fresh = plan_identity(observe(ident, now, template_sources={"app.properties": source}))
    assert "app.properties" not in trust(fresh, ident)
    assert fresh.checks["TemplatesReady"].reason == "TemplateError"


def test_missing_template_source_waits_and_keeps_the_output(
    make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident = make_ident(templates=[{"name": "x.conf", "configMapRef": {"name": "tpl", "key": "x"}}])
    obs = observe(ident, now, template_sources={"x.conf": "v={{ self.name }}"})
    good = plan_identity(obs)
    assert trust(good, ident)["x.conf"] == b"v=dgc"
    gone = plan_identity(feed_back(obs, good, template_sources={"x.conf": None}))
    check = gone.checks["TemplatesReady"]
    assert (check.ok, check.stalled, check.reason) == (False, False, "TemplateSourceMissing")
    assert "ConfigMap gov/tpl key x" in check.message
    assert trust(gone, ident)["x.conf"] == b"v=dgc"


def test_template_error_does_not_leak_key_material(
    make_ident: Callable[..., ServiceIdentity], now: datetime
) -> None:
    ident = make_ident(templates=[{"name": "t", "inline": "x"}])
    obs = observe(ident, now, template_sources={"t": "{{ {}[self.jwtPrivateKeyPem] }}"})
    plan = plan_identity(obs)
    check = plan.checks["TemplatesReady"]
    assert (check.ok, check.reason) == (False, "TemplateError")
    key_body = creds(plan, ident)["jwt.key"].decode().splitlines()[1]
    assert "PRIVATE KEY" not in check.message
    assert key_body not in check.message


# ======================================================================================
# When to look again
# ======================================================================================
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, timedelta(hours=480)),  # leaf renewal
        ({"jwt": {"rotationPeriod": "2h"}}, timedelta(hours=2)),  # JWT rotation first
        ({"jwt": {"enabled": False}}, timedelta(hours=480)),
        ({"ca": {"duration": "300h"}}, timedelta(hours=60)),  # leaf capped at the CA: 300h - 240h
        ({"certificate": {"duration": "1h", "renewBefore": "30m"}}, timedelta(minutes=30)),
        # the CA's own renewal (prepare the next CA at notAfter - min(life/2, 30d)) comes first here
        (
            {"ca": {"duration": "100h"}, "certificate": {"renewBefore": "1h"}},
            timedelta(hours=49, minutes=59, seconds=30),
        ),
    ],
)
def test_wake_at_is_the_earliest_future_deadline(
    make_ident: Callable[..., ServiceIdentity], now: datetime, spec: dict[str, Any], expected: timedelta
) -> None:
    ident = make_ident(**spec)
    obs = observe(ident, now)
    plan = plan_identity(obs)
    assert plan.wake_at == now + expected
    # the same after a resync, and the deadline still comes from the stored material
    again = plan_identity(feed_back(obs, plan, now=now + timedelta(minutes=10)))
    assert again.wake_at == now + expected


def test_wake_at_never_sooner_than_min_wake(settled: Callable[..., Any], now: datetime) -> None:
    _, _, obs = settled(jwt={"rotationPeriod": "1h"})
    just_before = now + timedelta(hours=1) - timedelta(seconds=1)
    again = plan_identity(dataclasses.replace(obs, now=just_before))
    assert again.events == []
    assert again.wake_at == just_before + MIN_WAKE


def test_wake_at_is_none_without_deadlines(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    plan = plan_identity(observe(make_ident(**BYO), now))
    assert plan.wake_at is None


def test_wake_at_with_a_byo_ca_close_to_expiry(
    make_ident: Callable[..., ServiceIdentity], byo_ca: Callable[..., StoredObject], now: datetime
) -> None:
    ident = make_ident(jwt={"enabled": False}, **BYO)
    secret = byo_ca(issued=now - timedelta(days=1), lifetime=timedelta(days=1, hours=2))
    plan = plan_identity(observe(ident, now, byo_ca=secret))
    leaf = leaf_of(plan, ident)
    assert pki.not_after(leaf) == now + timedelta(hours=2)  # capped at the CA
    life = timedelta(hours=2, seconds=60)
    assert plan.wake_at == now - timedelta(seconds=60) + life * 2 / 3


def test_plan_is_pure_for_an_observation(make_ident: Callable[..., ServiceIdentity], now: datetime) -> None:
    """Planning does not modify the observation it is given."""
    ident = make_ident()
    obs = observe(ident, now)
    first = plan_identity(obs)
    healthy = feed_back(obs, first)
    snapshot = {k: dict(getattr(healthy, k).data) for k in ("ca", "credentials", "trust", "public")}
    plan_identity(healthy, rotate="certificate")
    assert {k: dict(getattr(healthy, k).data) for k in snapshot} == snapshot


def test_every_file_trustwire_mounts_is_reserved_from_template_names(
    settled: Callable[..., Any],
    make_rel: Callable[..., TrustRelationship],
    make_peer: Callable[..., Peer],
    identity_body: Factory,
    now: datetime,
) -> None:
    """Credentials and trust are projected into one directory: a template may not shadow any file
    the planner writes there — checked against what the planner really writes, in every phase."""
    _, first, obs = settled(
        jwt={"rotationPeriod": "1h"},
        keystores={"formats": ["PKCS12", "JKS"]},
        templates=[{"name": "app.properties", "inline": "x"}],
    )
    links = (link(make_rel(sharedSecret={"enabled": True}), make_peer().publication(), b"s" * 32),)
    _, publishing = step(obs, first, now + timedelta(hours=1), links=links)  # jwt-next.key exists now
    written = set(publishing.mounted) - {"app.properties"}
    assert {"jwt-next.key", "shared-jobserver.key", "truststore.jks", "keystore.jks"} <= written
    for key in sorted(written):
        with pytest.raises(SpecError) as info:
            parse_identity(identity_body(templates=[{"name": key, "inline": "x"}]))
        assert info.value.fields == ["spec.templates[0].name"], key


# ======================================================================================
# A hub whose trust outgrows what one Secret may hold
# ======================================================================================
@pytest.fixture
def hub_links(
    make_rel: Callable[..., TrustRelationship], make_peer: Callable[..., Peer]
) -> Callable[..., tuple[PeerLink, ...]]:
    """``hub_links(first, last, second_ca=False)``: dgc ↔ spoke-i for i in [first, last), real material."""

    def make(first: int, last: int, *, second_ca: bool = False) -> tuple[PeerLink, ...]:
        links = []
        for i in range(first, last):
            peer = make_peer(f"spoke-{i}", slot=i)
            # as while the peer rotates its CA: the current and the next one
            pem = pki.cert_to_pem(peer.ca) + pki.cert_to_pem(make_peer(f"spoke-{i}", slot=1000 + i).ca) \
                if second_ca else None
            links.append(link(make_rel(f"spoke-{i}"), peer.publication(ca_pem=pem)))
        return tuple(links)

    return make


def trust_size(plan: IdentityPlan, ident: ServiceIdentity) -> int:
    return sum(len(v) for v in trust(plan, ident).values())


def largest_file(plan: IdentityPlan, ident: ServiceIdentity) -> int:
    return max(len(v) for v in trust(plan, ident).values())


#: A Secret budget small enough that a few hundred peers outgrow even the split layout (cheap to build)
SMALL_BUDGET = 256 * 1024


def test_a_hub_keeps_the_peers_it_trusts_and_fills_up_when_more_would_not_fit(
    make_ident: Callable[..., ServiceIdentity],
    hub_links: Callable[..., tuple[PeerLink, ...]],
    now: datetime,
) -> None:
    ident = make_ident()
    first = hub_links(0, 200)
    settled = plan_identity(observe(ident, now, links=first, secret_budget=SMALL_BUDGET))
    assert settled.checks["TrustReady"].ok and settled.status.to_dict()["peerCount"] == 200
    assert trust_size(settled, ident) > 200 * 1000  # ~2 KB per peer: split across Secrets already
    assert len(settled.trust_secrets) > 1
    # 400 more peers arrive and spoke-0's relationship is removed in the same pass: trust-bundle.pem
    # alone (~700 bytes per peer) would outgrow a Secret, and a file cannot span Secrets
    crowded = (*first[1:], *hub_links(200, 600))
    obs = feed_back(observe(ident, now, links=crowded, secret_budget=SMALL_BUDGET), settled)
    plan = plan_identity(obs)
    check = plan.checks["TrustReady"]
    assert (check.ok, check.stalled, check.reason) == (False, True, "TrustTooLarge")
    assert "dgc-trustwire-trust" in check.message and "599 peer(s) and 0 template(s)" in check.message
    assert "of them in trust-bundle.pem" in check.message  # the file no split can make smaller
    data = trust(plan, ident)
    held = [p["identity"] for p in json.loads(data["peers.json"])]
    assert f"{len(held)} peer(s) are trusted, {599 - len(held)} wait" in check.message
    # what is written fits and its largest file nearly fills a Secret: every peer still related
    # that it held (not spoke-0), then the waiting peers in a fixed order, as many as fit
    assert SMALL_BUDGET * 0.95 <= largest_file(plan, ident) <= SMALL_BUDGET
    assert all(sum(len(v) for v in o.data.values()) <= SMALL_BUDGET for o in plan.objects)
    assert sorted(held) == sorted(f"spoke-{i}" for i in range(1, 200 + len(held) - 199))
    bundle = {pki.fingerprint_sha256(c) for c in pki.load_certificates(data["trust-bundle.pem"])}
    assert bundle == set(plan.status.to_dict()["trust"]["caFingerprints"])
    assert {p["identity"] for p in plan.status.to_dict()["peers"]} == set(held)  # peers read this as "distributed"
    assert plan.mounted["peers.json"] == data["peers.json"]
    # the next pass keeps exactly that set: no flapping between passes
    again = plan_identity(feed_back(obs, plan))
    assert trust(again, ident) == data and again.checks["TrustReady"] == check


def test_a_hub_whose_trusted_peers_alone_outgrow_the_secret_leaves_it_untouched(
    make_ident: Callable[..., ServiceIdentity],
    hub_links: Callable[..., tuple[PeerLink, ...]],
    now: datetime,
) -> None:
    ident = make_ident()
    budget = 400 * 1024
    settled = plan_identity(observe(ident, now, links=hub_links(0, 400), secret_budget=budget))
    assert settled.checks["TrustReady"].ok and largest_file(settled, ident) <= budget
    before = dict(trust(settled, ident))
    # every peer now publishes two CAs: the same 400 peers' trust-bundle.pem outgrows a Secret
    plan = plan_identity(feed_back(observe(ident, now, links=hub_links(0, 400, second_ca=True),
                                           secret_budget=budget), settled))
    assert plan.checks["TrustReady"].reason == "TrustTooLarge"
    assert "400 peer(s) are trusted, 0 wait" in plan.checks["TrustReady"].message
    assert not set(names.trust_secrets("dgc")) & set(by_name(plan))  # nothing written: the Secrets stay as they were
    assert plan.trust_secrets == settled.trust_secrets and not plan.obsolete  # and stay mounted
    cas = {pki.fingerprint_sha256(c) for c in pki.load_certificates(before["trust-bundle.pem"])}
    kids = {k["kid"] for k in json.loads(before["peers.jwks"])["keys"]}
    assert plan.status.to_dict()["trust"] == {"caFingerprints": sorted(cas), "kids": sorted(kids)}
    assert plan.mounted["truststore.p12"] == before["truststore.p12"]


def test_a_hub_beyond_one_secret_splits_its_trust_files_and_pods_see_the_same_files(
    make_ident: Callable[..., ServiceIdentity],
    hub_links: Callable[..., tuple[PeerLink, ...]],
    now: datetime,
) -> None:
    ident = make_ident()
    small = plan_identity(observe(ident, now, links=hub_links(0, 10)))
    assert small.trust_secrets == ("dgc-trustwire-trust",)  # what fits stays in one Secret, as it always was
    links = hub_links(0, 600)  # ~2.1 KB per peer: more than 1 MiB
    obs = observe(ident, now, links=links)
    plan = plan_identity(obs)
    assert plan.checks["TrustReady"].ok and plan.status.to_dict()["peerCount"] == 600
    assert trust_size(plan, ident) > SECRET_DATA_LIMIT
    # the largest documents each in a Secret named by the file, the rest in the trust Secret
    split = [o for o in plan.objects if o.name.startswith("dgc-trustwire-trust-")]
    assert split and all(list(o.data) == [o.name.removeprefix("dgc-trustwire-trust-")] for o in split)
    assert plan.trust_secrets == ("dgc-trustwire-trust", *(o.name for o in split))
    assert all(sum(len(v) for v in o.data.values()) <= SECRET_DATA_LIMIT for o in plan.objects)
    assert all(o.labels == names.identity_labels("dgc", "trust") for o in split)
    # written before the trust Secret, so no file is ever missing from what the volume shows
    order = [o.name for o in plan.objects]
    assert max(order.index(o.name) for o in split) < order.index("dgc-trustwire-trust")
    # the same file names as before the split, and the material hash covers every one of them
    assert set(trust(plan, ident)) == set(trust(small, ident))
    assert {k: plan.mounted[k] for k in trust(plan, ident)} == trust(plan, ident)
    # a second pass over what was written plans exactly the same bytes: zero writes
    settled = feed_back(obs, plan)
    again = plan_identity(settled)
    assert [o.name for o in again.objects] == order and again.trust_secrets == plan.trust_secrets
    for before, after in zip(plan.objects, again.objects, strict=True):
        assert object_patch(after, object_body(before, NS)) is None, after.name
    # a peer joins: the layout stays, only Secrets whose files changed are rewritten
    joined = plan_identity(feed_back(observe(ident, now, links=(*links, *hub_links(600, 601))), plan))
    assert joined.trust_secrets == plan.trust_secrets and not joined.obsolete
    assert "peers.json" in trust(joined, ident) and joined.status.to_dict()["peerCount"] == 601
    # most peers leave: everything fits in the trust Secret again, and the split Secrets go
    shrunk = plan_identity(feed_back(observe(ident, now, links=links[:10]), joined))
    assert shrunk.trust_secrets == ("dgc-trustwire-trust",)
    assert shrunk.obsolete == tuple(o.name for o in split)
    assert set(by_name(shrunk)["dgc-trustwire-trust"].data) == set(trust(small, ident))


def test_a_split_file_stays_in_its_own_secret_while_the_hub_needs_a_split(
    make_ident: Callable[..., ServiceIdentity],
    hub_links: Callable[..., tuple[PeerLink, ...]],
    now: datetime,
) -> None:
    """Stable under small changes: which files are alone never flips between passes with
    peers' sizes, so neither the Secrets nor the pods' volume are reshuffled."""
    ident = make_ident()
    links = hub_links(0, 60)
    budget = sum(len(v) for v in trust(plan_identity(observe(ident, now, links=links)), ident).values()) - 1
    obs = observe(ident, now, links=links, secret_budget=budget)
    first = plan_identity(obs)
    alone = first.trust_secrets[1:]
    assert len(alone) == 1
    # a Secret of another file alone before (as a previous layout left it) is kept, not reshuffled
    other = next(f for f in ("peers.jwks", "peers.json") if names.trust_file_secret("dgc", f) not in alone)
    held = by_name(first)["dgc-trustwire-trust"]
    stale = StoredObject(names.trust_file_secret("dgc", other), True, "dgc", {other: held.data[other]})
    rest = edit(stored(held), {other: None})
    plan = plan_identity(dataclasses.replace(feed_back(obs, first), trust=rest,
                                             trust_files={**feed_back(obs, first).trust_files, other: stale}))
    assert set(plan.trust_secrets) == {*first.trust_secrets, stale.name} and not plan.obsolete
    assert other not in by_name(plan)["dgc-trustwire-trust"].data and by_name(plan)[stale.name].data == stale.data
    assert set(trust(plan, ident)) == set(trust(first, ident))


def test_a_split_file_whose_secret_name_is_taken_is_a_name_conflict(
    make_ident: Callable[..., ServiceIdentity],
    hub_links: Callable[..., tuple[PeerLink, ...]],
    now: datetime,
) -> None:
    ident = make_ident()
    links = hub_links(0, 60)
    budget = sum(len(v) for v in trust(plan_identity(observe(ident, now, links=links)), ident).values()) - 1
    first = plan_identity(observe(ident, now, links=links, secret_budget=budget))
    taken = first.trust_secrets[1]
    file = taken.removeprefix("dgc-trustwire-trust-")
    foreign = StoredObject(taken, False, None, {"other": b"someone else's"})
    plan = plan_identity(observe(ident, now, links=links, secret_budget=budget, trust_files={file: foreign}))
    check = plan.checks["TrustReady"]
    assert (check.reason, check.stalled) == ("NameConflict", True) and taken in check.message
    assert not set(names.trust_secrets("dgc")) & set(by_name(plan))  # nothing of the split is written


def test_pending_peers_are_summarized_not_listed(
    make_ident: Callable[..., ServiceIdentity],
    make_rel: Callable[..., TrustRelationship],
    now: datetime,
) -> None:
    ident = make_ident()
    links = tuple(link(make_rel(f"spoke-{i}"), None) for i in range(40))
    check = plan_identity(observe(ident, now, links=links)).checks["TrustReady"]
    assert check.reason == "PeerPending"
    assert check.message.count("has not published") == 5 and check.message.endswith("; and 35 more")


# ======================================================================================
# The files' JSON: byte for byte what json.dumps(indent=2, sort_keys=True) writes
# ======================================================================================
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_json_files_are_what_the_standard_library_writes(value: Any) -> None:
    """Stored files must not change bytes between versions (a change rolls every pod):
    the fast writer must agree with json.dumps on everything, deferring what it does not write."""
    assert _json(value) == (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {2.5: "b"}}, [float("nan")], {"k": float("inf")}])
def test_json_files_leave_unusual_values_to_the_standard_library(value: Any) -> None:
    assert _json(value) == (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def test_json_files_refuse_what_json_refuses() -> None:
    with pytest.raises(TypeError):
        _json({"a": object()})
