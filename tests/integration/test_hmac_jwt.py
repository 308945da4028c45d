"""HS256 on the real control plane: a symmetric key for the identity's own token service,
in its credentials Secret only, and refused on a relationship that would send it."""

from __future__ import annotations

import json
import time

import jwt as pyjwt
import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt

from tests.integration.harness import Cluster, condition, identity, ready_with_peers, relationship
from trustwire import names

pytestmark = pytest.mark.integration

NS = "datahub"


async def test_an_hs256_token_verifies_with_pyjwt_and_jwcrypto_and_the_key_is_in_no_jwks(cluster: Cluster) -> None:
    await cluster.apply(identity("gms", NS, jwt={"algorithm": "HS256"}))
    await cluster.apply(identity("frontend", NS))
    await cluster.apply(relationship("gms-frontend", NS, ("gms", None), ("frontend", None), jwt={"enabled": False}))
    gms = await cluster.wait_for("ServiceIdentity", NS, "gms", lambda b: ready_with_peers(b, 1), what="Ready")
    await cluster.wait_for("ServiceIdentity", NS, "frontend", lambda b: ready_with_peers(b, 1), what="Ready")
    creds = await cluster.data("Secret", NS, names.credentials_secret("gms"))
    key, jwk = creds["jwt.key"], json.loads(creds["jwt.jwk"])
    assert gms is not None and gms["status"]["jwt"]["algorithm"] == "HS256"
    assert gms["status"]["jwt"]["kid"] == creds["jwt.kid"].decode() == jwk["kid"]
    now = int(time.time())
    token = pyjwt.encode({"sub": "__datahub_system", "iat": now, "exp": now + 300}, key, algorithm="HS256",
                         headers={"kid": jwk["kid"]})
    assert pyjwt.decode(token, key, algorithms=["HS256"])["sub"] == "__datahub_system"
    verifier = jwc_jwk.JWK(**jwk)
    assert verifier.thumbprint() == jwk["kid"]
    assert json.loads(jwc_jwt.JWT(jwt=token, key=verifier, algs=["HS256"]).claims)["sub"] == "__datahub_system"
    # in no JWKS, no ConfigMap, no other Secret
    public = await cluster.data("ConfigMap", NS, names.public_configmap("gms"))
    assert json.loads(public["jwks.json"]) == {"keys": []}
    for member in ("gms", "frontend"):
        trust = await cluster.data("Secret", NS, names.trust_secret(member))
        assert jwk["kid"] not in [k.get("kid") for k in json.loads(trust["peers.jwks"])["keys"]]
        others = [*trust.values(), *(await cluster.data("ConfigMap", NS, names.public_configmap(member))).values()]
        assert all(key not in v and jwk["k"].encode() not in v for v in others), member


async def test_a_relationship_that_would_send_an_hs256_key_is_refused(cluster: Cluster) -> None:
    await cluster.apply(identity("gms", NS, jwt={"algorithm": "HS256"}))
    await cluster.apply(identity("frontend", NS))
    await cluster.apply(relationship("gms-frontend", NS, ("gms", None), ("frontend", None)))
    body = await cluster.wait_condition("TrustRelationship", NS, "gms-frontend", "JwtAllowed", "False",
                                        reason="SymmetricJwtKey")
    message = condition(body, "JwtAllowed")["message"]  # type: ignore[index]
    assert message.startswith("spec.jwt.enabled: ServiceIdentity datahub/gms signs with HS256")
    assert "ES256, ES384, RS256, PS256, EdDSA" in message
    assert condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    events = await cluster.events_of(NS, "gms-frontend", "SymmetricJwtKey")
    assert events and events[0]["type"] == "Warning" and "spec.jwt.enabled" in events[0]["message"]
    creds = await cluster.data("Secret", NS, names.credentials_secret("gms"))
    await cluster.settle()
    frontend = await cluster.data("Secret", NS, names.trust_secret("frontend"))
    assert json.loads(frontend["peers.jwks"]) == {"keys": []}
    assert all(creds["jwt.key"] not in v for v in frontend.values())
    # the allowed fix clears it
    await cluster.apply(relationship("gms-frontend", NS, ("gms", None), ("frontend", None), initiator="frontend"))
    await cluster.wait_condition("TrustRelationship", NS, "gms-frontend", "Ready")
