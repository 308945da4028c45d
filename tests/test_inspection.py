"""``verify_material``: offline checks of an identity's mounted material.

The material is real: the demo runs once per session (the real operator on the API
emulator, ``trustwire demo --output``) and every test starts from exactly the files a
wired pod of ``governance/dgc`` or ``jobs/jobserver`` sees. Each broken variant is made
with real crypto (``trustwire.pki``): a leaf issued in the past by the identity's own CA,
a keystore rebuilt around it, a JWK set holding a private key, and so on. Every test
also checks that no finding message carries key material.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from rich.console import Console

from trustwire import pki
from trustwire.demo.run import run_demo
from trustwire.inspection import Finding, Target, load_directory, verify_material

ALL_CHECKS = ["files", "chain", "private key", "DNS SANs", "SPIFFE ID", "validity", "renewal", "keystore.p12",
              "truststore.p12", "trust bundle", "peer jobs/jobserver", "peers.jwks", "jwt"]


@dataclass(frozen=True)
class Demo:
    root: Path

    def mount(self, namespace: str, identity: str) -> dict[str, bytes]:
        return load_directory(self.root / "mounts" / namespace / identity)

    def object_data(self, namespace: str, kind: str, name: str) -> dict[str, bytes]:
        body = yaml.safe_load((self.root / "objects" / namespace / kind / f"{name}.yaml").read_text())
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
        return {k: str(v).encode() for k, v in (body.get("data") or {}).items()}

    def ca(self, namespace: str, identity: str) -> tuple[x509.Certificate, pki.PrivateKey]:
        data = self.object_data(namespace, "Secret", f"{identity}-trustwire-ca")
        return pki.load_certificates(data["tls.crt"])[0], pki.load_private_key(data["tls.key"])


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One real ``trustwire demo --output`` run for the whole session (~2 s)."""
    root = tmp_path_factory.mktemp("demo")
    code = asyncio.run(run_demo(output=root, console=Console(file=io.StringIO(), width=200)))
    assert code == 0, "the demo itself failed"
    return Demo(root)


@pytest.fixture
def dgc(demo: Demo) -> dict[str, bytes]:
    return demo.mount("governance", "dgc")


def now() -> datetime:
    return datetime.now(UTC)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def failed(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.message for f in findings if not f.ok}


def assert_no_key_material(findings: list[Finding], *materials: Mapping[str, bytes]) -> None:
    """No private key, password or private JWK member appears in any message."""
    secrets: list[str] = []
    for files in materials:
        for name in ("keystore.password", "truststore.password"):
            if files.get(name):
                secrets.append(files[name].decode().strip())
        for name in ("tls.key", "jwt.key"):
            if files.get(name):
                secrets.extend(line for line in files[name].decode().splitlines()
                               if line and not line.startswith("-----"))
        if files.get("jwt.jwk"):
            jwk = json.loads(files["jwt.jwk"])
            secrets.extend(str(v) for k, v in jwk.items() if k in ("d", "p", "q", "dp", "dq", "qi"))
    for finding in findings:
        assert "PRIVATE KEY" not in finding.message
        for secret in secrets:
            assert secret not in finding.message, f"{finding.check} leaks key material"


# --------------------------------------------------------------------------------------
# The operator's own material passes every check
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("namespace", "identity", "peer"), [("governance", "dgc", "jobs/jobserver"),
                                                              ("jobs", "jobserver", "governance/dgc")])
def test_demo_material_passes_every_check(demo: Demo, namespace: str, identity: str, peer: str) -> None:
    files = demo.mount(namespace, identity)
    findings = verify_material(files, now=now(), target=Target(identity=identity, namespace=namespace))
    assert failed(findings) == {}
    expected = [c if not c.startswith("peer ") else f"peer {peer}" for c in ALL_CHECKS]
    assert [f.check for f in findings] == expected
    checks = by_check(findings)
    assert f"{identity}.{namespace}.svc" in checks["DNS SANs"].message
    assert checks["SPIFFE ID"].message == f"spiffe://cluster.local/ns/{namespace}/sid/{identity}"
    assert_no_key_material(findings, files)


