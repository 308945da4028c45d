"""trustwire.plan.external and the CA gate: an outsider known by its CA, confirming by hand."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.plan.conftest import FixedKeys
from trustwire import pki
from trustwire.model import BundleKind, BundleRef, ExternalPeer, IdentityRef, parse_identity, parse_relationship
from trustwire.pki import KeyAlgorithm
from trustwire.plan import ca, external, rotation
from trustwire.plan.checks import evaluate
from trustwire.plan.material import CAMaterial, StoredObject
from trustwire.plan.reasons import Reason

NOW = FIXED_NOW
PEER = ExternalPeer("onprem-jobserver", BundleRef(BundleKind.CONFIGMAP, "onprem-ca", "ca.crt"), 1)


@pytest.fixture(scope="module")
def certs(real_key: Callable[..., pki.PrivateKey]) -> dict[str, Any]:
    """The outsider's own CA (its key stays with it), a leaf it signed, and an expired CA."""
    key = real_key(KeyAlgorithm.ECDSAP256, 720)
    onprem = pki.create_ca(key, common_name="onprem CA", now=NOW - timedelta(days=1), lifetime=timedelta(days=365))
    leaf_key = real_key(KeyAlgorithm.ECDSAP256, 721)
    leaf = pki.create_leaf(onprem, key, leaf_key.public_key(), common_name="jobserver", dns_names=["jobserver"],
                           uri_sans=[], now=NOW - timedelta(hours=1), lifetime=timedelta(days=30))
    old = pki.create_ca(real_key(KeyAlgorithm.ECDSAP256, 722), common_name="old CA", now=NOW - timedelta(days=20),
                        lifetime=timedelta(days=10))
    return {"ca": onprem, "key": key, "leaf": leaf, "expired": old}


def bundle(data: dict[str, bytes] | None) -> external.BundleInput:
    stored = StoredObject("onprem-ca", False, None, data) if data is not None else None
    return external.BundleInput(PEER, "gov", stored, NOW)


def pem(cert: Any) -> bytes:
    return pki.cert_to_pem(cert)


BAD_BUNDLES = [
    ("missing", lambda c: None, Reason.EXTERNAL_CA_NOT_FOUND, "ConfigMap gov/onprem-ca does not exist"),
    ("no key", lambda c: {"other": pem(c["ca"])}, Reason.EXTERNAL_CA_INVALID, "has no key 'ca.crt'"),
    ("private key", lambda c: {"ca.crt": pem(c["ca"]) + pki.private_key_to_pem(c["key"])},
     Reason.EXTERNAL_CA_INVALID, "contains a private key"),
    ("not PEM", lambda c: {"ca.crt": b"hello"}, Reason.EXTERNAL_CA_INVALID, "is not a PEM certificate bundle"),
    ("leaf", lambda c: {"ca.crt": pem(c["ca"]) + pem(c["leaf"])}, Reason.EXTERNAL_CA_INVALID,
     "not CAs (CN=jobserver"),
    ("expired", lambda c: {"ca.crt": pem(c["expired"])}, Reason.EXTERNAL_CA_INVALID,
     "expired CA certificate(s) (CN=old CA"),
]


