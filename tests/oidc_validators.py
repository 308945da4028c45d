"""Token validators nobody here wrote, configured the way a gateway is: by the issuer's
discovery document alone (PyJWT's ``PyJWKClient``, jwcrypto). Blocking: run them in a thread
when the server under test runs on the same event loop."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

from trustwire import pki


def fetch(url: str, ca: ssl.SSLContext, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    assert url.startswith("https://"), url
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (https only, asserted)
    try:
        with urllib.request.urlopen(request, context=ca, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def discover(issuer: str, ca: ssl.SSLContext) -> dict[str, Any]:
    status, _, body = fetch(issuer + "/.well-known/openid-configuration", ca)
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    assert document["issuer"] == issuer
    return document


def pyjwt_validate(token: str, issuer: str, audience: str, scopes: set[str], ca: ssl.SSLContext) -> dict[str, Any]:
    """PyJWT as a resource server: keys by ``kid`` from the discovered ``jwks_uri``."""
    document = discover(issuer, ca)
    client = pyjwt.PyJWKClient(document["jwks_uri"], cache_keys=False, ssl_context=ca)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = pyjwt.decode(token, key.key, algorithms=document["id_token_signing_alg_values_supported"],
                                          audience=audience, issuer=document["issuer"],
                                          options={"require": ["exp", "iss", "aud"]})
    if not scopes <= set(str(claims.get("scope", "")).split()):
        raise pyjwt.InvalidTokenError("missing scope")
    return claims


def jwcrypto_validate(token: str, issuer: str, audience: str, scopes: set[str], ca: ssl.SSLContext) -> dict[str, Any]:
    document = discover(issuer, ca)
    _, _, body = fetch(document["jwks_uri"], ca)
    keyset = jwcrypto_jwk.JWKSet.from_json(body.decode())
    checked = jwcrypto_jwt.JWT(jwt=token, key=keyset, algs=document["id_token_signing_alg_values_supported"],
                               check_claims={"iss": document["issuer"], "aud": audience, "exp": None})
    claims: dict[str, Any] = json.loads(checked.claims)
    if not scopes <= set(str(claims.get("scope", "")).split()):
        raise ValueError("missing scope")
    return claims


VALIDATORS = {"PyJWT": pyjwt_validate, "jwcrypto": jwcrypto_validate}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def tls_pair(tmp: Path, host: str = "localhost") -> Iterator[tuple[bytes, bytes, ssl.SSLContext]]:
    """A server chain and key for ``host`` under a fresh CA, and a client context trusting only that CA."""
    now = datetime.now(UTC)
    ca_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name="oidc test CA", now=now, lifetime=timedelta(days=1))
    key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name=host, dns_names=[host], uri_sans=[],
                           now=now, lifetime=timedelta(days=1))
    (tmp / "ca.crt").write_bytes(pki.cert_to_pem(ca))
    client = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
    yield pki.certs_to_pem([leaf, ca]), pki.private_key_to_pem(key), client
