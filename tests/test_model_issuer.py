"""OpenID Connect issuer identifiers: the URL rule and ``spec.jwt.discovery``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trustwire.model import SpecError, parse_identity
from trustwire.model.issuer import issuer_url_problem

Factory = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(("url", "problem"), [
    ("https://id.example.com", None),
    ("https://id.example.com/ns/a/dpm", None),
    ("https://id.example.com:8443/realms/acme", None),
    ("https://127.0.0.1:9443/x", None),
    ("http://id.example.com", "must be an https:// URL"),
    ("spiffe://cluster.local/ns/a/sid/dpm", "must be an https:// URL"),
    ("https://id.example.com/x?tenant=1", "no query or fragment"),
    ("https://id.example.com/x#frag", "no query or fragment"),
    ("https://id.example.com/x?", "no query or fragment"),
    ("https://id.example.com/", "must not end with '/'"),
    ("https:///path", "needs a host"),
    ("https://user:pw@id.example.com", "no user information"),
    ("https://id.example.com:99999", "not a URL"),
    ("https://[::1", "not a URL"),
    ("https://" + "a" * 250, "at most 253"),
])
def test_issuer_url_rule(url: str, problem: str | None) -> None:
    found = issuer_url_problem(url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_a_discovery_identity_shows_its_discovery_url(identity_body: Factory) -> None:
    ident = parse_identity(identity_body(jwt={"discovery": True, "issuer": "https://id.example.com/ns/dgc"}))
    assert ident.issuer == "https://id.example.com/ns/dgc"
    assert ident.discovery_url == "https://id.example.com/ns/dgc/.well-known/openid-configuration"


@pytest.mark.parametrize("jwt", [
    {},
    {"issuer": "https://id.example.com/ns/dgc"},
    {"discovery": True, "issuer": "https://id.example.com/ns/dgc", "enabled": False},
])
def test_no_discovery_url_without_discovery(identity_body: Factory, jwt: dict[str, Any]) -> None:
    assert parse_identity(identity_body(jwt=jwt)).discovery_url is None


@pytest.mark.parametrize(("jwt", "message"), [
    ({"discovery": True}, "is required with spec.jwt.discovery"),
    ({"discovery": True, "issuer": "http://id.example.com"}, "must be an https:// URL"),
    ({"discovery": True, "issuer": "https://id.example.com/?a=b"}, "no query or fragment"),
    ({"discovery": "yes", "issuer": "https://id.example.com"}, "must be true or false"),
])
def test_discovery_needs_an_https_issuer(identity_body: Factory, jwt: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_identity(identity_body(jwt=jwt))
    problems = dict(info.value.problems)
    path = "spec.jwt.discovery" if message == "must be true or false" else "spec.jwt.issuer"
    assert message in problems[path]
