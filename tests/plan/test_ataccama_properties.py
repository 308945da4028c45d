"""examples/dpm-dpe-jwt renders the Ataccama ONE properties byte for byte.

The example's own manifests (identities, relationship, template ConfigMap) go through the
operator's real path — ``plan.trust.content`` builds the peers and the render context and
renders with the real sandbox — with fixed, committed test keys (``tests/render/keys``),
so the output is stable and compared with ``tests/render/golden`` byte for byte. DPE is
mid-rollover (current and next key published) and has revoked an old key, so both keys
and the revocation appear in DPM's file.

Set ``TRUSTWIRE_UPDATE_GOLDEN=1`` to rewrite the golden files after an intended change.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import yaml
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from trustwire import pki
from trustwire.model import IdentityRef, ServiceIdentity, TrustRelationship, parse_identity, parse_relationship
from trustwire.plan.jwt import JwtMaterial
from trustwire.plan.publication import Publication
from trustwire.plan.trust import PeerLink, TrustInput, content

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dpm-dpe-jwt"
KEYS = ROOT / "tests" / "render" / "keys"
GOLDEN = ROOT / "tests" / "render" / "golden"
ISSUED = datetime(2026, 1, 1, tzinfo=UTC)
ES256 = pki.JwtAlgorithm.ES256
PREFIX = "ataccama.one.platform.deployments"
GENERATOR = "ataccama.authentication.internal.jwt.generator.key"


def docs(kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        out.extend(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind)
    return out


def key(name: str) -> pki.PrivateKey:
    return pki.load_private_key((KEYS / f"{name}.pem").read_bytes())


def kid(name: str) -> str:
    return pki.public_jwk(key(name), ES256)["kid"]


IDENTITIES = {i.name: i for i in map(parse_identity, docs("ServiceIdentity"))}
(RELATIONSHIP,) = [parse_relationship(d) for d in docs("TrustRelationship")]
#: The keys each identity publishes (signing key first), and the kids it revoked.
PUBLISHED = {"dpm": (["dpm-jwt"], []), "dpe": (["dpe-jwt", "dpe-jwt-next"], ["dpe-jwt-revoked"])}


def template_source(ident: ServiceIdentity) -> dict[str, str | None]:
    (configmap,) = docs("ConfigMap")
    return {t.name: configmap["data"][t.config_map.key] for t in ident.templates if t.config_map}


def publication(name: str) -> Publication:
    ident = IDENTITIES[name]
    keys, revoked = PUBLISHED[name]
    info = {"name": name, "namespace": ident.namespace, "issuer": ident.issuer, "spiffeId": ident.spiffe_id,
            "revokedKids": sorted(kid(r) for r in revoked)}
    return Publication(b"", tuple(pki.public_jwk(key(k), ES256) for k in keys), info)


def render(name: str, relationship: TrustRelationship = RELATIONSHIP) -> str:
    """What the operator writes as ``application.properties`` into ``name``'s trust Secret."""
    ident = IDENTITIES[name]
    me = IdentityRef(ident.namespace, ident.name)
    peer = relationship.peer_of(me)
    assert peer is not None
    jwt = JwtMaterial.of(ES256, key(f"{name}-jwt"), ISSUED)
    links = [PeerLink(relationship, peer, publication(peer.name))]
    trust = content(TrustInput(ident, None, links, None, jwt, "password", template_source(ident), time.monotonic),
                    links)
    assert trust.checks["TemplatesReady"].ok, trust.checks["TemplatesReady"]
    return trust.data["application.properties"].decode()


def content_of(name: str) -> str:
    """The public JWK as Ataccama expects it: compact JSON, sorted keys, no ``d``, no ``use``."""
    public = {k: v for k, v in pki.public_jwk(key(name), ES256).items() if k != "use"}
    return json.dumps(public, sort_keys=True, separators=(",", ":"))


def b64_private(name: str) -> str:
    jwk = pki.private_jwk(key(name), ES256)
    return base64.b64encode(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).decode()


