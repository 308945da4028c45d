"""``trustwire serve`` takes its TLS certificate from a Secret and follows it: here the Secret
is a trustwire identity's own credentials, renewed by the operator while the server runs.

A client that checks the server against the identity's CA (as an enrolling application
does) sees the new certificate after the renewal, without a restart of the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

import pytest
from cryptography import x509

from tests.integration.harness import Cluster, identity, until
from tests.interop.conftest import free_port
from trustwire import names
from trustwire.k8s.resources import IDENTITIES
from trustwire.server.context import ServerContext
from trustwire.server.run import keep_tls_from_secret, material_from_secret, serving, tls_context
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

NS = "serve-tls"
NAME = "trust-server"


def presented_serial(port: int, ca_pem: bytes) -> int:
    """The serial of the certificate the server presents, verified against ``ca_pem``."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_the_server_follows_its_tls_secret_across_a_renewal(cluster: Cluster,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trustwire.server")
    await cluster.ensure_namespace(NS)
    await cluster.apply(identity(NAME, NS, dnsNames=["localhost"]))
    body = await cluster.wait_condition("ServiceIdentity", NS, NAME, "Ready")
    secret = names.credentials_secret(NAME)
    ca = (await cluster.data("Secret", NS, secret))["ca.crt"]
    material = await material_from_secret(cluster.client, NS, secret)
    ctx = ServerContext(client=cluster.client, clock=utcnow, public_url=None, namespaces=(NS,),
                        tls=tls_context(material))
    assert ctx.tls is not None
    port = free_port()
    async with serving(ctx, "127.0.0.1", port):
        follow = asyncio.create_task(keep_tls_from_secret(cluster.client, ctx.tls, NS, secret, material, every=0.5))
        try:
            first = await asyncio.to_thread(presented_serial, port, ca)
            assert f"{first:x}" == body["status"]["certificate"]["serial"].replace(":", "").lower().lstrip("0")
            await cluster.client.merge_patch(IDENTITIES, NS, NAME, {"metadata": {"annotations": {
                names.ROTATE_ANNOTATION: "certificate:renew"}}})

            async def renewed() -> int | None:
                serial = await asyncio.to_thread(presented_serial, port, ca)
                return serial if serial != first else None

            second = await until(renewed, "the server to present the renewed certificate", timeout=45)
            status = (await cluster.get("ServiceIdentity", NS, NAME) or {})["status"]["certificate"]
            assert f"{second:x}" == status["serial"].replace(":", "").lower().lstrip("0")
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    reloads = [r.getMessage() for r in caplog.records if "TLS certificate reloaded" in r.getMessage()]
    assert reloads and all("PRIVATE KEY" not in m for m in caplog.messages)
