"""trustwire.plan.relationship: consent (the one security decision), distribution, symmetric JWT keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trustwire.model import IdentityRef, TrustRelationship, parse_identity, parse_relationship
from trustwire.plan.relationship import (
    IdentityEntry,
    acceptance,
    distribution,
    lenient_accept_from,
    symmetric_jwt,
)

Factory = Callable[..., dict[str, Any]]
REL_NS = "gov"


def entry(
    namespace: str, name: str, *accept: str, deleting: bool = False, distributed: frozenset[str] = frozenset(),
    stalled_reason: str | None = None,
) -> IdentityEntry:
    return IdentityEntry(
        IdentityRef(namespace, name), None, tuple(accept), deleting=deleting, distributed=distributed,
        stalled_reason=stalled_reason,
    )


def lookup_of(*entries: IdentityEntry) -> Callable[[IdentityRef], IdentityEntry | None]:
    table = {e.ref: e for e in entries}
    return table.get


@pytest.fixture
def rel(relationship_body: Factory) -> Callable[..., TrustRelationship]:
    """``rel(b_namespace=None, **spec)``: ``gov/rel`` between gov/dgc and <b_namespace>/jobserver."""

    def make(b_namespace: str | None = None, **spec: Any) -> TrustRelationship:
        return parse_relationship(
            relationship_body("dgc", "jobserver", namespace=REL_NS, b_namespace=b_namespace, **spec)
        )

    return make


# ======================================================================================
# Acceptance
# ======================================================================================
@pytest.mark.parametrize(
    ("b_namespace", "accept_from", "expected"),
    [
        (None, (), (True, "Accepted")),  # same namespace needs no consent
        ("jobs", (), (False, "NotPermitted")),  # cross-namespace without consent
        ("jobs", ("gov",), (True, "Accepted")),
        ("jobs", ("other",), (False, "NotPermitted")),
        ("jobs", ("*",), (True, "Accepted")),
        ("jobs", ("other", "*"), (True, "Accepted")),
        ("jobs", ("jobs",), (False, "NotPermitted")),  # consenting to itself is not consenting to gov
        ("jobs", ("GOV",), (False, "NotPermitted")),  # namespace names are exact
    ],
)
def test_acceptance_needs_consent_of_the_other_namespace(
    rel: Callable[..., TrustRelationship],
    b_namespace: str | None,
    accept_from: tuple[str, ...],
    expected: tuple[bool, str],
) -> None:
    relationship = rel(b_namespace)
    lookup = lookup_of(entry(REL_NS, "dgc"), entry(b_namespace or REL_NS, "jobserver", *accept_from))
    check = acceptance(relationship, lookup)
    assert (check.ok, check.reason) == expected
    if not check.ok:
        assert check.stalled  # a human must grant consent
        assert "spec.between[1]" in check.message
        assert "jobs/jobserver" in check.message
        assert "spec.acceptFrom.namespaces" in check.message


def test_consent_is_needed_from_whichever_side_is_foreign(relationship_body: Factory) -> None:
    """The relationship may live in a third namespace: then both sides must consent."""
    relationship = parse_relationship(
        relationship_body("dgc", "jobserver", namespace="platform", a_namespace="gov", b_namespace="jobs")
    )
    both = lookup_of(entry("gov", "dgc", "platform"), entry("jobs", "jobserver", "platform"))
    assert acceptance(relationship, both).ok
    first_refuses = lookup_of(entry("gov", "dgc"), entry("jobs", "jobserver", "platform"))
    check = acceptance(relationship, first_refuses)
    assert (check.ok, check.reason) == (False, "NotPermitted")
    assert "spec.between[0]" in check.message and "gov/dgc" in check.message


@pytest.mark.parametrize("missing", ["first", "second", "both"])
def test_missing_identity(rel: Callable[..., TrustRelationship], missing: str) -> None:
    entries = []
    if missing not in ("first", "both"):
        entries.append(entry(REL_NS, "dgc"))
    if missing not in ("second", "both"):
        entries.append(entry("jobs", "jobserver", "*"))
    check = acceptance(rel("jobs"), lookup_of(*entries))
    assert (check.ok, check.stalled, check.reason) == (False, False, "IdentityNotFound")  # may appear later
    index = 1 if missing == "second" else 0
    assert f"spec.between[{index}].identity" in check.message


def test_deleting_identity_counts_as_missing(rel: Callable[..., TrustRelationship]) -> None:
    lookup = lookup_of(entry(REL_NS, "dgc"), entry("jobs", "jobserver", "*", deleting=True))
    check = acceptance(rel("jobs"), lookup)
    assert (check.ok, check.reason) == (False, "IdentityNotFound")
    assert "jobs/jobserver" in check.message


def test_missing_is_reported_before_not_permitted(rel: Callable[..., TrustRelationship]) -> None:
    check = acceptance(rel("jobs"), lookup_of(entry("jobs", "jobserver")))
    assert check.reason == "IdentityNotFound"


def test_entry_accepts_matches_service_identity_accepts(identity_body: Factory) -> None:
    """The controller's lenient entry and the parsed identity agree on consent."""
    for accept in ([], ["gov"], ["*"], ["a", "b"]):
        ident = parse_identity(
            identity_body(name="jobserver", namespace="jobs", acceptFrom={"namespaces": accept})
        )
        lenient = IdentityEntry(
            IdentityRef("jobs", "jobserver"),
            ident,
            lenient_accept_from(identity_body(namespace="jobs", acceptFrom={"namespaces": accept})),
        )
        for namespace in ("jobs", "gov", "a", "b", "c"):
            assert lenient.accepts(namespace) is ident.accepts(namespace), (accept, namespace)


