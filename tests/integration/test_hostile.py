"""Garbage in managed Secrets and hostile spec sizes, through the real operator and API emulator.

Every corruption must be *detected and repaired* — afterwards the material verifies
(leaf signed by the CA, key matches, ``jwt.kid`` = thumbprint of ``jwt.key``, keystore
holds the leaf) and status agrees with the Secrets — with a Warning Event naming what
was repaired; or it must be reported as Stalled with the reason. Never silently trusted.
Material is verified with ``cryptography``/``jwcrypto`` (``tests/integration/faults.py``),
not with the operator's own ``pki``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.faults import (
    bundle_fingerprints,
    fingerprint,
    history_versions,
    jwk_kid,
    live_data,
    live_object,
    material_problems,
    secret_value,
    status_problems,
)
from tests.integration.harness import Cluster, condition, identity, relationship
from trustwire import names, pki
from trustwire.k8s.client import CONFIGMAPS, SECRETS

pytestmark = pytest.mark.integration

NS = "team"
CA, CREDS, TRUST = names.ca_secret("alpha"), names.credentials_secret("alpha"), names.trust_secret("alpha")


# ======================================================================================
# Helpers
# ======================================================================================
async def _issue_pair(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", NS))
    await cluster.apply(identity("beta", NS))
    await cluster.apply(relationship("alpha-beta", NS, ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", NS, "alpha-beta", "Ready")
    await cluster.wait_condition("ServiceIdentity", NS, "alpha", "Ready")
    await cluster.settle()


def _raw(body: dict[str, Any] | None, key: str) -> bytes | None:
    """A Secret value as stored; None when absent or not base64 at all."""
    value = ((body or {}).get("data") or {}).get(key)
    try:
        return base64.b64decode(value, validate=True) if value is not None else None
    except (ValueError, TypeError):
        return None


async def _converged(cluster: Cluster, name: str = "alpha", *, timeout: float = 20.0,
                     ) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]]:
    """Until the identity's material verifies and its status agrees; returns (ca, creds, status)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    problems: list[str] = []
    while loop.time() < deadline:
        ca = live_data(cluster.emulator, NS, names.ca_secret(name))
        creds = live_data(cluster.emulator, NS, names.credentials_secret(name))
        body = live_object(cluster.emulator, "serviceidentities", NS, name) or {}
        try:
            problems = material_problems(ca.get("tls.crt", b""), creds, ca_key_pem=ca.get("tls.key"))
            if not problems:
                problems = status_problems(body.get("status") or {}, ca["tls.crt"], creds)
        except Exception as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        ready = condition(body, "Ready")
        if not problems and ready is not None and ready["status"] == "True":
            return ca, creds, body["status"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"identity {name} did not converge to verified material: {problems}")


def _new_warnings(cluster: Cluster, before: list[dict[str, Any]], name: str = "alpha") -> list[dict[str, Any]]:
    seen = {e["metadata"]["name"] for e in before}
    return [e for e in (await cluster.events(NS, name)) if e["metadata"]["name"] not in seen and e.get("type") == "Warning"]


