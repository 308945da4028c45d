"""Issue 2 acceptance: the real operator against the real control plane."""

from __future__ import annotations

import base64
import json

import pytest

from tests.integration.harness import Cluster, condition, identity, ready_with_peers, relationship
from trustwire import names, pki
from trustwire.demo.proofs import prove_jwt, prove_mtls
from trustwire.k8s.errors import ApiError

pytestmark = pytest.mark.integration

CONTRACT_CREDENTIALS = {"tls.crt", "tls.key", "ca.crt", "keystore.p12", "keystore.password",
                        "jwt.key", "jwt.jwk", "jwt.kid"}
CONTRACT_TRUST = {"trust-bundle.pem", "truststore.p12", "truststore.password", "peers.jwks", "peers.json"}


async def _pair(cluster: Cluster, ns_a: str, ns_b: str, *, consent: bool = True, **rel_spec: object) -> None:
    await cluster.apply(identity("alpha", ns_a))
    await cluster.apply(identity("beta", ns_b, **({"acceptFrom": {"namespaces": [ns_a]}} if consent else {})))
    await cluster.apply(relationship("alpha-beta", ns_a, ("alpha", None), ("beta", ns_b), **rel_spec))


async def _mount(cluster: Cluster, tmp_path, namespace: str, ident: str):  # type: ignore[no-untyped-def]
    directory = tmp_path / ident
    directory.mkdir()
    for secret in (names.credentials_secret(ident), names.trust_secret(ident)):
        for key, value in (await cluster.data("Secret", namespace, secret)).items():
            (directory / key).write_bytes(value)
    return directory


@pytest.mark.parametrize(("ns_a", "ns_b"), [("team", "team"), ("governance", "jobs")])
async def test_pair_is_issued_distributed_and_authenticates(cluster: Cluster, tmp_path, ns_a, ns_b) -> None:  # type: ignore[no-untyped-def]
    await _pair(cluster, ns_a, ns_b, jwt={"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf"})
    rel = await cluster.wait_condition("TrustRelationship", ns_a, "alpha-beta", "Ready")
    await cluster.wait_condition("ServiceIdentity", ns_b, "beta", "Ready")
    alpha = await cluster.wait_for("ServiceIdentity", ns_a, "alpha", lambda b: ready_with_peers(b, 1),
                                   what="to be Ready with its peer")
    assert condition(rel, "Accepted")["reason"] == "Accepted"  # type: ignore[index]

    creds = await cluster.data("Secret", ns_a, names.credentials_secret("alpha"))
    trust = await cluster.data("Secret", ns_a, names.trust_secret("alpha"))
    assert set(creds) >= CONTRACT_CREDENTIALS
    assert set(trust) >= CONTRACT_TRUST
    assert not set(creds) & set(trust), "credentials and trust keys must not collide in the mount"
    ca_body = await cluster.get("Secret", ns_a, names.ca_secret("alpha"))
    assert ca_body is not None and ca_body["type"] == "kubernetes.io/tls"
    public = await cluster.data("ConfigMap", ns_a, names.public_configmap("alpha"))
    assert {"ca.crt", "jwks.json", "identity.json"} <= set(public)

    # status summary agrees with the material
    assert alpha is not None
    status = alpha["status"]
    leaf = pki.load_certificates(creds["tls.crt"])[0]
    assert status["certificate"]["fingerprint"] == pki.fingerprint_sha256(leaf)
    assert status["jwt"]["kid"] == creds["jwt.kid"].decode()
    assert status["peerCount"] == 1 and status["peers"][0]["identity"] == "beta"
    assert status["observedGeneration"] == 1
    assert pki.uri_sans(leaf) == [f"spiffe://cluster.local/ns/{ns_a}/sid/alpha"]
    assert f"alpha.{ns_a}.svc" in pki.dns_sans(leaf)

    # peers.json and peers.jwks name the peer with its role and key
    peers = json.loads(trust["peers.json"])
    assert [p["identity"] for p in peers] == ["beta"]
    assert peers[0]["roles"] == ["IMPERSONATION"] and peers[0]["audience"] == "pf"
    beta_kid = (await cluster.data("Secret", ns_b, names.credentials_secret("beta")))["jwt.kid"].decode()
    assert [k["kid"] for k in json.loads(trust["peers.jwks"])["keys"]] == [beta_kid]

    # real authentication with the mounted files
    a = await _mount(cluster, tmp_path, ns_a, "alpha")
    b = await _mount(cluster, tmp_path, ns_b, "beta")
    assert prove_mtls(b, a, server_hostname=f"beta.{ns_b}.svc").ok
    assert prove_mtls(a, b, server_hostname=f"alpha.{ns_a}").ok
    now = pki.not_before(leaf) + (pki.not_after(leaf) - pki.not_before(leaf)) / 2
    assert prove_jwt(a, b, audience="pf", now=now).ok
    assert prove_jwt(b, a, audience="pf", now=now).ok

    await cluster.settle()  # Events are posted after the status write the wait saw
    # one Event for the CA, certificate and JWT key of the first pass; becoming Ready once the
    # peer published resolved by itself, so it shows in the conditions only
    events = [e["reason"] for e in (await cluster.events(ns_a, "alpha"))]
    assert events == ["Issued"], events