def test_public_configmap_checks(demo: Demo, dgc: dict[str, bytes]) -> None:
    public = demo.object_data("governance", "ConfigMap", "dgc-trustwire-public")
    checks = by_check(verify_material(dgc, now=now(), public=public))
    assert checks["public"].ok, checks["public"].message

    other = demo.object_data("jobs", "ConfigMap", "jobserver-trustwire-public")
    problems = failed(verify_material(dgc, now=now(), public=other))
    assert "does not publish our CA" in problems["public"]
    assert "does not publish our kid" in problems["public"]
    assert "names spiffe://cluster.local/ns/jobs/sid/jobserver" in problems["public"]

    leaky = dict(public, **{"jwks.json": json.dumps({"keys": [json.loads(dgc["jwt.jwk"])]}).encode()})
    findings = verify_material(dgc, now=now(), public=leaky)
    assert "private key members" in failed(findings)["public"]
    assert_no_key_material(findings, dgc)


def test_directory_loader_reads_a_projected_volume(tmp_path: Path, dgc: dict[str, bytes]) -> None:
    """Kubelet lays keys out as symlinks into a timestamped ``..data`` directory."""
    data = tmp_path / "..2026_11_22_11_15_34.123"
    data.mkdir()
    for name, content in dgc.items():
        (data / name).write_bytes(content)
    os.symlink(data.name, tmp_path / "..data")
    for name in dgc:
        os.symlink(f"..data/{name}", tmp_path / name)
    assert load_directory(tmp_path) == dgc


# --------------------------------------------------------------------------------------
# Broken material: each problem is found and named
# --------------------------------------------------------------------------------------
def test_missing_peer_ca_in_the_trust_bundle(demo: Demo, dgc: dict[str, bytes]) -> None:
    peer_ca = demo.mount("jobs", "jobserver")["ca.crt"]
    fingerprint = pki.fingerprint_sha256(pki.load_certificates(peer_ca)[0])
    bundle = [c for c in pki.load_certificates(dgc["trust-bundle.pem"])
              if pki.fingerprint_sha256(c) != fingerprint]
    assert bundle == []  # dgc has exactly one peer
    files = dict(dgc, **{"trust-bundle.pem": b""})
    findings = verify_material(files, now=now())
    problems = failed(findings)
    assert fingerprint[:16] in problems["peer jobs/jobserver"]
    assert "not in trust-bundle.pem" in problems["peer jobs/jobserver"]
    # the truststore still holds it: the two disagree
    assert "holds 1 CA(s) not in trust-bundle.pem" in problems["truststore.p12"]
    assert set(problems) == {"peer jobs/jobserver", "truststore.p12"}
    assert_no_key_material(findings, files)


def test_expired_leaf(demo: Demo, dgc: dict[str, bytes]) -> None:
    ca_cert, ca_key = demo.ca("governance", "dgc")
    key = pki.load_private_key(dgc["tls.key"])
    current = pki.load_certificates(dgc["tls.crt"])[0]
    issued = now() - timedelta(days=40)
    # The identity's CA is minutes old; the same CA key and subject, backdated, can sign in the past.
    backdated_ca = pki.create_ca(ca_key, common_name=pki.subject_common_name(ca_cert) or "",
                                 now=issued - timedelta(days=1), lifetime=timedelta(days=365))
    assert backdated_ca.subject == ca_cert.subject
    expired = pki.create_leaf(backdated_ca, ca_key, key.public_key(), common_name="dgc",
                              dns_names=pki.dns_sans(current), uri_sans=pki.uri_sans(current),
                              now=issued, lifetime=timedelta(days=30))
    password = dgc["keystore.password"].decode()
    files = dict(dgc, **{
        "tls.crt": pki.cert_to_pem(expired) + pki.cert_to_pem(ca_cert),
        "keystore.p12": pki.pkcs12_keystore(key, expired, [ca_cert], password),
    })
    findings = verify_material(files, now=now())
    problems = failed(findings)
    assert set(problems) == {"validity", "renewal"}
    assert "the leaf expired at" in problems["validity"]
    assert "10 days ago" in problems["validity"]
    assert "has not been renewed" in problems["renewal"]
    assert_no_key_material(findings, files)


