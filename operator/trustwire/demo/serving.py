"""``trustwire demo --serve DIR``: the demo kept running with ``trustwire serve`` beside it.

The server runs on loopback against the demo's API emulator with a certificate for
``localhost`` from a CA of its own (``DIR/server-ca.crt``). ``DIR/endpoints.json`` says where
everything is, so the curl + openssl flow of docs/enrollment.md runs by hand: the API URL, the
server URL and its CA file, each Enrollment's one-time token file (``DIR/tokens/``, mode
0600, read from the token Secret the operator wrote) and each OIDC issuer identity's
discovery URL. The demo serves until interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from trustwire import names, pki
from trustwire.k8s.client import Client
from trustwire.k8s.resources import SECRETS, decode_data
from trustwire.model.issuer import DISCOVERY_PATH
from trustwire.server.context import ServerContext
from trustwire.server.run import TlsMaterial, serving, tls_context
from trustwire.times import utcnow

HOST = "localhost"
TOKEN_WAIT = 30.0


def server_material(directory: Path) -> TlsMaterial:
    """A certificate for ``localhost`` from a fresh CA, whose certificate lands in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    ca_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name="trustwire demo serve CA", now=now, lifetime=timedelta(days=7))
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name=HOST, dns_names=[HOST], uri_sans=[],
                           now=now, lifetime=timedelta(days=7))
    (directory / "server-ca.crt").write_bytes(pki.cert_to_pem(ca))
    return TlsMaterial(pki.cert_to_pem(leaf), pki.private_key_to_pem(key))


def _of_kind(docs: Sequence[Mapping[str, Any]], kind: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [(d["metadata"].get("namespace", "default"), d["metadata"]["name"], d.get("spec") or {})
            for d in docs if d.get("kind") == kind]


async def _token(client: Client, namespace: str, name: str) -> bytes:
    """The one-time token the operator wrote for Enrollment ``namespace/name``."""
    secret = names.enrollment_token_secret(name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOKEN_WAIT
    while True:
        body = await client.get(SECRETS, namespace, secret)
        token = decode_data(SECRETS, body).get("token") if body else None
        if token:
            return token
        if loop.time() > deadline:
            raise TimeoutError(f"the operator wrote no token into Secret {namespace}/{secret}")
        await asyncio.sleep(0.2)


def _token_file(directory: Path, namespace: str, name: str, token: bytes) -> Path:
    """``DIR/tokens/<namespace>.<name>.token``, readable by its owner only."""
    path = directory / "tokens" / f"{namespace}.{name}.token"
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(token)
    return path


def _write_endpoints(directory: Path, found: Mapping[str, Any]) -> Path:
    path = directory / "endpoints.json"
    path.write_text(json.dumps(found, indent=2) + "\n")
    return path


async def endpoints(client: Client, api_url: str, server_url: str, directory: Path,
                    docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What endpoints.json holds; writes the token files it names."""
    enrollments = []
    for namespace, name, _ in _of_kind(docs, "Enrollment"):
        path = _token_file(directory, namespace, name, await _token(client, namespace, name))
        enrollments.append({"namespace": namespace, "name": name, "tokenFile": str(path),
                            "connectorUrl": f"{server_url}{names.ENROLLMENT_INFO_PATH}"})
    issuers = [{"namespace": namespace, "name": name,
                "discoveryUrl": f"{server_url}/{namespace}/{name}{DISCOVERY_PATH}"}
               for namespace, name, spec in _of_kind(docs, "ServiceIdentity")
               if isinstance(spec.get("jwt"), Mapping) and spec["jwt"].get("discovery")]
    return {"apiServer": api_url, "server": server_url, "serverCA": str(directory / "server-ca.crt"),
            "enrollments": enrollments, "identities": issuers}


async def serve_beside(client: Client, api_url: str, directory: Path, docs: Sequence[Mapping[str, Any]],
                       console: Console, stop: asyncio.Event) -> None:
    """Serve enrollment and discovery for the running demo until ``stop`` is set."""
    ctx = ServerContext(client=client, clock=utcnow, public_url=None, tls=tls_context(server_material(directory)))
    async with serving(ctx, "127.0.0.1", 0) as port:
        found = await endpoints(client, api_url, f"https://{HOST}:{port}", directory, docs)
        written = _write_endpoints(directory, found)
        console.print(f"trustwire serve at {found['server']}; wrote {written}; "
                      "serving until interrupted (Ctrl-C)")
        await stop.wait()
