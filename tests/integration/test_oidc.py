"""Issue 17 acceptance: an identity is an OpenID Connect issuer that validators nobody here
wrote trust by discovery alone; the real operator on the real control plane, the real server."""

from __future__ import annotations

import asyncio
import json
import os
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
    fetch,
    free_port,
    tls_pair,
)
from trustwire.server.context import ServerContext
from trustwire.server.run import TlsMaterial, serving, tls_context
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

NS, NAME, AUD = "oidc", "orders", "gateway"


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
                            tls=tls_context(TlsMaterial(chain, key)))
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
                            tls=tls_context(TlsMaterial(chain, key)))
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