# ======================================================================================
# lenient_accept_from
# ======================================================================================
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"spec": {"acceptFrom": {"namespaces": ["a", "*"]}}}, ("a", "*")),
        ({"spec": {"acceptFrom": {"namespaces": ["a", 5, None, {"x": 1}, "b"]}}}, ("a", "b")),
        ({"spec": {"acceptFrom": {"namespaces": "a"}}}, ()),
        ({"spec": {"acceptFrom": {"namespaces": None}}}, ()),
        ({"spec": {"acceptFrom": ["a"]}}, ()),
        ({"spec": {"acceptFrom": "a"}}, ()),
        ({"spec": ["acceptFrom"]}, ()),
        ({"spec": None}, ()),
        ({"spec": "garbage"}, ()),
        ({}, ()),
        # a typo elsewhere in the spec does not withdraw consent already given
        (
            {"spec": {"dnsName": ["x"], "ca": {"source": "Nope"}, "acceptFrom": {"namespaces": ["gov"]}}},
            ("gov",),
        ),
    ],
)
def test_lenient_accept_from(body: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert lenient_accept_from(body) == expected


# ======================================================================================
# Distribution
# ======================================================================================
@pytest.mark.parametrize(
    ("first", "second", "ok"),
    [
        (True, True, True),
        (True, False, False),
        (False, True, False),
        (False, False, False),
    ],
)
def test_distribution_waits_for_both_sides(
    rel: Callable[..., TrustRelationship], first: bool, second: bool, ok: bool
) -> None:
    key = f"{REL_NS}/rel"
    lookup = lookup_of(
        entry(REL_NS, "dgc", distributed=frozenset({key} if first else {"gov/other"})),
        entry("jobs", "jobserver", "*", distributed=frozenset({key} if second else set())),
    )
    check = distribution(rel("jobs"), lookup)
    assert check.ok is ok
    if ok:
        assert check.reason == "Distributed"
        return
    assert (check.reason, check.stalled) == ("Distributing", False)
    assert ("gov/dgc" in check.message) is not first
    assert ("jobs/jobserver" in check.message) is not second


def test_distribution_with_a_vanished_identity(rel: Callable[..., TrustRelationship]) -> None:
    check = distribution(rel("jobs"), lookup_of(entry(REL_NS, "dgc", distributed=frozenset({"gov/rel"}))))
    assert (check.ok, check.reason) == (False, "Distributing")
    assert "jobs/jobserver" in check.message


@pytest.mark.parametrize(
    ("holds_it", "receiver_stall", "sender_stall", "reason", "named"),
    [
        # the receiver cannot take it in (a hub whose trust Secret is full)
        (False, "TrustTooLarge", None, "PeerStalled",
         "jobs/jobserver is stalled (TrustTooLarge) and cannot take in the peer material"),
        # the sender cannot publish it: the message names the sender, not the one waiting
        (False, None, "CASecretInvalid", "PeerStalled",
         "gov/dgc is stalled (CASecretInvalid) and publishes no material for jobs/jobserver"),
        (False, None, None, "Distributing", "waiting for jobs/jobserver to receive the peer material"),
        # stalled for another reason, but it holds the peer
        (True, "TemplateError", "TemplateError", "Distributed", "both identities hold each other's material"),
    ],
)
def test_distribution_names_the_stalled_side(
    rel: Callable[..., TrustRelationship], holds_it: bool, receiver_stall: str | None, sender_stall: str | None,
    reason: str, named: str,
) -> None:
    key = f"{REL_NS}/rel"
    lookup = lookup_of(
        entry(REL_NS, "dgc", distributed=frozenset({key}), stalled_reason=sender_stall),
        entry("jobs", "jobserver", "*", distributed=frozenset({key} if holds_it else set()),
              stalled_reason=receiver_stall),
    )
    check = distribution(rel("jobs"), lookup)
    assert (check.reason, check.stalled) == (reason, reason == "PeerStalled")
    assert named in check.message
    if sender_stall and not holds_it:
        assert "jobs/jobserver is stalled" not in check.message


# ======================================================================================
# Symmetric JWT keys never travel
# ======================================================================================
@pytest.mark.parametrize(
    ("dgc_jwt", "spec", "refused"),
    [
        ({"algorithm": "HS256"}, {}, True),  # both send: dgc's symmetric key would reach jobserver
        ({"algorithm": "HS512"}, {"initiator": "dgc"}, True),
        ({"algorithm": "HS256"}, {"initiator": "jobserver"}, False),  # dgc only receives
        ({"algorithm": "HS256"}, {"jwt": {"enabled": False}}, False),
        ({"algorithm": "HS256", "enabled": False}, {}, False),
        ({"algorithm": "ES256"}, {}, False),
    ],
)
def test_a_symmetric_jwt_key_is_refused_where_it_would_reach_a_peer(
    rel: Callable[..., TrustRelationship], identity_body: Factory, dgc_jwt: dict[str, Any], spec: dict[str, Any],
    refused: bool,
) -> None:
    dgc = parse_identity(identity_body(name="dgc", namespace=REL_NS, jwt=dgc_jwt))
    lookup = lookup_of(IdentityEntry(IdentityRef(REL_NS, "dgc"), dgc, ()), entry(REL_NS, "jobserver"))
    check = symmetric_jwt(rel(**spec), lookup)
    if not refused:
        assert check is None
        return
    assert check is not None and check.stalled and check.reason == "SymmetricJwtKey"
    assert check.message.startswith("spec.jwt.enabled: ServiceIdentity gov/dgc signs with HS")
    assert "set spec.jwt.enabled: false" in check.message and "ES256, ES384, RS256, PS256, EdDSA" in check.message


@pytest.mark.parametrize(("holds_it", "reason"), [(True, "Distributed"), (False, "Distributing")])
def test_distribution_beside_an_external_member_waits_for_the_identity_only(holds_it: bool, reason: str) -> None:
    rel = parse_relationship({"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
                              "metadata": {"name": "rel", "namespace": REL_NS},
                              "spec": {"between": [{"identity": "dgc"}, {"external": {
                                  "name": "onprem", "caBundleRef": {"name": "onprem-ca"}}}]}})
    lookup = lookup_of(entry(REL_NS, "dgc", distributed=frozenset({f"{REL_NS}/rel"} if holds_it else set())))
    assert acceptance(rel, lookup).message == "gov/dgc and external peer onprem trust each other"
    check = distribution(rel, lookup)
    assert check.reason == reason
    assert ("gov/dgc holds the CA of external peer onprem" if holds_it else "waiting for gov/dgc") in check.message
