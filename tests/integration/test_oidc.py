"""Issue 17 acceptance: an identity is an OpenID Connect issuer that validators nobody here
wrote trust by discovery alone; the real operator on the real control plane, the real server."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, condition, identity
from tests.integration.test_cli_cluster import cli
from tests.oidc_validators import (
    APACHE,
    MOD_AUTH_OPENIDC,
    VALIDATORS,
    apache_resource_server,
    apache_status,
    discover,
    fetch,
    free_port,
    tls_pair,
)
from trustwire.runtime import OperatorOptions
from trustwire.server.context import ServerContext
from trustwire.server.run import TlsMaterial, serving, tls_context
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

NS, NAME, AUD = "oidc", "orders", "gateway"
DELAY = timedelta(seconds=6)


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0, propagation_delay=DELAY)


async def _token(cluster: Cluster, *args: str) -> str:
    run = await cli(cluster.plane.admin_kubeconfig, "token", NAME, "-n", NS, *args)
    assert run.code == 0, run.stderr
    assert run.stdout.count(".") == 2 and run.stdout.strip() not in run.stderr
    return run.stdout.strip()


def _tamper(token: str) -> str:
    head, payload, signature = token.split(".")
    return ".".join((head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]))


async def _verdicts(token: str, issuer: str, ca: Any, scopes: set[str]) -> dict[str, str]:
    """Each validator's answer: ``ok`` or the exception's type."""
    out = {}
    for name, validate in VALIDATORS.items():
        try:
            claims = await asyncio.to_thread(validate, token, issuer, AUD, scopes, ca)
            out[name] = "ok" if claims["iss"] == issuer else "wrong iss"
        except Exception as exc:
            out[name] = type(exc).__name__
    return out


async def test_a_trustwire_token_is_accepted_by_discovery_alone_and_refused_when_wrong(
        cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    public_url = f"https://localhost:{port}"
    issuer = f"{public_url}/{NS}/{NAME}"
    await cluster.apply(identity(NAME, NS, jwt={"discovery": True, "issuer": issuer}))
    body = await cluster.wait_condition("ServiceIdentity", NS, NAME, "Ready")
    assert body["status"]["issuer"] == issuer
    assert body["status"]["discoveryUrl"] == issuer + "/.well-known/openid-configuration"
    old_kid = body["status"]["jwt"]["kid"]

    with tls_pair(tmp_path) as (chain, key, ca):
        ctx = ServerContext(client=cluster.client, clock=utcnow, public_url=public_url, namespaces=(NS,),
                            tls=tls_context(TlsMaterial(chain, key)), propagation_delay=DELAY)
        async with serving(ctx, "127.0.0.1", port):
            good = await _token(cluster, "--aud", AUD, "--scope", "orders:read orders:write", "--ttl", "5m",
                                "--claim", "tenant=acme")
            assert await _verdicts(good, issuer, ca, {"orders:read"}) == {"PyJWT": "ok", "jwcrypto": "ok"}

            wrong_aud = await _token(cluster, "--aud", "someone-else", "--scope", "orders:read")
            no_scope = await _token(cluster, "--aud", AUD, "--scope", "orders:write")
            for bad in (wrong_aud, no_scope, _tamper(good)):
                verdicts = await _verdicts(bad, issuer, ca, {"orders:read"})
                assert "ok" not in verdicts.values(), verdicts

            # the JWKS: public members only, a strong ETag, 304 on a match, cached at most half the delay
            status, headers, jwks_body = await asyncio.to_thread(fetch, issuer + "/jwks.json", ca)
            assert status == 200
            jwks = json.loads(jwks_body)
            assert old_kid in [k["kid"] for k in jwks["keys"]]
            assert all("d" not in k for k in jwks["keys"])
            max_age = int(headers["Cache-Control"].rpartition("max-age=")[2])
            assert 1 <= max_age <= ctx.propagation_delay.total_seconds() / 2
            again, headers_304, empty = await asyncio.to_thread(
                fetch, issuer + "/jwks.json", ca, {"If-None-Match": headers["ETag"]})
            assert (again, empty, headers_304["ETag"]) == (304, b"", headers["ETag"])

            # an identity not opted in is not served, with a reason
            await cluster.apply(identity("plain", NS))
            await cluster.wait_condition("ServiceIdentity", NS, "plain", "Ready")
            status, _, refused = await asyncio.to_thread(
                fetch, f"{public_url}/{NS}/plain/.well-known/openid-configuration", ca)
            assert status == 404 and json.loads(refused)["error"]["reason"] == "IssuerNotServed"

            # revoking the signing kid: the operator replaces the key, the server drops the kid,
            # and a token signed with it is refused by every validator
            await cluster.apply(identity(NAME, NS, jwt={"discovery": True, "issuer": issuer, "revokedKids": [old_kid]}))
            await cluster.wait_for("ServiceIdentity", NS, NAME,
                                   lambda b: bool(b) and b["status"]["jwt"]["kid"] != old_kid
                                   and (condition(b, "Ready") or {}).get("status") == "True",
                                   what="to sign with a new key")
            verdicts = await _verdicts(good, issuer, ca, {"orders:read"})
            assert "ok" not in verdicts.values(), verdicts
            fresh = await _token(cluster, "--aud", AUD, "--scope", "orders:read")
            assert await _verdicts(fresh, issuer, ca, {"orders:read"}) == {"PyJWT": "ok", "jwcrypto": "ok"}


@pytest.mark.skipif(not (os.path.exists(APACHE) and os.path.exists(MOD_AUTH_OPENIDC)),
                    reason="needs Debian's apache2 and libapache2-mod-auth-openidc")
async def test_apache_mod_auth_openidc_validates_by_discovery_alone(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    public_url = f"https://localhost:{port}"
    issuer = f"{public_url}/{NS}/{NAME}"
    await cluster.apply(identity(NAME, NS, jwt={"discovery": True, "issuer": issuer}))
    body = await cluster.wait_condition("ServiceIdentity", NS, NAME, "Ready")
    old_kid = body["status"]["jwt"]["kid"]
    with tls_pair(tmp_path) as (chain, key, _):
        ctx = ServerContext(client=cluster.client, clock=utcnow, public_url=public_url, namespaces=(NS,),
                            tls=tls_context(TlsMaterial(chain, key)), propagation_delay=DELAY)
        async with serving(ctx, "127.0.0.1", port):
            good = await _token(cluster, "--aud", AUD, "--scope", "orders:read orders:write")
            wrong_aud = await _token(cluster, "--aud", "someone-else", "--scope", "orders:read")
            no_scope = await _token(cluster, "--aud", AUD, "--scope", "orders:readonly")
            with apache_resource_server(issuer, (tmp_path / "ca.crt").read_bytes(),
                                        AUD, "orders:read") as url:
                verdicts = {name: await asyncio.to_thread(apache_status, url, token) for name, token in
                            (("good", good), ("wrong aud", wrong_aud), ("missing scope", no_scope),
                             ("tampered", _tamper(good)), ("none", ""))}
                assert verdicts["good"] == 200, verdicts
                assert all(verdicts[k] in (401, 403) for k in verdicts if k != "good"), verdicts
            # revoking the kid: a fresh Apache (no cache) refuses the old token, accepts a new one
            await cluster.apply(identity(NAME, NS, jwt={"discovery": True, "issuer": issuer,
                                                        "revokedKids": [old_kid]}))
            await cluster.wait_for("ServiceIdentity", NS, NAME,
                                   lambda b: bool(b) and b["status"]["jwt"]["kid"] != old_kid
                                   and (condition(b, "Ready") or {}).get("status") == "True",
                                   what="to sign with a new key")
            fresh = await _token(cluster, "--aud", AUD, "--scope", "orders:read")
            with apache_resource_server(issuer, (tmp_path / "ca.crt").read_bytes(),
                                        AUD, "orders:read") as url:
                assert await asyncio.to_thread(apache_status, url, good) in (401, 403)
                assert await asyncio.to_thread(apache_status, url, fresh) == 200


class CachingValidator:
    """jwcrypto behind a JWKS cache that honours the served Cache-Control max-age, as a gateway does."""

    def __init__(self, issuer: str, ca: Any) -> None:
        self.jwks_uri = discover(issuer, ca)["jwks_uri"]
        self.ca, self.issuer = ca, issuer
        self.keys: Any = None
        self.expires = 0.0
        self.seen_kids: set[str] = set()

    def validate(self, token: str) -> None:
        from jwcrypto import jwk as jwcrypto_jwk
        from jwcrypto import jwt as jwcrypto_jwt

        if time.monotonic() >= self.expires:
            status, headers, body = fetch(self.jwks_uri, self.ca)
            assert status == 200
            self.keys = jwcrypto_jwk.JWKSet.from_json(body.decode())
            self.seen_kids |= {k["kid"] for k in json.loads(body)["keys"]}
            self.expires = time.monotonic() + int(headers["Cache-Control"].rpartition("max-age=")[2])
        jwcrypto_jwt.JWT(jwt=token, key=self.keys, check_claims={"iss": self.issuer, "aud": AUD, "exp": None})


def pyjwk_client(issuer: str, ca: Any) -> tuple[Any, list[str]]:
    """PyJWT's ``PyJWKClient`` caching the JWK set for the served max-age, and never refetching
    early on an unknown kid (its cooldown outlasts the test), so only publication ahead of
    signing can keep it from failing; and the algorithms the discovery document names."""
    import jwt as pyjwt

    document = discover(issuer, ca)
    _, headers, _ = fetch(document["jwks_uri"], ca)
    max_age = int(headers["Cache-Control"].rpartition("max-age=")[2])
    client = pyjwt.PyJWKClient(document["jwks_uri"], cache_jwk_set=True, lifespan=max_age, ssl_context=ca,
                               cooldown_duration=3600)
    return client, list(document["id_token_signing_alg_values_supported"])


def pyjwt_validate_cached(client: Any, algorithms: list[str], token: str, issuer: str) -> None:
    import jwt as pyjwt

    pyjwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=algorithms, audience=AUD,
                 issuer=issuer, options={"require": ["exp", "iss", "aud"]})


Probe = Callable[[str], None]


async def _probe_through_rollovers(cluster: Cluster, tmp_path: Path,
                                   validators: Callable[[str, Any, ExitStack], dict[str, Probe]]) -> set[str]:
    """Mint a token with the current key every 0.3 s for 55 s (two rollovers at least) and have
    each validator ``validators(issuer, client TLS context, stack)`` makes check it; no failure
    is allowed. Returns the kids that signed."""
    from trustwire import names
    from trustwire.cli.token import mint
    from trustwire.model import parse_identity

    port = free_port()
    public_url = f"https://localhost:{port}"
    issuer = f"{public_url}/{NS}/{NAME}"
    body = identity(NAME, NS, jwt={"discovery": True, "issuer": issuer, "rotationPeriod": "20s"})
    await cluster.apply(body)
    ident = parse_identity(await cluster.wait_condition("ServiceIdentity", NS, NAME, "Ready"))
    signing_kids: list[str] = []
    failures: list[str] = []
    with tls_pair(tmp_path) as (chain, key, ca), ExitStack() as stack:
        ctx = ServerContext(client=cluster.client, clock=utcnow, public_url=public_url, namespaces=(NS,),
                            tls=tls_context(TlsMaterial(chain, key)), propagation_delay=DELAY)
        async with serving(ctx, "127.0.0.1", port):
            probes = await asyncio.to_thread(validators, issuer, ca, stack)
            deadline = time.monotonic() + 55
            while time.monotonic() < deadline:
                credentials = await cluster.data("Secret", NS, names.credentials_secret(NAME))
                token = mint(ident, credentials, audience=[AUD], scopes=["orders:read"], ttl=timedelta(minutes=1),
                             extra={}, subject=None, now=utcnow())
                kid = credentials["jwt.kid"].decode()
                if not signing_kids or signing_kids[-1] != kid:
                    signing_kids.append(kid)
                for name, probe in probes.items():
                    try:
                        await asyncio.to_thread(probe, token)
                    except Exception as exc:
                        failures.append(f"{name} {kid}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.3)
    assert len(signing_kids) >= 3, f"expected at least two rollovers, saw signing kids {signing_kids}"
    assert failures == [], failures
    return set(signing_kids)


async def test_through_jwt_rollovers_a_caching_validator_never_rejects_a_valid_token(
        cluster: Cluster, tmp_path: Path) -> None:
    seen: list[CachingValidator] = []

    def validators(issuer: str, ca: Any, _: ExitStack) -> dict[str, Probe]:
        seen.append(CachingValidator(issuer, ca))
        client, algorithms = pyjwk_client(issuer, ca)
        return {"jwcrypto": seen[0].validate,
                "PyJWKClient": lambda token: pyjwt_validate_cached(client, algorithms, token, issuer)}

    signed = await _probe_through_rollovers(cluster, tmp_path, validators)
    assert signed <= seen[0].seen_kids


@pytest.mark.skipif(not (os.path.exists(APACHE) and os.path.exists(MOD_AUTH_OPENIDC)),
                    reason="needs Debian's apache2 and libapache2-mod-auth-openidc")
async def test_through_jwt_rollovers_mod_auth_openidc_never_rejects_a_valid_token(
        cluster: Cluster, tmp_path: Path) -> None:
    def validators(issuer: str, ca: Any, stack: ExitStack) -> dict[str, Probe]:
        # 300 s is mod_auth_openidc's shortest JWKS refresh; it refetches on an unknown kid
        url = stack.enter_context(apache_resource_server(issuer, (tmp_path / "ca.crt").read_bytes(), AUD,
                                                         "orders:read", jwks_refresh=300))

        def probe(token: str) -> None:
            assert apache_status(url, token) == 200

        return {"mod_auth_openidc": probe}

    await _probe_through_rollovers(cluster, tmp_path, validators)
