"""An identity as an OpenID Connect issuer: whether a server publishes it, its discovery
document (OIDC Discovery 1.0 §3 / RFC 8414 §2), its JWKS, and how long validators may cache them.

The keys come from the identity's public ConfigMap, but only those whose ``kid`` the operator
lists in ``status.jwt.publishedKids`` and that hash to their ``kid`` (RFC 7638): the status is
written through the status subresource, so whoever may edit ConfigMaps in a namespace cannot
make a gateway trust a key, and the server never needs to read a Secret.

Caching: every key is published at least the propagation delay before it signs (the rotation
gate waits that long for parties outside the cluster), so a validator that refetches within
half of it always holds a key before its first token. A rotation can be requested at any
moment, which is why that bound always applies; the scheduled rotation shortens it further so a
cache expires when the key set is due to change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trustwire import pki
from trustwire.model import ServiceIdentity
from trustwire.model.issuer import DISCOVERY_PATH, discovery_url
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.reasons import Reason
from trustwire.plan.status import IdentityStatus
from trustwire.times import parse_time

JWKS_PATH = "/jwks.json"
#: what validators may cache at most, however long the propagation delay is configured
MAX_CACHE = timedelta(hours=1)
MIN_CACHE = timedelta(seconds=1)
#: the claims tokens minted for this identity carry (``trustwire token``, ``pki.access_token_claims``)
CLAIMS_SUPPORTED = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope")


def served_issuer(public_url: str, namespace: str, name: str) -> str:
    """The issuer a server at ``public_url`` serves for ``namespace/name``."""
    return f"{public_url.rstrip('/')}/{namespace}/{name}"


def jwks_url(issuer: str) -> str:
    return issuer + JWKS_PATH


@dataclasses.dataclass(frozen=True)
class IssuerInput:
    """What a server reads about one identity: its spec, status and public ConfigMap's JWKS."""

    identity: ServiceIdentity
    status: IdentityStatus
    public_url: str
    #: ``jwks.json`` of the public ConfigMap, parsed (``None`` when absent or not JSON)
    published: Mapping[str, Any] | None


def discovery_off(i: IssuerInput) -> Verdict | None:
    if not (i.identity.jwt.enabled and i.identity.jwt.discovery):
        return Verdict(Reason.ISSUER_NOT_SERVED, "the identity does not set spec.jwt.discovery: true")
    return None


def issuer_elsewhere(i: IssuerInput) -> Verdict | None:
    want = served_issuer(i.public_url, i.identity.namespace, i.identity.name)
    if i.identity.issuer != want:
        return Verdict(Reason.ISSUER_NOT_SERVED, f"spec.jwt.issuer is not {want}, the issuer this server serves")
    return None


def keys_unpublished(i: IssuerInput) -> Verdict | None:
    if i.status.jwt is None or not i.status.jwt.published_kids or i.published is None:
        return Verdict(Reason.ISSUER_NOT_SERVED, "the operator has not published a JWT key yet")
    return None


#: Why a server does not publish an identity as an issuer (first that fires).
NOT_SERVED = (discovery_off, issuer_elsewhere, keys_unpublished)


def not_served(i: IssuerInput) -> Verdict | None:
    return evaluate(NOT_SERVED, i)


def _vouched(jwk: Mapping[str, Any], kids: frozenset[str]) -> bool:
    try:
        return jwk.get("kid") in kids and pki.jwk_thumbprint(jwk) == jwk.get("kid")
    except pki.PKIError:
        return False


def published_jwks(i: IssuerInput) -> dict[str, list[dict[str, str]]]:
    """The JWKS a validator gets: the ConfigMap's keys the status vouches for, none revoked,
    public members only."""
    kids = frozenset(i.status.jwt.published_kids if i.status.jwt else ()) - set(i.identity.jwt.revoked_kids)
    keys = i.published.get("keys") if i.published is not None else None
    listed = [k for k in keys if isinstance(k, Mapping) and _vouched(k, kids)] if isinstance(keys, list) else []
    return pki.jwks(listed)


def discovery_document(issuer: str, algorithms: Sequence[str]) -> dict[str, Any]:
    """The provider metadata: required fields of OIDC Discovery 1.0 §3 and RFC 8414 §2 for an
    issuer that only signs tokens (no authorization or token endpoint of its own)."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_url(issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted(set(algorithms)),
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": list(CLAIMS_SUPPORTED),
    }


def document_algorithms(jwks: Mapping[str, Sequence[Mapping[str, str]]]) -> list[str]:
    return sorted({k["alg"] for k in jwks["keys"] if "alg" in k})


def cache_max_age(status: IdentityStatus, now: datetime, propagation_delay: timedelta) -> int:
    """Seconds validators may cache the documents: at most half the propagation delay (and
    :data:`MAX_CACHE`), and never past the scheduled rotation."""
    bound = min(propagation_delay / 2, MAX_CACHE)
    rotation = parse_time(status.jwt.rotation_time) if status.jwt else None
    if rotation is not None and rotation > now:
        bound = min(bound, rotation - now)
    return int(max(bound, MIN_CACHE).total_seconds())


def etag(body: bytes) -> str:
    """A strong validator for a response body (RFC 9110 §8.8.3)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def render(document: Mapping[str, Any]) -> bytes:
    """One canonical JSON encoding, so an unchanged document keeps its ETag."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


__all__ = [
    "CLAIMS_SUPPORTED", "DISCOVERY_PATH", "JWKS_PATH", "MAX_CACHE", "MIN_CACHE", "NOT_SERVED", "IssuerInput",
    "cache_max_age",
    "discovery_document", "discovery_url", "document_algorithms", "etag", "jwks_url", "not_served",
    "published_jwks", "render", "served_issuer",
]