def test_leaf_past_its_renewal_time(dgc: dict[str, bytes]) -> None:
    leaf = pki.load_certificates(dgc["tls.crt"])[0]
    late = pki.not_after(leaf) - timedelta(days=2)  # default renewBefore is 10 days
    problems = failed(verify_material(dgc, now=late))
    assert set(problems) == {"renewal"}
    # a shorter renewBefore, or the status' renewalTime, moves the deadline
    assert failed(verify_material(dgc, now=late, target=Target(renew_before=timedelta(hours=24)))) == {}
    assert failed(verify_material(dgc, now=late, target=Target(renewal_time=late + timedelta(hours=1)))) == {}


def test_wrong_keystore_password(dgc: dict[str, bytes]) -> None:
    files = dict(dgc, **{"keystore.password": b"not-the-password"})
    findings = verify_material(files, now=now())
    assert failed(findings) == {
        "keystore.p12": "keystore.p12 does not open with keystore.password (wrong password or corrupt file)"}
    assert_no_key_material(findings, files, dgc)


def test_tampered_jwt_kid(dgc: dict[str, bytes]) -> None:
    real = dgc["jwt.kid"].decode().strip()
    files = dict(dgc, **{"jwt.kid": b"forged-kid"})
    findings = verify_material(files, now=now())
    problems = failed(findings)
    assert set(problems) == {"jwt"}
    assert "jwt.kid forged-kid is not the RFC 7638 thumbprint of jwt.jwk" in problems["jwt"]
    assert real in problems["jwt"]
    assert_no_key_material(findings, files)


def test_jwt_key_that_does_not_match_its_jwk(demo: Demo, dgc: dict[str, bytes]) -> None:
    other = demo.mount("jobs", "jobserver")
    files = dict(dgc, **{"jwt.key": other["jwt.key"]})
    findings = verify_material(files, now=now())
    assert "jwt.key is not the key of jwt.jwk" in failed(findings)["jwt"]
    assert_no_key_material(findings, files, other)


def _hmac_files(dgc: dict[str, bytes], algorithm: pki.HmacAlgorithm) -> dict[str, bytes]:
    key = pki.generate_hmac_key(algorithm)
    jwk = pki.hmac_jwk(key, algorithm)
    return dict(dgc, **{"jwt.key": key, "jwt.jwk": json.dumps(jwk).encode(), "jwt.kid": jwk["kid"].encode()})


@pytest.mark.parametrize("algorithm", list(pki.HmacAlgorithm))
def test_a_symmetric_jwt_key(dgc: dict[str, bytes], algorithm: pki.HmacAlgorithm) -> None:
    files = _hmac_files(dgc, algorithm)
    findings = verify_material(files, now=now())
    assert failed(findings) == {}
    assert f"({algorithm}, symmetric)" in by_check(findings)["jwt"].message
    assert_no_key_material(findings, files)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda f: {"jwt.key": f["jwt.key"][:-1]}, "jwt.key is not a HS256 key"),
    (lambda f: {"jwt.key": pki.generate_hmac_key(pki.HmacAlgorithm.HS256)}, "jwt.key is not the key of jwt.jwk"),
    (lambda f: {"jwt.kid": b"forged"}, "jwt.key is not the key of jwt.jwk and jwt.kid"),
    (lambda f: {"jwt.jwk": f["jwt.jwk"].replace(b'"HS256"', b'"HS999"')}, "HS256, HS384 or HS512 expected"),
])
def test_a_damaged_symmetric_jwt_key(dgc: dict[str, bytes], edit: Any, says: str) -> None:
    files = _hmac_files(dgc, pki.HmacAlgorithm.HS256)
    files |= edit(files)
    findings = verify_material(files, now=now())
    assert set(failed(findings)) == {"jwt"} and says in failed(findings)["jwt"]
    assert_no_key_material(findings, files)


