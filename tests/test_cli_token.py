"""``trustwire token``: what it mints from an identity's credentials, and the input it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest
from click.testing import CliRunner

from trustwire import pki
from trustwire.cli import main
from trustwire.cli.output import Unavailable
from trustwire.cli.token import mint
from trustwire.model import parse_identity

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ISSUER = "https://id.example.com/ns/dgc"


def _credentials(key: pki.PrivateKey, algorithm: pki.JwtAlgorithm) -> dict[str, bytes]:
    private = pki.private_jwk(key, algorithm)
    return {"jwt.key": pki.private_key_to_pem(key), "jwt.jwk": json.dumps(private).encode(),
            "jwt.kid": private["kid"].encode()}


@pytest.mark.parametrize("algorithm", list(pki.JwtAlgorithm), ids=str)
def test_mint_signs_with_the_active_key_and_the_identitys_issuer(
        algorithm: pki.JwtAlgorithm, real_key: Callable[..., pki.PrivateKey],
        identity_body: Callable[..., dict[str, Any]]) -> None:
    key = real_key(algorithm)
    ident = parse_identity(identity_body(jwt={"discovery": True, "issuer": ISSUER, "algorithm": str(algorithm)}))
    token = mint(ident, _credentials(key, algorithm), audience=["gw"], scopes=["a", "b"],
                 ttl=timedelta(minutes=2), extra={"tenant": "acme"}, subject=None, now=NOW)
    header = pyjwt.get_unverified_header(token)
    assert header["kid"] == pki.public_jwk(key, algorithm)["kid"] and header["alg"] == str(algorithm)
    claims = pyjwt.decode(token, key.public_key(), algorithms=[str(algorithm)], audience="gw", issuer=ISSUER,
                          options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert (claims["sub"], claims["scope"], claims["tenant"]) == (ident.spiffe_id, "a b", "acme")
    assert claims["exp"] - claims["iat"] == 120


def test_mint_without_a_jwt_key_or_with_a_reserved_claim_says_why(
        real_key: Callable[..., pki.PrivateKey], identity_body: Callable[..., dict[str, Any]]) -> None:
    ident = parse_identity(identity_body())
    args: dict[str, Any] = {"audience": ["gw"], "scopes": [], "ttl": timedelta(minutes=1), "subject": None,
                            "now": NOW}
    with pytest.raises(Unavailable, match=r"no usable jwt\.key"):
        mint(ident, {}, extra={}, **args)
    creds = _credentials(real_key(pki.JwtAlgorithm.ES256), pki.JwtAlgorithm.ES256)
    with pytest.raises(Unavailable, match="may not set aud"):
        mint(ident, creds, extra={"aud": "x"}, **args)


@pytest.mark.parametrize(("args", "message"), [
    (["--ttl", "0s"], "from 1s to 24h"),
    (["--ttl", "25h"], "from 1s to 24h"),
    (["--ttl", "soon"], "is not a duration"),
    (["--claim", "novalue"], "is not NAME=VALUE"),
    (["--claim", "=x"], "is not NAME=VALUE"),
])
def test_bad_options_are_usage_errors_before_any_api_call(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["token", "dgc", "-n", "ns", "--aud", "gw", *args,
                                       "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and message in result.output


def test_aud_is_required() -> None:
    result = CliRunner().invoke(main, ["token", "dgc", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "--aud" in result.output