async def _wait_warning(cluster: Cluster, before: list[dict[str, Any]], word: str, *, name: str = "alpha",
                        timeout: float = 10.0) -> dict[str, Any]:
    """A new Warning Event on the identity whose reason names ``word`` (e.g. ``Certificate``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for event in _new_warnings(cluster, before, name):
            if word.lower() in event["reason"].lower():
                return event
        await asyncio.sleep(0.1)
    got = [(e.get("type"), e["reason"], e["message"]) for e in (await cluster.events(NS, name))
           if e["metadata"]["name"] not in {b["metadata"]["name"] for b in before}]
    raise AssertionError(f"no Warning Event naming {word!r} after the corruption; new events: {got}")


async def _corrupt(cluster: Cluster, secret: str, change: Callable[[dict[str, bytes]], dict[str, bytes]],
                   ) -> list[dict[str, Any]]:
    """Write ``change(current data)`` into a managed Secret; returns the events seen before."""
    before = (await cluster.events(NS, "alpha"))
    current = await cluster.data("Secret", NS, secret)
    await cluster.patch_secret_data(NS, secret, change(current))
    return before


async def _garbage(cluster: Cluster, secret: str, key: str, text: str = "%%% not base64 !!!") -> list[dict[str, Any]]:
    before = (await cluster.events(NS, "alpha"))
    await cluster.client.merge_patch(SECRETS, NS, secret, {"data": {key: text}})
    return before


def _other_ec_key() -> bytes:
    return pki.private_key_to_pem(pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256))


# ======================================================================================
# Leaf certificate and key
# ======================================================================================
async def test_truncated_certificate_pem_is_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    ca_before = await cluster.data("Secret", NS, CA)
    before = await _corrupt(cluster, CREDS, lambda d: {"tls.crt": d["tls.crt"][: len(d["tls.crt"]) // 2]})
    await _wait_warning(cluster, before, "Certificate")
    ca, _, _ = await _converged(cluster)
    assert ca == ca_before, "a broken leaf must be re-issued from the same CA"


async def test_key_that_does_not_match_the_certificate_is_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    foreign = _other_ec_key()
    before = await _corrupt(cluster, CREDS, lambda d: {"tls.key": foreign})
    event = await _wait_warning(cluster, before, "Certificate")
    assert "key" in event["message"].lower(), event
    _, creds, _ = await _converged(cluster)
    assert creds["tls.key"] != foreign


async def test_swapped_certificate_and_ca_files_are_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    before = await _corrupt(cluster, CREDS, lambda d: {"tls.crt": d["ca.crt"], "ca.crt": d["tls.crt"]})
    await _wait_warning(cluster, before, "Certificate")
    _, creds, _ = await _converged(cluster)
    assert len(pki.load_certificates(creds["ca.crt"])) == 1, "ca.crt must hold only the CA again"


async def test_swapped_tls_key_and_jwt_key_leaf_is_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    before = await _corrupt(cluster, CREDS, lambda d: {"tls.key": d["jwt.key"], "jwt.key": d["tls.key"]})
    await _wait_warning(cluster, before, "Certificate")
    _, creds, _ = await _converged(cluster)
    assert creds["jwt.kid"].decode() == jwk_kid(creds["jwt.key"])


async def test_swapped_tls_key_and_jwt_key_is_not_silently_adopted_as_the_jwt_key(cluster: Cluster) -> None:
    """After the swap ``jwt.key`` holds the former TLS key while ``jwt.kid``/``jwt.jwk`` still
    describe the real JWT key — detectably inconsistent. Adopting the TLS key as the signing
    key (and publishing a new kid to every peer) without a word is "silently trusted"."""
    await _issue_pair(cluster)
    old = await cluster.data("Secret", NS, CREDS)
    before = await _corrupt(cluster, CREDS, lambda d: {"tls.key": d["jwt.key"], "jwt.key": d["tls.key"]})
    await _converged(cluster)
    await cluster.settle()
    _, creds, _ = await _converged(cluster)
    if creds["jwt.key"] != old["jwt.key"]:  # the JWT key changed: that must be said
        await _wait_warning(cluster, before, "Jwt", timeout=2.0)
    assert creds["jwt.key"] != old["tls.key"], "the former TLS key must not become the JWT signing key"


async def test_ca_private_key_planted_in_jwt_key_is_not_adopted(cluster: Cluster) -> None:
    """``jwt.key`` (mounted into every workload, with its private JWK) replaced by the CA's
    private key (never mounted, DESIGN §3). The operator must not adopt it as the signing key."""
    await _issue_pair(cluster)
    ca = await cluster.data("Secret", NS, CA)
    before = await _corrupt(cluster, CREDS, lambda d: {"jwt.key": ca["tls.key"]})
    await asyncio.sleep(0.5)
    await cluster.settle()
    _, creds, status = await _converged(cluster)
    assert creds["jwt.key"] != ca["tls.key"], "the CA private key is now the JWT signing key, mounted in workloads"
    assert status["jwt"]["kid"] != jwk_kid(ca["tls.key"])
    await _wait_warning(cluster, before, "Jwt", timeout=2.0)


# ======================================================================================
# The CA
# ======================================================================================
async def test_ca_secret_holding_a_non_ca_certificate_is_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    old_ca = await cluster.data("Secret", NS, CA)
    leaf = await cluster.data("Secret", NS, CREDS)
    before = await _corrupt(cluster, CA, lambda d: {"tls.crt": leaf["tls.crt"], "tls.key": leaf["tls.key"]})
    await _wait_warning(cluster, before, "CA")
    ca, _, _ = await _converged(cluster)
    new_fp = fingerprint(pki.load_certificates(ca["tls.crt"])[0])
    assert new_fp != fingerprint(pki.load_certificates(old_ca["tls.crt"])[0])
    assert pki.is_ca(pki.load_certificates(ca["tls.crt"])[0])
    # the peer trusts the repaired CA, and never the leaf that was planted as a CA
    planted = fingerprint(pki.load_certificates(leaf["tls.crt"])[0])

    async def peer_has_new_ca() -> bool:
        bundle = bundle_fingerprints(live_data(cluster.emulator, NS, names.trust_secret("beta")))
        return new_fp in bundle and planted not in bundle

    await _eventually(peer_has_new_ca, "beta's trust bundle to hold alpha's repaired CA")


async def test_foreign_ca_in_the_public_configmap_never_reaches_a_peers_trust_bundle(cluster: Cluster) -> None:
    """The public ConfigMap is the identity's publication for outsiders; ConfigMap write access
    is commonly granted far more widely than Secret access. A CA written into it by someone
    else must not be distributed into peers' truststores (not even until the next repair)."""
    from datetime import UTC, datetime, timedelta

    await _issue_pair(cluster)
    foreign_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    foreign = pki.create_ca(foreign_key, common_name="attacker", now=datetime.now(UTC), lifetime=timedelta(days=30))
    await cluster.client.merge_patch(CONFIGMAPS, NS, names.public_configmap("alpha"),
                                     {"data": {"ca.crt": pki.cert_to_pem(foreign).decode()}})
    await asyncio.sleep(1.0)
    await cluster.settle()
    await _converged(cluster)
    public = await cluster.data("ConfigMap", NS, names.public_configmap("alpha"))
    assert fingerprint(pki.load_certificates(public["ca.crt"])[0]) != fingerprint(foreign), "not restored"
    planted = fingerprint(foreign)
    for version in history_versions(cluster.emulator, "secrets", NS, names.trust_secret("beta")):
        pem = secret_value(version, "trust-bundle.pem") or b""
        if pem.strip():
            assert planted not in {fingerprint(c) for c in pki.load_certificates(pem)}, \
                "beta's trust bundle trusted a CA that someone wrote into alpha's public ConfigMap"