async def test_cross_namespace_without_consent_is_not_permitted(cluster: Cluster) -> None:
    await _pair(cluster, "governance", "jobs", consent=False)
    rel = await cluster.wait_condition("TrustRelationship", "governance", "alpha-beta", "Accepted", "False",
                                       reason="NotPermitted")
    assert "spec.acceptFrom.namespaces" in condition(rel, "Accepted")["message"]  # type: ignore[index]
    assert condition(rel, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition(rel, "Stalled")["status"] == "True"  # type: ignore[index]
    await cluster.wait_condition("ServiceIdentity", "governance", "alpha", "Ready")
    await cluster.wait_condition("ServiceIdentity", "jobs", "beta", "Ready")
    await cluster.settle()
    for ns, ident in (("governance", "alpha"), ("jobs", "beta")):
        trust = await cluster.data("Secret", ns, names.trust_secret(ident))
        assert json.loads(trust["peers.json"]) == []
        assert trust["trust-bundle.pem"] == b""
        assert json.loads(trust["peers.jwks"]) == {"keys": []}
        assert "truststore.p12" not in trust

    # consent given later → the relationship takes effect
    await cluster.apply(identity("beta", "jobs", acceptFrom={"namespaces": ["governance"]}))
    await cluster.wait_condition("TrustRelationship", "governance", "alpha-beta", "Ready")
    trust = await cluster.data("Secret", "jobs", names.trust_secret("beta"))
    assert [p["identity"] for p in json.loads(trust["peers.json"])] == ["alpha"]


async def test_deleted_relationship_drops_the_peer_on_both_sides(cluster: Cluster) -> None:
    await _pair(cluster, "team", "team")
    await cluster.wait_condition("TrustRelationship", "team", "alpha-beta", "Ready")
    await cluster.delete("TrustRelationship", "team", "alpha-beta")
    for ident in ("alpha", "beta"):
        await cluster.wait_for("Secret", "team", names.trust_secret(ident),
                               lambda b: b is not None and json.loads(
                                   __import__("base64").b64decode(b["data"]["peers.json"])) == [],
                               what="to drop the peer")
        trust = await cluster.data("Secret", "team", names.trust_secret(ident))
        assert trust["trust-bundle.pem"] == b"" and json.loads(trust["peers.jwks"]) == {"keys": []}
        body = await cluster.wait_for("ServiceIdentity", "team", ident,
                                      lambda b: (b or {}).get("status", {}).get("peerCount") == 0)
        assert body is not None


async def test_retained_ca_is_readopted(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", "team"))
    body = await cluster.wait_condition("ServiceIdentity", "team", "alpha", "Ready")
    fingerprint = body["status"]["ca"]["fingerprint"]
    await cluster.delete("ServiceIdentity", "team", "alpha")
    await cluster.wait_for("ServiceIdentity", "team", "alpha", lambda b: b is None, what="to be deleted")
    # no finalizer (nothing to unwire): what it owned goes with the garbage collector, not its CA
    for kind, name in (("Secret", names.credentials_secret("alpha")), ("Secret", names.trust_secret("alpha")),
                       ("ConfigMap", names.public_configmap("alpha"))):
        await cluster.wait_for(kind, "team", name, lambda b: b is None, what="to be collected")
    assert await cluster.get("Secret", "team", names.ca_secret("alpha")) is not None

    await cluster.apply(identity("alpha", "team"))
    body = await cluster.wait_condition("ServiceIdentity", "team", "alpha", "Ready")
    assert body["status"]["ca"]["fingerprint"] == fingerprint


async def test_delete_policy_removes_everything(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", "team", deletionPolicy="Delete"))
    await cluster.wait_condition("ServiceIdentity", "team", "alpha", "Ready")
    await cluster.delete("ServiceIdentity", "team", "alpha")
    await cluster.wait_for("ServiceIdentity", "team", "alpha", lambda b: b is None, what="to be deleted")
    for kind, name in (("Secret", names.ca_secret("alpha")), ("Secret", names.credentials_secret("alpha")),
                       ("Secret", names.trust_secret("alpha")), ("ConfigMap", names.public_configmap("alpha"))):
        assert await cluster.get(kind, "team", name) is None, name


async def test_deleted_or_edited_managed_secrets_are_restored(cluster: Cluster) -> None:
    await _pair(cluster, "team", "team")
    await cluster.wait_condition("TrustRelationship", "team", "alpha-beta", "Ready")
    await cluster.settle()
    ca_before = await cluster.data("Secret", "team", names.ca_secret("alpha"))
    creds_before = await cluster.data("Secret", "team", names.credentials_secret("alpha"))

    # a derived key edited by hand is put back exactly
    await cluster.patch_secret_data("team", names.credentials_secret("alpha"), {"ca.crt": b"tampered"})
    await cluster.wait_for("Secret", "team", names.credentials_secret("alpha"),
                           lambda b: b is not None and b["data"]["ca.crt"] != __import__("base64")
                           .b64encode(b"tampered").decode(), what="to restore ca.crt")
    assert (await cluster.data("Secret", "team", names.credentials_secret("alpha")))["ca.crt"] == \
        creds_before["ca.crt"]

    # a deleted trust Secret comes back with the peer
    await cluster.delete("Secret", "team", names.trust_secret("beta"))
    await cluster.wait_for("Secret", "team", names.trust_secret("beta"), lambda b: b is not None,
                           what="to be recreated")
    trust = await cluster.data("Secret", "team", names.trust_secret("beta"))
    assert [p["identity"] for p in json.loads(trust["peers.json"])] == ["alpha"]

    # a corrupted leaf is re-issued from the same CA; a garbled keystore is rebuilt
    await cluster.patch_secret_data("team", names.credentials_secret("alpha"),
                                    {"tls.key": b"-----BEGIN PRIVATE KEY-----\ntruncated", "keystore.p12": b"x"})
    await cluster.wait_condition("ServiceIdentity", "team", "alpha", "Ready")
    await cluster.settle()
    creds = await cluster.data("Secret", "team", names.credentials_secret("alpha"))
    key = pki.load_private_key(creds["tls.key"])
    leaf = pki.load_certificates(creds["tls.crt"])[0]
    ca = pki.load_certificates(ca_before["tls.crt"])[0]
    assert pki.public_key_matches(key, leaf) and pki.is_signed_by(leaf, ca)
    _, certs = pki.read_pkcs12(creds["keystore.p12"], creds["keystore.password"].decode())
    assert pki.fingerprint_sha256(certs[0]) == pki.fingerprint_sha256(leaf)
    assert await cluster.data("Secret", "team", names.ca_secret("alpha")) == ca_before
    reasons = [e["reason"] for e in (await cluster.events("team", "alpha"))]
    assert "CertificateRepaired" in reasons


async def test_unmanaged_object_with_a_contract_name_is_left_untouched(cluster: Cluster) -> None:
    foreign = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": names.trust_secret("alpha"), "namespace": "team", "labels": {"owner": "me"}},
               "data": {"mine": "aGVsbG8="}}
    await cluster.apply(foreign)
    before = await cluster.get("Secret", "team", names.trust_secret("alpha"))
    await cluster.apply(identity("alpha", "team"))
    body = await cluster.wait_condition("ServiceIdentity", "team", "alpha", "TrustReady", "False",
                                        reason="NameConflict")
    message = condition(body, "TrustReady")["message"]  # type: ignore[index]
    assert f"Secret team/{names.trust_secret('alpha')}" in message
    assert condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    assert condition(body, "Ready")["reason"] == "NameConflict"  # type: ignore[index]
    await cluster.settle()
    assert await cluster.get("Secret", "team", names.trust_secret("alpha")) == before
    # what does not clash is still issued
    assert await cluster.get("Secret", "team", names.credentials_secret("alpha")) is not None


async def test_resyncs_after_convergence_make_zero_writes(cluster: Cluster) -> None:
    await _pair(cluster, "governance", "jobs", sharedSecret={"enabled": True})
    await cluster.wait_condition("TrustRelationship", "governance", "alpha-beta", "Ready")
    await cluster.settle()
    writes_before = len(cluster.operator_writes())
    reads_before = len(cluster.operator_requests())
    for _ in range(5):
        cluster.controller.resync_all()  # what the periodic resync and the timers do
        await cluster.settle()
    assert len(cluster.operator_requests()) > reads_before, "the resyncs must actually have run"
    writes = cluster.operator_writes()[writes_before:]
    assert writes == [], [f"{w.method} {w.path}" for w in writes]


async def test_shared_secret_reaches_both_sides_only(cluster: Cluster) -> None:
    await _pair(cluster, "governance", "jobs", sharedSecret={"enabled": True})
    await cluster.wait_condition("TrustRelationship", "governance", "alpha-beta", "Ready")
    await cluster.settle()
    a = await cluster.data("Secret", "governance", names.trust_secret("alpha"))
    b = await cluster.data("Secret", "jobs", names.trust_secret("beta"))
    assert a["shared-beta.key"] == b["shared-alpha.key"]
    assert len(base64.urlsafe_b64decode(a["shared-beta.key"] + b"=")) == 32  # printable by default
    await cluster.apply(identity("gamma", "governance"))
    await cluster.wait_condition("ServiceIdentity", "governance", "gamma", "Ready")
    g = await cluster.data("Secret", "governance", names.trust_secret("gamma"))
    assert not any(k.startswith("shared-") for k in g)


@pytest.mark.parametrize(("body", "field", "says"), [
    (identity("bad", "team", certificate={"keyAlgorithm": "DSA1024"}), "spec.certificate.keyAlgorithm",
     "supported values"),
    (identity("bad", "team", certificate={"duration": "5d"}), "spec.certificate.duration", "should match"),
    (identity("bad", "team", dnsNames="not-a-list"), "spec.dnsNames", "must be of type array"),
    (identity("bad", "team", certificate={"duration": "1h", "renewBefore": "2h"}), "spec.certificate.renewBefore",
     "must be shorter than spec.certificate.duration"),
])
async def test_the_api_server_refuses_what_the_schema_forbids(cluster: Cluster, body: dict, field: str,  # type: ignore[type-arg]
                                                              says: str) -> None:
    with pytest.raises(ApiError) as refused:
        await cluster.apply(body)
    assert refused.value.status == 422 and field in refused.value.api_message and says in refused.value.api_message
    assert await cluster.get("ServiceIdentity", "team", "bad") is None


@pytest.mark.parametrize(("kind", "body", "field", "reason"), [
    # the same identity twice, once by its namespace: only the operator, which knows the
    # relationship's namespace, can see it (the CRD refuses the rest at admission)
    ("TrustRelationship", relationship("bad", "team", ("ok", None), ("ok", "team")),
     "spec.between[1]", "InvalidSpec"),
    ("TrustRelationship", relationship("bad", "team", ("ok", None), ("missing", None)),
     "spec.between[1].identity", "IdentityNotFound"),
])
async def test_invalid_specs_get_a_specific_condition_and_others_keep_working(
        cluster: Cluster, kind: str, body: dict, field: str, reason: str) -> None:  # type: ignore[type-arg]
    await cluster.apply(identity("ok", "team"))
    # Identities and relationships arrive on separate watches: until the operator has seen
    # "ok", a relationship naming it would rightly say it does not exist.
    await cluster.wait_condition("ServiceIdentity", "team", "ok", "Ready")
    await cluster.apply(body)
    bad = await cluster.wait_condition(kind, "team", "bad", "Ready", "False", reason=reason)
    ready = condition(bad, "Ready")
    assert ready is not None and field in ready["message"], ready
    # the operator keeps serving every other object
    await cluster.wait_condition("ServiceIdentity", "team", "ok", "Ready")
    await cluster.apply(identity("later", "team"))
    await cluster.wait_condition("ServiceIdentity", "team", "later", "Ready")
    if reason == "InvalidSpec":
        assert condition(bad, "Stalled")["status"] == "True"  # type: ignore[index]
        assert await cluster.get("Secret", "team", names.ca_secret("bad")) is None
    if kind == "TrustRelationship" and reason == "InvalidSpec":
        # a human fixes it: this recovery (unlike a first Ready) is an Event
        await cluster.apply(relationship("bad", "team", ("ok", None), ("later", None)))
        await cluster.wait_condition(kind, "team", "bad", "Ready")
        await cluster.settle()
        posted = [(e["type"], e["reason"]) for e in await cluster.events("team", "bad")]
        assert ("Warning", "InvalidSpec") in posted and ("Normal", "Recovered") in posted, posted
