"""An external OpenID Connect issuer as a member of ``spec.between``: what the parser takes
and every refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from trustwire.model import BundleKind, BundleRef, ExternalIssuer, IdentityRef, SpecError, parse_relationship

URL = "https://keycloak.example.com/realms/acme"


def _issuer(**fields: Any) -> dict[str, Any]:
    return {"issuer": {"url": URL, "caBundleRef": {"name": "kc-ca"}} | fields}


def _body(between: list[Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "kc", "namespace": "edge"}, "spec": {"between": between, **spec}}


def test_an_issuer_member_is_the_sender_of_tokens_with_its_audience_and_scopes() -> None:
    rel = parse_relationship(_body([{"identity": "proxy"}, _issuer(audience="proxy", scopes=["a", "b"],
                                                                   caBundleRef={"name": "kc", "kind": "Secret",
                                                                                "key": "tls-ca.pem"})]))
    assert rel.issuer == ExternalIssuer(URL, BundleRef(BundleKind.SECRET, "kc", "tls-ca.pem"), 1, "proxy", ("a", "b"))
    assert (rel.between, rel.initiator, rel.issuer_ref) == \
        ((IdentityRef("edge", "proxy"),), IdentityRef("edge", "kc"), IdentityRef("edge", "kc"))
    assert (rel.mtls, rel.jwt, rel.audience, rel.scopes, rel.outside) == (False, True, "proxy", ("a", "b"), True)
    assert rel.sends_to(IdentityRef("edge", "kc")) and not rel.sends_to(IdentityRef("edge", "proxy"))
    assert rel.members == f"edge/proxy and issuer {URL}"


def test_the_bundle_defaults_to_a_configmaps_ca_crt() -> None:
    rel = parse_relationship(_body([_issuer(), {"identity": "proxy"}]))
    assert rel.issuer is not None and rel.issuer.ca_bundle == BundleRef(BundleKind.CONFIGMAP, "kc-ca", "ca.crt")
    assert (rel.issuer.index, rel.audience, rel.scopes) == (0, None, ())


CASES: list[tuple[list[Any], dict[str, Any], str, str]] = [
    ([{"identity": "p"}, _issuer(url=None)], {}, "spec.between[1].issuer.url", "is required"),
    ([{"identity": "p"}, _issuer(url="http://kc.example.com")], {}, "spec.between[1].issuer.url",
     "must be an https:// URL"),
    ([{"identity": "p"}, _issuer(url=URL + "/")], {}, "spec.between[1].issuer.url", "must not end with '/'"),
    ([{"identity": "p"}, _issuer(url=URL + "?a=b")], {}, "spec.between[1].issuer.url", "no query or fragment"),
    ([{"identity": "p"}, _issuer(caBundleRef={})], {}, "spec.between[1].issuer.caBundleRef.name", "is required"),
    ([{"identity": "p"}, _issuer(caBundleRef={"name": "c", "kind": "Vault"})], {},
     "spec.between[1].issuer.caBundleRef.kind", "allowed values are ConfigMap, Secret"),
    ([{"identity": "p"}, _issuer(caBundleRef={"name": "c", "key": ""})], {},
     "spec.between[1].issuer.caBundleRef.key", "must not be empty"),
    ([{"identity": "p"}, _issuer(audiences=["x"])], {}, "spec.between[1].issuer.audiences", "unknown field"),
    ([{"identity": "p"}, _issuer(scopes="a b")], {}, "spec.between[1].issuer.scopes", "list"),
    ([{"identity": "p"}, _issuer() | {"namespace": "x"}], {}, "spec.between[1].namespace",
     "applies to identity members only"),
    ([{"identity": "p"} | _issuer(), {"identity": "x"}], {}, "spec.between[0]", "names identity and issuer"),
    ([_issuer(), {"external": {"name": "o", "caBundleRef": {"name": "c"}}}], {}, "spec.between",
     "two members outside the cluster"),
    ([{"identity": "p"}, _issuer()], {"jwt": {"enabled": False}}, "spec.jwt.enabled", "cannot be false"),
    ([{"identity": "p"}, _issuer()], {"jwt": {"audience": "a"}}, "spec.jwt.audience",
     "spec.between[].issuer.audience"),
    ([{"identity": "p"}, _issuer()], {"jwt": {"scopes": ["a"]}}, "spec.jwt.scopes", "spec.between[].issuer.scopes"),
    ([{"identity": "p"}, _issuer()], {"initiator": "p"}, "spec.initiator", "must be omitted"),
    ([{"identity": "p"}, _issuer()], {"sharedSecret": {"enabled": True}}, "spec.sharedSecret.enabled",
     "identities in the cluster only"),
]


@pytest.mark.parametrize(("between", "spec", "path", "words"), CASES, ids=[f"{c[2]}:{c[3]}" for c in CASES])
def test_issuer_member_problems_name_the_field(between: list[Any], spec: dict[str, Any], path: str,
                                               words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_relationship(_body(between, **spec))
    problems = dict(info.value.problems)
    assert path in problems, problems
    assert words in problems[path], problems[path]