def test_private_members_in_peers_jwks(demo: Demo, dgc: dict[str, bytes]) -> None:
    peer = demo.mount("jobs", "jobserver")
    leaked = json.loads(peer["jwt.jwk"])  # the peer's *private* JWK, same kid as its public one
    files = dict(dgc, **{"peers.jwks": json.dumps({"keys": [leaked]}).encode()})
    findings = verify_material(files, now=now())
    problems = failed(findings)
    assert set(problems) == {"peers.jwks"}
    assert f"private key members for kid(s) {leaked['kid']}" in problems["peers.jwks"]
    assert_no_key_material(findings, files, peer)


def test_peer_kid_missing_from_peers_jwks(dgc: dict[str, bytes]) -> None:
    kid = json.loads(dgc["peers.json"])[0]["kids"][0]
    files = dict(dgc, **{"peers.jwks": b'{"keys": []}'})
    problems = failed(verify_material(files, now=now()))
    assert problems == {"peer jobs/jobserver": f"kid(s) {kid} missing from peers.jwks"}


def test_revoked_or_unclaimed_kid_still_trusted(dgc: dict[str, bytes]) -> None:
    peers = json.loads(dgc["peers.json"])
    kid = peers[0]["kids"][0]
    # the peer revoked its key, peers.json says so, but peers.jwks still carries it
    peers[0]["kids"], peers[0]["revokedKids"] = [], [kid]
    problems = failed(verify_material(dict(dgc, **{"peers.json": json.dumps(peers).encode()}), now=now()))
    assert problems["peer jobs/jobserver"] == f"revoked kid(s) {kid} still in peers.jwks"
    assert problems["peers.jwks"] == \
        f"peers.jwks holds kid(s) {kid} that no peer in peers.json sends tokens with"


def test_key_that_does_not_match_the_leaf(demo: Demo, dgc: dict[str, bytes]) -> None:
    other = demo.mount("jobs", "jobserver")
    files = dict(dgc, **{"tls.key": other["tls.key"]})
    findings = verify_material(files, now=now())
    problems = failed(findings)
    assert problems["private key"] == "tls.key does not match the leaf certificate in tls.crt"
    assert problems["keystore.p12"] == "the private key in keystore.p12 is not tls.key"
    assert_no_key_material(findings, files, other)


def test_leaf_from_another_ca(demo: Demo, dgc: dict[str, bytes]) -> None:
    files = dict(dgc, **{"ca.crt": demo.mount("jobs", "jobserver")["ca.crt"]})
    problems = failed(verify_material(files, now=now()))
    assert "is not signed by any CA in ca.crt" in problems["chain"]


def test_material_for_another_identity_or_namespace(dgc: dict[str, bytes]) -> None:
    problems = failed(verify_material(dgc, now=now(), target=Target(identity="dgc", namespace="jobs")))
    assert problems["SPIFFE ID"] == \
        "spiffe://cluster.local/ns/governance/sid/dgc: namespace is governance, expected jobs"
    assert "dgc.jobs.svc" in problems["DNS SANs"]
    problems = failed(verify_material(dgc, now=now(), target=Target(identity="jobserver")))
    assert set(problems) == {"SPIFFE ID"}
    assert "name is dgc, expected jobserver" in problems["SPIFFE ID"]


def test_missing_san_from_the_status(dgc: dict[str, bytes]) -> None:
    target = Target(dns_names=["dgc", "dgc.governance.svc", "dgc.example.com"])
    assert failed(verify_material(dgc, now=now(), target=target)) == {
        "DNS SANs": "the leaf lacks DNS name(s) dgc.example.com"}


def test_truststore_with_an_extra_ca(demo: Demo, dgc: dict[str, bytes]) -> None:
    own_ca, _ = demo.ca("governance", "dgc")
    bundle = pki.load_certificates(dgc["trust-bundle.pem"])
    store = pki.pkcs12_truststore([*bundle, own_ca], dgc["truststore.password"].decode())
    problems = failed(verify_material(dict(dgc, **{"truststore.p12": store}), now=now()))
    assert set(problems) == {"truststore.p12"}
    assert "holds 1 CA(s) not in trust-bundle.pem" in problems["truststore.p12"]


