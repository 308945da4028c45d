"""Interop with nginx's ``ssl_verify_client on``: a real reverse-proxy-style consumer.

For every KeyAlgorithm, nginx is started on loopback with a throw-away prefix and
config (``daemon off; master_process off``, pid and temp paths in tmp, ``-e stderr``),
serving with the server identity's ``tls.crt``/``tls.key`` and trusting exactly the
client identity's CA as ``ssl_client_certificate`` (the operator's trust bundle).

Proves: a peer presenting its leaf gets 200 (over TLS 1.3 and 1.2) and nginx reports
``$ssl_client_verify = SUCCESS`` with the client's subject; an outsider presenting a
leaf from an unrelated CA gets nginx's 400 "The SSL certificate error"; a client with
no certificate gets 400 "No required SSL certificate was sent". (nginx completes the
handshake and answers 400 itself instead of failing it: that is its documented
behaviour for ``ssl_verify_client on``, and it is what is asserted.)
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trustwire.pki import KeyAlgorithm

from .conftest import Party, free_port, peer, require_tool, wait_for_port

pytestmark = pytest.mark.interop

Parties = Callable[[KeyAlgorithm], dict[str, Party]]
NGINX = "/usr/sbin/nginx"
TIMEOUT = 10.0

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {server_name};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {trust_bundle};
        ssl_verify_client on;
        ssl_verify_depth 2;
        default_type text/plain;
        location / {{
            return 200 "verify=$ssl_client_verify subject=$ssl_client_s_dn\\n";
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    return require_tool("nginx", NGINX)


@pytest.fixture(scope="module", params=list(KeyAlgorithm), ids=str)
def nginx_server(
    request: pytest.FixtureRequest,
    nginx_binary: str,
    parties: Parties,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[int, dict[str, Party]]]:
    p = parties(request.param)
    server = p["server"]
    prefix = tmp_path_factory.mktemp(f"nginx-{request.param}")
    trust_bundle = prefix / "trust-bundle.pem"
    trust_bundle.write_bytes(p["client"].ca_pem.read_bytes())
    for attempt in range(5):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            CONFIG.format(
                prefix=prefix, port=port, server_name=server.hostname, cert=server.chain_pem,
                key=server.key_pem, trust_bundle=trust_bundle,
            )
        )  # fmt: skip
        cmd = [nginx_binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
        log = prefix / f"stderr-{attempt}.log"
        with (
            log.open("wb") as sink,
            peer(cmd, stdout=subprocess.DEVNULL, stderr=sink, stdin=subprocess.DEVNULL) as proc,
        ):
            try:
                wait_for_port(port, time.monotonic() + TIMEOUT, proc)
            except (RuntimeError, TimeoutError):
                err = log.read_text(errors="replace")
                if "Address already in use" in err and attempt < 4:
                    continue  # another process took the free port between probe and bind
                raise AssertionError(f"nginx failed to start: {err}") from None
            yield port, p
            return
    raise AssertionError("nginx could not bind a free port")


def get(
    port: int, hostname: str, trusts: Path, client: Party | None, version: ssl.TLSVersion
) -> tuple[int, str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_verify_locations(cafile=str(trusts))
    if client is not None:
        ctx.load_cert_chain(str(client.chain_pem), str(client.key_pem))
    # Connect to 127.0.0.1 but verify the server's certificate against ``hostname`` (its DNS SAN):
    # the TLS socket is made here and handed to a plain HTTPConnection, which then speaks HTTP over it.
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.sock = ctx.wrap_socket(raw, server_hostname=hostname)
    try:
        conn.request("GET", "/", headers={"Host": hostname})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["TLSv1.3", "TLSv1.2"]
)
def test_peer_with_its_leaf_is_served(
    nginx_server: tuple[int, dict[str, Party]], version: ssl.TLSVersion
) -> None:
    port, p = nginx_server
    status, body = get(port, p["server"].hostname, p["server"].ca_pem, p["client"], version)
    assert status == 200, body
    assert body == "verify=SUCCESS subject=CN=client\n"


def test_outsider_is_refused(nginx_server: tuple[int, dict[str, Party]]) -> None:
    port, p = nginx_server
    status, body = get(port, p["server"].hostname, p["server"].ca_pem, p["outsider"], ssl.TLSVersion.TLSv1_3)
    assert status == 400
    assert "The SSL certificate error" in body


def test_client_without_certificate_is_refused(nginx_server: tuple[int, dict[str, Party]]) -> None:
    port, p = nginx_server
    status, body = get(port, p["server"].hostname, p["server"].ca_pem, None, ssl.TLSVersion.TLSv1_3)
    assert status == 400
    assert "No required SSL certificate was sent" in body