async def test_foreign_jwk_in_the_public_configmap_never_reaches_a_peers_jwks(cluster: Cluster) -> None:
    """The same for JWT keys: a key someone adds to alpha's published ``jwks.json`` must never
    become a key that beta accepts tokens from (``peers.jwks``)."""
    await _issue_pair(cluster)
    foreign = pki.public_jwk(pki.generate_jwt_key(pki.JwtAlgorithm.ES256), pki.JwtAlgorithm.ES256)
    public = await cluster.data("ConfigMap", NS, names.public_configmap("alpha"))
    jwks = json.loads(public["jwks.json"])
    jwks["keys"].append(foreign)
    await cluster.client.merge_patch(CONFIGMAPS, NS, names.public_configmap("alpha"),
                                     {"data": {"jwks.json": json.dumps(jwks)}})
    await asyncio.sleep(1.0)
    await cluster.settle()
    await _converged(cluster)
    for version in history_versions(cluster.emulator, "secrets", NS, names.trust_secret("beta")):
        peers_jwks = secret_value(version, "peers.jwks") or b'{"keys": []}'
        kids = [k.get("kid") for k in json.loads(peers_jwks).get("keys", [])]
        assert foreign["kid"] not in kids, "beta accepted tokens signed by a key written into alpha's ConfigMap"


async def test_base64_garbage_in_the_ca_secret_is_repaired_with_a_warning(cluster: Cluster) -> None:
    await _issue_pair(cluster)
    before = await _garbage(cluster, CA, "tls.crt")
    await _wait_warning(cluster, before, "CA")
    await _converged(cluster)


async def test_bring_your_own_ca_that_is_not_a_ca_is_stalled_and_never_used(cluster: Cluster) -> None:
    key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    real_ca_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    real_ca = pki.create_ca(real_ca_key, common_name="someone", now=now, lifetime=timedelta(days=30))
    not_a_ca = pki.create_leaf(real_ca, real_ca_key, key.public_key(), common_name="leaf", dns_names=["leaf"],
                               uri_sans=[], now=now, lifetime=timedelta(days=10))
    await cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                         "metadata": {"name": "my-ca", "namespace": NS},
                         "data": {"tls.crt": base64.b64encode(pki.cert_to_pem(not_a_ca)).decode(),
                                  "tls.key": base64.b64encode(pki.private_key_to_pem(key)).decode()}})
    await cluster.apply(identity("alpha", NS, ca={"source": "Secret", "secretRef": {"name": "my-ca"}}))
    body = await cluster.wait_condition("ServiceIdentity", NS, "alpha", "CAReady", "False", reason="CASecretInvalid")
    assert "CA" in condition(body, "CAReady")["message"]  # type: ignore[index]
    assert condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    assert condition(body, "Ready")["status"] == "False"  # type: ignore[index]
    await cluster.settle()
    creds = await cluster.data("Secret", NS, CREDS)
    assert "tls.crt" not in creds, "nothing may be issued from a certificate that is not a CA"


