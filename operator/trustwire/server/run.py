"""Running the server: its TLS context and the listening socket.

The server asks for a client certificate but does not require one (``CERT_OPTIONAL``):
the token endpoints serve clients without one, and the mTLS endpoints read the verified
certificate of the connection. Which CAs a client certificate may chain to is taught to
the context at run time (:meth:`ssl.SSLContext.load_verify_locations`), as features learn them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import SECRETS, decode_data
from trustwire.server import enrollment
from trustwire.server.app import build_app
from trustwire.server.context import ServerContext

log = logging.getLogger("trustwire.server")


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    certificate_chain: bytes
    private_key: bytes


def tls_context(material: TlsMaterial) -> ssl.SSLContext:
    """A server context for ``material``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_OPTIONAL
    load_material(ctx, material)
    return ctx


def load_material(ctx: ssl.SSLContext, material: TlsMaterial) -> None:
    """Give ``ctx`` this certificate and key (new handshakes use them; open connections keep
    theirs). The key touches disk only in a private temporary directory for the one call that
    needs a path, and is removed at once."""
    with tempfile.TemporaryDirectory(prefix="trustwire-serve-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(material.certificate_chain)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(material.private_key)
        ctx.load_cert_chain(cert, key)


async def keep_tls_from_secret(client: Client, ctx: ssl.SSLContext, namespace: str, name: str,
                               current: TlsMaterial, every: float = 60.0) -> None:
    """Follow the TLS Secret: cert-manager (or a trustwire identity) renews it in place, and a
    server that kept its first certificate would present an expired one. A Secret that is
    gone or broken for a while leaves the certificate in use as it is."""
    while True:
        await asyncio.sleep(every)
        try:
            fresh = await material_from_secret(client, namespace, name)
            if fresh != current:
                load_material(ctx, fresh)
                current = fresh
                log.info("TLS certificate reloaded from Secret %s/%s", namespace, name)
        except (ApiError, LookupError, ssl.SSLError) as exc:
            log.warning("TLS Secret %s/%s not reloaded: %s", namespace, name, _why(exc))


def _why(exc: Exception) -> str:
    """What went wrong, without anything the Secret holds."""
    if isinstance(exc, ApiError):
        return f"{exc.status} {exc.reason}"
    return exc.args[0] if isinstance(exc, LookupError) and exc.args else type(exc).__name__


def material_from_files(cert: Path, key: Path) -> TlsMaterial:
    return TlsMaterial(cert.read_bytes(), key.read_bytes())


async def material_from_secret(client: Client, namespace: str, name: str) -> TlsMaterial:
    """``tls.crt``/``tls.key`` of a kubernetes.io/tls Secret (cert-manager's, or any)."""
    body = await client.get(SECRETS, namespace, name)
    if body is None:
        raise LookupError(f"TLS Secret {namespace}/{name} not found")
    data = decode_data(SECRETS, body)
    if not data.get("tls.crt") or not data.get("tls.key"):
        raise LookupError(f"TLS Secret {namespace}/{name} has no tls.crt and tls.key")
    return TlsMaterial(data["tls.crt"], data["tls.key"])


@contextlib.asynccontextmanager
async def serving(ctx: ServerContext, host: str, port: int) -> AsyncIterator[int]:
    """Serve until the block ends; yields the bound port (useful with ``port=0``)."""
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    sock = socket.create_server((host, port), reuse_port=False)
    bound = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=ctx.tls)
    await site.start()
    log.info("serving on %s:%d", host, bound)
    cas = asyncio.create_task(enrollment.keep_client_cas(ctx))
    try:
        yield bound
    finally:
        cas.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cas
        await runner.cleanup()
