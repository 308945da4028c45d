"""What an identity publishes: to its peers (:func:`publication_from_secrets`) and to parties
outside the cluster (the public ConfigMap, :func:`public_object`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from trustwire import names, pki
from trustwire.model import IdentityRef, ServiceIdentity
from trustwire.plan import jwt as jwtkeys
from trustwire.plan.material import DesiredObject, StoredObject, load_cert, to_json


@dataclasses.dataclass(frozen=True)
class Publication:
    """What a peer publishes in its public ConfigMap."""

    ca_pem: bytes
    jwks: tuple[Mapping[str, str], ...]
    info: Mapping[str, Any]

    @property
    def revoked_kids(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self.info.get("revokedKids", []))


def _published_keys(identity: ServiceIdentity | None, credentials: StoredObject) -> list[Mapping[str, str]]:
    keys: list[Mapping[str, str]] = []
    for key_name in (jwtkeys.ACTIVE, jwtkeys.NEXT):
        try:
            key = pki.load_private_key(credentials.data[key_name]) if credentials.data.get(key_name) else None
            algorithm = jwtkeys.key_algorithm(identity, credentials, key_name, key) if key is not None else None
            if key is not None and algorithm is not None:
                keys.append(pki.public_jwk(key, algorithm))
        except pki.PKIError:
            continue
    previous, _ = jwtkeys.previous_jwk(credentials.annotations)
    if previous is not None and "kid" in previous:
        keys.append(previous)
    return keys


def publication_from_secrets(ref: IdentityRef, identity: ServiceIdentity | None, ca: StoredObject | None,
                             credentials: StoredObject | None) -> Publication | None:
    """What a peer trusts about ``ref``, derived from ``ref``'s own managed Secrets and spec.

    Never from its public ConfigMap: that is output for parties outside the cluster, and
    whoever may edit ConfigMaps in a namespace must not be able to push a CA or a JWT key
    into every peer's trust. Only Secrets trustwire manages for ``ref`` count.
    """
    def ours(obj: StoredObject | None) -> bool:
        return obj is not None and obj.managed and obj.owner == ref.name

    if not ours(credentials):
        return None
    assert credentials is not None
    cas: list[x509.Certificate] = []
    sources = [(ca, field) for field in ("tls.crt", "next.crt", "previous.crt")] if ours(ca) else \
        [(credentials, "ca.crt")]  # a bring-your-own CA has no CA Secret of ours
    for obj, field in sources:
        cert = load_cert(obj, field)
        if cert is not None and pki.is_ca(cert):
            cas.append(cert)
    if not cas:
        return None
    revoked = set(identity.jwt.revoked_kids) if identity is not None else set()
    keys = _published_keys(identity, credentials) if identity is None or identity.jwt.enabled else []
    info: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace, "revokedKids": sorted(revoked)}
    if identity is not None:
        info |= {"issuer": identity.issuer, "spiffeId": identity.spiffe_id}
    jwks = tuple(k for k in keys if k.get("kid") not in revoked)
    return Publication(pki.certs_to_pem(cas), jwks, info)


def public_object(ident: ServiceIdentity, own_cas: Sequence[x509.Certificate],
                  jwt: jwtkeys.JwtState | None) -> DesiredObject:
    """The public ConfigMap: every CA the identity signs or will sign with, and its JWKS."""
    own_jwks = jwtkeys.own_jwks(jwt) if jwt is not None else []
    info = {
        "name": ident.name, "namespace": ident.namespace, "serviceName": ident.service_name,
        "spiffeId": ident.spiffe_id, "issuer": ident.issuer,
        "caFingerprints": [pki.fingerprint_sha256(c) for c in own_cas],
        "kids": [j["kid"] for j in own_jwks], "revokedKids": list(ident.jwt.revoked_kids),
        "jwtAlgorithm": str(jwt.active.algorithm) if jwt is not None else None,
    }
    return DesiredObject("ConfigMap", names.public_configmap(ident.name), {
        "ca.crt": pki.certs_to_pem(own_cas), "jwks.json": to_json(pki.jwks(own_jwks)),
        "identity.json": to_json(info),
    }, names.identity_labels(ident.name, "public"))
