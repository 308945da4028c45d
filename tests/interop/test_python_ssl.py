"""Interop with Python's ``ssl`` module (OpenSSL underneath, but a different API surface).

For every KeyAlgorithm and for TLS 1.3 and 1.2: a server with ``CERT_REQUIRED`` and
only the client CA loaded, and a client with ``check_hostname`` and only the server CA
loaded, complete mutual TLS with the PEM files the operator writes (``tls.crt`` =
leaf + CA, ``tls.key`` PKCS#8). Each side sees exactly the other's leaf. A client from
an unrelated CA, a client without certificate and a wrong expected host name fail.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from trustwire.pki import KeyAlgorithm

from .conftest import Party

pytestmark = pytest.mark.interop

Parties = Callable[[KeyAlgorithm], dict[str, Party]]
VERSIONS = {"TLSv1.3": ssl.TLSVersion.TLSv1_3, "TLSv1.2": ssl.TLSVersion.TLSv1_2}
TIMEOUT = 10.0


@dataclass
class Outcome:
    peer_der: bytes | None = None
    received: bytes = b""
    version: str | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _context(
    purpose: int, chain: Path | None, key: Path | None, trusts: Path, version: str
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(trusts))
    if chain is not None and key is not None:
        ctx.load_cert_chain(str(chain), str(key))
    return ctx


def python_exchange(
    server: Party, server_trusts: Path, client: Party | None, client_trusts: Path, version: str, hostname: str
) -> tuple[Outcome, Outcome]:
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, server.chain_pem, server.key_pem, server_trusts, version)
    client_ctx = _context(
        ssl.PROTOCOL_TLS_CLIENT,
        client.chain_pem if client else None,
        client.key_pem if client else None,
        client_trusts,
        version,
    )
    assert client_ctx.check_hostname  # the default for PROTOCOL_TLS_CLIENT; asserted, not assumed
    srv, cli = Outcome(), Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                srv.peer_der = tls.getpeercert(binary_form=True)
                srv.version = tls.version()
                srv.received = tls.recv(64)
                tls.sendall(b"pong:" + srv.received)
        except BaseException as exc:  # recorded and asserted by the test
            srv.error = exc
        finally:
            srv.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            client_ctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            cli.peer_der = tls.getpeercert(binary_form=True)
            cli.version = tls.version()
            tls.sendall(b"ping")
            cli.received = tls.recv(64)
    except (ssl.SSLError, OSError) as exc:
        cli.error = exc
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert srv.done.is_set(), "server thread did not finish in time"
    return srv, cli


def _der(party: Party) -> bytes:
    return party.leaf.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_mutual_tls(parties: Parties, algorithm: KeyAlgorithm, version: str) -> None:
    p = parties(algorithm)
    server, client = p["server"], p["client"]
    srv, cli = python_exchange(server, client.ca_pem, client, server.ca_pem, version, server.hostname)
    assert srv.error is None and cli.error is None, (srv.error, cli.error)
    assert srv.version == cli.version == version
    assert srv.peer_der == _der(client)
    assert cli.peer_der == _der(server)
    assert (srv.received, cli.received) == (b"ping", b"pong:ping")


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_client_from_unrelated_ca_is_refused(parties: Parties, algorithm: KeyAlgorithm, version: str) -> None:
    p = parties(algorithm)
    server = p["server"]
    srv, cli = python_exchange(
        server, p["client"].ca_pem, p["outsider"], server.ca_pem, version, server.hostname
    )
    assert isinstance(srv.error, ssl.SSLCertVerificationError), srv.error
    assert srv.error.reason == "CERTIFICATE_VERIFY_FAILED"
    assert srv.received == b""
    assert cli.received == b""
    if version == "TLSv1.2":
        # The server's verdict arrives inside the client's handshake as an alert.
        assert isinstance(cli.error, ssl.SSLError), cli.error
        assert "unknown ca" in str(cli.error).lower()
    else:
        # TLS 1.3: the client finishes its handshake before the server checks its certificate; it
        # then sees the "unknown ca" alert or, if its write raced the server's close, EOF/reset.
        assert isinstance(cli.error, ssl.SSLError | ConnectionError), cli.error


@pytest.mark.parametrize("version", list(VERSIONS))
def test_client_without_certificate_is_refused(parties: Parties, version: str) -> None:
    p = parties(KeyAlgorithm.RSA2048)
    server = p["server"]
    srv, cli = python_exchange(server, p["client"].ca_pem, None, server.ca_pem, version, server.hostname)
    assert isinstance(srv.error, ssl.SSLError)
    assert "peer did not return a certificate" in str(srv.error)
    assert isinstance(cli.error, ssl.SSLError | ConnectionError), cli.error
    assert cli.received == b""


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_client_refuses_wrong_host_name(parties: Parties, algorithm: KeyAlgorithm) -> None:
    p = parties(algorithm)
    server, client = p["server"], p["client"]
    _, cli = python_exchange(server, client.ca_pem, client, server.ca_pem, "TLSv1.3", "not-the-server.test")
    assert isinstance(cli.error, ssl.SSLCertVerificationError), cli.error
    assert "Hostname mismatch" in str(cli.error)


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_client_refuses_server_from_the_wrong_ca(parties: Parties, algorithm: KeyAlgorithm) -> None:
    """The client trusts only the server's CA: the outsider posing as server is refused."""
    p = parties(algorithm)
    _, cli = python_exchange(
        p["outsider"], p["client"].ca_pem, p["client"], p["server"].ca_pem, "TLSv1.3", "localhost"
    )
    assert isinstance(cli.error, ssl.SSLCertVerificationError), cli.error
    assert cli.error.reason == "CERTIFICATE_VERIFY_FAILED"