def test_stray_ca_in_the_trust_bundle(demo: Demo, dgc: dict[str, bytes]) -> None:
    """Trust nobody accounts for — e.g. a removed relationship's CA left behind — is a failure."""
    own_ca, _ = demo.ca("governance", "dgc")
    bundle = [*pki.load_certificates(dgc["trust-bundle.pem"]), own_ca]
    password = dgc["truststore.password"].decode()
    files = dict(dgc, **{"trust-bundle.pem": pki.certs_to_pem(bundle),
                         "truststore.p12": pki.pkcs12_truststore(bundle, password)})
    problems = failed(verify_material(files, now=now()))
    assert set(problems) == {"trust bundle"}
    assert "trusts 1 CA(s) no mTLS peer in peers.json accounts for" in problems["trust bundle"]


def test_jks_stores(demo: Demo, dgc: dict[str, bytes]) -> None:
    """``keystores.formats: [JKS]`` material is checked the same way."""
    key = pki.load_private_key(dgc["tls.key"])
    chain = pki.load_certificates(dgc["tls.crt"])
    bundle = pki.load_certificates(dgc["trust-bundle.pem"])
    files = {k: v for k, v in dgc.items() if not k.endswith(".p12")}
    files["keystore.jks"] = pki.jks_keystore(key, chain[0], chain[1:], dgc["keystore.password"].decode())
    files["truststore.jks"] = pki.jks_truststore(bundle, dgc["truststore.password"].decode())
    checks = by_check(verify_material(files, now=now()))
    assert checks["keystore.jks"].ok and checks["truststore.jks"].ok, checks
    assert "keystore.p12" not in checks

    wrong = dict(files, **{"keystore.password": b"nope-nope"})
    assert "keystore.jks does not open" in failed(verify_material(wrong, now=now()))["keystore.jks"]
    other_ca, _ = demo.ca("governance", "dgc")
    files["truststore.jks"] = pki.jks_truststore([other_ca], dgc["truststore.password"].decode())
    problem = failed(verify_material(files, now=now()))["truststore.jks"]
    assert "lacks 1 CA(s)" in problem and "holds 1 CA(s) not in trust-bundle.pem" in problem


def test_missing_and_garbled_files_are_findings_not_exceptions(dgc: dict[str, bytes]) -> None:
    files = {k: v for k, v in dgc.items() if k not in ("peers.json", "jwt.kid")}
    files["tls.crt"] = b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
    files["peers.jwks"] = b"{not json"
    problems = failed(verify_material(files, now=now()))
    assert problems["files"] == "missing: peers.json, jwt.kid"
    assert problems["chain"].startswith("tls.crt:")
    assert problems["peers.jwks"] == "peers.jwks is not valid JSON"
    assert "jwt.kid or jwt.key is missing" in problems["jwt"]
    assert verify_material({}, now=now())[0] == Finding(
        "files", False, "missing: tls.crt, tls.key, ca.crt, trust-bundle.pem, peers.json, peers.jwks")


def test_identity_without_peers_or_jwt(dgc: dict[str, bytes]) -> None:
    """No relationship yet: empty bundle, no truststore, empty peers; JWT disabled: no jwt.* files."""
    files = {k: v for k, v in dgc.items() if not k.startswith(("jwt.", "truststore."))}
    files.update({"trust-bundle.pem": b"", "peers.json": b"[]", "peers.jwks": b'{"keys": []}'})
    checks = by_check(verify_material(files, now=now()))
    assert [c for c, f in checks.items() if not f.ok] == []
    assert checks["jwt"].message == "JWT disabled (no jwt.* files)"
    assert checks["trust bundle"].message.startswith("0 peer CA(s)")


def test_now_must_be_timezone_aware(dgc: dict[str, bytes]) -> None:
    with pytest.raises(pki.PKIError):
        verify_material(dgc, now=datetime.now())  # naive: the point of the test
