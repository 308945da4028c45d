"""Garbage in managed Secrets, hostile spec sizes and names at the API's limits, through the real
operator and the real apiserver.

Every corruption must be *detected and repaired* — afterwards the material verifies
(leaf signed by the CA, key matches, ``jwt.kid`` = thumbprint of ``jwt.key``, keystore
holds the leaf) and status agrees with the Secrets — with a Warning Event naming what
was repaired; or it must be reported as Stalled with the reason. Never silently trusted.
Material is verified with ``cryptography``/``jwcrypto`` (``tests/integration/faults.py``),
not with the operator's own ``pki``.

What the apiserver refuses never reaches the operator, and is asserted as the refusal: text
that is not base64 in a Secret's ``data``, and specs the CRD schema forbids (a 422 naming
the field). Fields the schema does not know are pruned by the apiserver.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.integration.faults import (
    bundle_fingerprints,
    fingerprint,
    jwk_kid,
    live_data,
    live_object,
    material_problems,
    secret_value,
    status_problems,
)
from tests.integration.harness import Cluster, History, condition, identity, ready_with_peers, relationship, until
from trustwire import names, pki
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import CONFIGMAPS, SECRETS

pytestmark = pytest.mark.integration

NS = "team"
CA, CREDS, TRUST = names.ca_secret("alpha"), names.credentials_secret("alpha"), names.trust_secret("alpha")
#: Valid base64 of bytes that are neither PEM nor DER (the apiserver refuses what is not base64).
GARBAGE = b"\x00\xff%%% not a certificate, not a key !!!\xfe"


@pytest.fixture
async def history(admin: Client) -> AsyncIterator[History]:
    async with History(admin, (SECRETS,)) as recorded:
        yield recorded


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


async def _converged(cluster: Cluster, name: str = "alpha", *, timeout: float = 20.0,
                     ) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]]:
    """Until the identity's material verifies and its status agrees; returns (ca, creds, status)."""
    problems: list[str] = []

    async def verified() -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]] | None:
        ca = await live_data(cluster.client, NS, names.ca_secret(name))
        creds = await live_data(cluster.client, NS, names.credentials_secret(name))
        body = await live_object(cluster.client, "serviceidentities", NS, name) or {}
        try:
            problems[:] = material_problems(ca.get("tls.crt", b""), creds, ca_key_pem=ca.get("tls.key"))
            if not problems:
                problems[:] = status_problems(body.get("status") or {}, ca["tls.crt"], creds)
        except Exception as exc:
            problems[:] = [f"{type(exc).__name__}: {exc}"]
        ready = condition(body, "Ready")
        return (ca, creds, body["status"]) if not problems and ready is not None and ready["status"] == "True" \
            else None

    return await until(verified, lambda: f"identity {name} to converge to verified material: {problems}",
                       timeout=timeout)


async def _new_warnings(cluster: Cluster, before: list[dict[str, Any]], name: str = "alpha",
                        ) -> list[dict[str, Any]]:
    seen = {e["metadata"]["name"] for e in before}
    return [e for e in await cluster.events(NS, name)
            if e["metadata"]["name"] not in seen and e.get("type") == "Warning"]


async def _wait_warning(cluster: Cluster, before: list[dict[str, Any]], word: str, *, name: str = "alpha",
                        timeout: float = 10.0) -> dict[str, Any]:
    """A new Warning Event on the identity whose reason names ``word`` (e.g. ``Certificate``)."""
    seen: list[dict[str, Any]] = []

    async def naming() -> dict[str, Any] | None:
        seen[:] = await _new_warnings(cluster, before, name)
        return next((e for e in seen if word.lower() in e["reason"].lower()), None)

    return await until(naming, lambda: f"a Warning Event naming {word!r} after the corruption; new warnings: "
                                       f"{[(e['reason'], e['message']) for e in seen]}", timeout=timeout)


async def _corrupt(cluster: Cluster, secret: str, change: Callable[[dict[str, bytes]], dict[str, bytes]],
                   ) -> list[dict[str, Any]]:
    """Write ``change(current data)`` into a managed Secret; returns the events seen before."""
    before = await cluster.events(NS, "alpha")
    current = await cluster.data("Secret", NS, secret)
    await cluster.patch_secret_data(NS, secret, change(current))
    return before


