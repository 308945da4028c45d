"""A 1,000-peer hub's trust material, split across Secrets, read by software nobody here wrote.

The hub's plan is written out exactly as its pod's projected volume shows it: the keys of
every Secret the volume projects, in one directory. Then ``openssl verify`` checks a
peer's leaf against ``trust-bundle.pem``, Java's ``keytool`` lists ``truststore.p12`` with
the password in ``truststore.password``, and jwcrypto verifies a peer's token against
``peers.jwks``. Skipped, with the reason, only when ``openssl``/``keytool`` are missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt

from tests.interop.conftest import now_utc, require_tool, run
from trustwire import names, pki
from trustwire.model import IdentityRef, parse_identity, parse_relationship
from trustwire.pki import JwtAlgorithm, KeyAlgorithm
from trustwire.plan.identity import IdentityObservation, IdentityPlan, plan_identity
from trustwire.plan.packing import SECRET_DATA_LIMIT
from trustwire.plan.publication import Publication
from trustwire.plan.trust import PeerLink

pytestmark = pytest.mark.interop

PEERS = 1000
NS = "gateway"


@dataclass(frozen=True)
class Spoke:
    name: str
    ca: x509.Certificate
    ca_key: pki.PrivateKey
    jwt_key: pki.PrivateKey
    jwk: dict[str, str]

    def publication(self) -> Publication:
        info = {"name": self.name, "namespace": NS, "issuer": f"https://{self.name}.example",
                "spiffeId": f"spiffe://cluster.local/ns/{NS}/sid/{self.name}", "kids": [self.jwk["kid"]]}
        return Publication(pki.cert_to_pem(self.ca), (self.jwk,), info)


@dataclass(frozen=True)
class Hub:
    plan: IdentityPlan
    spokes: list[Spoke]
    volume: Path


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": spec}


def spoke(name: str) -> Spoke:
    ca_key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name=f"{name}.{NS} CA", now=now_utc(), lifetime=timedelta(days=30))
    jwt_key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
    return Spoke(name, ca, ca_key, jwt_key, pki.public_jwk(jwt_key, JwtAlgorithm.ES256))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    ident = parse_identity(body("ServiceIdentity", "gateway", {"keystores": {"formats": ["PKCS12", "JKS"]}}))
    spokes = [spoke(f"service-{i:04d}") for i in range(PEERS)]
    links = []
    for s in spokes:
        between = [{"identity": "gateway"}, {"identity": s.name}]
        rel = parse_relationship(body("TrustRelationship", f"gateway-{s.name}", {"between": between}))
        links.append(PeerLink(rel, IdentityRef(NS, s.name), s.publication()))
    plan = plan_identity(IdentityObservation(identity=ident, now=now_utc(), links=tuple(links)))
    volume = tmp_path_factory.mktemp("hub-volume")
    objects = {o.name: o for o in plan.objects}
    for name in (names.credentials_secret("gateway"), *plan.trust_secrets):  # as the projected volume lists them
        for file, value in objects[name].data.items():
            assert not (volume / file).exists(), f"{file} is in two Secrets"
            (volume / file).write_bytes(value)
    return Hub(plan, spokes, volume)


def test_the_hub_is_ready_split_within_what_a_secret_holds_with_the_usual_files(hub: Hub) -> None:
    assert hub.plan.checks["TrustReady"].ok and hub.plan.status.to_dict()["peerCount"] == PEERS
    assert len(hub.plan.trust_secrets) > 1
    sizes = {o.name: sum(len(v) for v in o.data.values()) for o in hub.plan.objects}
    assert all(size <= SECRET_DATA_LIMIT for size in sizes.values()), sizes
    assert sum(sizes[n] for n in hub.plan.trust_secrets) > 2 * SECRET_DATA_LIMIT
    files = {p.name for p in hub.volume.iterdir()}
    # no JWT key rotating, no enrollment CA (spec.enrollment is off)
    assert files == {*names.TRUST_KEYS, *names.CREDENTIALS_KEYS - {"jwt-next.key", names.ENROLLMENT_CA_KEY}}


def test_openssl_verifies_any_peers_leaf_against_the_bundle_and_no_outsider(hub: Hub, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    for s in (hub.spokes[0], hub.spokes[-1]):
        key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
        leaf = pki.create_leaf(s.ca, s.ca_key, key.public_key(), common_name=s.name, dns_names=[f"{s.name}.test"],
                               uri_sans=[], now=now_utc(), lifetime=timedelta(hours=1))
        (tmp_path / "leaf.pem").write_bytes(pki.cert_to_pem(leaf))
        result = run([openssl, "verify", "-CAfile", str(hub.volume / "trust-bundle.pem"), str(tmp_path / "leaf.pem")])
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr
    outsider = spoke("outsider")
    key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
    leaf = pki.create_leaf(outsider.ca, outsider.ca_key, key.public_key(), common_name="outsider",
                           dns_names=["outsider.test"], uri_sans=[], now=now_utc(), lifetime=timedelta(hours=1))
    (tmp_path / "outsider.pem").write_bytes(pki.cert_to_pem(leaf))
    refused = run([openssl, "verify", "-CAfile", str(hub.volume / "trust-bundle.pem"), str(tmp_path / "outsider.pem")])
    assert refused.returncode != 0


@pytest.mark.parametrize(("file", "storetype"), [("truststore.p12", "PKCS12"), ("truststore.jks", "JKS")])
def test_keytool_lists_every_peers_ca_in_the_truststore(hub: Hub, file: str, storetype: str) -> None:
    keytool = require_tool("keytool")
    password = (hub.volume / "truststore.password").read_text()
    result = run([keytool, "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-list", "-rfc",
                  "-keystore", str(hub.volume / file), "-storepass", password, "-storetype", storetype],
                 timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Your keystore contains {PEERS:,} entries" in result.stdout
    listed = {pki.fingerprint_sha256(c) for c in pki.load_certificates(
        "\n".join(re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", result.stdout,
                             flags=re.S)).encode())}
    assert listed == {pki.fingerprint_sha256(s.ca) for s in hub.spokes}


def test_jwcrypto_verifies_any_peers_token_against_peers_jwks(hub: Hub) -> None:
    keyset = jwc_jwk.JWKSet.from_json((hub.volume / "peers.jwks").read_text())
    assert len(json.loads((hub.volume / "peers.jwks").read_text())["keys"]) == PEERS
    for s in (hub.spokes[0], hub.spokes[-1]):
        token = pki.sign_token(s.jwt_key, JwtAlgorithm.ES256, s.jwk["kid"],
                               {"iss": f"https://{s.name}.example", "aud": "gateway"}, now=now_utc())
        verified = jwc_jwt.JWT(jwt=token, key=keyset, check_claims={"iss": f"https://{s.name}.example",
                                                                     "aud": "gateway", "exp": None})
        assert json.loads(verified.claims)["iss"] == f"https://{s.name}.example"