# ======================================================================================
# base64 garbage in the credentials Secret
# ======================================================================================
@pytest.mark.parametrize(("key", "word"), [("tls.crt", "Certificate"), ("tls.key", "Certificate"),
                                           ("jwt.key", "Jwt")])
async def test_base64_garbage_in_credentials_is_repaired_with_a_warning(cluster: Cluster, key: str,
                                                                         word: str) -> None:
    """Undecodable data is corruption, not absence: it must be repaired with a Warning
    (``*Repaired``), not re-issued as if nothing had existed (a Normal ``*Issued``/``Generated``)."""
    await _issue_pair(cluster)
    before = await _garbage(cluster, CREDS, key)
    await _converged(cluster)
    await _wait_warning(cluster, before, word, timeout=3.0)


async def test_base64_garbage_in_derived_files_is_restored(cluster: Cluster) -> None:
    """Derived files (ca.crt, jwt.kid, keystore, trust bundle) are rebuilt from the intact source."""
    await _issue_pair(cluster)
    good = await cluster.data("Secret", NS, CREDS)
    await _garbage(cluster, CREDS, "ca.crt")
    await _garbage(cluster, CREDS, "jwt.kid")
    await _garbage(cluster, CREDS, "keystore.p12")
    await _garbage(cluster, TRUST, "trust-bundle.pem")
    _, creds, _ = await _converged(cluster)
    assert creds["ca.crt"] == good["ca.crt"] and creds["jwt.kid"] == good["jwt.kid"]
    assert creds["jwt.key"] == good["jwt.key"] and creds["tls.key"] == good["tls.key"]

    async def bundle_back() -> bool:
        trust = live_object(cluster.emulator, "secrets", NS, TRUST)
        beta_ca = live_data(cluster.emulator, NS, names.ca_secret("beta"))
        pem = _raw(trust, "trust-bundle.pem")
        return pem is not None and bool(pem) and bundle_fingerprints({"trust-bundle.pem": pem}) == {
            fingerprint(pki.load_certificates(beta_ca["tls.crt"])[0])}

    await _eventually(bundle_back, "the trust bundle to be restored")


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ======================================================================================
# Hostile spec sizes through the API
# ======================================================================================
@pytest.mark.parametrize(("spec", "field"), [
    pytest.param({"dnsNames": [f"host-{i}.example.com" for i in range(5000)]}, "spec.dnsNames", id="dnsNames"),
    pytest.param({"certificate": {"keyAlgorithm": "A" * 1_000_000}}, "spec.certificate.keyAlgorithm", id="1MB-enum"),
    pytest.param({"templates": [{"name": f"t{i}", "inline": "{{ self.name }}"} for i in range(2000)]},
                 "spec.templates", id="templates"),
    pytest.param({f"field{i}": i for i in range(5000)}, "spec.field0", id="unknown-fields"),
])
async def test_hostile_sized_spec_is_invalid_naming_the_field(cluster: Cluster, spec: dict[str, Any],
                                                              field: str) -> None:
    await cluster.apply(identity("ok", NS))
    await cluster.apply(identity("huge", NS, **spec))
    body = await cluster.wait_condition("ServiceIdentity", NS, "huge", "Ready", "False", reason="InvalidSpec")
    ready = condition(body, "Ready")
    assert ready is not None and field in ready["message"], ready
    assert condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    for c in body["status"]["conditions"]:
        assert len(c["message"]) <= 16 * 1024, f"{c['type']} message is {len(c['message'])} characters"
    for event in (await cluster.events(NS, "huge")):
        assert len(event["message"]) <= 1024
    assert await cluster.get("Secret", NS, names.ca_secret("huge")) is None
    # the operator keeps serving everyone else
    await cluster.wait_condition("ServiceIdentity", NS, "ok", "Ready")
    await cluster.apply(identity("later", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "later", "Ready")