@pytest.mark.parametrize(("case", "make", "reason", "words"), BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_a_bad_bundle_is_refused_naming_the_field(certs: dict[str, Any], case: str, make: Any, reason: Reason,
                                                  words: str) -> None:
    verdict = evaluate(external.BUNDLE_CHECKS, bundle(make(certs)))
    assert verdict is not None and verdict.reason is reason
    assert verdict.message.startswith("spec.between[1].external.caBundleRef: ConfigMap gov/onprem-ca")
    assert words in verdict.message
    publication, check = external.external_publication(bundle(make(certs)))
    assert publication is None and (check.ok, check.stalled, check.reason) == (False, True, str(reason))
    assert "PRIVATE KEY" not in check.message


def test_a_good_bundle_is_published_as_the_outsiders_ca_only(certs: dict[str, Any]) -> None:
    publication, check = external.external_publication(bundle({"ca.crt": pem(certs["ca"])}))
    assert check.ok and pki.fingerprint_sha256(certs["ca"]) in check.message
    assert publication is not None and publication.jwks == ()
    assert [pki.fingerprint_sha256(c) for c in pki.load_certificates(publication.ca_pem)] == [
        pki.fingerprint_sha256(certs["ca"])]
    assert publication.info["external"] is True


# --------------------------------------------------------------------------------------
# The CA gate
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dgc(real_key: Callable[..., pki.PrivateKey]) -> dict[str, Any]:
    ident = parse_identity({"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
                            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {}})
    key = real_key(KeyAlgorithm.ECDSAP256, 723)
    material = CAMaterial.of(pki.create_ca(key, common_name="dgc CA", now=NOW - timedelta(days=1),
                                           lifetime=timedelta(days=365)), key)
    stored = StoredObject("dgc-trustwire-ca", True, "dgc", {"tls.crt": material.cert_pem, "tls.key": material.key_pem})
    return {"ident": ident, "stored": stored}


def outsider(confirmed: frozenset[str] = frozenset()) -> rotation.Outsider:
    return rotation.Outsider("onprem-jobserver", "gov", "dgc-onprem", confirmed)


def evidence(dgc: dict[str, Any], outsiders: tuple[rotation.Outsider, ...], rotate: bool = False) -> ca.CAEvidence:
    return ca.CAEvidence(dgc["ident"], dgc["stored"], rotate, (), timedelta(seconds=90), outsiders)


def distributing(dgc: dict[str, Any], keys: FixedKeys) -> ca.CAStep:
    start = ca.observe(evidence(dgc, ()), NOW, keys)
    return ca.advance(start.state, evidence(dgc, (outsider(),), rotate=True), NOW, keys)


@pytest.mark.parametrize(
    ("confirms", "at", "phase", "gate_reason"),
    [
        ("nothing", timedelta(days=1), ca.CAPhase.DISTRIBUTING, rotation.AWAITING_CONFIRMATION),
        ("the active CA only", timedelta(days=1), ca.CAPhase.DISTRIBUTING, rotation.AWAITING_CONFIRMATION),
        # long after any propagation delay, still nothing switches without the confirmation
        ("nothing", timedelta(days=360), ca.CAPhase.DISTRIBUTING, str(Reason.EXTERNAL_CONFIRMATION_OVERDUE)),
        ("the next CA", timedelta(minutes=5), ca.CAPhase.RETIRING, None),
    ],
)
def test_rotation_waits_for_the_outsiders_confirmation(dgc: dict[str, Any], fixed_keys: Callable[[], FixedKeys],
                                                       confirms: str, at: timedelta, phase: ca.CAPhase,
                                                       gate_reason: str | None) -> None:
    keys = fixed_keys()
    step = distributing(dgc, keys)
    assert step.state.next is not None and step.wait is not None
    assert "external peer onprem-jobserver (TrustRelationship gov/dgc-onprem) has not confirmed" in step.wait.message
    fingerprints = {"nothing": frozenset(), "the active CA only": frozenset({pki.fingerprint_sha256(
        step.state.active.cert)}), "the next CA": frozenset({pki.fingerprint_sha256(step.state.next.cert)})}
    later: datetime = NOW + at
    after = ca.advance(step.state, evidence(dgc, (outsider(fingerprints[confirms]),)), later, keys)
    assert after.state.phase is phase
    assert (after.wait.reason if after.wait else None) == gate_reason
    warnings = [e for e in after.events if e.type == "Warning"]
    if gate_reason == str(Reason.EXTERNAL_CONFIRMATION_OVERDUE):
        assert [e.reason for e in warnings] == ["ExternalConfirmationOverdue"]
        assert "external peer onprem-jobserver" in warnings[0].message
        assert "nothing is switched or removed" in warnings[0].message
    else:
        assert warnings == []
    if phase is ca.CAPhase.DISTRIBUTING:  # the old CA is still the active one and nothing is retired
        assert after.state.active.cert == step.state.active.cert and after.state.previous is None


def test_the_warning_time_is_before_expiry_and_after_renewal(dgc: dict[str, Any]) -> None:
    cert = pki.load_certificates(dgc["stored"].data["tls.crt"])[0]
    warn = ca.confirmation_warning_time(cert)
    assert ca.renewal_time(cert) < warn < pki.not_after(cert)
    assert pki.not_after(cert) - warn == timedelta(days=7)


def test_external_relationship_yields_an_outsider_with_its_confirmations() -> None:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "dgc-onprem", "namespace": "gov",
                         "annotations": {"trustwire.io/external-confirmed": "AB:CD, ef01"}},
            "spec": {"between": [{"identity": "dgc"}, {"external": {
                "name": "onprem-jobserver", "caBundleRef": {"name": "onprem-ca"}}}]}}
    rel = parse_relationship(body)
    assert rel.between == (IdentityRef("gov", "dgc"),) and rel.peer_of(IdentityRef("gov", "dgc")) is None
    assert external.outsiders_of([rel]) == [outsider(frozenset({"abcd", "ef01"}))]
    assert external.outsiders_of([dataclasses.replace(rel, mtls=False)]) == []