async def _garbage(cluster: Cluster, secret: str, key: str) -> list[dict[str, Any]]:
    """Write bytes that are no PEM, DER, PKCS#12 or JSON into one key of a managed Secret."""
    return await _corrupt(cluster, secret, lambda _: {key: GARBAGE})


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
    private key (never mounted, docs/design.md §3). The operator must not adopt it as the signing key."""
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
        bundle = bundle_fingerprints(await live_data(cluster.client, NS, names.trust_secret("beta")))
        return new_fp in bundle and planted not in bundle

    await until(peer_has_new_ca, "beta's trust bundle to hold alpha's repaired CA", timeout=15.0)


async def test_foreign_ca_in_the_public_configmap_never_reaches_a_peers_trust_bundle(cluster: Cluster,
                                                                                     history: History) -> None:
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
    await history.sync()
    assert history.of("secrets", NS, names.trust_secret("beta")), "the history recorded beta's trust Secret"
    for version in history.of("secrets", NS, names.trust_secret("beta")):
        pem = secret_value(version, "trust-bundle.pem") or b""
        if pem.strip():
            assert planted not in {fingerprint(c) for c in pki.load_certificates(pem)}, \
                "beta's trust bundle trusted a CA that someone wrote into alpha's public ConfigMap"


async def test_foreign_jwk_in_the_public_configmap_never_reaches_a_peers_jwks(cluster: Cluster,
                                                                              history: History) -> None:
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
    await history.sync()
    assert history.of("secrets", NS, names.trust_secret("beta")), "the history recorded beta's trust Secret"
    for version in history.of("secrets", NS, names.trust_secret("beta")):
        peers_jwks = secret_value(version, "peers.jwks") or b'{"keys": []}'
        kids = [k.get("kid") for k in json.loads(peers_jwks).get("keys", [])]
        assert foreign["kid"] not in kids, "beta accepted tokens signed by a key written into alpha's ConfigMap"


async def test_garbage_in_the_ca_secret_is_repaired_with_a_warning(cluster: Cluster) -> None:
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
# Garbage in the credentials Secret
# ======================================================================================
async def test_text_that_is_not_base64_is_refused_by_the_api_and_changes_nothing(cluster: Cluster) -> None:
    """A Secret's ``data`` is bytes in base64: the apiserver refuses a patch whose value is not
    base64 (422, saying so), so such garbage never reaches the operator."""
    await _issue_pair(cluster)
    for secret, key in ((CA, "tls.crt"), (CREDS, "tls.key"), (TRUST, "trust-bundle.pem")):
        before = await cluster.get("Secret", NS, secret)
        refused = cluster.plane.kubectl("patch", "secret", secret, "-n", NS, "--type=merge",
                                        "-p", json.dumps({"data": {key: "%%% not base64 !!!"}}), check=False)
        assert refused.returncode != 0, refused.stdout
        assert "The request is invalid: patch: Invalid value" in refused.stderr, refused.stderr[:300]
        assert refused.stderr.rstrip().endswith("illegal base64 data at input byte 0"), refused.stderr[-300:]
        after = await cluster.get("Secret", NS, secret)
        assert after is not None and before is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], secret


@pytest.mark.parametrize(("key", "word"), [("tls.crt", "Certificate"), ("tls.key", "Certificate"),
                                           ("jwt.key", "Jwt")])
async def test_garbage_in_credentials_is_repaired_with_a_warning(cluster: Cluster, key: str, word: str) -> None:
    """Unreadable material is corruption, not absence: it must be repaired with a Warning
    (``*Repaired``), not re-issued as if nothing had existed (a Normal ``*Issued``/``Generated``)."""
    await _issue_pair(cluster)
    before = await _garbage(cluster, CREDS, key)
    await _converged(cluster)
    await _wait_warning(cluster, before, word, timeout=3.0)


async def test_garbage_in_derived_files_is_restored(cluster: Cluster) -> None:
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
        trust = await live_data(cluster.client, NS, TRUST)
        beta_ca = await live_data(cluster.client, NS, names.ca_secret("beta"))
        try:
            return bundle_fingerprints(trust) == {fingerprint(pki.load_certificates(beta_ca["tls.crt"])[0])}
        except ValueError:  # still the garbage
            return False

    await until(bundle_back, "the trust bundle to be restored", timeout=15.0)


# ======================================================================================
# Hostile spec sizes through the API
# ======================================================================================
#: Specs the CRD schema refuses: (spec, the field the API's message names, what it says).
HOSTILE_SIZES: list[tuple[dict[str, Any], str, str]] = [
    ({"dnsNames": [f"host-{i}.example.com" for i in range(5000)]}, "spec.dnsNames", "must have at most 100 items"),
    ({"certificate": {"keyAlgorithm": "A" * 1_000_000}}, "spec.certificate.keyAlgorithm", "Unsupported value"),
    ({"templates": [{"name": f"t{i}", "inline": "{{ self.name }}"} for i in range(2000)]}, "spec.templates",
     "must have at most 20 items"),
]


async def test_hostile_sized_specs_are_refused_by_the_api_naming_the_field(cluster: Cluster) -> None:
    await cluster.apply(identity("ok", NS))
    for spec, field, says in HOSTILE_SIZES:
        with pytest.raises(ApiError) as refused:
            await cluster.apply(identity("huge", NS, **spec))
        message = refused.value.api_message
        assert refused.value.status == 422 and field in message and says in message, message[:300]
        assert await cluster.get("ServiceIdentity", NS, "huge") is None
    # the operator keeps serving everyone else
    await cluster.wait_condition("ServiceIdentity", NS, "ok", "Ready")
    await cluster.apply(identity("later", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "later", "Ready")


async def test_unknown_spec_fields_are_pruned_by_the_api_and_never_reach_the_operator(cluster: Cluster) -> None:
    """kubectl (strict field validation, its default) refuses them naming the first; a client
    that does not ask for strictness gets them pruned: the identity the operator sees is valid."""
    spec = {f"field{i}": i for i in range(5000)}
    body = identity("huge", NS, **spec)
    await cluster.ensure_namespace(NS)
    refused = cluster.plane.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0 and 'unknown field "spec.field0"' in refused.stderr, refused.stderr[:300]
    stored = await cluster.apply(body)
    assert not set(stored["spec"]) & set(spec), "the apiserver kept fields its schema does not know"
    ready = await cluster.wait_condition("ServiceIdentity", NS, "huge", "Ready")
    assert not set(ready["spec"]) & set(spec)


# ======================================================================================
# Names and keys at the API's limits
# ======================================================================================
#: The longest name a label value can carry: every object derived from an identity or a
#: relationship carries its name in a label.
LONGEST = 63


async def test_names_at_the_label_value_limit_are_served(cluster: Cluster) -> None:
    name, rel = "a" * LONGEST, "r" * LONGEST
    await cluster.apply(identity(name, NS))
    await cluster.apply(identity("beta", NS))
    await cluster.apply(relationship(rel, NS, (name, None), ("beta", None), sharedSecret={"enabled": True}))
    await cluster.wait_condition("TrustRelationship", NS, rel, "Ready")
    await cluster.wait_for("ServiceIdentity", NS, name, lambda b: ready_with_peers(b, 1), what="Ready with beta")
    for secret in (names.ca_secret(name), names.credentials_secret(name), names.trust_secret(name),
                   names.shared_secret(rel)):
        body = await cluster.get("Secret", NS, secret)
        assert body is not None, secret
    trust = await cluster.data("Secret", NS, names.trust_secret("beta"))
    assert len(trust[f"shared-{name}.key"]) == 43  # 32 random bytes, base64url without padding


@pytest.mark.parametrize(("kind", "body"), [
    pytest.param("ServiceIdentity", identity("n" * (LONGEST + 1), NS, serviceName="svc"), id="identity-64"),
    pytest.param("ServiceIdentity", identity("n" * 253, NS), id="identity-253"),
    pytest.param("TrustRelationship", relationship("r" * 253, NS, ("ok", None), ("beta", None),
                                                   sharedSecret={"enabled": True}), id="relationship-253"),
])
async def test_a_name_too_long_for_what_is_derived_from_it_is_refused_by_the_api_naming_it(
        cluster: Cluster, kind: str, body: dict[str, Any]) -> None:
    """The API takes names up to 253 characters, but the name is the value of a label on what
    is derived from it (at most 63): the CRD's rule refuses it, naming ``metadata.name``, and
    the operator never sees it (it would say the same in the object's conditions)."""
    await cluster.apply(identity("ok", NS))
    await cluster.apply(identity("beta", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "ok", "Ready")
    # kubectl, whose message is not cut short by the 253 characters of the name
    refused = cluster.plane.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0, refused.stdout
    assert f"metadata.name must be at most {LONGEST} characters" in refused.stderr, refused.stderr[-300:]
    assert await cluster.get(kind, NS, body["metadata"]["name"]) is None
    # the operator keeps serving everyone else
    await cluster.apply(identity("later", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "later", "Ready")


@pytest.mark.parametrize("file_name", [".", "..", "..data"])
async def test_a_template_name_the_api_refuses_as_a_key_is_refused_naming_the_field(cluster: Cluster,
                                                                                   file_name: str) -> None:
    """The schema's pattern lets ``.``, ``..`` and ``..*`` through, but a Secret key must not be
    one of them: the CRD's rule refuses it, naming ``spec.templates[0].name``."""
    with pytest.raises(ApiError) as refused:
        await cluster.apply(identity("alpha", NS, templates=[{"name": file_name, "inline": "{{ self.name }}"}]))
    message = refused.value.api_message
    assert refused.value.status == 422 and "spec.templates[0].name" in message, message[:300]
    assert await cluster.get("ServiceIdentity", NS, "alpha") is None
