"""Issue 17, external issuers: an OpenID Connect issuer outside the cluster (a loopback HTTPS
server with its own keys and its own CA, as Keycloak would be) becomes a relationship member.
The real operator on the real control plane fetches its keys, delivers them to the receiving
identity's ``peers.jwks``, follows a key change within the cache bound, and keeps the last good
keys when the issuer returns garbage or cannot be reached; jwcrypto verifies the issuer's tokens against what was
delivered."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from jwcrypto import jwk, jwt

from tests.conftest import LoopbackIssuer
from tests.integration.harness import Cluster, ProcessCluster, condition, identity, until
from trustwire import names, pki
from trustwire.k8s.errors import ApiError
from trustwire.plan import issuers
from trustwire.runtime import OperatorOptions
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

NS, PROXY, REL = "idp", "proxy", "keycloak"
AUD, SCOPES = "proxy", ["orders:read", "orders:write"]


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=2, resync_interval=3600.0, propagation_delay=timedelta(seconds=2))


def issuer_relationship(url: str, ca_name: str = "keycloak-ca") -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": REL, "namespace": NS},
            "spec": {"between": [{"identity": PROXY}, {"issuer": {
                "url": url, "caBundleRef": {"name": ca_name}, "audience": AUD, "scopes": SCOPES}}]}}


def ca_configmap(name: str, pem: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": {"ca.crt": pem.decode()}}


def signed_by(key: pki.PrivateKey, url: str) -> str:
    """A token the test issuer signs with ``key`` (RS256, its kid in the header)."""
    private = jwk.JWK.from_pem(pki.private_key_to_pem(key))
    kid = pki.public_jwk(key, pki.JwtAlgorithm.RS256)["kid"]
    now = int(utcnow().timestamp())
    token = jwt.JWT(header={"alg": "RS256", "kid": kid},
                    claims={"iss": url, "aud": AUD, "scope": " ".join(SCOPES), "iat": now, "exp": now + 300})
    token.make_signed_token(private)
    return str(token.serialize())


def verified_by_delivered(token: str, delivered: bytes, url: str) -> dict[str, Any]:
    """jwcrypto checks the token's signature against the receiver's ``peers.jwks`` alone."""
    keys = jwk.JWKSet.from_json(delivered.decode())
    checked = jwt.JWT(jwt=token, key=keys, algs=["RS256"], check_claims={"iss": url, "aud": AUD})
    claims: dict[str, Any] = json.loads(checked.claims)
    return claims


async def wire_issuer(cluster: Cluster, url: str, ca: bytes) -> dict[str, Any]:
    """The proxy identity and its relationship with the issuer at ``url``, until both are Ready;
    the relationship as it is then."""
    await cluster.ensure_namespace(NS)
    await cluster.apply(ca_configmap("keycloak-ca", ca))
    await cluster.apply(identity(PROXY, NS))
    await cluster.apply(issuer_relationship(url))
    body = await cluster.wait_condition("TrustRelationship", NS, REL, "Ready", timeout=60)
    await cluster.wait_condition("ServiceIdentity", NS, PROXY, "Ready")
    return body


async def delivered(cluster: Cluster) -> tuple[bytes, list[dict[str, Any]]]:
    data = await cluster.data("Secret", NS, names.trust_secret(PROXY))
    return data.get("peers.jwks", b"{}"), json.loads(data.get("peers.json", b"[]"))


def kids(jwks: bytes) -> set[str]:
    return {k["kid"] for k in json.loads(jwks).get("keys", [])}


async def test_an_external_issuer_becomes_a_member_whose_keys_the_identity_receives(
        cluster: Cluster, loopback: tuple[LoopbackIssuer, bytes], real_key: Callable[..., pki.PrivateKey]) -> None:
    server, ca = loopback
    first, second = real_key(pki.JwtAlgorithm.RS256, 7), real_key(pki.JwtAlgorithm.RS256, 8)
    first_kid = pki.public_jwk(first, pki.JwtAlgorithm.RS256)["kid"]
    second_kid = pki.public_jwk(second, pki.JwtAlgorithm.RS256)["kid"]
    server.serve({"keys": [pki.public_jwk(first, pki.JwtAlgorithm.RS256)]}, "public, max-age=1")
    body = await wire_issuer(cluster, server.url, ca)
    accepted = condition(body, "IssuerReady")
    assert accepted is not None and (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert first_kid in accepted["message"]
    assert body["status"]["issuer"]["url"] == server.url and body["status"]["issuer"]["kids"] == [first_kid]
    assert body["status"]["issuer"]["lastFetchTime"]
    jwks, peers = await delivered(cluster)
    assert kids(jwks) == {first_kid}
    assert all("d" not in k for k in json.loads(jwks)["keys"])
    entry = next(p for p in peers if p["relationship"] == f"{NS}/{REL}")
    assert (entry["issuer"], entry["audience"], entry["scopes"], entry["kids"], entry["mtls"], entry["external"],
            entry["direction"], entry["caFingerprints"]) == \
        (server.url, AUD, SCOPES, [first_kid], False, True, "inbound", [])
    assert verified_by_delivered(signed_by(first, server.url), jwks, server.url)["scope"] == " ".join(SCOPES)
    with pytest.raises(Exception, match=r"(?i)key|signature"):
        verified_by_delivered(signed_by(second, server.url), jwks, server.url)

    # a key change at the issuer reaches the identity within the cache bound (max-age=1 is
    # clamped to the minimum refresh), with an Event on the relationship
    server.serve({"keys": [pki.public_jwk(second, pki.JwtAlgorithm.RS256)]}, "public, max-age=1")
    bound = issuers.MIN_REFRESH.total_seconds() + 15

    async def rolled() -> bool:
        return kids((await delivered(cluster))[0]) == {second_kid}

    await until(rolled, "the identity to receive the issuer's new key", timeout=bound)
    jwks, _ = await delivered(cluster)
    assert verified_by_delivered(signed_by(second, server.url), jwks, server.url)["iss"] == server.url
    events = await cluster.events(NS, REL)
    assert any(e["reason"] == "IssuerKeysChanged" and second_kid in e["message"] for e in events), events

    # garbage at the issuer (a fetch is due at once: the CA bundle's bytes changed): refused,
    # the last good keys stay delivered
    server.routes["/realm/certs"] = lambda _: web.Response(text="<html>maintenance</html>")
    await cluster.apply(ca_configmap("keycloak-ca", ca + b"\n"))
    body = await cluster.wait_condition("TrustRelationship", NS, REL, "IssuerReady", "False",
                                        reason="IssuerInvalid", timeout=30)
    assert "the JWKS is not JSON" in (condition(body, "IssuerReady") or {})["message"]
    assert kids((await delivered(cluster))[0]) == {second_kid}

    # the CA the fetch trusts is replaced by another: the issuer is unreachable (TLS fails), the
    # last good keys stay delivered and the status says why
    other_ca = pki.cert_to_pem(pki.create_ca(pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256),
                                             common_name="another CA", now=utcnow() - timedelta(minutes=1),
                                             lifetime=timedelta(days=1)))
    await cluster.apply(ca_configmap("keycloak-ca", other_ca))
    body = await cluster.wait_condition("TrustRelationship", NS, REL, "IssuerReady", "False",
                                        reason="IssuerUnreachable", timeout=30)
    reported = condition(body, "IssuerReady")
    assert reported is not None and "spec.between[1].issuer" in reported["message"]
    assert "last good keys (1) are kept" in reported["message"] and server.url in reported["message"]
    assert body["status"]["issuer"]["kids"] == [second_kid]
    assert kids((await delivered(cluster))[0]) == {second_kid}
    assert any(e["type"] == "Warning" for e in await cluster.events_of(NS, REL, "IssuerUnreachable"))


async def test_resyncs_between_refreshes_make_zero_writes(
        cluster: Cluster, loopback: tuple[LoopbackIssuer, bytes], real_key: Callable[..., pki.PrivateKey]) -> None:
    server, ca = loopback
    server.serve({"keys": [pki.public_jwk(real_key(pki.JwtAlgorithm.RS256, 7), pki.JwtAlgorithm.RS256)]},
                 "max-age=600")
    await wire_issuer(cluster, server.url, ca)
    await cluster.settle()
    writes_before, reads_before = len(cluster.operator_writes()), len(cluster.operator_requests())
    for _ in range(3):
        cluster.controller.resync_all()
        await cluster.settle()
    assert len(cluster.operator_requests()) > reads_before, "the resyncs must actually have run"
    writes = cluster.operator_writes()[writes_before:]
    assert writes == [], [f"{w.method} {w.path}" for w in writes]


async def test_a_restarted_operator_keeps_delivering_the_last_good_keys_while_the_issuer_is_down(
        process_cluster: ProcessCluster, loopback: tuple[LoopbackIssuer, bytes],
        real_key: Callable[..., pki.PrivateKey]) -> None:
    cluster, (server, ca) = process_cluster, loopback
    key = pki.public_jwk(real_key(pki.JwtAlgorithm.RS256, 7), pki.JwtAlgorithm.RS256)
    server.serve({"keys": [key]}, "max-age=600")
    operator = cluster.spawn("--standalone")
    await operator.start()
    await wire_issuer(cluster, server.url, ca)
    assert kids((await delivered(cluster))[0]) == {key["kid"]}
    assert await operator.stop() == 0

    server.routes = {}  # every request answers 404 now
    await operator.start()
    body = await cluster.wait_condition("TrustRelationship", NS, REL, "IssuerReady", "False",
                                        reason="IssuerUnreachable", timeout=60)
    reported = condition(body, "IssuerReady")
    assert reported is not None and "404" in reported["message"]
    assert "last good keys (1) are kept" in reported["message"]
    assert body["status"]["issuer"]["kids"] == [key["kid"]]
    await cluster.settle()
    assert kids((await delivered(cluster))[0]) == {key["kid"]}
    assert await operator.stop() == 0


def _with(url: str = "https://idp.example.com/realms/acme", **spec: Any) -> dict[str, Any]:
    body = issuer_relationship(url)
    body["spec"] |= spec
    return body


REFUSED = [
    (_with("http://idp.example.com/realms/acme"), "must be an https:// URL"),
    (_with("https://idp.example.com/realms/acme?x=1"), "no query or fragment"),
    (_with("https://idp.example.com/realms/acme/"), "must not end with '/'"),
    (_with(initiator=PROXY), "spec.initiator must be omitted beside an issuer member"),
    (_with(jwt={"audience": "x"}), "spec.jwt.enabled cannot be false beside an issuer member, and its audience"),
    (_with(jwt={"enabled": False}), "spec.jwt.enabled cannot be false beside an issuer member"),
    (_with(sharedSecret={"enabled": True}), "spec.sharedSecret.enabled cannot be true beside an issuer member"),
    (_with(between=[{"issuer": {"url": "https://a.example.com", "caBundleRef": {"name": "c"}}},
                    {"external": {"name": "b", "caBundleRef": {"name": "c"}}}]), "two members outside the cluster"),
    (_with(between=[{"identity": PROXY}, {"namespace": "x", "issuer": {"url": "https://a.example.com",
                                                                      "caBundleRef": {"name": "c"}}}]),
     "spec.between[].namespace applies to identity members only"),
]


async def test_malformed_issuer_members_are_refused_at_admission(cluster: Cluster) -> None:
    await cluster.ensure_namespace(NS)
    for body, words in REFUSED:
        with pytest.raises(ApiError) as refused:
            await cluster.apply(body)
        assert refused.value.status == 422 and words in str(refused.value), (body["spec"], str(refused.value))