# --------------------------------------------------------------------------------------
# The whole identity pass
# --------------------------------------------------------------------------------------
def _plan_with_outsider(certs: dict[str, Any], rotate: str | None, confirmed: frozenset[str],
                        keys: FixedKeys, stored_ca: StoredObject | None = None) -> Any:
    from trustwire.plan.identity import IdentityObservation, PeerLink, plan_identity

    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "dgc-onprem", "namespace": "gov",
                         "annotations": {"trustwire.io/external-confirmed": ",".join(confirmed)}},
            "spec": {"between": [{"identity": "dgc"}, {"external": {
                "name": "onprem-jobserver", "caBundleRef": {"name": "onprem-ca"}}}]}}
    rel = parse_relationship(body)
    assert rel.external is not None and rel.external_ref is not None
    publication, _ = external.external_publication(external.BundleInput(
        rel.external, "gov", StoredObject("onprem-ca", False, None, {"ca.crt": pem(certs["ca"])}), NOW))
    ident = parse_identity({"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
                            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {}})
    obs = IdentityObservation(identity=ident, now=NOW, ca=stored_ca,
                              links=(PeerLink(rel, rel.external_ref, publication),))
    return plan_identity(obs, rotate=rotate, keys=keys)


def test_the_identity_trusts_exactly_the_outsiders_ca_and_its_rotation_names_it(
        certs: dict[str, Any], fixed_keys: Callable[[], FixedKeys]) -> None:
    keys = fixed_keys()
    plan = _plan_with_outsider(certs, None, frozenset(), keys)
    objects = {o.name: o for o in plan.objects}
    trust = objects["dgc-trustwire-trust"].data
    assert trust["trust-bundle.pem"] == pem(certs["ca"])
    [entry] = json.loads(trust["peers.json"])
    assert (entry["identity"], entry["namespace"], entry["external"], entry["caFingerprints"]) == (
        "onprem-jobserver", "gov", True, [pki.fingerprint_sha256(certs["ca"])])
    assert plan.checks["TrustReady"].ok
    stored = objects["dgc-trustwire-ca"]
    again = _plan_with_outsider(certs, "ca", frozenset(), keys,
                                StoredObject(stored.name, True, "dgc", stored.data, stored.annotations))
    [rotating] = again.extra_conditions
    assert (rotating.type, rotating.status, rotating.reason) == ("Rotating", "True", rotation.AWAITING_CONFIRMATION)
    assert "external peer onprem-jobserver (TrustRelationship gov/dgc-onprem)" in rotating.message
    assert again.status.rotation is not None and again.status.rotation.ca is not None
    assert again.status.rotation.ca.phase == ca.CAPhase.DISTRIBUTING


def test_an_unusable_bundle_leaves_the_trust_pending_naming_the_relationship(
        certs: dict[str, Any], fixed_keys: Callable[[], FixedKeys]) -> None:
    from trustwire.plan.identity import IdentityObservation, PeerLink, plan_identity

    rel = parse_relationship({"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
                              "metadata": {"name": "dgc-onprem", "namespace": "gov"},
                              "spec": {"between": [{"identity": "dgc"}, {"external": {
                                  "name": "onprem-jobserver", "caBundleRef": {"name": "onprem-ca"}}}]}})
    assert rel.external_ref is not None
    ident = parse_identity({"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
                            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {}})
    plan = plan_identity(IdentityObservation(identity=ident, now=NOW, links=(PeerLink(rel, rel.external_ref, None),)),
                         keys=fixed_keys())
    check = plan.checks["TrustReady"]
    assert (check.ok, check.reason) == (False, "PeerPending")
    assert "external peer onprem-jobserver is not usable (see TrustRelationship gov/dgc-onprem)" in check.message
