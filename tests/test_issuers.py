"""External issuers: the rules for what they answer (pure) and the HTTPS fetch against a
loopback issuer with its own keys and its own CA."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import LoopbackIssuer
from tests.oidc_validators import tls_pair
from trustwire import pki
from trustwire.issuers import fetch_keys
from trustwire.plan import issuers
from trustwire.plan.issuers import Fetched, IssuerKeys, IssuerProblem

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ISSUER = "https://idp.example.com/realms/acme"
Keys = Callable[..., pki.PrivateKey]


def _jwk(real_key: Keys, slot: int = 0, algorithm: pki.JwtAlgorithm = pki.JwtAlgorithm.RS256) -> dict[str, str]:
    return pki.public_jwk(real_key(algorithm, slot), algorithm)


def _doc(**over: Any) -> bytes:
    return json.dumps({"issuer": ISSUER, "jwks_uri": ISSUER + "/protocol/openid-connect/certs"} | over).encode()


@pytest.mark.parametrize(("body", "problem"), [
    (_doc(), None),
    (_doc(jwks_uri="https://idp.example.com:443/certs?x=1"), None),
    (_doc(issuer=ISSUER + "/"), "names another issuer"),
    (_doc(issuer="https://evil.example.com/realms/acme"), "names another issuer"),
    (_doc(jwks_uri="http://idp.example.com/certs"), "no https jwks_uri"),
    (_doc(jwks_uri=None), "no https jwks_uri"),
    (_doc(jwks_uri="https://cdn.example.net/certs"), "another origin"),
    (_doc(jwks_uri="https://idp.example.com:8443/certs"), "another origin"),
    (b"<html>", "not JSON"),
    (b"[1]", "not a JSON object"),
])
def test_discovery_document_rules(body: bytes, problem: str | None) -> None:
    if problem is None:
        assert issuers.jwks_uri_of(body, ISSUER).startswith("https://idp.example.com")
    else:
        with pytest.raises(IssuerProblem, match=problem) as info:
            issuers.jwks_uri_of(body, ISSUER)
        assert info.value.reason == "IssuerInvalid"


def test_jwks_keeps_public_signing_keys_only(real_key: Keys) -> None:
    rsa = pki.private_jwk(real_key(pki.JwtAlgorithm.RS256), pki.JwtAlgorithm.RS256)
    ec = _jwk(real_key, 1, pki.JwtAlgorithm.ES256)
    enc = dict(_jwk(real_key, 2, pki.JwtAlgorithm.ES256), use="enc")
    keys = issuers.signing_keys(json.dumps({"keys": [rsa, ec, enc]}).encode())
    assert [k["kid"] for k in keys] == [rsa["kid"], ec["kid"]]
    assert all("d" not in k and "p" not in k for k in keys)


@pytest.mark.parametrize(("jwks", "problem"), [
    ({"keys": []}, "has no keys"),
    ({}, "has no keys"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "unusable key"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}, "unusable key"),
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"}]}, "no signing key"),
    ({"keys": [{}] * 101}, "at most 100"),
])
def test_garbage_jwks_is_refused(jwks: dict[str, Any], problem: str) -> None:
    with pytest.raises(IssuerProblem, match=problem):
        issuers.signing_keys(json.dumps(jwks).encode())


@pytest.mark.parametrize(("cache_control", "seconds"), [
    (None, 300),
    ("public, max-age=120", 120),
    ("max-age=5", 30),
    ("max-age=86400, must-revalidate", 3600),
    ("no-store", 30),
    ("public, no-cache", 30),
    ("private", 300),
    ('max-age="600"', 600),
    ("s-maxage=10", 300),
])
def test_refresh_follows_max_age_within_bounds(cache_control: str | None, seconds: int) -> None:
    assert issuers.refresh_interval(cache_control) == timedelta(seconds=seconds)


def test_last_good_keys_survive_a_failure_and_a_key_change_is_reported(real_key: Keys) -> None:
    one, two = _jwk(real_key, 0), _jwk(real_key, 1)
    first = issuers.after_fetch(IssuerKeys(), Fetched((one,), "max-age=60"), NOW)
    assert (first.kids, first.refresh_at, first.verdict and first.verdict.reason) == \
        ((one["kid"],), NOW + timedelta(seconds=60), "Accepted")
    failed = issuers.after_fetch(first, IssuerProblem(issuers.Reason.ISSUER_UNREACHABLE, "cannot reach it"),
                                 NOW + timedelta(minutes=1))
    assert failed.kids == (one["kid"],) and failed.fetched_at == NOW
    assert failed.verdict is not None and failed.verdict.reason == "IssuerUnreachable"
    assert "last good keys (1) are kept" in failed.verdict.message
    assert failed.refresh_at == NOW + timedelta(minutes=1) + issuers.MIN_REFRESH
    changed = issuers.after_fetch(failed, Fetched((one, two), None), NOW + timedelta(minutes=2))
    assert changed.verdict is not None and changed.verdict.reason == "IssuerKeysChanged"
    assert changed.kids == (one["kid"], two["kid"])


# --- the fetch, against a loopback issuer over HTTPS ---------------------------------------------

async def test_fetch_takes_the_issuers_keys_and_cache_control(loopback: tuple[LoopbackIssuer, bytes],
                                                             real_key: Keys) -> None:
    issuer, ca = loopback
    key = _jwk(real_key, 3)
    issuer.serve({"keys": [key]}, "public, max-age=90")
    fetched = await fetch_keys(issuer.url, ca)
    assert fetched.keys == (key,) and fetched.cache_control == "public, max-age=90"


def _redirect(to: str) -> Callable[[web.Request], web.StreamResponse]:
    return lambda _: web.Response(status=302, headers={"Location": to})


async def test_a_same_origin_redirect_is_followed(loopback: tuple[LoopbackIssuer, bytes], real_key: Keys) -> None:
    issuer, ca = loopback
    issuer.serve({"keys": [_jwk(real_key, 3)]})
    issuer.routes["/realm/certs-moved"] = issuer.routes["/realm/certs"]
    issuer.routes["/realm/certs"] = _redirect("/realm/certs-moved")
    assert len((await fetch_keys(issuer.url, ca)).keys) == 1


@pytest.mark.parametrize(("arrange", "reason", "message"), [
    (lambda i: i.routes.update({"/realm/certs": _redirect("https://127.0.0.1:1/certs")}),
     "IssuerUnreachable", "leaves the issuer's https origin"),
    (lambda i: i.routes.update({"/realm/certs": _redirect(i.url.replace("https", "http") + "/x")}),
     "IssuerUnreachable", "leaves the issuer's https origin"),
    (lambda i: i.routes.update({"/realm/certs": _redirect("/realm/certs")}), "IssuerUnreachable", "redirects"),
    (lambda i: i.routes.update({"/realm/certs": lambda _: web.Response(body=b" " * (300 * 1024))}),
     "IssuerUnreachable", "larger than"),
    (lambda i: i.routes.update({"/realm/certs": lambda _: web.Response(status=500)}), "IssuerUnreachable", "500"),
    (lambda i: i.routes.update({"/realm/certs": lambda _: web.Response(text="<html>")}), "IssuerInvalid", "JSON"),
    (lambda i: i.routes.update({"/realm/.well-known/openid-configuration":
                                lambda _: web.json_response({"issuer": "https://elsewhere", "jwks_uri": "x"})}),
     "IssuerInvalid", "another issuer"),
])
async def test_fetch_refusals(loopback: tuple[LoopbackIssuer, bytes], real_key: Keys,
                              arrange: Callable[[LoopbackIssuer], None], reason: str, message: str) -> None:
    issuer, ca = loopback
    issuer.serve({"keys": [_jwk(real_key, 3)]})
    arrange(issuer)
    with pytest.raises(IssuerProblem, match=message) as info:
        await fetch_keys(issuer.url, ca)
    assert info.value.reason == reason


async def test_another_ca_and_plain_http_are_refused(loopback: tuple[LoopbackIssuer, bytes], tmp_path: Path,
                                                     real_key: Keys) -> None:
    issuer, _ = loopback
    issuer.serve({"keys": [_jwk(real_key, 3)]})
    other = tmp_path / "other"
    other.mkdir()
    with tls_pair(other), pytest.raises(IssuerProblem, match=r"TLS with .* failed"):
        await fetch_keys(issuer.url, (other / "ca.crt").read_bytes())
    with pytest.raises(IssuerProblem, match="not https"):
        await fetch_keys(issuer.url.replace("https://", "http://"), (other / "ca.crt").read_bytes())
    with pytest.raises(IssuerProblem, match="no usable PEM"):
        await fetch_keys(issuer.url, b"not a certificate")


async def test_an_issuer_that_does_not_answer_in_time_is_unreachable(
        loopback: tuple[LoopbackIssuer, bytes], real_key: Keys) -> None:
    import asyncio

    issuer, ca = loopback
    issuer.serve({"keys": [_jwk(real_key, 3)]})

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=200)

    issuer.routes["/realm/certs"] = slow
    with pytest.raises(IssuerProblem, match="cannot reach") as info:
        await fetch_keys(issuer.url, ca, timedelta(seconds=0.5))
    assert info.value.reason == "IssuerUnreachable"
