"""``trustwire demo --serve DIR``: keep the demo's emulator and operator running with
``trustwire serve`` beside them on loopback, and say where everything is in DIR/endpoints.json.

The server presents a certificate for ``localhost`` from a CA made for this run
(DIR/server-ca.crt); each Enrollment's one-time token is copied into DIR/tokens/, so an
application made of curl and openssl can enrol against the demo.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from trustwire import names, pki
from trustwire.k8s.client import Client
from trustwire.k8s.resources import SECRETS, decode_data
from trustwire.server.context import ServerContext
from trustwire.server.run import TlsMaterial, serving, tls_context
from trustwire.times import utcnow

HOST = "localhost"


def server_material(directory: Path) -> TlsMaterial:
    """A certificate for localhost, from a CA written to DIR/server-ca.crt (DIR made if need be)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    ca_key, key = (pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256) for _ in range(2))
    ca = pki.create_ca(ca_key, common_name="trustwire demo server CA", now=now, lifetime=timedelta(days=1))
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name=HOST, dns_names=[HOST], uri_sans=[], now=now,
                           lifetime=timedelta(days=1))
    (directory / "server-ca.crt").write_bytes(pki.cert_to_pem(ca))
    return TlsMaterial(pki.cert_to_pem(leaf), pki.private_key_to_pem(key))


def _refs(docs: Sequence[Mapping[str, Any]], kind: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [((d.get("metadata") or {}).get("namespace") or "default", d["metadata"]["name"], d.get("spec") or {})
            for d in docs if d.get("kind") == kind and (d.get("metadata") or {}).get("name")]


async def _token(client: Client, namespace: str, name: str, timeout: float = 15.0) -> bytes | None:
    """The token the operator issues into the Enrollment's Secret (it may still be on its way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        secret = await client.get(SECRETS, namespace, names.enrollment_token_secret(name))
        token = decode_data(SECRETS, secret).get(names.ENROLLMENT_TOKEN_KEY) if secret else None
        if token or loop.time() > deadline:
            return token
        await asyncio.sleep(0.2)


def _write_private(path: Path, data: bytes) -> None:
    """Created readable by its owner only: a token never sits in a world-readable file, not even briefly."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


async def _token_files(client: Client, docs: Sequence[Mapping[str, Any]], directory: Path) -> dict[str, str]:
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    files: dict[str, str] = {}
    for namespace, name, _ in _refs(docs, "Enrollment"):
        token = await _token(client, namespace, name)
        if token:
            path = tokens / f"{namespace}.{name}.token"
            _write_private(path, token)
            files[f"{namespace}/{name}"] = str(path)
    return files


async def serve_demo(client: Client, api_url: str, docs: Sequence[Mapping[str, Any]], directory: Path,
                     hold: Callable[[], Awaitable[None]]) -> None:
    """Serve until ``hold`` returns, with DIR/endpoints.json written once the server listens."""
    tls = tls_context(server_material(directory))
    ctx = ServerContext(client=client, clock=utcnow, public_url=None, tls=tls)
    async with serving(ctx, "127.0.0.1", 0) as port:
        url = f"https://{HOST}:{port}"
        endpoints = {
            "apiURL": api_url, "serverURL": url, "serverCA": str(directory / "server-ca.crt"),
            "enrollmentURL": f"{url}{names.ENROLLMENT_INFO_PATH}",
            "tokens": await _token_files(client, docs, directory),
            "discovery": {f"{ns}/{name}": f"{url}/{ns}/{name}/.well-known/openid-configuration"
                          for ns, name, spec in _refs(docs, "ServiceIdentity")
                          if (spec.get("jwt") or {}).get("discovery")},
        }
        (directory / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        await hold()
