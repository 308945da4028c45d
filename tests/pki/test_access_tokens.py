"""Access-token claims (iss/sub/aud/scope/jti) and the scope check, with real keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest

from trustwire.pki import (
    JwtAlgorithm,
    PKIError,
    PrivateKey,
    TokenError,
    access_token_claims,
    granted_scopes,
    jwks,
    public_jwk,
    require_scopes,
    sign_token,
    verify_token,
)

from .conftest import NOW

ISS = "https://issuer.example/ns/a/dpm"
AUD = "product-factory"


def _claims(**kw: Any) -> dict[str, Any]:
    return access_token_claims(**({"issuer": ISS, "subject": "dpm", "audience": AUD} | kw))


@pytest.mark.parametrize(("scopes", "scope"), [
    ((), None),
    (("read",), "read"),
    (("read", "write", "read"), "read write"),
    (("orders:read", "a/b!"), "orders:read a/b!"),
])
def test_scope_is_one_space_separated_string(scopes: tuple[str, ...], scope: str | None) -> None:
    claims = _claims(scopes=scopes)
    assert claims.get("scope") == scope
    assert (claims["iss"], claims["sub"], claims["aud"]) == (ISS, "dpm", AUD)
    assert len(claims["jti"]) >= 20


def test_jti_differs_per_token_and_a_list_audience_stays_a_list() -> None:
    assert _claims()["jti"] != _claims()["jti"]
    assert _claims(audience=["a", "b"])["aud"] == ["a", "b"]
    assert _claims(extra={"tenant": "t1"})["tenant"] == "t1"


@pytest.mark.parametrize(("kw", "message"), [
    ({"issuer": ""}, "non-empty issuer"),
    ({"subject": ""}, "non-empty issuer"),
    ({"audience": ""}, "non-empty issuer"),
    ({"audience": []}, "non-empty issuer"),
    ({"scopes": ("two words",)}, "not RFC 6749 scope tokens"),
    ({"scopes": ('q"uote',)}, "not RFC 6749 scope tokens"),
    ({"scopes": ("",)}, "not RFC 6749 scope tokens"),
    ({"extra": {"aud": "other"}}, "may not set aud"),
    ({"extra": {"exp": 1, "scope": "x"}}, "may not set exp, scope"),
])
def test_bad_access_claims_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(PKIError, match=message):
        _claims(**kw)


@pytest.mark.parametrize(("claims", "required", "missing"), [
    ({"scope": "a b c"}, ("a", "c"), None),
    ({"scope": "a b"}, (), None),
    ({}, (), None),
    ({"scope": "a b"}, ("a", "z"), "missing scope: z"),
    ({}, ("a",), "missing scope: a"),
    ({"scope": "ab"}, ("a",), "missing scope: a"),  # a prefix is no scope
    ({"scope": ["a"]}, ("a",), "not a space-separated string"),
])
def test_require_scopes(claims: dict[str, Any], required: tuple[str, ...], missing: str | None) -> None:
    if missing is None:
        require_scopes(claims, required)
        assert granted_scopes(claims) >= set(required)
    else:
        with pytest.raises(TokenError, match=missing):
            require_scopes(claims, required)


def test_required_scopes_must_not_be_a_bare_string() -> None:
    with pytest.raises(ValueError, match="not a single string"):
        require_scopes({"scope": "a"}, "a")


@pytest.mark.parametrize("algorithm", list(JwtAlgorithm), ids=str)
def test_verify_token_checks_scopes_after_the_signature(
        algorithm: JwtAlgorithm, jwt_key_for: Callable[..., PrivateKey]) -> None:
    key = jwt_key_for(algorithm)
    jwk = public_jwk(key, algorithm)
    token = sign_token(key, algorithm, jwk["kid"], _claims(scopes=("orders:read",)), now=NOW)
    verified = verify_token(token, jwks([jwk]), issuer=ISS, audience=AUD, now=NOW, scopes=("orders:read",))
    assert verified["scope"] == "orders:read"
    # an independent library reads the same claims from the same signature
    assert pyjwt.decode(token, key.public_key(), algorithms=[str(algorithm)], audience=AUD,
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})["sub"] == "dpm"
    with pytest.raises(TokenError, match="missing scope: orders:write"):
        verify_token(token, jwks([jwk]), issuer=ISS, audience=AUD, now=NOW, scopes=("orders:write",))
