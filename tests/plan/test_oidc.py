"""An identity as an OpenID Connect issuer: which are served, the documents, the cache bound."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from jwcrypto import jwk as jwcrypto_jwk

from trustwire import pki
from trustwire.model import parse_identity
from trustwire.plan import oidc
from trustwire.plan.status import IdentityStatus, JwtStatus
from trustwire.times import rfc3339

PUBLIC = "https://id.example.com"
ISSUER = f"{PUBLIC}/ns/dgc"
Keys = Callable[..., pki.PrivateKey]


def _jwk(real_key: Keys, algorithm: pki.JwtAlgorithm = pki.JwtAlgorithm.ES256, slot: int = 0) -> dict[str, str]:
    return pki.public_jwk(real_key(algorithm, slot), algorithm)


def _input(identity_body: Callable[..., dict[str, Any]], keys: list[dict[str, str]], kids: list[str],
           jwt: dict[str, Any] | None = None, published: bool = True) -> oidc.IssuerInput:
    ident = parse_identity(identity_body(jwt=jwt or {"discovery": True, "issuer": ISSUER}))
    status = IdentityStatus(jwt=JwtStatus(kids[0] if kids else "", "ES256", tuple(kids), "2030-01-01T00:00:00Z"))
    return oidc.IssuerInput(ident, status, PUBLIC, {"keys": keys} if published else None)


@pytest.mark.parametrize(("jwt", "kids", "published", "why"), [
    ({"discovery": True, "issuer": ISSUER}, ["k"], True, None),
    ({"issuer": ISSUER}, ["k"], True, "does not set spec.jwt.discovery"),
    ({"discovery": True, "issuer": ISSUER, "enabled": False}, ["k"], True, "does not set spec.jwt.discovery"),
    ({"discovery": True, "issuer": "https://other.example.com/ns/dgc"}, ["k"], True, "is not https://id.example"),
    ({"discovery": True, "issuer": f"{PUBLIC}/ns/other"}, ["k"], True, "is not https://id.example"),
    ({"discovery": True, "issuer": ISSUER}, [], True, "has not published"),
    ({"discovery": True, "issuer": ISSUER}, ["k"], False, "has not published"),
])
def test_which_identities_are_served(identity_body: Callable[..., dict[str, Any]], jwt: dict[str, Any],
                                     kids: list[str], published: bool, why: str | None) -> None:
    verdict = oidc.not_served(_input(identity_body, [], kids, jwt, published))
    if why is None:
        assert verdict is None
    else:
        assert verdict is not None and why in verdict.message
        assert verdict.reason == "IssuerNotServed"


def test_a_trailing_slash_in_the_public_url_does_not_change_the_issuer() -> None:
    assert oidc.served_issuer(PUBLIC + "/", "ns", "dgc") == ISSUER


def test_jwks_holds_only_keys_the_status_vouches_for_with_public_members(
        identity_body: Callable[..., dict[str, Any]], real_key: Keys) -> None:
    active, upcoming, planted = _jwk(real_key), _jwk(real_key, pki.JwtAlgorithm.RS256), _jwk(real_key, slot=7)
    private = pki.private_jwk(real_key(pki.JwtAlgorithm.ES256), pki.JwtAlgorithm.ES256)
    forged = dict(planted, kid=active["kid"])  # another key under a vouched kid
    keys = [private, dict(upcoming), planted, forged]
    jwks = oidc.published_jwks(_input(identity_body, keys, [active["kid"], upcoming["kid"]]))
    assert [k["kid"] for k in jwks["keys"]] == [active["kid"], upcoming["kid"]]
    assert all("d" not in k and set(k) <= pki.jwk.PUBLIC_MEMBERS for k in jwks["keys"])
    # software nobody here wrote reads each key
    for key in jwks["keys"]:
        assert jwcrypto_jwk.JWK(**key).thumbprint() == key["kid"]


def test_a_revoked_kid_is_never_served(identity_body: Callable[..., dict[str, Any]], real_key: Keys) -> None:
    active, retired = _jwk(real_key), _jwk(real_key, slot=1)
    jwt = {"discovery": True, "issuer": ISSUER, "revokedKids": [retired["kid"]]}
    jwks = oidc.published_jwks(_input(identity_body, [active, retired], [active["kid"], retired["kid"]], jwt))
    assert [k["kid"] for k in jwks["keys"]] == [active["kid"]]


@pytest.mark.parametrize("keys", [None, "x", [1, "a", {"kty": "EC"}]])
def test_garbage_in_the_configmap_serves_no_key(identity_body: Callable[..., dict[str, Any]], keys: Any) -> None:
    i = _input(identity_body, [], ["k"])
    assert oidc.published_jwks(oidc.IssuerInput(i.identity, i.status, PUBLIC, {"keys": keys})) == {"keys": []}


def test_discovery_document_has_the_required_metadata() -> None:
    doc = oidc.discovery_document(ISSUER, ["RS256", "ES256", "ES256"])
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == ISSUER + "/jwks.json"
    # OIDC Discovery 1.0 §3 REQUIRED (for an issuer without an authorization endpoint) and RFC 8414 §2
    for field in ("response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported"):
        assert doc[field]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]


T0 = datetime.fromisoformat("2030-01-01T00:00:00+00:00")


@pytest.mark.parametrize(("rotation", "delay", "now", "max_age"), [
    (T0 + timedelta(days=30), timedelta(seconds=90), T0, 45),       # half the propagation delay
    (T0 + timedelta(seconds=20), timedelta(seconds=90), T0, 20),    # never past the scheduled rotation
    (T0 - timedelta(seconds=5), timedelta(seconds=90), T0, 45),     # rotation due: the delay bound alone
    (T0 + timedelta(days=30), timedelta(hours=10), T0, 3600),        # capped at an hour
    (T0, timedelta(seconds=90), T0 - timedelta(milliseconds=300), 1),  # at least a second
    (None, timedelta(seconds=10), T0, 5),
])
def test_cache_max_age(rotation: datetime | None, delay: timedelta, now: datetime, max_age: int) -> None:
    status = IdentityStatus(jwt=JwtStatus("k", "ES256", ("k",), rfc3339(rotation) if rotation else ""))
    assert oidc.cache_max_age(status, now, delay) == max_age


def test_a_validator_refetching_at_max_age_holds_every_key_before_it_signs() -> None:
    """The property the bound exists for: a key published at P signs no earlier than P + delay;
    a validator fetching whenever its cache expires has fetched after P by then."""
    delay = timedelta(seconds=90)
    status = IdentityStatus(jwt=JwtStatus("k", "ES256", ("k",), rfc3339(T0 + timedelta(days=1))))
    for published_after in range(0, 300, 7):
        published = T0 + timedelta(seconds=published_after)
        fetched = T0
        while fetched <= published:
            fetched += timedelta(seconds=oidc.cache_max_age(status, fetched, delay))
        assert fetched < published + delay


def test_etag_follows_the_canonical_body() -> None:
    a, b = oidc.render({"b": 1, "a": [1, 2]}), oidc.render({"a": [1, 2], "b": 1})
    assert a == b and oidc.etag(a) == oidc.etag(b)
    assert oidc.etag(a) != oidc.etag(oidc.render({"a": [2, 1], "b": 1}))
    assert oidc.etag(a).startswith('"') and oidc.etag(a).endswith('"')