#: Every property each module's file must hold, spelled out independently of the template.
EXPECTED: dict[str, dict[str, str]] = {
    "dpm": {
        GENERATOR: b64_private("dpm-jwt"),
        f"{PREFIX}.dpe.module": "DPE",
        f"{PREFIX}.dpe.environment": "prod",
        f"{PREFIX}.dpe.security.jwt-keys.key.fingerprint": kid("dpe-jwt"),
        f"{PREFIX}.dpe.security.jwt-keys.key.content": content_of("dpe-jwt"),
        f"{PREFIX}.dpe.security.jwt-keys.key.is-revoked": "false",
        f"{PREFIX}.dpe.security.jwt-keys.key-2.fingerprint": kid("dpe-jwt-next"),
        f"{PREFIX}.dpe.security.jwt-keys.key-2.content": content_of("dpe-jwt-next"),
        f"{PREFIX}.dpe.security.jwt-keys.key-2.is-revoked": "false",
        f"{PREFIX}.dpe.security.jwt-keys.revoked-1.fingerprint": kid("dpe-jwt-revoked"),
        f"{PREFIX}.dpe.security.jwt-keys.revoked-1.is-revoked": "true",
        f"{PREFIX}.dpe.security.roles[0]": "IMPERSONATION",
    },
    "dpe": {
        GENERATOR: b64_private("dpe-jwt"),
        f"{PREFIX}.dpm.module": "DPM",
        f"{PREFIX}.dpm.environment": "prod",
        f"{PREFIX}.dpm.security.jwt-keys.key.fingerprint": kid("dpm-jwt"),
        f"{PREFIX}.dpm.security.jwt-keys.key.content": content_of("dpm-jwt"),
        f"{PREFIX}.dpm.security.jwt-keys.key.is-revoked": "false",
        f"{PREFIX}.dpm.security.roles[0]": "IMPERSONATION",
    },
}


def properties(text: str) -> dict[str, str]:
    """The lines of the rendered file as key → value (it uses no escapes, continuations or
    separators other than the first ``=``, which the Java test confirms)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "\\" not in text
    return dict(line.split("=", 1) for line in lines)  # type: ignore[misc]


@pytest.mark.parametrize("module", ["dpm", "dpe"])
def test_the_example_renders_the_golden_file_byte_for_byte(module: str) -> None:
    rendered = render(module)
    golden = GOLDEN / f"{module}-application.properties"
    if os.environ.get("TRUSTWIRE_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered.encode() == golden.read_bytes()


@pytest.mark.parametrize("module", ["dpm", "dpe"])
def test_every_property_has_the_value_the_product_expects(module: str) -> None:
    assert properties(render(module)) == EXPECTED[module]


@pytest.mark.parametrize(("module", "peer"), [("dpm", "dpe"), ("dpe", "dpm")])
def test_generator_key_is_the_private_jwk_whose_thumbprint_the_peer_publishes(module: str, peer: str) -> None:
    mine, theirs = properties(render(module)), properties(render(peer))
    private = jc_jwk.JWK(**json.loads(base64.b64decode(mine[GENERATOR], validate=True)))
    assert private.has_private
    published = theirs[f"{PREFIX}.{module}.security.jwt-keys.key.fingerprint"]
    assert private.thumbprint() == published == kid(f"{module}-jwt")  # RFC 7638, computed by jwcrypto
    # ...and a token it signs verifies with the content the peer's file holds
    token = jc_jws.JWS(json.dumps({"sub": module, "aud": "product-factory"}).encode())
    token.add_signature(private, alg="ES256", protected={"alg": "ES256", "kid": published})
    public = jc_jwk.JWK(**json.loads(theirs[f"{PREFIX}.{module}.security.jwt-keys.key.content"]))
    assert not public.has_private
    claims = pyjwt.decode(token.serialize(compact=True), public.export_to_pem(), algorithms=["ES256"],
                          audience="product-factory")
    assert claims["sub"] == module


def test_a_stranger_token_verifies_with_no_rendered_key() -> None:
    props = properties(render("dpm"))
    forged = pyjwt.encode({"sub": "dpe"}, pki.private_key_to_pem(pki.generate_jwt_key(ES256)), algorithm="ES256")
    for name, value in props.items():
        if name.endswith(".content"):
            signed = jc_jws.JWS()
            signed.deserialize(forged)
            with pytest.raises(jc_jws.InvalidJWSSignature):
                signed.verify(jc_jwk.JWK(**json.loads(value)), alg="ES256")


def test_no_private_member_of_a_peer_and_no_other_private_key_is_rendered() -> None:
    text = render("dpm")
    for other in ("dpe-jwt", "dpe-jwt-next", "dpe-jwt-revoked"):
        d = pki.private_jwk(key(other), ES256)["d"]
        assert d not in text and b64_private(other) not in text
    assert '"d"' not in text  # the only private JWK is base64-encoded: our own generator key
