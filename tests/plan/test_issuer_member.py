"""An external issuer as a member: what survives a restart, what is written, what the identity
trusts and what the relationship reports (pure; real keys)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from trustwire import names, pki
from trustwire.model import IdentityRef, TrustRelationship, parse_identity, parse_relationship
from trustwire.plan import issuers
from trustwire.plan.checks import Verdict
from trustwire.plan.issuers import IssuerKeys, IssuerProblem
from trustwire.plan.material import StoredObject
from trustwire.plan.reasons import Reason
from trustwire.plan.status import IssuerStatus
from trustwire.plan.trust import PeerLink, TrustInput, content
from trustwire.times import rfc3339

NOW = datetime(2030, 1, 1, tzinfo=UTC)
URL = "https://keycloak.example.com/realms/acme"
RS256 = pki.JwtAlgorithm.RS256
Keys = Callable[..., pki.PrivateKey]


def _rel() -> TrustRelationship:
    return parse_relationship({
        "metadata": {"name": "kc", "namespace": "edge"},
        "spec": {"between": [{"identity": "proxy"}, {"issuer": {
            "url": URL, "caBundleRef": {"name": "kc-ca"}, "audience": "proxy", "scopes": ["orders:read"]}}]}})


def _kept(keys: list[dict[str, str]], managed: bool = True) -> StoredObject:
    return StoredObject(names.issuer_configmap("kc"), managed, None,
                        {names.ISSUER_JWKS_KEY: json.dumps({"keys": keys}).encode()})


@pytest.fixture
def jwk_of(real_key: Keys) -> Callable[[int], dict[str, str]]:
    return lambda slot: pki.public_jwk(real_key(RS256, slot), RS256)


@pytest.mark.parametrize(("managed", "status_url", "fetched", "kept_keys"), [
    (True, URL, True, 1),
    (False, URL, True, 0),  # someone else's ConfigMap under our name is never trusted
    (True, "https://other.example.com", True, 0),  # the spec names another issuer now
    (True, URL, False, 0),  # no fetch time: nothing proves these keys were ever fetched
])
def test_what_survives_a_restart(jwk_of: Callable[[int], dict[str, str]], managed: bool, status_url: str,
                                 fetched: bool, kept_keys: int) -> None:
    status = IssuerStatus(status_url, rfc3339(NOW) if fetched else None, (jwk_of(0)["kid"],))
    state = issuers.kept(_kept([jwk_of(0)], managed), status, URL)
    assert len(state.keys) == kept_keys
    assert state.refresh_at is None  # the first pass after a restart fetches at once
    assert state.fetched_at == (NOW if kept_keys else None)


def test_the_kept_keys_are_a_managed_configmap_of_public_members_only(real_key: Keys) -> None:
    rel = _rel()
    assert issuers.issuer_object(rel, IssuerKeys()) is None  # nothing before the first good fetch
    private = pki.private_jwk(real_key(RS256, 0), RS256)
    state = issuers.after_fetch(IssuerKeys(), issuers.Fetched(issuers.signing_keys(
        json.dumps({"keys": [private]}).encode()), "max-age=120"), NOW)
    desired = issuers.issuer_object(rel, state)
    assert desired is not None and (desired.kind, desired.name) == ("ConfigMap", "kc-trustwire-issuer")
    assert desired.labels == {names.MANAGED_BY: names.MANAGER, names.RELATIONSHIP_LABEL: "kc",
                              names.ROLE_LABEL: "issuer"}
    stored = json.loads(desired.data[names.ISSUER_JWKS_KEY])["keys"]
    assert [k["kid"] for k in stored] == [private["kid"]] and "d" not in stored[0]
    assert state.refresh_at == NOW + timedelta(seconds=120)


def test_the_identity_trusts_the_issuers_keys_with_its_audience_and_scopes(
        jwk_of: Callable[[int], dict[str, str]]) -> None:
    rel = _rel()
    ident = parse_identity({"metadata": {"name": "proxy", "namespace": "edge"}, "spec": {}})
    waiting = [PeerLink(rel, IdentityRef("edge", "kc"), issuers.issuer_publication(rel, None))]
    before = content(TrustInput(ident, None, waiting, None, None, "pw", {}, time.monotonic), waiting)
    assert not before.checks["TrustReady"].ok and "not fetched yet" in before.checks["TrustReady"].message
    links = [PeerLink(rel, IdentityRef("edge", "kc"), issuers.issuer_publication(rel, _kept([jwk_of(0), jwk_of(1)])))]
    trust = content(TrustInput(ident, None, links, None, None, "pw", {}, time.monotonic), links)
    assert trust.checks["TrustReady"].ok
    assert {k["kid"] for k in json.loads(trust.data["peers.jwks"])["keys"]} == {jwk_of(0)["kid"], jwk_of(1)["kid"]}
    (entry,) = json.loads(trust.data["peers.json"])
    expected = {"identity": "kc", "relationship": "edge/kc", "issuer": URL, "audience": "proxy",
                "scopes": ["orders:read"], "direction": "inbound", "mtls": False, "jwt": True, "external": True,
                "caFingerprints": [], "kids": sorted([jwk_of(0)["kid"], jwk_of(1)["kid"]])}
    assert {k: sorted(entry[k]) if k == "kids" else entry[k] for k in expected} == expected
    assert trust.data["trust-bundle.pem"] == b"" and "truststore.p12" not in trust.data


@pytest.mark.parametrize(("verdict", "ok", "reason", "words"), [
    (None, True, "Accepted", "1 key(s) of " + URL),
    (Verdict(Reason.ISSUER_ACCEPTED, "1 key(s) fetched"), True, "Accepted", URL),
    (Verdict(Reason.ISSUER_KEYS_CHANGED, "ids changed"), True, "Accepted", URL),
    (Verdict(Reason.ISSUER_UNREACHABLE, "cannot reach it; the last good keys (1) are kept"), False,
     "IssuerUnreachable", "spec.between[1].issuer: cannot reach it; the last good keys (1) are kept"),
    (Verdict(Reason.ISSUER_INVALID, "the JWKS is not JSON"), False, "IssuerInvalid", "spec.between[1].issuer: "),
])
def test_issuer_ready_names_the_keys_or_the_problem(jwk_of: Callable[[int], dict[str, str]], verdict: Verdict | None,
                                                    ok: bool, reason: str, words: str) -> None:
    check = issuers.issuer_check(_rel(), IssuerKeys((jwk_of(0),), NOW, NOW, verdict))
    assert (check.ok, check.reason, check.stalled) == (ok, reason, not ok)
    assert words in check.message
    assert issuers.issuer_status(_rel(), IssuerKeys((jwk_of(0),), NOW, NOW, verdict)) == \
        IssuerStatus(URL, rfc3339(NOW), (jwk_of(0)["kid"],))


@pytest.mark.parametrize(("stored", "reason", "words"), [
    (None, "ExternalCANotFound", "ConfigMap edge/kc-ca does not exist"),
    (StoredObject("kc-ca", False, None, {}), "ExternalCAInvalid", "has no key 'ca.crt'"),
    (StoredObject("kc-ca", False, None, {"ca.crt": b"-----BEGIN PRIVATE KEY-----"}), "ExternalCAInvalid",
     "contains a private key"),
    (StoredObject("kc-ca", False, None, {"ca.crt": b"-----BEGIN CERTIFICATE-----"}), None, ""),
])
def test_the_ca_bundle_of_the_fetch(stored: StoredObject | None, reason: str | None, words: str) -> None:
    problem = issuers.bundle_problem(_rel(), "edge", stored)
    if reason is None:
        assert problem is None
    else:
        assert isinstance(problem, IssuerProblem) and (problem.reason, words in problem.message) == (reason, True)
